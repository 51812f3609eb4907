package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/internal/apiauth"
	"github.com/callpop/callpop/internal/testcerts"
)

const (
	dialplanKey = "dialplan-key-0123456789abcdef"
	opsKey      = "ops-key-0123456789abcdef0123"
)

// TestRunSecured runs `callpop run` with API keys (one from a file, one from
// the environment), TLS and a client CA, and checks every scope over real
// TLS: no key, a wrong key, a key of another scope, the right key, a client
// certificate; and that a look-up leaves one audit line without the
// customer's data.
func TestRunSecured(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "callpop CA")
	srvPair := ca.Server(t, "callpop").Write(t, dir, "server")
	clients := testcerts.NewCA(t, "PBX CA")
	keyFile := filepath.Join(dir, "dialplan.key")
	if err := os.WriteFile(keyFile, []byte(dialplanKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CALLPOP_API_KEYS_OPS_TEAM_KEY", opsKey)
	cfg := runConfig + fmt.Sprintf(`
tls:
  cert_file: %s
  key_file: %s
  client_ca_file: %s
  client_scopes: [route]
api:
  keys:
    - {name: dialplan, scopes: [route], key_file: %s}
    - {name: ops-team, scopes: [lookup, cache, metrics]}
`, srvPair.CertFile, srvPair.KeyFile, clients.WriteFile(t, dir, "pbx-ca.pem"), keyFile)
	base, logs, stop := startRun(t, writeConfig(t, cfg))
	defer func() { _ = stop() }()
	base = strings.Replace(base, "http://", "https://", 1)

	client := func(cert *testcerts.Pair) *http.Client {
		c := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		if cert != nil {
			kp, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			c.Certificates = []tls.Certificate{kp}
		}
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
		t.Cleanup(hc.CloseIdleConnections)
		return hc
	}
	plain, pbx := client(nil), client(clients.Client(t, "pbx-1"))
	do := func(hc *http.Client, method, path, key string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	const route = "/v1/route?number=%2B31201234567&field=name"
	const lookup = "/v1/lookup?number=%2B31201234567"
	const forget = "/v1/cache/%2B31201234567"
	const multiset = "/v1/route?number=%2B31201234567&format=multiset"
	tests := []struct {
		name         string
		hc           *http.Client
		method, path string
		key          string
		want         int
	}{
		{"route, no key", plain, "GET", route, "", 401},
		{"route, wrong key", plain, "GET", route, "not-a-key-0123456789abc", 401},
		{"route, a key of other scopes", plain, "GET", route, opsKey, 403},
		{"route, its key", plain, "GET", route, dialplanKey, 200},
		{"route, client certificate", pbx, "GET", route, "", 200},
		{"multiset, no key", plain, "GET", multiset, "", 401},
		{"multiset, its key", plain, "GET", multiset, dialplanKey, 200},
		{"lookup, no key", plain, "GET", lookup, "", 401},
		{"lookup, the dialplan's key", plain, "GET", lookup, dialplanKey, 403},
		{"lookup, client certificate", pbx, "GET", lookup, "", 403},
		{"lookup, its key", plain, "GET", lookup, opsKey, 200},
		{"cache, no key", plain, "DELETE", forget, "", 401},
		{"cache, the dialplan's key", plain, "DELETE", forget, dialplanKey, 403},
		{"cache, its key", plain, "DELETE", forget, opsKey, 200},
		{"metrics, no key", plain, "GET", "/metrics", "", 401},
		{"metrics, its key", plain, "GET", "/metrics", opsKey, 200},
		{"healthz stays open", plain, "GET", "/healthz", "", 200},
		{"readyz stays open", plain, "GET", "/readyz", "", 200},
		{"the panel keeps its own tokens", plain, "GET", "/agent", "", 200},
	}
	for _, tt := range tests {
		code, h, body := do(tt.hc, tt.method, tt.path, tt.key)
		if code != tt.want {
			t.Errorf("%s: %d %q, want %d", tt.name, code, body, tt.want)
			continue
		}
		if code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", tt.name, h.Get("WWW-Authenticate"))
		}
		if code >= 400 && strings.Contains(body, "Vries") {
			t.Errorf("%s: a refusal carries customer data: %q", tt.name, body)
		}
	}
	if _, _, body := do(plain, "GET", route, dialplanKey); body != "Anna de Vries" {
		t.Errorf("route answer %q", body)
	}
	// FreeSWITCH's multiset would take a refusal's words for variables
	if _, h, body := do(plain, "GET", multiset, ""); body != "" || h.Get("X-Callpop-Error") == "" {
		t.Errorf("multiset refusal %q %v, want an empty body", body, h)
	}
	if _, _, body := do(plain, "GET", multiset, dialplanKey); !strings.HasPrefix(body, "^^|callpop_match=hit|") {
		t.Errorf("multiset answer %q", body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var audits []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"msg":"audit"`) {
			audits = append(audits, l)
		}
		for _, secret := range []string{dialplanKey, opsKey, "Anna de Vries", "31201234567"} {
			if strings.Contains(l, secret) {
				t.Errorf("log line holds %q: %s", secret, l)
			}
		}
	}
	// lookup: 401, 403, 403, 200; cache: 401, 403, 200.
	if len(audits) != 7 {
		t.Fatalf("%d audit lines, want 7:\n%s", len(audits), strings.Join(audits, "\n"))
	}
	for _, want := range []string{`"endpoint":"lookup","method":"GET","key":"ops-team","number":"+3120***4567","status":200,"match":"hit"`,
		`"endpoint":"cache","method":"DELETE","key":"ops-team","number":"+3120***4567","status":200`,
		`"endpoint":"lookup","method":"GET","key":"","number":"+3120***4567","status":401`} {
		if !strings.Contains(strings.Join(audits, "\n"), want) {
			t.Errorf("no audit line with %s:\n%s", want, strings.Join(audits, "\n"))
		}
	}
}

// TestRunRefusesInsecure: settings that would open callpop to the network
// are refused at start with the key (and its variable) named.
func TestRunRefusesInsecure(t *testing.T) {
	tests := []struct {
		name, cfg string
		want      []string
	}{
		{"redis without a key secret", runConfig + "cache:\n  redis: {addrs: [\"127.0.0.1:1\"]}\n",
			[]string{"cache.key_secret", "CALLPOP_CACHE_KEY_SECRET"}},
		{"fastagi beyond loopback, default allow-list", strings.Replace(runConfig, "    listen: 127.0.0.1:0", "    listen: 0.0.0.0:0", 1),
			[]string{"router.fastagi.allow", "CALLPOP_ROUTER_FASTAGI_ALLOW"}},
		{"freeswitch outbound beyond loopback, default allow-list",
			runConfig + "pbx:\n  kind: freeswitch\n  freeswitch: {listen: \"[::]:0\", events: false}\n",
			[]string{"pbx.freeswitch.allow", "CALLPOP_PBX_FREESWITCH_ALLOW"}},
		{"an unknown scope", runConfig + "api:\n  keys: [{name: x, scopes: [admin], key_file: /dev/null}]\n",
			[]string{`api.keys[0].scopes[0]: unknown scope "admin"`}},
		{"a key with no value", runConfig + "api:\n  keys: [{name: nokey, scopes: [route]}]\n",
			[]string{"api.keys[0].key", "CALLPOP_API_KEYS_NOKEY_KEY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, _, err := execute(t, ctx, "run", "--config", writeConfig(t, tt.cfg))
			if err == nil {
				t.Fatal("run started")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

func TestExposureWarnings(t *testing.T) {
	cfg := DefaultConfig()
	if w := exposureWarnings(cfg); len(w) != 0 {
		t.Fatalf("loopback listener: %q", w)
	}
	cfg.Listen = "0.0.0.0:8080"
	w := strings.Join(exposureWarnings(cfg), "\n")
	for _, want := range []string{"api.keys is empty", "/v1/route, /v1/lookup, DELETE /v1/cache, /v1/contacts, /v1/callbacks, /v1/stats (to all but supervisors' panel tokens) and /metrics answer only loopback clients", "without TLS"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	cfg.API.MetricsOpen = true
	if w := strings.Join(exposureWarnings(cfg), "\n"); strings.Contains(w, "/metrics") {
		t.Errorf("metrics_open: %s", w)
	}
	cfg.API.Keys = []apiauth.KeyConfig{{Name: "dialplan", Scopes: []string{"route"}}}
	cfg.TLS.CertFile, cfg.TLS.KeyFile = "c", "k"
	if w := exposureWarnings(cfg); len(w) != 0 {
		t.Fatalf("keys and TLS: %q", w)
	}
}
