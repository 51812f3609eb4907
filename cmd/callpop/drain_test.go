package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
)

// testSidecar is `callpop run` in-process on the config at path, with the
// test as its signal source and call.drain_delay's end in the test's hands.
type testSidecar struct {
	base      string
	logs      *syncBuffer
	sigs      chan os.Signal
	delayOver chan time.Time
	done      chan error
}

func startSidecar(t *testing.T, path string) *testSidecar {
	t.Helper()
	lc, err := loadConfig(path, true)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testSidecar{logs: &syncBuffer{}, sigs: make(chan os.Signal, 2), delayOver: make(chan time.Time), done: make(chan error, 1)}
	log, level := newLoggerVar(lc.Log, ts.logs)
	s := newSidecar(lc, log, level, ts.sigs)
	s.after = func(d time.Duration) <-chan time.Time {
		if d != lc.Call.DrainDelay {
			t.Errorf("drain delay %s, config says %s", d, lc.Call.DrainDelay)
		}
		return ts.delayOver
	}
	go func() { ts.done <- s.run(context.Background()) }()
	t.Cleanup(func() {
		select {
		case ts.sigs <- syscall.SIGINT:
		default:
		}
		select {
		case <-ts.done:
		case <-time.After(15 * time.Second):
			t.Errorf("sidecar did not stop:\n%s", ts.logs.String())
		}
	})
	addrRe := regexp.MustCompile(`"msg":"http listening".*"addr":"([^"]+)"`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := addrRe.FindStringSubmatch(ts.logs.String()); m != nil {
			ts.base = "http://" + m[1]
			return ts
		}
	}
	t.Fatalf("sidecar did not listen within 10s:\n%s", ts.logs.String())
	return nil
}

// waitLog waits (bounded) for a log line with msg.
func waitLog(t *testing.T, logs *syncBuffer, msg string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(logs.String(), `"msg":"`+msg+`"`) {
			return
		}
	}
	t.Fatalf("no log %q:\n%s", msg, logs.String())
}

// waitContinued waits (bounded) for the simulator's call id to be continued.
func waitContinued(t *testing.T, sim *arisim.Server, id string, logs *syncBuffer) map[string]string {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, ok := sim.Continued(id); ok {
			return sim.Vars(id)
		}
	}
	t.Fatalf("call %s not continued:\n%s", id, logs.String())
	return nil
}

// On SIGTERM /readyz answers 503 at once while calls are still taken for
// call.drain_delay; when it is over, a call in flight (its CRM still
// answering) finishes with its variables, and run returns nil.
func TestDrainDelay(t *testing.T) {
	const slow = "+14155550199"
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	crmSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		phone := r.URL.Query().Get("phone")
		if phone == slow {
			arrived <- struct{}{}
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"C%s","name":"Drain Tester","tier":"gold","language":"en"}`, phone[len(phone)-4:])
	}))
	defer crmSrv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	sim, err := arisim.New(arisim.Options{Username: "callpop", Password: "test-ari-secret", App: "callpop-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	t.Setenv("CALLPOP_PBX_ASTERISK_PASSWORD", "test-ari-secret")
	cfg := testConfig + `
call: {budget: 8s, drain_delay: 5m, drain_timeout: 1m} # the test ends the delay
crm:
  sources:
    - {name: main, kind: http, url: "` + crmSrv.URL + `/customers?phone={e164}", timeout: 7s}
pbx:
  kind: asterisk
  asterisk:
    url: ` + sim.URL() + `
    username: callpop
    app: callpop-test
    reconnect_min: 20ms
    reconnect_max: 200ms
`
	sc := startSidecar(t, writeConfig(t, cfg))
	waitPBXReady(t, sc.base)

	sc.sigs <- syscall.SIGTERM
	st := waitReady(t, sc.base, false)
	if !slices.Contains(st.Reasons, "draining: shutting down") {
		t.Fatalf("reasons %q", st.Reasons)
	}
	// Still taking calls: one is decided and continued while /readyz is 503.
	id := sim.OfferCall(arisim.CallSpec{CLI: "+14155550123", CLIName: "Caller", DNIS: "1000"})
	if vars := waitContinued(t, sim, id, sc.logs); vars["CALLPOP_MATCH"] != "hit" || vars["CALLPOP_CUSTOMER_ID"] != "C0123" {
		t.Fatalf("call during drain_delay: %v", vars)
	}
	if code, _ := get(t, sc.base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d during drain_delay", code)
	}
	// A call whose CRM answer is still to come when the delay ends.
	inFlight := sim.OfferCall(arisim.CallSpec{CLI: slow, CLIName: "Slow", DNIS: "1000"})
	select {
	case <-arrived:
	case <-time.After(15 * time.Second):
		t.Fatalf("the slow call never reached the CRM:\n%s", sc.logs.String())
	}
	sc.delayOver <- time.Now()
	waitLog(t, sc.logs, "drain delay over: no new calls; waiting for calls in flight")
	close(release)
	if vars := waitContinued(t, sim, inFlight, sc.logs); vars["CALLPOP_MATCH"] != "hit" || vars["CALLPOP_CUSTOMER_ID"] != "C0199" {
		t.Fatalf("call in flight: %v", vars)
	}
	select {
	case err := <-sc.done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		sc.done <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not return after the drain:\n%s", sc.logs.String())
	}
	if l := sc.logs.String(); strings.Contains(l, "leaving with work in flight") {
		t.Fatalf("drain cut work:\n%s", l)
	}
}
