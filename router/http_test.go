package router

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func startHTTP(t testing.TB, r *Router) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t testing.TB, srv *httptest.Server, path string) (int, string, http.Header) {
	t.Helper()
	return do(t, srv, http.MethodGet, path)
}

func do(t testing.TB, srv *httptest.Server, method, path string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(t, resp.Body), resp.Header
}

func TestRouteEndpoint(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	srv := startHTTP(t, te.router)

	t.Run("json", func(t *testing.T) {
		code, body, h := get(t, srv, "/v1/route?number=0201234567&ani=0201234567&dnis=0800123456")
		if code != 200 || h.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %s", code, body)
		}
		var d struct {
			Match    string            `json:"match"`
			E164     string            `json:"e164"`
			Source   string            `json:"source"`
			Priority int               `json:"priority"`
			Queue    string            `json:"queue"`
			Flags    []string          `json:"flags"`
			Vars     map[string]string `json:"vars"`
			Customer *struct {
				ID, Name, Tier, Language, URL string
			} `json:"customer"`
		}
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatal(err)
		}
		if d.Match != "hit" || d.E164 != "+31201234567" || d.Source != "cli" || d.Priority != 10 || d.Queue != "vip" ||
			d.Customer == nil || d.Customer.Name != "Jan de Vries" || d.Vars["CALLPOP_QUEUE"] != "vip" {
			t.Fatalf("%s", body)
		}
	})

	fields := []struct {
		query string
		want  string
	}{
		{"number=0201234567&field=priority", "10"},
		{"number=0201234567&field=queue", "vip"},
		{"number=0201234567&field=name", "Jan de Vries"},
		{"number=0201234567&field=CALLPOP_NAME", "Jan de Vries"},
		{"number=0201234567&field=queue_prio", "10"},
		{"number=0201234567&field=cc_base_score", "600"},
		{"number=0201234567&field=flags", "vip"},
		{"number=0201234567&field=e164", "+31201234567"},
		{"number=0201234567&field=match", "hit"},
		{"number=0201234567&field=customer_id", "C-1001"},
		{"number=0201234567&field=pop_url", "https://crm.example/c/1001"},
		{"number=&field=match", "anonymous"},
		{"number=+31201234567&field=e164", "+31201234567"}, // "+" not URI-encoded by the dialplan
		{"number=%2B31201234567&field=e164", "+31201234567"},
		{"number=&ani=0301112233&field=queue", "support-de"},
		{"number=anonymous&field=queue", "general"},
		{"number=" + url.QueryEscape("+31 6 1111 2222") + "&field=pop_url", "https://crm.example/new?phone=%2B31611112222"},
		{"number=" + url.QueryEscape("0201234567\r\nX: y") + "&field=match", "invalid"},
		{"number=0209999999&field=name", "Evil SHELL(id) HANGUP"},
	}
	for _, tt := range fields {
		t.Run(tt.query, func(t *testing.T) {
			code, body, h := get(t, srv, "/v1/route?"+tt.query)
			if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
				t.Fatalf("%d %q", code, body)
			}
			if body != tt.want {
				t.Fatalf("body %q, want %q", body, tt.want)
			}
		})
	}

	bad := []struct {
		query string
		want  string
	}{
		{"", "number: missing"},
		{"dnis=0800", "number: missing"},
		{"number=1&field=bogus", `field: "bogus" is not one of`},
		{"number=1&numbr=2", `unknown parameter "numbr"`},
		{"number=1&number=2", "number: given 2 times"},
		{"number=" + strings.Repeat("1", 300), "number: longer than 256 bytes"},
		{"number=%ff%fe", "number: not valid UTF-8"},
		{"number=%zz", "malformed query"},
		{"number=1;dnis=2", "malformed query"},
		{"number=1&privacy=maybe", "privacy:"},
		{"number=1&profile=nope", `profile: "nope" is not a configured profile`},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.query, func(t *testing.T) {
			code, body, _ := get(t, srv, "/v1/route?"+tt.query)
			if code != 400 || !strings.Contains(body, tt.want) {
				t.Fatalf("%d %q, want 400 with %q", code, body, tt.want)
			}
		})
	}
	if code, _, _ := do(t, srv, http.MethodPost, "/v1/route?number=1"); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /v1/route: %d", code)
	}
}

