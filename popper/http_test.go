package popper

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

func TestStreamAuth(t *testing.T) {
	in := startInstance(t, Config{AllowedOrigins: []string{"https://crm.example.com"}}, Deps{})
	good := token(t, "1001")
	expired, _ := IssueToken([]byte(testSecret), "1001", time.Minute, time.Now().Add(-time.Hour))
	forged, _ := IssueToken([]byte("another-secret-of-16-bytes"), "1001", time.Hour, time.Now())
	// A payload claiming 1002 with 1001's signature.
	other, _ := IssueToken([]byte(testSecret), "1002", time.Hour, time.Now())
	swapped := strings.Split(other, ".")[0] + "." + strings.Split(good, ".")[1]
	tests := []struct {
		name, path, auth, query, origin string
		want                            int
	}{
		{"valid bearer", "/v1/agents/1001/pops", good, "", "", 200},
		{"valid query token", "/v1/agents/1001/pops", "", good, "", 200},
		{"no token", "/v1/agents/1001/pops", "", "", "", 401},
		{"garbage", "/v1/agents/1001/pops", "abc", "", "", 401},
		{"expired", "/v1/agents/1001/pops", expired, "", "", 401},
		{"forged (other secret)", "/v1/agents/1001/pops", forged, "", "", 401},
		{"payload swapped", "/v1/agents/1001/pops", swapped, "", "", 401},
		{"other agent's stream", "/v1/agents/1002/pops", good, "", "", 403},
		{"wrong origin", "/v1/agents/1001/pops", good, "", "https://evil.example", 403},
		{"null origin", "/v1/agents/1001/pops", good, "", "null", 403},
		{"allowed origin", "/v1/agents/1001/pops", good, "", "https://crm.example.com", 200},
		{"page without token", "/agent", "", "", "", 200},
		{"page with a valid token", "/agent", "", good, "", 200},
		{"page with an expired token", "/agent", "", expired, "", 401},
		{"page from a wrong origin", "/agent", "", "", "https://evil.example", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := in.srv.URL + tt.path
			if tt.query != "" {
				u += "?token=" + tt.query
			}
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", "Bearer "+tt.auth)
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == 200 && strings.HasPrefix(tt.path, "/v1/") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestStreamDisabledWithoutSecret(t *testing.T) {
	p, err := New(Config{}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvTokenSecret, "")
	req, _ := http.NewRequest(http.MethodGet, "/v1/agents/1001/pops", nil)
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", rec.Code)
	}
}

func TestTokenSecretFromEnvAndFile(t *testing.T) {
	t.Setenv(EnvTokenSecret, "env-secret-0123456789")
	b, err := Config{TokenSecret: "inline-secret-0123456789"}.ResolveTokenSecret()
	if err != nil || string(b) != "env-secret-0123456789" {
		t.Fatalf("env override: %q %v", b, err)
	}
	t.Setenv(EnvTokenSecret, "")
	f := t.TempDir() + "/secret"
	if err := os.WriteFile(f, []byte("file-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err = Config{TokenSecretFile: f}.ResolveTokenSecret()
	if err != nil || string(b) != "file-secret-0123456789" {
		t.Fatalf("file: %q %v", b, err)
	}
	if _, err := (Config{TokenSecret: "short"}).ResolveTokenSecret(); err == nil {
		t.Fatal("short secret accepted")
	}
}

func TestStreamPopBodyAndReplay(t *testing.T) {
	in := startInstance(t, Config{Heartbeat: 100 * time.Millisecond, Links: []LinkConfig{
		{Name: "crm", Label: "CRM", URL: "https://crm.example/c/{customer_id}", When: "hit"},
	}}, Deps{})
	s := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	d := hitDecision()
	d.Customer.Extra = map[string]any{"open_tickets": []any{"T-1 router"}, "email": "jan@example.nl"}
	enrich(in.p, "c1", d)
	ring(in.p, "c1", "1001")
	m := s.next(t, 5*time.Second)
	var body map[string]any
	if err := json.Unmarshal([]byte(m.Data), &body); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"agent", "at", "call_id", "channel", "customer", "flags", "id", "links", "match", "number", "priority", "queue", "state"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	cust := body["customer"].(map[string]any)
	if body["call_id"] != "c1" || body["agent"] != "1001" || body["state"] != "ringing" || body["channel"] != "voice" || body["match"] != "hit" ||
		body["number"] != "+31201234567" || body["queue"] != "sales" || body["priority"] != 5.0 || m.ID != body["id"] ||
		cust["name"] != "Jan de Vries" || cust["tier"] != "gold" || cust["language"] != "nl" || cust["id"] != "CRM-4711" || cust["email"] != "jan@example.nl" {
		t.Errorf("body %s", m.Data)
	}
	// Heartbeats are comment lines.
	deadline := time.After(3 * time.Second)
	for beat := false; !beat; {
		select {
		case x := <-s.C:
			beat = x.Comment && x.Event == ""
		case <-deadline:
			t.Fatal("no heartbeat")
		}
	}
	// Disconnected while the call is answered: the reconnect replays it.
	s.Close()
	in.p.AgentLeg(call.LegEvent{CallID: "c1", Leg: "c1-1001", Endpoint: "PJSIP/1001-0000000a", State: call.LegAnswered})
	waitFor(t, func() bool { return in.p.hub.backlogLen("1001") == 2 })
	s2 := openStream(t, in.srv.URL, "1001", token(t, "1001"), map[string]string{"Last-Event-ID": m.ID})
	r := s2.next(t, 5*time.Second)
	if !strings.Contains(r.Data, `"state":"answered"`) {
		t.Fatalf("replay %s", r.Data)
	}
	// A fresh page (no Last-Event-ID) gets today's pops.
	s3 := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	if a, b := s3.next(t, 5*time.Second), s3.next(t, 5*time.Second); a.ID != m.ID || b.ID != r.ID {
		t.Fatalf("today's replay: %s %s", a.ID, b.ID)
	}
}

// Privacy: the number is not in the body at all.
func TestStreamPrivacy(t *testing.T) {
	in := startInstance(t, Config{}, Deps{})
	s := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	d := hitDecision()
	d.Privacy = true
	enrich(in.p, "c1", d)
	ring(in.p, "c1", "1001")
	m := s.next(t, 5*time.Second)
	if strings.Contains(m.Data, "201234567") || strings.Contains(m.Data, `"number"`) {
		t.Fatalf("privacy leaked: %s", m.Data)
	}
}

// Two agents, 1,000 calls split between them: no pop reaches the wrong
// agent. Also the ring → pop figure (median, p99) for the report.
func TestTwoAgentsThousandCalls(t *testing.T) {
	in := startInstance(t, Config{}, Deps{})
	agents := []string{"1001", "1002"}
	streams := map[string]*stream{}
	for _, a := range agents {
		streams[a] = openStream(t, in.srv.URL, a, token(t, a), nil)
	}
	const calls = 1000
	lat := make([]time.Duration, 0, calls)
	counts := map[string]int{}
	for i := range calls {
		id := "call-" + itoa(i)
		a := agents[i%2]
		enrich(in.p, id, hitDecision())
		t0 := time.Now()
		ring(in.p, id, a)
		m := streams[a].next(t, 5*time.Second)
		lat = append(lat, time.Since(t0))
		if !strings.Contains(m.Data, `"call_id":"`+id+`"`) || !strings.Contains(m.Data, `"state":"ringing"`) {
			t.Fatalf("call %s: got %s", id, m.Data)
		}
		in.p.AgentLeg(call.LegEvent{CallID: id, Leg: id + "-" + a, Endpoint: "PJSIP/" + a + "-0000000a", State: call.LegAnswered})
		in.p.CallEnded(call.CallEnd{CallID: id})
		for range 2 {
			streams[a].next(t, 5*time.Second)
		}
		counts[a] += 3
	}
	// Nothing else may be on either stream.
	for _, a := range agents {
		select {
		case m := <-streams[a].C:
			if m.Event == "pop" {
				t.Fatalf("agent %s got an extra pop: %s", a, m.Data)
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("ring → pop on the SSE stream over %d calls: median %v, p99 %v, max %v", calls, lat[calls/2], lat[calls*99/100], lat[calls-1])
	if counts["1001"] != 1500 || counts["1002"] != 1500 {
		t.Fatalf("counts %v", counts)
	}
}

// Each pop carries only its agent: checked on the wire for all of them.
func TestNoPopToWrongAgent(t *testing.T) {
	in := startInstance(t, Config{}, Deps{})
	s1 := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	s2 := openStream(t, in.srv.URL, "1002", token(t, "1002"), nil)
	const calls = 1000
	for i := range calls {
		id := "c" + itoa(i)
		enrich(in.p, id, hitDecision())
		ring(in.p, id, []string{"1001", "1002"}[i%2])
		if i%50 == 49 {
			// read each agent's 25 pops so the stream buffer is not outrun
			for _, c := range []struct {
				s     *stream
				agent string
			}{{s1, "1001"}, {s2, "1002"}} {
				for range 25 {
					if m := c.s.next(t, 5*time.Second); !strings.Contains(m.Data, `"agent":"`+c.agent+`"`) {
						t.Fatalf("agent %s got %s", c.agent, m.Data)
					}
				}
			}
		}
	}
	for _, c := range []struct {
		s     *stream
		agent string
	}{{s1, "1001"}, {s2, "1002"}} {
		select {
		case m := <-c.s.C:
			if m.Event == "pop" {
				t.Fatalf("extra pop for %s: %s", c.agent, m.Data)
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Memory per connected agent (server goroutine, buffers, subscription; the
// raw client connections are included, so this is an upper bound).
func TestMemoryPerAgent(t *testing.T) {
	in := startInstance(t, Config{}, Deps{})
	const n = 200
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	var conns []io.Closer
	for i := range n {
		a := "a" + itoa(i)
		c := rawStream(t, in.srv.Listener.Addr().String(), a, token(t, a))
		conns = append(conns, c)
	}
	waitFor(t, func() bool { return in.p.hub.subscribers() == n })
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	stack := (int64(after.StackInuse) - int64(before.StackInuse)) / n
	t.Logf("memory per connected agent: ~%d bytes (heap %d + goroutine stacks %d; %d goroutines for %d agents)",
		heap+stack, heap, stack, runtime.NumGoroutine()-g0, n)
	for _, c := range conns {
		c.Close()
	}
	// Client gone → the stream goroutines end.
	waitFor(t, func() bool { return in.p.hub.subscribers() == 0 })
}

func itoa(i int) string { return strconv.Itoa(i) }

// A token in the panel's address that does not verify gets the panel's
// sign-in form with the reason (escaped, never the token echoed), as 401;
// without a token, or with a good one, the page is the plain panel.
func TestPanelPageRefusedToken(t *testing.T) {
	in := startInstance(t, Config{}, Deps{})
	expired, _ := IssueToken([]byte(testSecret), "1001", time.Minute, time.Now().Add(-time.Hour))
	forged, _ := IssueToken([]byte("another-secret-of-16-bytes"), "1001", time.Hour, time.Now())
	hostile := `"><script>alert(1)</script>`
	form := regexp.MustCompile(`<section id="login" class="panel login"( hidden)?>[\s\S]*<form id="login-form"[\s\S]*<p class="error" id="login-error" role="alert"( hidden)?>([^<]*)</p>`)
	for _, tc := range []struct {
		name, path, query string
		status            int
		reason            string
	}{
		{"no token", "/agent", "", 200, ""},
		{"good token", "/agent", "token=" + token(t, "1001"), 200, ""},
		{"directory form", "/agent/", "", 200, ""},
		{"expired", "/agent", "token=" + expired, 401, "token expired"},
		{"forged", "/agent", "token=" + forged, 401, "token invalid"},
		{"hostile", "/agent", "token=" + url.QueryEscape(hostile), 401, "token invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(in.srv.URL + tc.path + "?" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body := string(b)
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
				!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("%d %v", resp.StatusCode, resp.Header)
			}
			m := form.FindStringSubmatch(body)
			if m == nil {
				t.Fatalf("no sign-in form in %q", body)
			}
			if shown := m[1] == "" && m[2] == ""; shown != (tc.reason != "") || m[3] != tc.reason {
				t.Errorf("form hidden=%q, error hidden=%q, reason %q; want reason %q", m[1], m[2], m[3], tc.reason)
			}
			if strings.Contains(body, "{{") || strings.Contains(body, "<script>alert") || (tc.status == 401 && strings.Contains(body, tc.query[len("token="):])) {
				t.Errorf("template or token in the page: %s", body)
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// GET / (exactly) redirects to the panel, with nothing of the request's
// query; other unknown paths stay 404.
func TestRootRedirectsToPanel(t *testing.T) {
	in := startInstance(t, Config{}, Deps{})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		status       int
		location     string
	}{
		{"GET", "/", 303, "/agent"},
		{"GET", "/?token=" + token(t, "1001"), 303, "/agent"},
		{"HEAD", "/", 303, "/agent"},
		{"GET", "/index.html", 404, ""},
		{"GET", "/x/", 404, ""},
		{"POST", "/", 405, ""},
	} {
		req, _ := http.NewRequest(tc.method, in.srv.URL+tc.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location)
		}
	}
}
