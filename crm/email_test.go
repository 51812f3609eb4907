package crm

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpop/callpop/internal/testpg"
	"github.com/jackc/pgx/v5"
)

func TestNormalizeEmail(t *testing.T) {
	tests := []struct{ in, want string }{
		{"jane@example.com", "jane@example.com"},
		{"Jane.Doe@Example.COM", "Jane.Doe@example.com"}, // the local part kept as is
		{"  jane@EXAMPLE.com \t", "jane@example.com"},    // trimmed
		{"jane+vip@mail.example.org", "jane+vip@mail.example.org"},
		{"o'brien@example.ie", "o'brien@example.ie"},
		{"", ""},
		{"   ", ""},
		{"jane", ""},
		{"@example.com", ""},
		{"jane@", ""},
		{"jane@@example.com", ""},
		{"jane doe@example.com", ""},
		{"Jane <jane@example.com>", ""},
		{"<jane@example.com>", ""},
		{`"jane doe"@example.com`, ""},
		{"jane@example.com\r\nBcc: x@y.z", ""},
		{"jane@example.com, joe@example.com", ""},
		{strings.Repeat("a", 250) + "@example.com", ""},
	}
	for _, tt := range tests {
		got, err := NormalizeEmail(tt.in)
		if tt.want == "" {
			if !errors.Is(err, ErrInvalidEmail) || got != "" {
				t.Errorf("NormalizeEmail(%q) = %q, %v; want ErrInvalidEmail", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// emailServer is a real HTTP CRM answering ?email= (and counting requests,
// with the raw query of the last one).
type emailServer struct {
	*httptest.Server
	calls    atomic.Int64
	mu       sync.Mutex
	rawQuery string
	delay    time.Duration
}

func newEmailServer(t *testing.T, customers map[string][]map[string]any) *emailServer {
	t.Helper()
	s := &emailServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		s.mu.Lock()
		s.rawQuery = r.URL.RawQuery
		d := s.delay
		s.mu.Unlock()
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		cs, ok := customers[r.URL.Query().Get("email")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(cs)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *emailServer) lastQuery() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rawQuery
}

func TestLookupEmailHTTP(t *testing.T) {
	mail := newEmailServer(t, map[string][]map[string]any{
		"Jane+vip@example.com": {{"id": "C1", "name": "Jane Doe", "tier": "vip"}},
		"desk@example.com":     {{"id": "C2", "name": "Anna"}, {"id": "C3", "name": "Piet"}},
	})
	phoneOnly := newCRMServer(t, testCustomers) // no url_by_email: never asked for an e-mail
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("phones", phoneOnly.URL),
		{Name: "mail", Kind: "http", URL: mail.URL + "/customers?phone={e164}", URLByEmail: mail.URL + "/customers?email={email}"}}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	ctx := context.Background()

	r, err := c.LookupEmail(ctx, "  Jane+vip@EXAMPLE.com ")
	if err != nil || r.Customer == nil || r.Customer.ID != "C1" || r.Source != "mail" || r.Cached {
		t.Fatalf("first look-up: %+v, %v", r, err)
	}
	if got := mail.lastQuery(); got != "email=Jane%2Bvip%40example.com" {
		t.Fatalf("the address is not query-escaped (normalised): %q", got)
	}
	// The same address, written otherwise: one key, a cache hit.
	r, err = c.LookupEmail(ctx, "Jane+vip@Example.Com")
	if err != nil || r.Customer == nil || r.Customer.ID != "C1" || !r.Cached {
		t.Fatalf("second look-up: %+v, %v", r, err)
	}
	if n := mail.calls.Load(); n != 1 {
		t.Fatalf("CRM asked %d times, want 1", n)
	}
	if n := phoneOnly.calls.Load(); n != 0 {
		t.Fatalf("a source without url_by_email was asked %d times", n)
	}
	// A different local-part case is a different address (kept as is).
	if r, err := c.LookupEmail(ctx, "jane+VIP@example.com"); err != nil || r.Customer != nil {
		t.Fatalf("other local part: %+v, %v", r, err)
	}
	// Several customers with one address: all of them, as for a number.
	r, err = c.LookupEmail(ctx, "desk@example.com")
	if err != nil || r.Customer == nil || r.Customer.ID != "C2" || len(r.Candidates) != 2 || r.Candidates[1].ID != "C3" {
		t.Fatalf("several matches: %+v, %v", r, err)
	}
	// A number still goes through url, and an e-mail key never answers it.
	if r, err := c.Lookup(ctx, q("+14155550123")); err != nil || r.Customer == nil || r.Source != "phones" {
		t.Fatalf("number look-up: %+v, %v", r, err)
	}
	// Not an address: a clear error, no request.
	before := mail.calls.Load()
	for _, bad := range []string{"", "jane", "Jane <jane@example.com>", "a@b\r\nX: y"} {
		if _, err := c.LookupEmail(ctx, bad); !errors.Is(err, ErrInvalidEmail) {
			t.Fatalf("LookupEmail(%q): %v, want ErrInvalidEmail", bad, err)
		}
	}
	if _, err := c.Lookup(ctx, Query{E164: "+14155550123", Email: "jane@example.com"}); err == nil {
		t.Fatal("a query with both a number and an address was taken")
	}
	if n := mail.calls.Load(); n != before {
		t.Fatalf("invalid addresses reached the CRM (%d requests)", n-before)
	}
	// The async form answers the same, once.
	done := make(chan Result, 2)
	c.LookupEmailAsync(ctx, "Jane+vip@example.COM", func(r Result, err error) {
		if err != nil {
			t.Errorf("async: %v", err)
		}
		done <- r
	})
	if r := <-done; r.Customer == nil || r.Customer.ID != "C1" || !r.Cached {
		t.Fatalf("async: %+v", r)
	}
}

// TestLookupEmailNoSource: with no source able to look up by e-mail, an
// e-mail look-up is a miss and asks nobody.
func TestLookupEmailNoSource(t *testing.T) {
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("phones", srv.URL)}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	r, err := c.LookupEmail(context.Background(), "jane@example.com")
	if err != nil || r.Customer != nil || srv.calls.Load() != 0 {
		t.Fatalf("%+v, %v, %d requests", r, err, srv.calls.Load())
	}
}

// TestLookupEmailSingleflight: concurrent look-ups of one address (written
// differently) share one request.
func TestLookupEmailSingleflight(t *testing.T) {
	mail := newEmailServer(t, map[string][]map[string]any{"jane@example.com": {{"id": "C1", "name": "Jane Doe"}}})
	mail.delay = 200 * time.Millisecond
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "mail", Kind: "http", URL: mail.URL + "/c?p={e164}", URLByEmail: mail.URL + "/c?email={email}"}}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := "jane@example.com"
			if i%2 == 1 {
				addr = " jane@EXAMPLE.COM"
			}
			if r, err := c.LookupEmail(context.Background(), addr); err != nil || r.Customer == nil || r.Customer.ID != "C1" {
				t.Errorf("%+v, %v", r, err)
			}
		}()
	}
	wg.Wait()
	if n := mail.calls.Load(); n != 1 {
		t.Fatalf("%d requests for one address, want 1", n)
	}
}

