package crm

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

func newHTTP(t *testing.T, sc SourceConfig) *httpSource {
	t.Helper()
	if sc.Name == "" {
		sc.Name = "test"
	}
	sc.Kind = "http"
	cfg := Config{Timeout: time.Second, Sources: []SourceConfig{sc}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	s, err := newHTTPSource(sc, quietLog())
	if err != nil {
		t.Fatalf("newHTTPSource: %v", err)
	}
	return s
}

// serve answers every request with status and body.
func serve(t *testing.T, status int, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPSourceResponses(t *testing.T) {
	big := `{"id":"1","name":"` + strings.Repeat("x", 2<<20) + `"}`
	tests := []struct {
		name    string
		status  int
		body    string
		sc      SourceConfig
		want    string // customer name; "" = miss
		wantErr bool
		check   func(t *testing.T, s *httpSource, body string)
	}{
		{name: "top-level fields", status: 200, body: `{"id":"C1","name":"Jane Doe","tier":"vip","language":"en","url":"https://crm/c/1","since":2019,"note":"likes tea","nested":{"x":1}}`, want: "Jane Doe"},
		{name: "numeric id", status: 200, body: `{"id":12345678901234567890,"name":"N"}`, want: "N"},
		{name: "array of results → first", status: 200, body: `[{"id":"1","name":"First"},{"id":"2","name":"Second"}]`, want: "First"},
		{name: "empty array → miss", status: 200, body: `[]`},
		{name: "empty object → miss", status: 200, body: `{}`},
		{name: "null → miss", status: 200, body: `null`},
		{name: "404 → miss", status: 404, body: `{"error":"not found"}`},
		{name: "204 → miss", status: 204},
		{name: "500 HTML → error", status: 500, body: `<html><title>Internal Server Error</title></html>`, wantErr: true},
		{name: "200 HTML → error, never a customer", status: 200, body: `<html><body>Jane Doe</body></html>`, wantErr: true},
		{name: "truncated JSON", status: 200, body: `{"id":"1","name":"Ja`, wantErr: true},
		{name: "two JSON values", status: 200, body: `{"id":"1","name":"a"} {"id":"2"}`, wantErr: true},
		{name: "string body", status: 200, body: `"Jane Doe"`, wantErr: true},
		{name: "401", status: 401, body: `denied`, wantErr: true},
		{name: "oversized", status: 200, body: big, wantErr: true},
		{name: "max_body lowered", status: 200, body: `{"id":"1","name":"0123456789"}`, sc: SourceConfig{MaxBody: 16}, wantErr: true},
		{name: "junk field types dropped", status: 200, body: `{"id":"1","name":{"first":"x"},"tier":["vip"],"language":null}`, want: "",
			check: func(t *testing.T, s *httpSource, body string) {
				c, err := decodeFirst(s, []byte(body))
				if err != nil || c.Name != "" || c.Tier != "" || c.Language != "" || c.ID != "1" {
					t.Fatalf("junk types: %+v, %v", c, err)
				}
			}},
		{name: "dotted mapping with arrays", status: 200,
			body: `{"data":[{"attributes":{"full_name":"Mapped Name","segment":"gold","locale":"de","links":{"self":"https://crm/x"}},"crm_id":77,"phones":["+1","+2"]}],"meta":{"region":"emea","count":1}}`,
			sc: SourceConfig{
				Fields: map[string]string{"id": "data.0.crm_id", "name": "data.0.attributes.full_name", "tier": "data.0.attributes.segment",
					"language": "data.0.attributes.locale", "url": "data.0.attributes.links.self", "phones": "data.0.phones"},
				Extra: map[string]string{"region": "meta.region", "missing": "meta.nope.x", "obj": "meta"},
			},
			want: "Mapped Name",
			check: func(t *testing.T, s *httpSource, body string) {
				c, _ := decodeFirst(s, []byte(body))
				if c.ID != "77" || c.Tier != "gold" || c.Language != "de" || c.URL != "https://crm/x" || len(c.Phones) != 2 {
					t.Fatalf("mapping: %+v", c)
				}
				if c.Extra["region"] != "emea" || len(c.Extra) != 1 {
					t.Fatalf("extra: %#v", c.Extra)
				}
			}},
		{name: "mapping to a missing path → miss", status: 200, body: `{"data":[]}`,
			sc: SourceConfig{Fields: map[string]string{"id": "data.0.id", "name": "data.0.name"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.status, tt.body)
			sc := tt.sc
			sc.URL = srv.URL + "/c?phone={e164}"
			s := newHTTP(t, sc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := s.Lookup(ctx, q("+14155550123"))
			switch {
			case tt.wantErr:
				if err == nil || errors.Is(err, ErrNotFound) {
					t.Fatalf("got %+v, %v; want an error", c, err)
				}
			case tt.want == "" && tt.check == nil:
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("got %+v, %v; want ErrNotFound", c, err)
				}
			case tt.want != "":
				if err != nil || c.Name != tt.want {
					t.Fatalf("got %+v, %v; want %q", c, err, tt.want)
				}
			}
			if tt.check != nil {
				tt.check(t, s, tt.body)
			}
		})
	}
}

func TestHTTPSourceExtraDefaults(t *testing.T) {
	srv := serve(t, 200, `{"id":"C1","name":"Jane","since":2019,"vip_note":"likes tea","flags":["a"],"x":null}`)
	s := newHTTP(t, SourceConfig{URL: srv.URL + "/?p={e164}"})
	c, err := s.Lookup(context.Background(), q("+14155550123"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Extra["vip_note"] != "likes tea" || c.Extra["since"] != float64(2019) || len(c.Extra) != 2 {
		t.Fatalf("extra: %#v", c.Extra)
	}
}

func TestHTTPSourceLengthCap(t *testing.T) {
	long := strings.Repeat("é", 5000)
	srv := serve(t, 200, `{"id":"1","name":"`+long+`","note":"`+long+`"}`)
	s := newHTTP(t, SourceConfig{URL: srv.URL + "/?p={e164}"})
	c, err := s.Lookup(context.Background(), q("+14155550123"))
	if err != nil {
		t.Fatal(err)
	}
	c = capCustomer(c)
	if len(c.Name) > maxFieldLen || len(c.Extra["note"].(string)) > maxFieldLen || !strings.HasPrefix(long, c.Name) {
		t.Fatalf("not capped on a rune boundary: %d bytes", len(c.Name))
	}
}

// TestHTTPSourcePlaceholderEscaping: hostile values cannot change the path,
// add query parameters, headers or fragments.
func TestHTTPSourcePlaceholderEscaping(t *testing.T) {
	var mu sync.Mutex
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Clone(context.Background())
		mu.Unlock()
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	s := newHTTP(t, SourceConfig{URL: srv.URL + "/api/{national}/lookup?phone={e164}&d={digits}"})
	hostile := Query{
		E164:     "+1&admin=true#frag",
		National: "../../admin?x=1 2",
		Digits:   "1\r\nX-Injected: yes",
	}
	_, err := s.Lookup(context.Background(), hostile)
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got == nil {
		t.Fatal("no request reached the server")
	}
	if got.URL.Path != "/api/../../admin?x=1 2/lookup" {
		t.Fatalf("path %q: the national placeholder escaped its segment", got.URL.Path)
	}
	qv := got.URL.Query()
	if qv.Get("phone") != hostile.E164 || qv.Get("d") != hostile.Digits || qv.Get("admin") != "" || len(qv) != 2 {
		t.Fatalf("query %v (raw %q): placeholders not escaped", qv, got.URL.RawQuery)
	}
	if got.Header.Get("X-Injected") != "" {
		t.Fatal("header injected")
	}
	if u := s.url(q("+14155550123")); !strings.Contains(u, "phone=%2B14155550123") {
		t.Fatalf("'+' not query-escaped: %s", u)
	}
}

func TestHTTPSourceHeadersFromEnv(t *testing.T) {
	t.Setenv("CALLPOP_TEST_CRM_TOKEN", "s3cret")
	var auth, other string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth, other = r.Header.Get("Authorization"), r.Header.Get("X-Literal")
		mu.Unlock()
		fmt.Fprint(w, `{"id":"1","name":"A"}`)
	}))
	t.Cleanup(srv.Close)
	s := newHTTP(t, SourceConfig{URL: srv.URL + "/?p={e164}", Headers: map[string]string{
		"authorization": "Bearer ${CALLPOP_TEST_CRM_TOKEN}", "x-literal": "$HOME costs $5"}})
	if _, err := s.Lookup(context.Background(), q("+14155550123")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if auth != "Bearer s3cret" || other != "$HOME costs $5" {
		t.Fatalf("headers: %q %q", auth, other)
	}
}

// TestHTTPSourceSlow: a CRM answering after 2 s is an error at the caller's
// deadline and at the source's timeout, not waited for. (The bound is the
// CRM's delay, not the deadline plus a margin: a loaded machine breaks that.)
func TestHTTPSourceSlow(t *testing.T) {
	const crmDelay = 2 * time.Second
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(crmDelay):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	s := newHTTP(t, SourceConfig{URL: srv.URL + "/?p={e164}"})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Lookup(ctx, q("+14155550123"))
	if err == nil || errors.Is(err, ErrNotFound) || time.Since(start) >= crmDelay {
		t.Fatalf("slow CRM: %v after %s", err, time.Since(start))
	}
	if strings.Contains(err.Error(), "4155550123") {
		t.Fatalf("error leaks the number: %v", err)
	}
	// per-source timeout through the CRM
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "slow", Kind: "http", URL: srv.URL + "/?p={e164}", Timeout: 100 * time.Millisecond}}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	start = time.Now()
	if _, err := c.Lookup(context.Background(), q("+14155550123")); err == nil || time.Since(start) >= crmDelay {
		t.Fatalf("source timeout not applied: %v after %s", err, time.Since(start))
	}
}

