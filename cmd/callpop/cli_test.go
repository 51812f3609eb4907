package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader in different goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// execute runs the root command in-process with args and returns stdout,
// stderr and the error.
func execute(t *testing.T, ctx context.Context, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut syncBuffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// writeConfig writes a config file for a test and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "callpop.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testConfig keeps tests off the shared ports: the HTTP listener and FastAGI
// on free loopback ports.
const testConfig = `
listen: 127.0.0.1:0
router:
  fastagi:
    listen: 127.0.0.1:0
log:
  level: debug
`

// runConfig is testConfig for `run`, which serves the embedded sample CRM
// only when crm.sample asks for it.
const runConfig = testConfig + "crm:\n  sample: true\n"

func TestVersion(t *testing.T) {
	out, _, err := execute(t, context.Background(), "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "callpop ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version output %q", out)
	}
	flag, _, err := execute(t, context.Background(), "--version")
	if err != nil || flag != out {
		t.Fatalf("--version: %q, %v; want %q as `callpop version` prints", flag, err, out)
	}
}

func TestCheckConfig(t *testing.T) {
	t.Run("example", func(t *testing.T) {
		out, _, err := execute(t, context.Background(), "check-config", "--config", examplePath)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.HasSuffix(out, "OK\n") || !strings.Contains(out, "config: "+examplePath) {
			t.Fatalf("output %q", out)
		}
		if !regexp.MustCompile(`(?m)^rule router\.rules\[0\] ".*": ok$`).MatchString(out) {
			t.Fatalf("no rule status in %q", out)
		}
	})
	t.Run("bad file", func(t *testing.T) {
		out, _, err := execute(t, context.Background(), "check-config", "--config", "testdata/config/bad-budget-zero.yaml")
		if err == nil || !strings.Contains(err.Error(), "call.budget") || strings.Contains(out, "OK") {
			t.Fatalf("want an error naming call.budget, got %v, output %q", err, out)
		}
	})
	t.Run("bad rule", func(t *testing.T) {
		p := writeConfig(t, "router:\n  rules:\n    - name: typo\n      when: custmer.tier == \"vip\"\n      then: {priority: 10}\n")
		out, _, err := execute(t, context.Background(), "check-config", "--config", p)
		if err == nil || !strings.Contains(err.Error(), "router.rules[0]") {
			t.Fatalf("want an error naming router.rules[0], got %v", err)
		}
		if !strings.Contains(out, `rule router.rules[0] "typo": error: `) {
			t.Fatalf("want the rule's error in the output, got %q", out)
		}
	})
	t.Run("missing explicit file", func(t *testing.T) {
		_, _, err := execute(t, context.Background(), "check-config", "--config", filepath.Join(t.TempDir(), "none.yaml"))
		if err == nil {
			t.Fatal("want an error")
		}
	})
}

// lookupJSON is the part of the decision JSON the tests read.
type lookupJSON struct {
	Match    string `json:"match"`
	E164     string `json:"e164"`
	Source   string `json:"source"`
	Customer *struct {
		ID, Name, Tier, Language, URL string
	} `json:"customer"`
	Vars      map[string]string `json:"vars"`
	Cached    bool              `json:"cached"`
	ElapsedMS *float64          `json:"elapsed_ms"`
	Rules     []string          `json:"rules"`
}

// The embedded defaults: sample CSV CRM, in-process cache.
func TestLookupEmbeddedSample(t *testing.T) {
	cfg := writeConfig(t, testConfig)
	tests := []struct {
		name  string
		args  []string
		match string
		e164  string
		src   string
	}{
		{"known US caller", []string{"+14155550123"}, "hit", "+14155550123", "cli"},
		{"known Dutch caller, international", []string{"+31201234567"}, "hit", "+31201234567", "cli"},
		{"unknown caller", []string{"+14155550111"}, "miss", "+14155550111", "cli"},
		{"withheld caller, ANI fallback", []string{"--ani", "+14155550123", "anonymous"}, "hit", "+14155550123", "ani"},
		{"withheld, no ANI", []string{"anonymous"}, "anonymous", "", ""},
		{"junk", []string{"call me maybe"}, "invalid", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"lookup", "--config", cfg, "--timeout", "5s"}, tc.args...)
			out, logs, err := execute(t, context.Background(), args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, logs)
			}
			var got lookupJSON
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if got.Match != tc.match || got.E164 != tc.e164 || got.Source != tc.src {
				t.Fatalf("match %q e164 %q source %q, want %q %q %q\n%s", got.Match, got.E164, got.Source, tc.match, tc.e164, tc.src, out)
			}
			if got.Vars["CALLPOP_MATCH"] != tc.match || got.Vars["CALLPOP_E164"] != tc.e164 || got.ElapsedMS == nil || got.Rules == nil {
				t.Fatalf("vars/elapsed/rules missing: %s", out)
			}
			if tc.match == "hit" {
				if got.Customer == nil || got.Customer.ID == "" || got.Customer.Name == "" || got.Vars["CALLPOP_NAME"] != got.Customer.Name {
					t.Fatalf("hit without customer: %s", out)
				}
			}
			// Logs never hold the number in clear.
			if tc.e164 != "" && strings.Contains(logs, tc.e164) {
				t.Fatalf("number %s in clear in the logs:\n%s", tc.e164, logs)
			}
		})
	}
	t.Run("dnis picks the region", func(t *testing.T) {
		p := writeConfig(t, testConfig+"numbers:\n  profiles:\n    - {dnis: [\"+31208000000\"], region: NL}\n")
		out, logs, err := execute(t, context.Background(), "lookup", "--config", p, "--timeout", "5s", "--dnis", "+31208000000", "020 123 4567")
		if err != nil {
			t.Fatalf("%v\n%s", err, logs)
		}
		var got lookupJSON
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		if got.Match != "hit" || got.E164 != "+31201234567" {
			t.Fatalf("want a hit on +31201234567, got %s", out)
		}
	})
	t.Run("csv national numbers follow numbers.default_region", func(t *testing.T) {
		csvPath := filepath.Join(t.TempDir(), "customers.csv")
		body := "id,name,tier,language,url,phones\nNL-7,Piet Jansen,gold,nl,https://crm.example/c/NL-7,030 111 2233\n"
		if err := os.WriteFile(csvPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		p := writeConfig(t, testConfig+"numbers:\n  default_region: NL\ncrm:\n  sources:\n    - {name: main, kind: csv, path: "+csvPath+"}\n")
		out, logs, err := execute(t, context.Background(), "lookup", "--config", p, "--timeout", "5s", "+31301112233")
		if err != nil {
			t.Fatalf("%v\n%s", err, logs)
		}
		var got lookupJSON
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		if got.Match != "hit" || got.Customer == nil || got.Customer.ID != "NL-7" {
			t.Fatalf("want a hit on NL-7, got %s", out)
		}
	})
	t.Run("a contact by e-mail", func(t *testing.T) {
		csvPath := filepath.Join(t.TempDir(), "customers.csv")
		body := "id,name,tier,language,url,phones,email\nNL-7,Piet Jansen,gold,nl,https://crm.example/c/NL-7,030 111 2233,Piet.Jansen@Example.NL\n"
		if err := os.WriteFile(csvPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		// The local part is kept as written, the domain lower-cased. The
		// rule sees the channel: only a chat gets queue "chat".
		withRule := strings.Replace(testConfig, "router:\n", "router:\n  rules:\n    - {name: chats, when: 'channel == \"chat\"', then: {queue: chat}}\n", 1)
		p := writeConfig(t, withRule+"numbers:\n  default_region: NL\ncrm:\n  sources:\n    - {name: main, kind: csv, path: "+csvPath+"}\n")
		for _, tc := range []struct {
			args         []string
			match, queue string
		}{
			{[]string{"--channel", "chat", "--email", "Piet.Jansen@EXAMPLE.nl", ""}, "hit", "chat"},
			{[]string{"--channel", "email", "--email", "Piet.Jansen@EXAMPLE.nl", "+31209999999"}, "hit", ""}, // the number misses: by e-mail
			{[]string{"--email", "nobody@example.nl", ""}, "miss", ""},
		} {
			out, logs, err := execute(t, context.Background(), append([]string{"lookup", "--config", p, "--timeout", "5s", "--explain=false"}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v: %v\n%s", tc.args, err, logs)
			}
			var got struct {
				lookupJSON
				Queue string `json:"queue"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			if got.Match != tc.match || got.Source != "email" || (tc.match == "hit") != (got.Customer != nil && got.Customer.ID == "NL-7") ||
				tc.queue != "" && got.Queue != tc.queue || tc.queue == "" && got.Queue == "chat" {
				t.Errorf("%v: %s", tc.args, out)
			}
			if strings.Contains(logs, "Piet.Jansen") {
				t.Errorf("the address in clear in the logs:\n%s", logs)
			}
		}
		for _, bad := range [][]string{{"--email", "not an address", ""}, {"--channel", "fax", "+31201234567"}} {
			if _, _, err := execute(t, context.Background(), append([]string{"lookup", "--config", p}, bad...)...); err == nil ||
				!strings.Contains(err.Error(), bad[0]+":") {
				t.Errorf("%v: %v, want an error naming %s", bad, err, bad[0])
			}
		}
	})
	t.Run("needs one number", func(t *testing.T) {
		_, _, err := execute(t, context.Background(), "lookup", "--config", cfg)
		if err == nil || !strings.Contains(err.Error(), "\nUsage: callpop lookup [--dnis D] [--ani A] [--email E] [--channel C] NUMBER") {
			t.Fatalf("want an error with the usage line without NUMBER, got %v", err)
		}
	})
}

// One-shot commands print their answer alone: no log lines on stderr unless
// log.level is set (config or environment) or --verbose is given. The
// explain JSON shows a rule's && as written.
func TestLookupQuiet(t *testing.T) {
	cfg := writeConfig(t, "listen: 127.0.0.1:0\n")
	const infoLine = "using the embedded sample CSV CRM"
	run := func(args ...string) (string, string) {
		t.Helper()
		out, logs, err := execute(t, context.Background(), append([]string{"lookup", "--config", cfg, "--timeout", "5s"}, args...)...)
		if err != nil {
			t.Fatalf("%v\n%s", err, logs)
		}
		return out, logs
	}
	out, logs := run("+14155550111")
	if logs != "" {
		t.Errorf("stderr of a plain lookup: %q, want nothing", logs)
	}
	if !strings.Contains(out, `"match in [\"hit\", \"multiple\"] && lower(customer.language)`) || strings.Contains(out, `\u00`) {
		t.Errorf("explain JSON is HTML-escaped or lacks the rule:\n%s", out)
	}
	if _, logs := run("--verbose", "+14155550111"); !strings.Contains(logs, infoLine) {
		t.Errorf("--verbose: stderr %q lacks the info line", logs)
	}
	t.Setenv("CALLPOP_LOG_LEVEL", "info")
	if _, logs := run("+14155550111"); !strings.Contains(logs, infoLine) {
		t.Errorf("CALLPOP_LOG_LEVEL=info: stderr %q lacks the info line", logs)
	}
}

// Without cache.redis there is no shared cache: `cache forget` says so,
// points to the running instances' DELETE /v1/cache/{number}, and fails.
// (With Redis: TestLookupAndForgetWithRedis.)
func TestCacheForgetWithoutRedis(t *testing.T) {
	cfg := writeConfig(t, "listen: 127.0.0.1:8099\n")
	out, _, err := execute(t, context.Background(), "cache", "forget", "--config", cfg, "+1 (415) 555-0123")
	if err == nil || out != "" {
		t.Fatalf("want an error and no output, got %q, %v", out, err)
	}
	for _, want := range []string{"no shared cache", "cache.redis", "DELETE /v1/cache/{number}", "curl -X DELETE 'http://127.0.0.1:8099/v1/cache/%2B14155550123'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, _, err := execute(t, context.Background(), "cache", "forget", "--config", cfg, "not a number"); err == nil || !strings.Contains(err.Error(), "not a number") {
		t.Fatalf("want an error for junk, got %v", err)
	}
}

// startRun starts `callpop run` in-process and returns its base URL, its
// logs, and a stop function that cancels it and waits (bounded) for it.
func startRun(t *testing.T, cfgPath string) (string, *syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, logs syncBuffer
	root := newRootCmd()
	root.SetArgs([]string{"run", "--config", cfgPath})
	root.SetOut(&out)
	root.SetErr(&logs)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(15 * time.Second):
				stopErr = fmt.Errorf("run did not stop within 15s; logs:\n%s", logs.String())
			}
		})
		return stopErr
	}
	addrRe := regexp.MustCompile(`"msg":"http listening".*"addr":"([^"]+)"`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := addrRe.FindStringSubmatch(logs.String()); m != nil {
			return "http://" + m[1], &logs, stop
		}
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, logs.String())
		default:
		}
	}
	_ = stop()
	t.Fatalf("run did not listen within 10s:\n%s", logs.String())
	return "", nil, nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunServes(t *testing.T) {
	base, logs, stop := startRun(t, writeConfig(t, runConfig))
	defer func() { _ = stop() }()

	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, `"alive":true`) {
		t.Fatalf("/healthz %d %s", code, body)
	}
	code, body := get(t, base+"/readyz")
	var ready readyJSON
	if err := json.Unmarshal([]byte(body), &ready); err != nil || code != 200 || !ready.Ready {
		t.Fatalf("/readyz %d %s (%v)", code, body, err)
	}

	code, body = get(t, base+"/v1/lookup?number=%2B14155550123")
	var got lookupJSON
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
		t.Fatalf("/v1/lookup %d %s (%v)", code, body, err)
	}
	if got.Match != "hit" || got.E164 != "+14155550123" || got.Customer == nil {
		t.Fatalf("/v1/lookup: %s", body)
	}
	// A later look-up of the number is served from the cache (the cache may
	// be filled just after the first answer).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, body = get(t, base+"/v1/lookup?number=%2B14155550123")
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if got.Cached {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("look-up never served from the cache: %s", body)
		}
	}

	code, body = get(t, base+"/v1/route?number=%2B14155550123&field=name")
	if code != 200 || strings.TrimSpace(body) == "" {
		t.Fatalf("/v1/route field=name: %d %q", code, body)
	}

	req, _ := http.NewRequest(http.MethodDelete, base+"/v1/cache/%2B14155550123", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("DELETE /v1/cache: %d", resp.StatusCode)
	}

	code, body = get(t, base+"/metrics")
	for _, want := range []string{"callpop_build_info", "go_goroutines", "process_resident_memory_bytes"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %s (%d)", want, code)
		}
	}
	if code, _ := get(t, base+"/nope"); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}

	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Fatalf("no stop line in logs:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "+14155550123") {
		t.Fatalf("number in clear in the logs:\n%s", logs.String())
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("still serving after stop")
	}
}