// TestLookupEmailRedis: a second instance finds the address in Redis, under
// an HMAC (the address never appears in a key or a value's key).
func TestLookupEmailRedis(t *testing.T) {
	rs, _ := startRedis(t)
	mail := newEmailServer(t, map[string][]map[string]any{"jane@example.com": {{"id": "C1", "name": "Jane Doe"}}})
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "mail", Kind: "http", URL: mail.URL + "/c?p={e164}", URLByEmail: mail.URL + "/c?email={email}"}}
	cc := testCacheConfig()
	cc.Redis.Timeout = 5 * time.Second
	a := newTestCRM(t, cfg, cc, openTestRedisTimeout(t, cc.Redis.Timeout, rs.Addr))
	ctx := context.Background()
	if r, err := a.LookupEmail(ctx, "jane@Example.com"); err != nil || r.Customer == nil || r.Cached {
		t.Fatalf("first instance: %+v, %v", r, err)
	}
	settle(t, a)
	rdb := rdbFor(rs.Addr)
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("redis keys: %v, %v", keys, err)
	}
	if strings.Contains(strings.ToLower(keys[0]), "jane") || strings.Contains(keys[0], "example") {
		t.Fatalf("the address is in the Redis key: %q", keys[0])
	}
	if keys[0] != cc.KeyPrefix+a.cache.hashKey(emailKeyPrefix+"jane@example.com") {
		t.Fatalf("redis key %q is not the HMAC of the e-mail key", keys[0])
	}
	b := newTestCRM(t, cfg, cc, openTestRedisTimeout(t, cc.Redis.Timeout, rs.Addr))
	r, err := b.LookupEmail(ctx, "jane@EXAMPLE.com")
	if err != nil || r.Customer == nil || r.Customer.ID != "C1" || !r.Cached {
		t.Fatalf("second instance: %+v, %v", r, err)
	}
	if n := mail.calls.Load(); n != 1 {
		t.Fatalf("CRM asked %d times, want 1", n)
	}
}

func TestLookupEmailPostgres(t *testing.T) {
	pg := testpg.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, pgSchema+`
ALTER TABLE customers ADD COLUMN email text;
UPDATE customers SET email = 'Jane.Doe@example.com' WHERE id = 'C1';
UPDATE customers SET email = 'anna@example.nl' WHERE id = 'C2';`); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "sql", Kind: "postgres", DSN: pg.DSN, Query: pgQuery,
		QueryByEmail: `SELECT id, name, tier, language, url FROM customers WHERE email = $1`}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	tests := []struct{ email, id string }{
		{"Jane.Doe@EXAMPLE.COM", "C1"},
		{" anna@example.nl ", "C2"},
		{"jane.doe@example.com", ""}, // the local part is compared as stored
		{"nobody@example.com", ""},
		{"x'--@example.com", ""}, // $1 is a parameter, never SQL
	}
	for _, tt := range tests {
		r, err := c.LookupEmail(ctx, tt.email)
		if err != nil {
			t.Fatalf("%s: %v", tt.email, err)
		}
		if (tt.id == "") != (r.Customer == nil) || (r.Customer != nil && (r.Customer.ID != tt.id || r.Source != "sql")) {
			t.Fatalf("%s: %+v, want %q", tt.email, r, tt.id)
		}
	}
	if r, err := c.Lookup(ctx, q("+31201234567")); err != nil || r.Customer == nil || r.Customer.ID != "C2" {
		t.Fatalf("number: %+v, %v", r, err)
	}
}

