package popper

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

// enrichCall is enrich with the caller's channel as the PBX saw it.
func enrichCall(p *Popper, callID string, d call.Decision, c call.Call) {
	d.CallID = callID
	c.ID, c.PBX = callID, "asterisk"
	p.CallEnriched(call.Enriched{CallID: callID, Call: c, Decision: d})
}

// nextPop reads the next pop of a stream, decoded.
func nextPop(t *testing.T, s *stream) (Pop, map[string]any) {
	t.Helper()
	m := s.next(t, 10*time.Second)
	var p Pop
	var raw map[string]any
	if err := json.Unmarshal([]byte(m.Data), &p); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(m.Data), &raw); err != nil {
		t.Fatal(err)
	}
	return p, raw
}

// post sends a panel request with the agent's token.
func post(t *testing.T, base, path, tok, ctype, body string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The network's name goes on every pop (and into {network_name} links),
// never when the caller asked for privacy, and not when it is a
// placeholder or the number itself.
func TestPopNetworkName(t *testing.T) {
	in := startInstance(t, Config{Links: []LinkConfig{
		{Name: "new_customer", Label: "New customer", URL: "https://crm.example/new?phone={e164}&name={network_name}", When: "miss"},
	}}, Deps{})
	s := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	miss := call.Decision{Match: call.MatchMiss, E164: "+31301234567"}
	cases := []struct {
		callID string
		d      call.Decision
		c      call.Call
		want   string
		link   string
	}{
		{"n1", miss, call.Call{CLI: "+31301234567", CLIName: "Bakkerij Jansen & Zn"}, "Bakkerij Jansen & Zn", "https://crm.example/new?phone=%2B31301234567&name=Bakkerij+Jansen+%26+Zn"},
		{"n2", miss, call.Call{CLI: "+31301234567", CLIName: "Anonymous"}, "", "https://crm.example/new?phone=%2B31301234567&name="},
		{"n3", miss, call.Call{CLI: "+31301234567", CLIName: "+31 30 123 4567"}, "", ""},
		{"n4", call.Decision{Match: call.MatchAnonymous, E164: "+31301234567", Privacy: true}, call.Call{CLI: "anonymous", CLIName: "Jan Jansen", Privacy: true}, "", ""},
		{"n5", hitDecision(), call.Call{CLI: "+31201234567", CLIName: "J DE VRIES"}, "J DE VRIES", ""},
	}
	for _, tc := range cases {
		enrichCall(in.p, tc.callID, tc.d, tc.c)
		ring(in.p, tc.callID, "1001")
		p, raw := nextPop(t, s)
		if p.CallID != tc.callID {
			t.Fatalf("pop for %s, want %s", p.CallID, tc.callID)
		}
		got, present := raw["network_name"]
		if tc.want == "" && present {
			t.Errorf("%s: network_name %q, want none", tc.callID, got)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("%s: network_name %v, want %q", tc.callID, got, tc.want)
		}
		if tc.link != "" && (len(p.Links) != 1 || p.Links[0].URL != tc.link) {
			t.Errorf("%s: links %+v, want %s", tc.callID, p.Links, tc.link)
		}
		if tc.c.Privacy && strings.Contains(s2(raw), "Jan Jansen") {
			t.Errorf("%s: the name of a caller who asked for privacy is in the pop: %v", tc.callID, raw)
		}
	}
}

func s2(v any) string { b, _ := json.Marshal(v); return string(b) }

// crmServer records what the actions sent it and answers with status.
type crmServer struct {
	mu     sync.Mutex
	status int
	reqs   []*http.Request
	bodies [][]byte
	srv    *httptest.Server
}

func newCRMServer(t *testing.T, status int) *crmServer {
	c := &crmServer{status: status}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.reqs = append(c.reqs, r)
		c.bodies = append(c.bodies, b)
		st := c.status
		c.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// actionConfig is a popper with one log_call action to srv, signed with
// the key in a secret file.
func actionConfig(t *testing.T, srv *httptest.Server, key string) Config {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	f := filepath.Join(t.TempDir(), "action-secret")
	if err := os.WriteFile(f, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Config{
		ActionHosts: []string{u.Host},
		Actions: []ActionConfig{{
			Name: "log_call", Label: "Log call", URL: srv.URL + "/api/calls?customer={customer_id}", Method: "POST",
			Body:       map[string]string{"customer": "{customer_id}", "agent": "{agent}", "call": "{call_id}", "name": "{name}"},
			SecretFile: f,
		}},
	}
}

// logBuffer collects the popper's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// An action pressed for a pop reaches the CRM signed, with its body filled
// from the pop; the secret stays out of the pop, the answer and the logs.
func TestActionSigned(t *testing.T) {
	const key = "action-signing-key-0123456789"
	crm := newCRMServer(t, http.StatusCreated)
	var logs logBuffer
	in := startInstance(t, actionConfig(t, crm.srv, key), Deps{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	tok := token(t, "1001")
	s := openStream(t, in.srv.URL, "1001", tok, nil)
	enrich(in.p, "a1", hitDecision())
	ring(in.p, "a1", "1001")
	pop, raw := nextPop(t, s)
	if len(pop.Actions) != 1 || pop.Actions[0] != (Action{Name: "log_call", Label: "Log call"}) {
		t.Fatalf("pop actions %+v", pop.Actions)
	}
	code, body := post(t, in.srv.URL, "/v1/pops/"+pop.ID+"/actions/log_call", tok, "application/json", "{}")
	if code != http.StatusOK || !strings.Contains(body, `"ok":true`) || !strings.Contains(body, `"status":201`) {
		t.Fatalf("action: %d %s", code, body)
	}
	crm.mu.Lock()
	defer crm.mu.Unlock()
	if len(crm.reqs) != 1 {
		t.Fatalf("CRM got %d requests", len(crm.reqs))
	}
	r, b := crm.reqs[0], crm.bodies[0]
	if !VerifySignature([]byte(key), r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), b) {
		t.Errorf("signature %q does not verify", r.Header.Get(HeaderSignature))
	}
	if r.Method != http.MethodPost || r.URL.Path != "/api/calls" || r.URL.Query().Get("customer") != pop.Customer.ID ||
		r.Header.Get(HeaderEvent) != "action" || r.Header.Get(HeaderAction) != "log_call" {
		t.Errorf("request %s %s %v", r.Method, r.URL, r.Header)
	}
	var got map[string]string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"customer": pop.Customer.ID, "agent": "1001", "call": "a1", "name": pop.Customer.Name}
	if s2(got) != s2(want) {
		t.Errorf("body %s, want %s", got, want)
	}
	for where, text := range map[string]string{"pop": s2(raw), "answer": body, "logs": logs.String()} {
		if strings.Contains(text, key) {
			t.Errorf("the action's secret is in the %s", where)
		}
	}
}

// A CRM that fails: the panel gets the error to show on the card, and the
// log says which action, never the secret.
func TestActionCRMFails(t *testing.T) {
	const key = "action-signing-key-0123456789"
	crm := newCRMServer(t, http.StatusInternalServerError)
	var logs logBuffer
	in := startInstance(t, actionConfig(t, crm.srv, key), Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	tok := token(t, "1001")
	s := openStream(t, in.srv.URL, "1001", tok, nil)
	enrich(in.p, "a1", hitDecision())
	ring(in.p, "a1", "1001")
	pop, _ := nextPop(t, s)
	code, body := post(t, in.srv.URL, "/v1/pops/"+pop.ID+"/actions/log_call", tok, "application/json", "{}")
	if code != http.StatusBadGateway || !strings.Contains(body, `"ok":false`) || !strings.Contains(body, "the CRM answered 500 Internal Server Error") {
		t.Fatalf("failing CRM: %d %s", code, body)
	}
	if l := logs.String(); !strings.Contains(l, "action failed") || !strings.Contains(l, "log_call") || strings.Contains(l, key) {
		t.Errorf("log %q", l)
	}
	// A CRM that is not there at all.
	crm.srv.Close()
	code, body = post(t, in.srv.URL, "/v1/pops/"+pop.ID+"/actions/log_call", tok, "application/json", "{}")
	if code != http.StatusBadGateway || !strings.Contains(body, "the CRM could not be reached") {
		t.Fatalf("CRM down: %d %s", code, body)
	}
}

// Who may press: the pop's own agent, with a JSON request from no other
// origin, for an action that exists.
func TestActionRefused(t *testing.T) {
	crm := newCRMServer(t, http.StatusOK)
	in := startInstance(t, actionConfig(t, crm.srv, "action-signing-key-0123456789"), Deps{})
	tok := token(t, "1001")
	s := openStream(t, in.srv.URL, "1001", tok, nil)
	enrich(in.p, "a1", hitDecision())
	ring(in.p, "a1", "1001")
	pop, _ := nextPop(t, s)
	path := "/v1/pops/" + pop.ID + "/actions/log_call"
	for _, tc := range []struct {
		name  string
		tok   string
		ctype string
		path  string
		hdr   []string
		code  int
	}{
		{"no token", "", "application/json", path, nil, http.StatusUnauthorized},
		{"forged token", tok + "x", "application/json", path, nil, http.StatusUnauthorized},
		{"another agent", token(t, "1002"), "application/json", path, nil, http.StatusNotFound},
		{"a form", tok, "application/x-www-form-urlencoded", path, nil, http.StatusUnsupportedMediaType},
		{"another origin", tok, "application/json", path, []string{"Origin", "https://evil.example"}, http.StatusForbidden},
		{"no such action", tok, "application/json", "/v1/pops/" + pop.ID + "/actions/drop_tables", nil, http.StatusNotFound},
		{"no such pop", tok, "application/json", "/v1/pops/42/actions/log_call", nil, http.StatusNotFound},
	} {
		if code, body := post(t, in.srv.URL, tc.path, tc.tok, tc.ctype, "{}", tc.hdr...); code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.code)
		}
	}
	crm.mu.Lock()
	defer crm.mu.Unlock()
	if len(crm.reqs) != 0 {
		t.Errorf("refused presses reached the CRM %d times", len(crm.reqs))
	}
}

// An action's URL must name an allowed host, written out: refused at load.
func TestActionConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string
		url   string
		want  string
	}{
		{"host not listed", []string{"crm.example"}, "https://evil.example/api/calls", `host "evil.example" is not in popper.action_hosts`},
		{"no hosts at all", nil, "https://crm.example/api/calls", "is not in popper.action_hosts"},
		{"port not listed", []string{"crm.example:8443"}, "https://crm.example:9443/api", "is not in popper.action_hosts"},
		{"host from a placeholder", []string{"crm.example"}, "https://{customer_id}.crm.example/api", "host must be written out"},
		{"user info", []string{"crm.example"}, "https://x@crm.example/api", "host must be written out"},
		{"not http", []string{"crm.example"}, "javascript:alert(1)", "must be an http or https URL"},
		{"bad host entry", []string{"https://crm.example/"}, "https://crm.example/api", "action_hosts[0]: must be a host"},
	} {
		cfg := Config{ActionHosts: tc.hosts, Actions: []ActionConfig{{Name: "log_call", URL: tc.url}}}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if _, err := New(cfg, Deps{}); err == nil {
			t.Errorf("%s: New accepted it", tc.name)
		}
	}
	ok := Config{ActionHosts: []string{"crm.example"}, Actions: []ActionConfig{{Name: "log_call", URL: "https://crm.example:8443/api/calls/{customer_id}", Method: "put"}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("good config refused: %v", err)
	}
	dup := Config{ActionHosts: []string{"crm.example"}, Actions: []ActionConfig{{Name: "a", URL: "https://crm.example/"}, {Name: "a", URL: "https://crm.example/", Method: "DELETE"}}}
	if err := dup.Validate(); err == nil || !strings.Contains(err.Error(), "used twice") || !strings.Contains(err.Error(), "method") {
		t.Errorf("duplicate name and bad method: %v", err)
	}
}

// The signing key comes from the environment too, and a short one is refused.
func TestActionSecretFromEnv(t *testing.T) {
	crm := newCRMServer(t, http.StatusOK)
	cfg := actionConfig(t, crm.srv, "x")
	cfg.Actions[0].SecretFile = ""
	t.Setenv("CALLPOP_POPPER_ACTIONS_0_SECRET", "short")
	if _, err := New(cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "at least 16 bytes") {
		t.Fatalf("short secret: %v", err)
	}
	const key = "env-action-key-0123456789"
	t.Setenv("CALLPOP_POPPER_ACTIONS_0_SECRET", key)
	in := startInstance(t, cfg, Deps{})
	tok := token(t, "1001")
	s := openStream(t, in.srv.URL, "1001", tok, nil)
	enrich(in.p, "a1", hitDecision())
	ring(in.p, "a1", "1001")
	pop, _ := nextPop(t, s)
	if code, body := post(t, in.srv.URL, "/v1/pops/"+pop.ID+"/actions/log_call", tok, "application/json", "{}"); code != http.StatusOK {
		t.Fatalf("action: %d %s", code, body)
	}
	crm.mu.Lock()
	defer crm.mu.Unlock()
	if r := crm.reqs[0]; !VerifySignature([]byte(key), r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), crm.bodies[0]) {
		t.Error("not signed with the key from the environment")
	}
}