// A change to the config file reloads the rules; a broken file keeps the
// running ones.
func TestRunReloadsRules(t *testing.T) {
	rules := func(queue, when string) string {
		return "listen: 127.0.0.1:0\ncrm: {sample: true}\nrouter:\n  fastagi:\n    listen: 127.0.0.1:0\n  rules:\n    - name: everyone\n" +
			when + "      then: {queue: " + queue + "}\n"
	}
	cfgPath := writeConfig(t, rules("first", ""))
	base, logs, stop := startRun(t, cfgPath)
	defer func() { _ = stop() }()

	queue := func() string {
		_, body := get(t, base+"/v1/route?number=%2B14155550199&field=queue")
		return strings.TrimSpace(body)
	}
	if q := queue(); q != "first" {
		t.Fatalf("queue %q, want first", q)
	}
	replace := func(body string) {
		tmp := cfgPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	waitLog := func(n int, msg string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if strings.Count(logs.String(), msg) >= n {
				return
			}
		}
		t.Fatalf("no %q (x%d) in logs:\n%s", msg, n, logs.String())
	}
	replace(rules("second", ""))
	waitLog(1, `"msg":"config reloaded"`)
	if q := queue(); q != "second" {
		t.Fatalf("queue %q after reload, want second", q)
	}
	replace(rules("third", "      when: nosuchname == 1\n"))
	waitLog(1, `"msg":"config reload rejected; keeping the running config"`)
	if q := queue(); q != "second" {
		t.Fatalf("queue %q after a bad reload, want second (kept)", q)
	}
}

