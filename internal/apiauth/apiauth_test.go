package apiauth

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callpop/callpop/internal/testcerts"
	"github.com/callpop/callpop/internal/tlsfiles"
)

const (
	dialplanKey = "dp-0123456789abcdef0123"
	crmKey      = "crm-0123456789abcdef012"
)

// newAuth configures two keys: dialplan (route, from a file) and ops
// (lookup and cache, from the environment).
func newAuth(t *testing.T, rl RateLimit) *Auth {
	t.Helper()
	file := filepath.Join(t.TempDir(), "dialplan.key")
	if err := os.WriteFile(file, []byte(dialplanKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CALLPOP_API_KEYS_OPS_TEAM_KEY", crmKey)
	a, err := New(Config{Keys: []KeyConfig{
		{Name: "dialplan", Scopes: []string{ScopeRoute}, KeyFile: file},
		{Name: "ops-team", Scopes: []string{ScopeLookup, ScopeCache}},
	}, RateLimit: rl}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// api serves each scope's endpoint behind a over real HTTP.
func api(t *testing.T, a *Auth) *httptest.Server {
	mux := http.NewServeMux()
	for _, s := range []string{ScopeRoute, ScopeLookup, ScopeCache, ScopeMetrics} {
		mux.Handle("/"+s, tracked(a.Require(s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "ok ")
		}))))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// tracked serves h and writes, after its answer, who Require took the
// request for (Track), as an audit wrapper reads it.
func tracked(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, who := Track(r.Context())
		h.ServeHTTP(w, r.WithContext(ctx))
		_, _ = io.WriteString(w, who())
	})
}

func get(t *testing.T, url, auth string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestScopes(t *testing.T) {
	srv := api(t, newAuth(t, RateLimit{}))
	tests := []struct {
		path, auth string
		code       int
		challenge  string
	}{
		{"/route", "", 401, `Bearer realm="callpop"`},
		{"/route", "Bearer wrong-0123456789abcdef", 401, `error="invalid_token"`},
		{"/route", "Basic " + dialplanKey, 401, `Bearer realm="callpop"`},
		{"/route", "Bearer " + crmKey, 403, `error="insufficient_scope", scope="route"`},
		{"/route", "Bearer " + dialplanKey, 200, ""},
		{"/route", "bearer  " + dialplanKey, 200, ""},
		{"/lookup", "Bearer " + dialplanKey, 403, `scope="lookup"`},
		{"/lookup", "Bearer " + crmKey, 200, ""},
		{"/cache", "", 401, `Bearer`},
		{"/cache", "Bearer " + dialplanKey, 403, `scope="cache"`},
		{"/cache", "Bearer " + crmKey, 200, ""},
		{"/metrics", "Bearer " + crmKey, 403, `scope="metrics"`},
	}
	for _, tt := range tests {
		resp, body := get(t, srv.URL+tt.path, tt.auth)
		if resp.StatusCode != tt.code {
			t.Errorf("%s with %q: %d %q, want %d", tt.path, tt.auth, resp.StatusCode, body, tt.code)
			continue
		}
		if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, tt.challenge) || (tt.challenge == "") != (got == "") {
			t.Errorf("%s with %q: WWW-Authenticate %q, want %q", tt.path, tt.auth, got, tt.challenge)
		}
		if tt.code == 200 && !strings.HasPrefix(body, "ok ") {
			t.Errorf("%s: body %q", tt.path, body)
		}
		if tt.code != 200 && (strings.Contains(body, dialplanKey) || strings.Contains(body, crmKey)) {
			t.Errorf("%s: the answer repeats a key: %q", tt.path, body)
		}
	}
	for reason, want := range map[string]float64{"unauthenticated": 1, "scope": 1} {
		if got := testutil.ToFloat64(refusals.WithLabelValues(ScopeCache, reason)); got < want-0.5 {
			t.Errorf("callpop_api_refused_total{scope=cache,reason=%s} = %v, want %v", reason, got, want)
		}
	}
	if _, body := get(t, srv.URL+"/lookup", "Bearer "+crmKey); body != "ok ops-team" {
		t.Errorf("principal: %q", body)
	}
}

func TestRateLimit(t *testing.T) {
	srv := api(t, newAuth(t, RateLimit{PerSecond: 20, Burst: 3}))
	for i := range 3 {
		if resp, _ := get(t, srv.URL+"/route", "Bearer "+dialplanKey); resp.StatusCode != 200 {
			t.Fatalf("request %d of the burst: %d", i, resp.StatusCode)
		}
	}
	resp, _ := get(t, srv.URL+"/route", "Bearer "+dialplanKey)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("beyond the burst: %d, want 429", resp.StatusCode)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	// Another key has its own allowance.
	if resp, _ := get(t, srv.URL+"/lookup", "Bearer "+crmKey); resp.StatusCode != 200 {
		t.Fatalf("another key: %d", resp.StatusCode)
	}
	// It recovers: tokens come back at 20 a second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ := get(t, srv.URL+"/route", "Bearer "+dialplanKey)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d after 10 s", resp.StatusCode)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func TestNoKeysLoopbackOnly(t *testing.T) {
	a, err := New(DefaultConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := tracked(a.Require(ScopeLookup, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	for _, tt := range []struct {
		remote string
		code   int
	}{
		{"127.0.0.1:5000", 200}, {"127.9.9.9:5000", 200}, {"[::1]:5000", 200}, {"[::ffff:127.0.0.1]:5000", 200},
		{"192.0.2.10:5000", 401}, {"[2001:db8::1]:5000", 401}, {"[::ffff:192.0.2.10]:5000", 401}, {"garbage", 401},
	} {
		req := httptest.NewRequest("GET", "/v1/lookup", nil)
		req.RemoteAddr = tt.remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tt.code {
			t.Errorf("from %s: %d, want %d", tt.remote, w.Code, tt.code)
		}
		if tt.code == 200 && w.Body.String() != "loopback" {
			t.Errorf("from %s: taken for %q, want loopback", tt.remote, w.Body.String())
		}
		if tt.code == 401 && !strings.Contains(w.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("from %s: no Bearer challenge", tt.remote)
		}
	}
	// With keys configured, loopback is no exemption.
	srv := api(t, newAuth(t, RateLimit{}))
	if resp, _ := get(t, srv.URL+"/lookup", ""); resp.StatusCode != 401 {
		t.Errorf("loopback without a key, keys configured: %d", resp.StatusCode)
	}
}

func TestClientCertificateScopes(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "server CA")
	clients := testcerts.NewCA(t, "client CA")
	pair := ca.Server(t, "callpop").Write(t, dir, "server")
	ts, err := tlsfiles.NewServer(tlsfiles.Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile,
		ClientCAFile: clients.WriteFile(t, dir, "clients.pem")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newAuth(t, RateLimit{})
	a.certs = []string{ScopeRoute, ScopeMetrics}
	srv := httptest.NewUnstartedServer(api(t, a).Config.Handler)
	srv.TLS = ts.TLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cert := clients.Client(t, "pbx-a")
	kp, _ := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{kp}}}}
	defer hc.CloseIdleConnections()
	for path, want := range map[string]int{"/route": 200, "/metrics": 200, "/lookup": 403} {
		resp, err := hc.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == 200 && string(b) != "ok tls:pbx-a") {
			t.Errorf("%s with a client certificate: %d %q, want %d", path, resp.StatusCode, b, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv("CALLPOP_API_KEYS_SHORT_KEY", "short")
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Keys: []KeyConfig{{Name: "Bad Name", Scopes: []string{"route"}}}}, `api.keys[0].name: "Bad Name" must match`},
		{Config{Keys: []KeyConfig{{Name: "a", Scopes: []string{"route"}}, {Name: "a", Scopes: []string{"route"}}}}, `api.keys[1].name: "a" is used twice`},
		{Config{Keys: []KeyConfig{{Name: "a-b", Scopes: []string{"route"}}, {Name: "a_b", Scopes: []string{"route"}}}}, `share the variable CALLPOP_API_KEYS_A_B_KEY`},
		{Config{Keys: []KeyConfig{{Name: "a"}}}, `api.keys[0].scopes: required`},
		{Config{Keys: []KeyConfig{{Name: "a", Scopes: []string{"route", "admin"}}}}, `api.keys[0].scopes[1]: unknown scope "admin"`},
		{Config{RateLimit: RateLimit{PerSecond: 5}}, `api.rate_limit.burst`},
		{Config{RateLimit: RateLimit{PerSecond: -1}}, `api.rate_limit.per_second`},
		{Config{Keys: []KeyConfig{{Name: "nokey", Scopes: []string{"route"}}}}, `api.keys[0].key: not set (set api.keys[0].key_file or CALLPOP_API_KEYS_NOKEY_KEY)`},
		{Config{Keys: []KeyConfig{{Name: "short", Scopes: []string{"route"}}}}, `api.keys[0].key: must be at least 16 bytes`},
		{Config{Keys: []KeyConfig{{Name: "f", Scopes: []string{"route"}, KeyFile: "/nonexistent/key"}}}, `api.keys[0].key_file: open /nonexistent/key`},
	} {
		_, err := New(tt.cfg, Options{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.cfg, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "short\"") {
			t.Errorf("error repeats a secret: %v", err)
		}
	}
	for _, s := range []string{ScopeStats, ScopeContacts, ScopeCallbacks} {
		if err := CheckScopes("k", []string{s}); err != nil {
			t.Errorf("scope %s refused: %v", s, err)
		}
	}
}

func TestParseBearer(t *testing.T) {
	for _, tt := range []struct {
		in, token string
		ok        bool
	}{
		{"Bearer abc", "abc", true}, {"bearer abc", "abc", true}, {"BEARER   abc", "abc", true},
		{"Bearer", "", false}, {"Bearer ", "", false}, {"Basic abc", "", false}, {"Bearer a b", "", false},
		{"Bearer a\tb", "", false}, {"Bearer ab\x00", "", false}, {"Bearer é", "", false}, {"", "", false},
	} {
		token, ok := ParseBearer(tt.in)
		if token != tt.token || ok != tt.ok {
			t.Errorf("ParseBearer(%q) = %q, %v", tt.in, token, ok)
		}
	}
}

func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x", "Basic abc", "Bearer", "Bearer a b", "Bearer \x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		token, ok := ParseBearer(h)
		if !ok {
			if token != "" {
				t.Fatalf("rejected %q but returned %q", h, token)
			}
			return
		}
		if token == "" || strings.ContainsAny(token, " \t\r\n") || !strings.HasSuffix(h, token) {
			t.Fatalf("ParseBearer(%q) = %q", h, token)
		}
		for _, c := range []byte(token) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("token %q has byte %#x", token, c)
			}
		}
	})
}

// BenchmarkRequire is the guard's cost per request: parse the header, hash
// the key, compare it with every configured key, take a rate-limit token.
func BenchmarkRequire(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(strconv.Itoa(n)+"keys", func(b *testing.B) {
			cfg := Config{RateLimit: RateLimit{PerSecond: 1e9, Burst: 1 << 30}}
			for i := range n {
				name := "k" + strconv.Itoa(i)
				cfg.Keys = append(cfg.Keys, KeyConfig{Name: name, Scopes: []string{ScopeRoute}})
				b.Setenv(EnvName(name), "key-"+name+"-0123456789abcdef")
			}
			a, err := New(cfg, Options{})
			if err != nil {
				b.Fatal(err)
			}
			h := a.Require(ScopeRoute, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			req := httptest.NewRequest("GET", "/v1/route", nil)
			req.Header.Set("Authorization", "Bearer key-k0-0123456789abcdef")
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
			if w.Code != 200 {
				b.Fatal(w.Code)
			}
		})
	}
}
