package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// execMainEnv makes the test binary run callpop's main with its arguments,
// so the signal tests can signal a real process.
const execMainEnv = "CALLPOP_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	// call.drain_delay defaults to 0 in tests, child processes included: a
	// stop does not wait for load balancers that are not there. Tests of
	// the delay set it in their config.
	defaultDrainDelay = 0
	if os.Getenv(execMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startProcess runs `callpop run --config cfg` as a child process and
// returns it with its base URL and its logs.
func startProcess(t *testing.T, cfg string) (*exec.Cmd, string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cmd := exec.Command(os.Args[0], "run", "--config", cfg)
	cmd.Env = append(os.Environ(), execMainEnv+"=1")
	cmd.Stdout = logs
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	addrRe := regexp.MustCompile(`"msg":"http listening".*"addr":"([^"]+)"`)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := addrRe.FindStringSubmatch(logs.String()); m != nil {
			return cmd, "http://" + m[1], logs
		}
	}
	t.Fatalf("child did not listen within 20s:\n%s", logs.String())
	return nil, "", nil
}

// waitExit waits (bounded) for the child and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration, logs *syncBuffer) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("child did not exit within %s:\n%s", within, logs.String())
		return -1
	}
}

// SIGTERM drains: a look-up in flight (its CRM answers after 1s) still gets
// its answer, and the process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	arrived := make(chan struct{}, 1)
	crmSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		time.Sleep(time.Second)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"C77","name":"Drain Tester","tier":"gold","language":"en","url":"https://crm.example/c/C77"}`)
	}))
	defer crmSrv.Close()
	cfg := writeConfig(t, `
listen: 127.0.0.1:0
call: {budget: 3s, drain_timeout: 10s}
crm:
  sources:
    - {name: slow, kind: http, url: "`+crmSrv.URL+`/customers?phone={e164}", timeout: 3s}
router:
  fastagi: {listen: "127.0.0.1:0"}
`)
	cmd, base, logs := startProcess(t, cfg)

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/v1/lookup?number=" + url.QueryEscape("+14155550177"))
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{code: resp.StatusCode, body: string(b), err: err}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatalf("the look-up never reached the CRM:\n%s", logs.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || r.code != 200 {
		t.Fatalf("look-up in flight was cut by the drain: %d %v\n%s", r.code, r.err, logs.String())
	}
	var got lookupJSON
	if err := json.Unmarshal([]byte(r.body), &got); err != nil || got.Match != "hit" || got.Customer == nil || got.Customer.ID != "C77" {
		t.Fatalf("look-up answer %s (%v)", r.body, err)
	}
	if code := waitExit(t, cmd, 15*time.Second, logs); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, logs.String())
	}
	l := logs.String()
	if !strings.Contains(l, `"msg":"SIGTERM: draining"`) || !strings.Contains(l, `"msg":"stopped"`) {
		t.Fatalf("logs:\n%s", l)
	}
}

// SIGINT stops at once, exit 0.
func TestSIGINTStops(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	cmd, base, logs := startProcess(t, writeConfig(t, runConfig))
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, 10*time.Second, logs); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"SIGINT: stopping"`) {
		t.Fatalf("logs:\n%s", logs.String())
	}
}