// The log lines are JSON objects with a component.
func TestRunLogsJSON(t *testing.T) {
	_, logs, stop := startRun(t, writeConfig(t, runConfig))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	n := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		if _, ok := m["component"]; !ok && m["msg"] != nil {
			t.Errorf("no component: %q", sc.Text())
		}
		n++
	}
	if n == 0 {
		t.Fatal("no log lines")
	}
}

// `run` serves the made-up sample customers only when crm.sample asks for
// them; real sources need nothing; both at once is an error. The refusal
// comes before anything listens.
func TestRunCRMSample(t *testing.T) {
	csvPath := filepath.Join(t.TempDir(), "customers.csv")
	if err := os.WriteFile(csvPath, []byte("id,name,tier,language,url,phones\nR-1,Real Customer,gold,en,https://crm.example/c/R-1,+14155550177\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sources := "  sources:\n    - {name: main, kind: csv, path: " + csvPath + "}\n"
	tests := []struct {
		name   string
		cfg    string
		env    map[string]string
		refuse string // fragment of the error; "" = it runs
		sample bool   // it runs on the embedded sample, and warns so
	}{
		{"no crm section", testConfig, nil, "crm.sources: none configured", false},
		{"crm.sample: false", testConfig + "crm:\n  sample: false\n", nil, "crm.sources: none configured", false},
		{"CALLPOP_CRM_SAMPLE=false", testConfig, map[string]string{"CALLPOP_CRM_SAMPLE": "false"}, "crm.sources: none configured", false},
		{"CALLPOP_CRM_SAMPLE=false over the file's true", runConfig, map[string]string{"CALLPOP_CRM_SAMPLE": "false"}, "crm.sources: none configured", false},
		{"crm.sample: true", runConfig, nil, "", true},
		{"CALLPOP_CRM_SAMPLE=true", testConfig, map[string]string{"CALLPOP_CRM_SAMPLE": "true"}, "", true},
		{"crm.sources", testConfig + "crm:\n" + sources, nil, "", false},
		{"crm.sample: true and crm.sources", testConfig + "crm:\n  sample: true\n" + sources, nil, "crm.sample: true asks for the embedded sample customers, but crm.sources is set too", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			p := writeConfig(t, tc.cfg)
			if tc.refuse != "" {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				_, logs, err := execute(t, ctx, "run", "--config", p)
				if err == nil || !strings.Contains(err.Error(), tc.refuse) || ctx.Err() != nil {
					t.Fatalf("want a refusal naming %q, got %v\n%s", tc.refuse, err, logs)
				}
				if strings.Contains(logs, "http listening") {
					t.Fatalf("listened before refusing:\n%s", logs)
				}
				return
			}
			base, logs, stop := startRun(t, p)
			defer func() { _ = stop() }()
			lookup := func(number string) lookupJSON {
				t.Helper()
				code, body := get(t, base+"/v1/lookup?number="+url.QueryEscape(number))
				var got lookupJSON
				if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
					t.Fatalf("/v1/lookup %d %s (%v)", code, body, err)
				}
				return got
			}
			sampleHit, realHit := lookup("+14155550123").Match == "hit", lookup("+14155550177").Match == "hit"
			if sampleHit != tc.sample || realHit == tc.sample {
				t.Fatalf("sample customer found %v, configured customer found %v; want the sample %v", sampleHit, realHit, tc.sample)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			warned := regexp.MustCompile(`"level":"WARN".*crm\.sample is true`).MatchString(logs.String())
			if warned != tc.sample {
				t.Fatalf("warning about the sample logged %v, want %v:\n%s", warned, tc.sample, logs.String())
			}
		})
	}
}

// The refusal as an admin sees it: the process exits non-zero and says which
// key to set.
func TestRunWithoutCRMSourcesExits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "run", "--config", writeConfig(t, testConfig))
	cmd.Env = append(os.Environ(), execMainEnv+"=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 || ctx.Err() != nil {
		t.Fatalf("want a non-zero exit, got %v\n%s", err, out)
	}
	for _, want := range []string{"crm.sources", "crm.sample: true", "CALLPOP_CRM_SAMPLE=true"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the message does not name %s:\n%s", want, out)
		}
	}
}