// multipleDecision is a number two customers share.
func multipleDecision() call.Decision {
	return call.Decision{
		Match: call.MatchMultiple, E164: "+31201234567", Priority: 5,
		Customer: &call.Customer{ID: "CRM-1", Name: "Jan de Vries", Tier: "gold", Lists: map[string][]map[string]any{
			"history": {{"at": "2026-01-02T10:00:00Z", "channel": "phone", "summary": "Asked about the bill"}},
		}},
		Candidates: []call.Candidate{
			{ID: "CRM-1", Name: "Jan de Vries", Tier: "gold", URL: "https://crm.example/c/CRM-1"},
			{ID: "CRM-2", Name: "Els de Vries", Tier: "silver", URL: "https://crm.example/c/CRM-2"},
			{ID: "CRM-3", Name: "De Vries Bakery", URL: "javascript:alert(1)"},
		},
	}
}

// The agent's pick among the candidates reaches the webhook as a signed
// chosen event, and the call's actions then act on the chosen customer.
func TestChoiceRoundTrip(t *testing.T) {
	hook := newReceiver(t)
	crm := newCRMServer(t, http.StatusOK)
	cfg := actionConfig(t, crm.srv, "action-signing-key-0123456789")
	cfg.Webhooks = []WebhookConfig{{URL: hook.srv.URL, Secret: hookSecret}}
	in := startInstance(t, cfg, Deps{})
	tok := token(t, "1001")
	s := openStream(t, in.srv.URL, "1001", tok, nil)
	enrichCall(in.p, "m1", multipleDecision(), call.Call{CLI: "+31201234567", CLIName: "DE VRIES"})
	ring(in.p, "m1", "1001")
	pop, raw := nextPop(t, s)
	if pop.Match != call.MatchMultiple || len(pop.Candidates) != 3 || pop.Candidates[2].URL != "" || pop.NetworkName != "DE VRIES" {
		t.Fatalf("pop %s", s2(raw))
	}
	if hist := s2(raw["customer"].(map[string]any)["lists"]); hist != `{"history":[{"at":"2026-01-02T10:00:00Z","channel":"phone","summary":"Asked about the bill"}]}` {
		t.Errorf("customer.lists %s", hist)
	}
	waitFor(t, func() bool { return hook.count() == 1 }) // the ringing pop

	if code, body := post(t, in.srv.URL, "/v1/pops/"+pop.ID+"/choice", tok, "application/json", `{"id":"CRM-9"}`); code != http.StatusBadRequest {
		t.Errorf("a candidate not offered: %d %s", code, body)
	}
	if code, body := post(t, in.srv.URL, "/v1/pops/"+pop.ID+"/choice", token(t, "1002"), "application/json", `{"id":"CRM-2"}`); code != http.StatusNotFound {
		t.Errorf("another agent's choice: %d %s", code, body)
	}
	code, body := post(t, in.srv.URL, "/v1/pops/"+pop.ID+"/choice", tok, "application/json", `{"id":"CRM-2"}`)
	if code != http.StatusOK || !strings.Contains(body, `"id":"CRM-2"`) {
		t.Fatalf("choice: %d %s", code, body)
	}
	waitFor(t, func() bool { return hook.count() == 2 })
	hook.mu.Lock()
	r, b := hook.got[1], hook.bodies[1]
	hook.mu.Unlock()
	if r.Header.Get(HeaderEvent) != StateChosen || !VerifySignature([]byte(hookSecret), r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), b) {
		t.Errorf("chosen event headers %v", r.Header)
	}
	var ev Pop
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.State != StateChosen || ev.CallID != "m1" || ev.Agent != "1001" || ev.Chosen == nil || ev.Chosen.ID != "CRM-2" || ev.Chosen.Name != "Els de Vries" || ev.ID == pop.ID {
		t.Errorf("chosen event %s", b)
	}

	// The call's action now logs against the chosen customer.
	if code, body := post(t, in.srv.URL, "/v1/pops/"+pop.ID+"/actions/log_call", tok, "application/json", "{}"); code != http.StatusOK {
		t.Fatalf("action: %d %s", code, body)
	}
	crm.mu.Lock()
	defer crm.mu.Unlock()
	if !strings.Contains(string(crm.bodies[0]), `"customer":"CRM-2"`) || !strings.Contains(string(crm.bodies[0]), `"name":"Els de Vries"`) {
		t.Errorf("action body %s, want the chosen customer", crm.bodies[0])
	}

	// A pop that is not a multiple match has nothing to choose.
	enrich(in.p, "h1", hitDecision())
	ring(in.p, "h1", "1001")
	hit, _ := nextPop(t, s)
	if code, body := post(t, in.srv.URL, "/v1/pops/"+hit.ID+"/choice", tok, "application/json", `{"id":"CRM-2"}`); code != http.StatusConflict {
		t.Errorf("choice on a hit: %d %s", code, body)
	}
}