func TestLookupEmailCSV(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "customers.csv")
	data := "id,name,tier,phones,email\n" +
		"C1,Jane Doe,vip,+1 415 555 0123, Jane@Example.COM \n" +
		"C2,Anna de Vries,gold,+31 20 123 4567,desk@example.nl\n" +
		"C3,Piet Jansen,,,desk@example.nl\n" +
		"C4,No Mail,,+1 212 555 0142,not an address\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	noMail := filepath.Join(dir, "phones.csv")
	if err := os.WriteFile(noMail, []byte("id,name,phones\nC9,Other,+1 415 555 0199\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "plain", Kind: "csv", Path: noMail}, {Name: "file", Kind: "csv", Path: path}}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	ctx := context.Background()
	r, err := c.LookupEmail(ctx, "Jane@example.com")
	if err != nil || r.Customer == nil || r.Customer.ID != "C1" || r.Source != "file" || r.Customer.Extra["email"] != "Jane@Example.COM" {
		t.Fatalf("jane: %+v, %v", r, err)
	}
	r, err = c.LookupEmail(ctx, "DESK@example.nl")
	if err != nil || r.Customer != nil {
		t.Fatalf("other local part: %+v, %v", r, err)
	}
	r, err = c.LookupEmail(ctx, "desk@EXAMPLE.nl")
	if err != nil || r.Customer == nil || r.Customer.ID != "C2" || len(r.Candidates) != 2 || r.Candidates[1].ID != "C3" {
		t.Fatalf("desk: %+v, %v", r, err)
	}
	if r, err := c.Lookup(ctx, q("+12125550142")); err != nil || r.Customer == nil || r.Customer.ID != "C4" {
		t.Fatalf("number beside an invalid address: %+v, %v", r, err)
	}
	r, err = c.LookupEmail(ctx, "Jane@example.com")
	if err != nil || !r.Cached {
		t.Fatalf("second look-up not cached: %+v, %v", r, err)
	}
	// The CSV source without an email column is skipped, the other asked.
	for _, s := range c.sources {
		if want := s.Name() == "file"; canEmail(s.Source) != want {
			t.Fatalf("source %s takes e-mail look-ups: %v", s.Name(), !want)
		}
	}
}

func TestEmailConfig(t *testing.T) {
	for _, tt := range []struct {
		sc   SourceConfig
		want string
	}{
		{SourceConfig{Name: "a", Kind: "http", URL: "https://crm/c?p={e164}", URLByEmail: "https://crm/c?email=x"}, "url_by_email: must hold {email}"},
		{SourceConfig{Name: "a", Kind: "http", URL: "https://crm/c?p={e164}", URLByEmail: "ftp://crm/c?email={email}"}, "url_by_email: must be https or http"},
		{SourceConfig{Name: "a", Kind: "postgres", DSN: "postgres://x@127.0.0.1/x", Query: "SELECT 1 WHERE $1=''", QueryByEmail: "SELECT 1"}, "query_by_email: must use $1"},
		{SourceConfig{Name: "a", Kind: "csv", Path: "x.csv", URLByEmail: "https://crm/c?email={email}"}, "url_by_email: only for kind http"},
		{SourceConfig{Name: "a", Kind: "http", URL: "https://crm/c?p={e164}", QueryByEmail: "SELECT $1"}, "query_by_email: only for kind postgres"},
	} {
		cfg := DefaultConfig()
		cfg.Sources = []SourceConfig{tt.sc}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.sc, err, tt.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "a", Kind: "http", URL: "https://crm/c?p={e164}", URLByEmail: "https://crm/c/{email}"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestQueryLogValueMasksEmail(t *testing.T) {
	v := Query{Email: "jane@example.com"}.LogValue().String()
	if strings.Contains(v, "jane") || !strings.Contains(v, "j***@example.com") {
		t.Fatalf("log value %q", v)
	}
}

// TestLookupEmailBreaker: e-mail look-ups go through the source's breaker
// as numbers do; a failure is an error (not a miss) and is not cached.
func TestLookupEmailBreaker(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "mail", Kind: "http", URL: srv.URL + "/c?p={e164}", URLByEmail: srv.URL + "/c?email={email}"}}
	cfg.Breaker = BreakerConfig{Failures: 3, Cooldown: time.Hour}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	for i := range 6 {
		r, err := c.LookupEmail(context.Background(), "jane"+string(rune('a'+i))+"@example.com")
		if err == nil || errors.Is(err, ErrNotFound) || r.Customer != nil {
			t.Fatalf("look-up %d against a failing CRM: %+v, %v", i, r, err)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("CRM asked %d times, want 3 (then the breaker opens)", n)
	}
}