// check-config does not know which command the file is for: an empty
// crm.sources is a warning naming it (run would refuse), not a failure.
func TestCheckConfigCRMSources(t *testing.T) {
	tests := []struct {
		name    string
		cfg     string
		warning string // fragment of a "warning:" line; "" = no crm warning
		fail    string // fragment of the error; "" = OK
	}{
		{"no sources", testConfig, "warning: crm.sources: none configured", ""},
		{"the sample asked for", runConfig, "warning: crm.sample is true and crm.sources empty", ""},
		{"sources", testConfig + "crm:\n  sources:\n    - {name: main, kind: csv, path: /srv/customers.csv}\n", "", ""},
		{"both", testConfig + "crm:\n  sample: true\n  sources:\n    - {name: main, kind: csv, path: /srv/customers.csv}\n", "", "crm.sample: true asks for"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := execute(t, context.Background(), "check-config", "--config", writeConfig(t, tc.cfg))
			if tc.fail == "" && (err != nil || !strings.HasSuffix(out, "OK\n")) {
				t.Fatalf("want OK, got %v\n%s", err, out)
			}
			if tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)) {
				t.Fatalf("want an error naming %q, got %v\n%s", tc.fail, err, out)
			}
			warned := regexp.MustCompile(`(?m)^warning: crm\.`).MatchString(out)
			if warned != (tc.warning != "") || !strings.Contains(out, tc.warning) {
				t.Fatalf("want warning %q, got:\n%s", tc.warning, out)
			}
		})
	}
}

