package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/internal/apiauth"
	"github.com/callpop/callpop/internal/testpg"
)

// The API keys of the contact tests: the chat platform's (contacts scope)
// and an operator's (lookup scope only).
const (
	contactsKey = "contacts-key-0123456789abcdef"
	opsKey      = "ops-key-0123456789abcdef-lookup"
)

// recordingPops is a ContactPops that records what the router asks (a
// double of callpop's own seam); the popper's side is tested in popper.
type recordingPops struct {
	mu     sync.Mutex
	offers []offered
	open   map[string]bool
}

type offered struct {
	e     call.Enriched
	agent string
}

func (p *recordingPops) OfferContact(_ context.Context, e call.Enriched, agent string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.offers = append(p.offers, offered{e, agent})
	if p.open == nil {
		p.open = map[string]bool{}
	}
	p.open[e.CallID] = true
	return nil
}

func (p *recordingPops) EndContact(_ context.Context, id string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.open[id] {
		return false, nil
	}
	delete(p.open, id)
	return true, nil
}

func (p *recordingPops) last(t *testing.T) offered {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.offers) == 0 {
		t.Fatal("no contact offered")
	}
	return p.offers[len(p.offers)-1]
}

// contactEnv is a router over crmCfg's sources behind the contact
// endpoints as cmd/callpop mounts them: audited, under the contacts scope.
type contactEnv struct {
	srv    *httptest.Server
	router *Router
	pops   *recordingPops
	logs   *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newContactEnv(t testing.TB, crmCfg crm.Config, cfg Config, budget time.Duration) *contactEnv {
	t.Helper()
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ncfg := callerid.DefaultConfig()
	ncfg.DefaultRegion = "NL"
	numbers, err := callerid.New(ncfg, log)
	if err != nil {
		t.Fatal(err)
	}
	c, err := crm.New(crmCfg, crm.DefaultCacheConfig(), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r, err := New(cfg, Deps{Numbers: numbers, CRM: c, Budget: budget, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	pops := &recordingPops{}
	r.SetContactPops(pops)
	auth, err := apiauth.New(apiauth.Config{Keys: []apiauth.KeyConfig{
		{Name: "chat-platform", Scopes: []string{apiauth.ScopeContacts}, KeyFile: keyFile(t, contactsKey)},
		{Name: "ops", Scopes: []string{apiauth.ScopeLookup}, KeyFile: keyFile(t, opsKey)},
	}}, apiauth.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h := r.Handler()
	mux := http.NewServeMux()
	mux.Handle("/v1/contacts", r.Audited("contacts", auth.Require(apiauth.ScopeContacts, h)))
	mux.Handle("/v1/contacts/", r.Audited("contacts", auth.Require(apiauth.ScopeContacts, h)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &contactEnv{srv: srv, router: r, pops: pops, logs: logs}
}

// keyFile writes an API key to a file of the test's.
func keyFile(t testing.TB, key string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(f, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// post sends body (a string, or a value encoded as JSON) to path with key.
func (e *contactEnv) post(t *testing.T, path, key string, body any) (int, map[string]any, string) {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(text, &out); err != nil {
			t.Fatalf("%s: %v", text, err)
		}
	}
	return resp.StatusCode, out, string(text)
}

// contactCRM is a real HTTP CRM answering ?phone= and ?email= (normalised).
type contactCRM struct {
	*httptest.Server
	mu      sync.Mutex
	delay   time.Duration
	queries []string
}

func newContactCRM(t testing.TB) *contactCRM {
	t.Helper()
	byPhone := map[string]map[string]any{
		"+31201234567": {"id": "C-1001", "name": "Jan de Vries", "tier": "gold", "url": "https://crm.example/c/1001"},
	}
	byEmail := map[string]map[string]any{
		"anna@example.nl": {"id": "C-1002", "name": "Anna Bakker", "tier": "silver", "url": "https://crm.example/c/1002"},
	}
	s := &contactCRM{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.queries = append(s.queries, r.URL.RawQuery)
		d := s.delay
		s.mu.Unlock()
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		rec, ok := byPhone[r.URL.Query().Get("phone")]
		if e := r.URL.Query().Get("email"); e != "" {
			rec, ok = byEmail[e]
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rec)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *contactCRM) setDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

func (s *contactCRM) asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

func httpContactSources(s *contactCRM) crm.Config {
	cfg := crm.DefaultConfig()
	cfg.Sources = []crm.SourceConfig{{Name: "web", Kind: "http", URL: s.URL + "/c?phone={e164}", URLByEmail: s.URL + "/c?email={email}"}}
	return cfg
}

// csvContactSources is a CSV file with the same two customers.
func csvContactSources(t *testing.T) crm.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "customers.csv")
	data := "id,name,tier,url,phones,email\n" +
		"C-1001,Jan de Vries,gold,https://crm.example/c/1001,+31 20 123 4567,jan@example.nl\n" +
		"C-1002,Anna Bakker,silver,https://crm.example/c/1002,,anna@example.nl\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := crm.DefaultConfig()
	cfg.Sources = []crm.SourceConfig{{Name: "file", Kind: "csv", Path: path}}
	return cfg
}

// pgContactSources is a PostgreSQL database with the same two customers.
func pgContactSources(t *testing.T) crm.Config {
	t.Helper()
	pg := testpg.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL, tier text, url text, phone text, email text);
INSERT INTO customers VALUES
	('C-1001', 'Jan de Vries', 'gold', 'https://crm.example/c/1001', '+31201234567', 'jan@example.nl'),
	('C-1002', 'Anna Bakker', 'silver', 'https://crm.example/c/1002', NULL, 'anna@example.nl');`); err != nil {
		t.Fatal(err)
	}
	cfg := crm.DefaultConfig()
	cfg.Sources = []crm.SourceConfig{{Name: "sql", Kind: "postgres", DSN: pg.DSN,
		Query:        `SELECT id, name, tier, url FROM customers WHERE phone = $1`,
		QueryByEmail: `SELECT id, name, tier, url FROM customers WHERE email = $1`}}
	return cfg
}

// TestContactsBySource: a contact is decided by its number, by its e-mail
// address when it has no number, and by the address when its number is
// unknown — on each source kind, through real HTTP with the contacts key.
func TestContactsBySource(t *testing.T) {
	for _, kind := range []string{"http", "postgres", "csv"} {
		t.Run(kind, func(t *testing.T) {
			var cfg crm.Config
			switch kind {
			case "http":
				cfg = httpContactSources(newContactCRM(t))
			case "postgres":
				cfg = pgContactSources(t)
			case "csv":
				cfg = csvContactSources(t)
			}
			env := newContactEnv(t, cfg, testConfig(), testBudget)
			for _, tt := range []struct {
				name   string
				from   map[string]string
				match  call.Match
				id     string
				source call.Source
				e164   string
			}{
				{"by number", map[string]string{"phone": "+31 20 123 4567"}, call.MatchHit, "C-1001", call.SourceCLI, "+31201234567"},
				{"national number", map[string]string{"phone": "020 123 4567"}, call.MatchHit, "C-1001", call.SourceCLI, "+31201234567"},
				{"by e-mail", map[string]string{"email": "anna@EXAMPLE.nl"}, call.MatchHit, "C-1002", call.SourceEmail, ""},
				{"number unknown, e-mail known", map[string]string{"phone": "+31 30 999 8877", "email": "anna@example.nl"}, call.MatchHit, "C-1002", call.SourceEmail, "+31309998877"},
				{"number invalid, e-mail known", map[string]string{"phone": "12", "email": "anna@example.nl"}, call.MatchHit, "C-1002", call.SourceEmail, ""},
				{"number first", map[string]string{"phone": "+31201234567", "email": "anna@example.nl"}, call.MatchHit, "C-1001", call.SourceCLI, "+31201234567"},
				{"neither known", map[string]string{"phone": "+31 30 999 8877", "email": "nobody@example.nl"}, call.MatchMiss, "", call.SourceCLI, "+31309998877"},
				{"e-mail unknown", map[string]string{"email": "nobody@example.nl"}, call.MatchMiss, "", call.SourceEmail, ""},
				{"anonymous", nil, call.MatchAnonymous, "", call.SourceNone, ""},
			} {
				body := map[string]any{"channel": "chat", "to": "+31 20 555 0000", "subject": "Order 1234"}
				if tt.from != nil {
					body["from"] = tt.from
				}
				code, out, text := env.post(t, "/v1/contacts", contactsKey, body)
				if code != http.StatusOK {
					t.Fatalf("%s: %d %s", tt.name, code, text)
				}
				id, _ := out["id"].(string)
				if !validContactID(id) || out["channel"] != "chat" || out["call_id"] != id {
					t.Errorf("%s: id %q channel %v call_id %v", tt.name, id, out["channel"], out["call_id"])
				}
				if out["match"] != string(tt.match) || out["source"] != string(tt.source) || out["e164"] != tt.e164 {
					t.Errorf("%s: match %v source %v e164 %v, want %s %q %q", tt.name, out["match"], out["source"], out["e164"], tt.match, tt.source, tt.e164)
				}
				cust, _ := out["customer"].(map[string]any)
				if got, _ := cust["id"].(string); got != tt.id {
					t.Errorf("%s: customer %v, want %q", tt.name, out["customer"], tt.id)
				}
				// the /v1/lookup shape
				for _, k := range []string{"priority", "queue_prio", "cc_base_score", "flags", "vars", "rules", "profile", "cached", "elapsed_ms"} {
					if _, ok := out[k]; !ok {
						t.Errorf("%s: no %q in %s", tt.name, k, text)
					}
				}
				if _, ok := out["agent"]; ok {
					t.Errorf("%s: agent in an answer without one: %s", tt.name, text)
				}
			}
			// Asked again, the e-mail look-up comes from the cache.
			_, out, _ := env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "email", "from": map[string]string{"email": "anna@example.nl"}})
			if out["match"] != "hit" || out["cached"] != true {
				t.Errorf("second look-up: %v", out)
			}
		})
	}
}

// TestContactEmailChainHeld: a number that misses at the CRM (not in the
// in-process cache: the look-up is held) chains the look-up by e-mail in
// the same held decision; both are asked, the e-mail's hit decides.
func TestContactEmailChainHeld(t *testing.T) {
	s := newContactCRM(t)
	s.setDelay(20 * time.Millisecond)
	env := newContactEnv(t, httpContactSources(s), testConfig(), testBudget)
	d := env.router.Decide(context.Background(), call.Call{ID: "ct-x", Channel: call.ChannelSMS, CLI: "+31309998877", Email: "anna@example.nl", Received: time.Now()})
	if d.Match != call.MatchHit || d.Source != call.SourceEmail || d.Customer == nil || d.Customer.ID != "C-1002" || d.E164 != "+31309998877" {
		t.Fatalf("%+v", d)
	}
	asked := s.asked()
	if len(asked) != 2 || !strings.Contains(asked[0], "phone=") || !strings.Contains(asked[1], "email=anna%40example.nl") {
		t.Fatalf("CRM asked %q", asked)
	}
	// DecideAsync answers the same way.
	ch := make(chan call.Decision, 1)
	env.router.DecideAsync(context.Background(), call.Call{ID: "ct-y", Channel: call.ChannelChat, CLI: "+31309998811", Email: "anna@example.nl", Received: time.Now()},
		func(d call.Decision) { ch <- d })
	select {
	case d := <-ch:
		if d.Match != call.MatchHit || d.Source != call.SourceEmail {
			t.Fatalf("async: %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no decision")
	}
	// A voice call with no e-mail is as before: one look-up, a miss.
	n := len(s.asked())
	if d := env.router.Decide(context.Background(), call.Call{CLI: "+31309998822", Received: time.Now()}); d.Match != call.MatchMiss || d.Source != call.SourceCLI {
		t.Fatalf("voice: %+v", d)
	}
	if len(s.asked()) != n+1 {
		t.Fatalf("voice call asked %d times", len(s.asked())-n)
	}
	// An address that is not one is never looked up (the endpoint refuses it).
	if d := env.router.Decide(context.Background(), call.Call{Email: "not an address", Received: time.Now()}); d.Match != call.MatchAnonymous {
		t.Fatalf("invalid address: %+v", d)
	}
}

// TestContactSlowCRM: a CRM slower than the budget gives match timeout, by
// e-mail and by number, and the answer still comes (fail-open).
func TestContactSlowCRM(t *testing.T) {
	s := newContactCRM(t)
	s.setDelay(30 * time.Second)
	env := newContactEnv(t, httpContactSources(s), testConfig(), 300*time.Millisecond)
	for _, from := range []map[string]string{{"email": "anna@example.nl"}, {"phone": "+31201234567"}, {"phone": "+31309998877", "email": "anna@example.nl"}} {
		code, out, text := env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "social", "from": from, "agent": "1001"})
		if code != http.StatusOK || out["match"] != "timeout" {
			t.Fatalf("%v: %d %s", from, code, text)
		}
		// the agent still gets the pop: the platform gave it the conversation
		if o := env.pops.last(t); o.e.CallID != out["id"] || o.e.Decision.Match != call.MatchTimeout {
			t.Fatalf("offered %+v", o)
		}
	}
}

// TestContactAuth: without a key 401, with a key lacking the contacts
// scope 403; the end endpoint likewise.
func TestContactAuth(t *testing.T) {
	env := newContactEnv(t, httpContactSources(newContactCRM(t)), testConfig(), testBudget)
	body := map[string]any{"channel": "chat"}
	for _, tt := range []struct {
		path, key string
		want      int
	}{
		{"/v1/contacts", "", http.StatusUnauthorized},
		{"/v1/contacts", "wrong-key-0123456789abcdef", http.StatusUnauthorized},
		{"/v1/contacts", opsKey, http.StatusForbidden},
		{"/v1/contacts/ct-AAAAAAAAAAAAAAAAAAAAAA/end", "", http.StatusUnauthorized},
		{"/v1/contacts/ct-AAAAAAAAAAAAAAAAAAAAAA/end", opsKey, http.StatusForbidden},
		{"/v1/contacts", contactsKey, http.StatusOK},
	} {
		if code, _, text := env.post(t, tt.path, tt.key, body); code != tt.want {
			t.Errorf("%s with %q: %d %s, want %d", tt.path, tt.key, code, text, tt.want)
		}
	}
	if !strings.Contains(env.logs.String(), "endpoint=contacts") || !strings.Contains(env.logs.String(), "key=chat-platform") {
		t.Errorf("no audit lines: %s", env.logs.String())
	}
}

// TestContactBadInput: every malformed request is a 400 (413, 415) naming
// what is wrong, and nothing is decided or offered.
func TestContactBadInput(t *testing.T) {
	env := newContactEnv(t, httpContactSources(newContactCRM(t)), testConfig(), testBudget)
	long := strings.Repeat("x", 1025)
	for _, tt := range []struct {
		body string
		code int
		want string
	}{
		{`{"channel":"fax"}`, 400, `channel: "fax" is not one of chat, email, sms, social`},
		{`{"channel":"voice"}`, 400, "channel:"},
		{`{"channel":"callback"}`, 400, "channel:"},
		{`{}`, 400, "channel:"},
		{`{"channel":"chat","from":{"email":"not an address"}}`, 400, "from.email: not an e-mail address"},
		{`{"channel":"chat","from":{"email":"a@b.c\r\nBcc: x@y.z"}}`, 400, "from.email"},
		{`{"channel":"chat","from":{"email":"Jane <jane@example.com>"}}`, 400, "from.email"},
		{`{"channel":"chat","from":{"name":"` + long + `"}}`, 400, "from.name: longer than 1024 bytes"},
		{`{"channel":"chat","subject":"` + strings.Repeat("s", 4097) + `"}`, 400, "subject: longer than 4096 bytes"},
		{`{"channel":"chat","to":"` + strings.Repeat("1", 300) + `"}`, 400, "to: longer than"},
		{`{"channel":"chat","agent":"10 01"}`, 400, "agent: must be"},
		{`{"channel":"chat","agent":"` + strings.Repeat("a", 65) + `"}`, 400, "agent: must be"},
		{`{"channel":"chat","priority":9}`, 400, `unknown field priority`},
		{`{"channel":"chat","from":{"phone":"+31201234567","fax":"1"}}`, 400, `unknown field fax`},
		{`{"channel":"chat","from":"+31201234567"}`, 400, "from: must be a struct"},
		{`{"channel":"chat"} {"channel":"chat"}`, 400, "one JSON object only"},
		{`{"channel":`, 400, "body:"},
		{``, 400, "body: empty"},
		{`[1,2]`, 400, "must be a struct"},
		{`{"channel":"chat","subject":"` + strings.Repeat("s", 17<<10) + `"}`, 413, "body: larger than 16384 bytes"},
	} {
		code, out, raw := env.post(t, "/v1/contacts", contactsKey, tt.body)
		// JSON {"error", "field"}: read back as "field: error".
		text := fmt.Sprintf("%v: %v", out["field"], out["error"])
		if out == nil {
			text = "not JSON: " + raw
		}
		if code != tt.code || !strings.Contains(text, tt.want) {
			t.Errorf("%.80s: %d %q, want %d %q", tt.body, code, text, tt.code, tt.want)
		}
		if len(text) > 400 {
			t.Errorf("%.80s: the error echoes the input (%d bytes)", tt.body, len(text))
		}
	}
	req, _ := http.NewRequest(http.MethodPost, env.srv.URL+"/v1/contacts", strings.NewReader(`channel=chat`))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+contactsKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("form body: %d", resp.StatusCode)
	}
	if len(env.pops.offers) != 0 {
		t.Errorf("offered %d contacts", len(env.pops.offers))
	}
}

// TestContactHostile: names and subjects with ${…}, newlines and 10 KB
// strings reach the decision, the answer, the pop and the logs only
// cleaned or refused.
func TestContactHostile(t *testing.T) {
	env := newContactEnv(t, httpContactSources(newContactCRM(t)), testConfig(), testBudget)
	hostile := "${system(rm -rf /)}\r\nHANGUP\nEXEC System evil\" `id` \\"
	code, out, text := env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "chat",
		"from": map[string]string{"phone": "+31 20 123 4567", "name": hostile}, "to": "${DNIS}\n1", "subject": hostile, "agent": "1001"})
	if code != http.StatusOK || out["match"] != "hit" {
		t.Fatalf("%d %s", code, text)
	}
	for _, bad := range []string{"${", "\\r", "\\n", "HANGUP\\n"} {
		if strings.Contains(text, bad) {
			t.Errorf("answer holds %q: %s", bad, text)
		}
	}
	// The popper gets the raw values (it cleans what it shows: tested there);
	// the decision's fields are clean.
	o := env.pops.last(t)
	if o.e.Call.Subject != hostile || o.agent != "1001" {
		t.Errorf("offered %+v", o)
	}
	for _, v := range o.e.Decision.Vars() {
		if strings.ContainsAny(v.Value, "${}\r\n") {
			t.Errorf("%s = %q", v.Name, v.Value)
		}
	}
	if logs := env.logs.String(); strings.Contains(logs, "rm -rf") || strings.Contains(logs, "1234567") {
		t.Errorf("logs hold the name or the number: %s", logs)
	}
	// 10 KB in a name or subject: refused, whole; 10 KB of \n in the phone: refused.
	for _, body := range []map[string]any{
		{"channel": "chat", "from": map[string]string{"name": strings.Repeat("${x}\n", 2048)}},
		{"channel": "chat", "subject": strings.Repeat("${x}\n", 2048)},
		{"channel": "chat", "from": map[string]string{"phone": strings.Repeat("\n", 10240)}},
	} {
		if code, _, text := env.post(t, "/v1/contacts", contactsKey, body); code != http.StatusBadRequest && code != http.StatusRequestEntityTooLarge {
			t.Errorf("10 KB: %d %s", code, text)
		}
	}
	// Within the bounds, a 4 KB subject of ${…} and newlines is taken and decided.
	if code, out, text := env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "chat",
		"subject": strings.Repeat("${x}\n", 800), "from": map[string]string{"name": strings.Repeat("${y}\r\n", 100)}}); code != http.StatusOK || out["match"] != "anonymous" {
		t.Errorf("4 KB: %d %s", code, text)
	}
}

// TestContactAgentAndEnd: with agent the contact is offered to it at once,
// its end ends it once; an unknown id is 404; without agent nothing is
// offered.
func TestContactAgentAndEnd(t *testing.T) {
	env := newContactEnv(t, httpContactSources(newContactCRM(t)), testConfig(), testBudget)
	code, out, text := env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "email",
		"from": map[string]string{"email": "anna@example.nl", "name": "Anna"}, "to": "+31 20 555 0000", "subject": "Invoice", "agent": "agent.7@team"})
	if code != http.StatusOK || out["agent"] != "agent.7@team" || out["match"] != "hit" {
		t.Fatalf("%d %s", code, text)
	}
	id := out["id"].(string)
	o := env.pops.last(t)
	c := o.e.Call
	if o.agent != "agent.7@team" || o.e.CallID != id || c.ID != id || c.Channel != "email" || c.Email != "anna@example.nl" ||
		c.CLIName != "Anna" || c.Subject != "Invoice" || c.DNIS != "+31 20 555 0000" || c.PBX != "http" || o.e.PBX != "" || o.e.Decision.Customer.ID != "C-1002" {
		t.Fatalf("offered %+v", o)
	}
	if code, out, text := env.post(t, "/v1/contacts/"+id+"/end", contactsKey, ""); code != http.StatusOK || out["ended"] != true || out["id"] != id {
		t.Fatalf("end: %d %s", code, text)
	}
	if code, _, text := env.post(t, "/v1/contacts/"+id+"/end", contactsKey, ""); code != http.StatusNotFound || !strings.Contains(text, "no such contact") {
		t.Fatalf("second end: %d %s", code, text)
	}
	for _, bad := range []string{"ct-unknownAAAAAAAAAAAAAA", "x", "ct-", "ct-a%0Ab", "ct-" + strings.Repeat("a", 80)} {
		if code, _, text := env.post(t, "/v1/contacts/"+bad+"/end", contactsKey, ""); code != http.StatusNotFound {
			t.Errorf("%s: %d %s", bad, code, text)
		}
	}
	n := len(env.pops.offers)
	if code, _, _ := env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "sms"}); code != http.StatusOK || len(env.pops.offers) != n {
		t.Errorf("without agent: %d, %d offers", code, len(env.pops.offers)-n)
	}
	// ids differ and are URL-safe
	seen := map[string]bool{}
	for range 50 {
		id := newContactID()
		if seen[id] || !validContactID(id) || len(id) < 19 {
			t.Fatalf("id %q", id)
		}
		seen[id] = true
	}
}

// TestContactWithoutPopper: a router with nobody to pop to refuses an
// agent (503) but decides a contact without one.
func TestContactWithoutPopper(t *testing.T) {
	env := newContactEnv(t, httpContactSources(newContactCRM(t)), testConfig(), testBudget)
	env.router.contactPops.Store(nil)
	if code, _, text := env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "chat", "agent": "1001"}); code != http.StatusServiceUnavailable {
		t.Errorf("agent: %d %s", code, text)
	}
	if code, _, text := env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "chat"}); code != http.StatusOK {
		t.Errorf("no agent: %d %s", code, text)
	}
	if code, _, text := env.post(t, "/v1/contacts/ct-AAAAAAAAAAAAAAAAAAAAAA/end", contactsKey, ""); code != http.StatusNotFound {
		t.Errorf("end: %d %s", code, text)
	}
}

// failingPops refuses every offer.
type failingPops struct{ recordingPops }

func (*failingPops) OfferContact(context.Context, call.Enriched, string) error {
	return errors.New("redis down\r\n${x}")
}

// TestContactOfferFails: an offer the popper cannot make is a 503 saying so.
func TestContactOfferFails(t *testing.T) {
	env := newContactEnv(t, httpContactSources(newContactCRM(t)), testConfig(), testBudget)
	env.router.SetContactPops(&failingPops{})
	code, _, text := env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "chat", "agent": "1001"})
	if code != http.StatusServiceUnavailable || !strings.Contains(text, "could not be offered") || strings.Contains(text, "${") {
		t.Errorf("%d %q", code, text)
	}
}

// TestContactRulesSeeChannel: rules read channel ("voice" for a call), and
// profiles match a contact's to as they match a call's DNIS.
func TestContactRulesSeeChannel(t *testing.T) {
	cfg := testConfig()
	cfg.Rules = []Rule{
		{Name: "chat-queue", When: `channel == "chat"`, Then: Then{Queue: "chat-desk"}},
		{Name: "voice-queue", When: `channel == "voice"`, Then: Then{Queue: "phones"}},
	}
	cfg.Profiles = []Profile{{Name: "webshop", DNIS: []string{"+31 20 555 0000"}}}
	env := newContactEnv(t, httpContactSources(newContactCRM(t)), cfg, testBudget)
	_, out, text := env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "chat", "to": "+31205550000"})
	if out["queue"] != "chat-desk" || out["profile"] != "webshop" {
		t.Errorf("chat: %s", text)
	}
	_, out, text = env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "sms", "to": "web-chat"})
	if out["queue"] != "" || out["profile"] != "default" {
		t.Errorf("sms: %s", text)
	}
	if d := env.router.Decide(context.Background(), call.Call{CLI: "+31201234567", Received: time.Now()}); d.Queue != "phones" {
		t.Errorf("voice: %+v", d)
	}
}

// TestDecisionsByChannel: callpop_decisions_by_channel_total counts each
// decision once under its channel.
func TestDecisionsByChannel(t *testing.T) {
	env := newContactEnv(t, httpContactSources(newContactCRM(t)), testConfig(), testBudget)
	before := map[string]float64{}
	for _, ch := range append(Channels, "other") {
		before[ch] = counterValue(t, byChannel.WithLabelValues(ch))
	}
	env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "chat"})
	env.post(t, "/v1/contacts", contactsKey, map[string]any{"channel": "sms", "from": map[string]string{"email": "anna@example.nl"}})
	env.router.Decide(context.Background(), call.Call{CLI: "+31201234567", Received: time.Now()})
	env.router.Decide(context.Background(), call.Call{Channel: call.ChannelCallback, CLI: "+31201234567", Received: time.Now()})
	env.router.Decide(context.Background(), call.Call{Channel: "pigeon", Received: time.Now()})
	want := map[string]float64{"chat": 1, "sms": 1, "voice": 1, "callback": 1, "other": 1, "email": 0, "social": 0}
	for ch, n := range want {
		if got := counterValue(t, byChannel.WithLabelValues(ch)) - before[ch]; got != n {
			t.Errorf("%s: %v, want %v", ch, got, n)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

// fuzzClient bounds each fuzzed request: a hang is a failure.
var fuzzClient = &http.Client{Timeout: 10 * time.Second}

// FuzzContactRequest: whatever the body, POST /v1/contacts answers 200 or a
// 4xx naming the problem, never a 5xx, and its answer carries no ${, no
// control character and no more than a short piece of the input.
func FuzzContactRequest(f *testing.F) {
	for _, seed := range []string{
		`{"channel":"chat","from":{"phone":"+31201234567","email":"anna@example.nl","name":"Anna"},"to":"+31205550000","subject":"x","agent":"1001"}`,
		`{"channel":"email","from":{"email":"${x}@example.nl"}}`,
		`{"channel":"sms","from":{"phone":"${SHELL(id)}\r\nHANGUP"},"subject":"\u2028\u0000"}`,
		`{"channel":"social","from":{"name":"\"}]}`, `{"channel":"chat","agent":"../../x"}`, `{"channel":1}`, `null`, `{}`, "\xff\xfe",
	} {
		f.Add(seed)
	}
	env := newContactEnv(f, httpContactSources(newContactCRM(f)), testConfig(), testBudget)
	f.Fuzz(func(t *testing.T, body string) {
		req, _ := http.NewRequest(http.MethodPost, env.srv.URL+"/v1/contacts", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+contactsKey)
		resp, err := fuzzClient.Do(req)
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 && !(resp.StatusCode == 503 && strings.Contains(string(b), "agent:")) {
			t.Fatalf("%q: %d %s", body, resp.StatusCode, b)
		}
		text := strings.TrimSuffix(string(b), "\n")
		if strings.Contains(text, "${") || strings.ContainsAny(text, "\r\n\x00") {
			t.Fatalf("%q: answer %q", body, b)
		}
	})
}