// Hostile queries never get a 5xx.
func TestRouteNeverServerError(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, 100*time.Millisecond)
	srv := startHTTP(t, te.router)
	values := []string{"", "%00", "%0d%0a", "%22%27%3c%3e", "%e2%80%ae", "%ff", "+", "%2B", "sip:x@y", "${x}", strings.Repeat("9", 256), "a%20b", "%c0%80"}
	keys := []string{"number", "ani", "dnis", "field", "privacy", "profile", "name", "call_id", "explain", "x"}
	for _, k := range keys {
		for _, v := range values {
			for _, path := range []string{"/v1/route?number=1&", "/v1/lookup?number=1&", "/v1/route?"} {
				code, body, _ := get(t, srv, path+k+"="+v)
				if code >= 500 {
					t.Errorf("%s%s=%s: %d %q", path, k, v, code, body)
				}
			}
		}
	}
	for _, v := range values {
		if code, body, _ := do(t, srv, http.MethodDelete, "/v1/cache/"+v); code >= 500 {
			t.Errorf("DELETE /v1/cache/%s: %d %q", v, code, body)
		}
	}
}

func TestLookupEndpoint(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	srv := startHTTP(t, te.router)
	code, body, _ := get(t, srv, "/v1/lookup?number=0201234567&dnis=0800123456")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"match", "e164", "source", "customer", "vars", "cached", "elapsed_ms", "rules", "priority", "queue", "flags"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %s", k, body)
		}
	}
	cust, _ := m["customer"].(map[string]any)
	for _, k := range []string{"id", "name", "tier", "language", "url"} {
		if _, ok := cust[k]; !ok {
			t.Errorf("no customer.%s in %s", k, body)
		}
	}
	if rules, _ := m["rules"].([]any); len(rules) != 1 || rules[0] != "vip-first" {
		t.Errorf("rules %v", m["rules"])
	}
	if _, ok := m["explain"]; ok {
		t.Error("explain without asking")
	}

	code, body, _ = get(t, srv, "/v1/lookup?number=0301112233&explain=1")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var ex struct {
		Explain []RuleTrace `json:"explain"`
		Cached  bool        `json:"cached"`
	}
	if err := json.Unmarshal([]byte(body), &ex); err != nil {
		t.Fatal(err)
	}
	if len(ex.Explain) != 3 || ex.Explain[2].Name != "language-queue" || !ex.Explain[2].Matched || ex.Explain[2].Set["queue"] != "support-de" {
		t.Fatalf("explain %+v", ex.Explain)
	}
	if code, body, _ := get(t, srv, "/v1/lookup?numbr=1"); code != 400 {
		t.Fatalf("%d %s", code, body)
	}
}

func TestForgetEndpoint(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	srv := startHTTP(t, te.router)
	lookup := func() bool {
		_, body, _ := get(t, srv, "/v1/lookup?number=0201234567")
		var m struct {
			Cached bool `json:"cached"`
		}
		_ = json.Unmarshal([]byte(body), &m)
		return m.Cached
	}
	lookup()
	if !lookup() {
		t.Fatal("second look-up not cached")
	}
	before := te.fake.requests.Load()
	code, body, _ := do(t, srv, http.MethodDelete, "/v1/cache/"+url.PathEscape("+31 20 123 4567"))
	if code != 200 || !strings.Contains(body, `"e164":"+31201234567"`) {
		t.Fatalf("%d %s", code, body)
	}
	if lookup() || te.fake.requests.Load() != before+1 {
		t.Fatalf("after forget: not asked the CRM again (requests %d → %d)", before, te.fake.requests.Load())
	}
	// National form with a DNIS-chosen region, too.
	if code, body, _ := do(t, srv, http.MethodDelete, "/v1/cache/0201234567?dnis=0800123456"); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	for _, p := range []string{"/v1/cache/anonymous", "/v1/cache/abc", "/v1/cache/1?x=1", "/v1/cache/" + strings.Repeat("1", 300)} {
		if code, body, _ := do(t, srv, http.MethodDelete, p); code != 400 {
			t.Errorf("DELETE %s: %d %s", p, code, body)
		}
	}
}

// The JSON answers are not HTML-escaped: a rule's `&&` and a customer named
// "Smith & Sons <UK>" read as written (served as application/json, nosniff).
func TestJSONNotHTMLEscaped(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	te.fake.add("+31207770000", map[string]any{"id": "C-3001", "name": "Smith & Sons <UK>", "tier": "gold", "language": "en"})
	srv := startHTTP(t, te.router)
	for _, path := range []string{"/v1/lookup?number=0207770000&explain=1", "/v1/lookup?number=0207770000", "/v1/route?number=0207770000"} {
		code, body, h := get(t, srv, path)
		if code != 200 || !strings.Contains(body, `"Smith & Sons <UK>"`) || strings.Contains(body, `\u00`) {
			t.Errorf("%s: %d, want the name unescaped in:\n%s", path, code, body)
		}
		if strings.Contains(path, "explain") && !strings.Contains(body, `&& lower(customer.language)`) {
			t.Errorf("%s: want the rule's && unescaped in:\n%s", path, body)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no X-Content-Type-Options: nosniff", path)
		}
	}
}