func TestHTTPSourceRedirects(t *testing.T) {
	other := serve(t, 200, `{"id":"evil","name":"Other Host"}`)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/final":
			fmt.Fprint(w, `{"id":"1","name":"Same Host"}`)
		case "/other":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		}
	}))
	t.Cleanup(srv.Close)
	same := newHTTP(t, SourceConfig{URL: srv.URL + "/same?p={e164}"})
	if c, err := same.Lookup(context.Background(), q("+1")); err != nil || c.Name != "Same Host" {
		t.Fatalf("same-host redirect: %+v, %v", c, err)
	}
	off := newHTTP(t, SourceConfig{URL: srv.URL + "/other?p={e164}"})
	if c, err := off.Lookup(context.Background(), q("+1")); err == nil {
		t.Fatalf("redirect to another host followed: %+v", c)
	}
}

func TestHTTPSourceTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"id":"1","name":"Over TLS"}`)
	}))
	t.Cleanup(srv.Close)
	// Verification is always on: a self-signed CRM is refused…
	plain := newHTTP(t, SourceConfig{URL: srv.URL + "/?p={e164}"})
	if _, err := plain.Lookup(context.Background(), q("+1")); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
	// …unless its CA is trusted explicitly.
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	trusted := newHTTP(t, SourceConfig{URL: srv.URL + "/?p={e164}", CAFile: ca})
	if c, err := trusted.Lookup(context.Background(), q("+1")); err != nil || c.Name != "Over TLS" {
		t.Fatalf("trusted CA: %+v, %v", c, err)
	}
}

// decodeFirst is what Lookup answers for body: the first customer.
func decodeFirst(s *httpSource, body []byte) (*call.Customer, error) {
	all, err := s.decode(body)
	if err != nil {
		return nil, err
	}
	return all[0], nil
}