// check-config reports every problem in one run, each naming its key, and
// the environment variable when the bad value came from one.
func TestCheckConfigReportsAll(t *testing.T) {
	brokenRule := "router:\n  rules:\n    - name: typo\n      when: custmer.tier == \"vip\"\n      then: {priority: 10}\n"
	tests := []struct {
		name  string
		file  string
		env   map[string]string
		want  []string // fragments of the error
		never []string // in neither the error nor the output
	}{
		{"unknown key and a broken rule", "listne: 127.0.0.1:0\n" + brokenRule, nil,
			[]string{"listne: unknown key", `router.rules[0] "typo": unknown name custmer`}, nil},
		{"unknown keys, bad values, broken rules", "listne: x\ncall:\n  budget: 20s\ncache:\n  ttl: abc\n  redis: {adresses: [x]}\nlog: {level: loud}\n" + brokenRule, nil,
			[]string{"listne: unknown key", "cache.redis.adresses: unknown key", `cache.ttl: "abc" is not a duration`,
				"call.budget: must be at most 10s", `log.level: must be debug, info, warn or error, got "loud"`, `router.rules[0] "typo": unknown name custmer`}, nil},
		{"bad environment value names the variable", "", map[string]string{"CALLPOP_CALL_BUDGET": "200"},
			[]string{"call.budget (CALLPOP_CALL_BUDGET=200): \"200\" is not a duration"}, nil},
		{"environment value out of range", "", map[string]string{"CALLPOP_CALL_BUDGET": "20s"},
			[]string{"call.budget (CALLPOP_CALL_BUDGET=20s): must be at most 10s"}, nil},
		{"every bad environment value, and the file's problems", "listne: x\n" + brokenRule,
			map[string]string{"CALLPOP_CALL_BUDGET": "200", "CALLPOP_LOG_LEVEL": "loud", "CALLPOP_NUMBERS_CACHE_SIZE": "many", "CALLPOP_CACHE_REDIS_DB": "-1", "CALLPOP_LOG_FORMAT": "x m l"},
			[]string{"listne: unknown key", `router.rules[0] "typo": unknown name custmer`,
				"call.budget (CALLPOP_CALL_BUDGET=200): ", `log.level (CALLPOP_LOG_LEVEL=loud): must be`,
				"numbers.cache_size (CALLPOP_NUMBERS_CACHE_SIZE=many): ", "cache.redis.db (CALLPOP_CACHE_REDIS_DB=-1): must not be negative",
				`log.format (CALLPOP_LOG_FORMAT="x m l"): must be json or text`}, nil},
		{"rules from the environment", "", map[string]string{"CALLPOP_ROUTER_RULES": `[{"name":"typo","when":"custmer.tier == 'vip'","then":{"priority":10}}]`},
			[]string{`router.rules[0] (CALLPOP_ROUTER_RULES) "typo": unknown name custmer`}, nil},
		{"a JSON list from the environment is named, not echoed", "",
			map[string]string{"CALLPOP_CRM_SOURCES": `[{"name":"main","kind":"postgres","dsn":"postgres://crm:hunter2@127.0.0.1/crm","query":"SELECT 1","bogus":1}]`},
			[]string{"crm.sources[0].bogus (CALLPOP_CRM_SOURCES): unknown key", "crm.sources[0].query (CALLPOP_CRM_SOURCES): must use $1"},
			[]string{"hunter2"}},
		{"a secret from the environment is named, not echoed", "pbx:\n  kind: freeswitch\n",
			map[string]string{"CALLPOP_PBX_FREESWITCH_PASSWORD": "hunter2\nhunter3"},
			[]string{"pbx.freeswitch.password (CALLPOP_PBX_FREESWITCH_PASSWORD): must not contain line breaks"},
			[]string{"hunter2", "hunter3"}},
		{"the file's value is not blamed on the environment", "call:\n  budget: 200\n", map[string]string{"CALLPOP_CACHE_TTL": "5m"},
			[]string{"call.budget: 200 is not a duration"}, []string{"CALLPOP_CACHE_TTL"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			out, _, err := execute(t, context.Background(), "check-config", "--config", writeConfig(t, tc.file))
			if err == nil || strings.Contains(out, "OK") {
				t.Fatalf("want an error, got OK:\n%s", out)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("missing %q in:\n%v", want, err)
				}
			}
			for _, never := range tc.never {
				if strings.Contains(err.Error()+out, never) {
					t.Errorf("%q shown:\n%v\n%s", never, err, out)
				}
			}
		})
	}
}

// A file that can not be read: the error alone, not first a line claiming
// the embedded defaults were checked.
func TestCheckConfigMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"--config", []string{"check-config", "--config", missing}, nil},
		{"CALLPOP_CONFIG", []string{"check-config"}, map[string]string{"CALLPOP_CONFIG": missing}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			out, _, err := execute(t, context.Background(), tc.args...)
			if err == nil || !strings.Contains(err.Error(), missing) {
				t.Fatalf("want an error naming %s, got %v", missing, err)
			}
			if out != "" {
				t.Fatalf("want the error alone, got output %q", out)
			}
		})
	}
}
