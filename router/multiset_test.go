package router

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/apiauth"
	"github.com/callpop/callpop/internal/fsvars"
)

// The model follows FreeSWITCH's C code on the inputs that decide how an
// answer is read: delimiters, quotes, escapes, empty parts and values, the
// 256-part limit, and a body without `^^` (an error text).
func TestFreeSWITCHMultisetModel(t *testing.T) {
	parts := make([]string, 300)
	for i := range parts {
		parts[i] = fmt.Sprintf("v%d=%d", i, i)
	}
	tests := []struct {
		name, data string
		vars       map[string]string // the channel before
		want       []fsOp
		errs       int
	}{
		{"pipe list", "^^|a=1|b=x y", nil, []fsOp{{"a", "1"}, {"b", "x y"}}, 0},
		{"value keeps =", "^^|a=b=c", nil, []fsOp{{"a", "b=c"}}, 0},
		{"empty part is logged", "^^|a=1||b=2", nil, []fsOp{{"a", "1"}, {"b", "2"}}, 1},
		{"empty value unsets", "^^|a=|b", map[string]string{"a": "x", "b": "y"}, []fsOp{{"a", ""}, {"b", ""}}, 0},
		{"quotes hide the delimiter", "^^|a='x|y'|b=2", nil, []fsOp{{"a", "x|y"}, {"b", "2"}}, 0},
		{"escaped delimiter", `^^|a=\|b`, nil, []fsOp{{"a", "|b"}}, 0},
		{"spaces around a part", "^^| a= x |b=2", nil, []fsOp{{"a", " x"}, {"b", "2"}}, 0},
		{"other delimiter", "^^;a=1;b=x|y", nil, []fsOp{{"a", "1"}, {"b", "x|y"}}, 0},
		{"comma instead of =", "^^|a,1", nil, []fsOp{{"a", "1"}}, 0},
		{"reference expanded", "^^|x=${export_vars},callpop_call_id", map[string]string{"export_vars": "a,b"},
			[]fsOp{{"x", "a,b,callpop_call_id"}}, 0},
		{"reference to nothing", "^^|x=${export_vars},callpop_call_id", nil, []fsOp{{"x", ",callpop_call_id"}}, 0},
		{"no ^^: split at spaces", "a=1  b=2", nil, []fsOp{{"a", "1"}, {"b", "2"}}, 0},
		// why an error answer must be empty: its words unset variables, and
		// `x=y` in a message would set one
		{"error text", "callpop: number: missing (send number= even when the caller ID is empty)\n", nil,
			[]fsOp{{"callpop:", ""}, {"number:", ""}, {"missing", ""}, {"(send", ""}, {"number", ""}, {"even", ""},
				{"when", ""}, {"the", ""}, {"caller", ""}, {"ID", ""}, {"is", ""}, {"empty)\n", ""}}, 0},
		{"empty answer", "", nil, nil, 0},
		{"257th part and beyond stay in the 256th", "^^|" + strings.Join(parts, "|"), nil, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := maps.Clone(tt.vars)
			if vars == nil {
				vars = map[string]string{}
			}
			ops, _, errs := fsMultiset(tt.data, vars)
			if strings.HasPrefix(tt.name, "257th") {
				if len(ops) != 256 || ops[255].value != strings.TrimPrefix(strings.Join(parts[255:], "|"), "v255=") {
					t.Fatalf("%d parts, last %q", len(ops), ops[len(ops)-1])
				}
				return
			}
			if !slices.Equal(ops, tt.want) || len(errs) != tt.errs {
				t.Fatalf("ops %q errs %q\nwant %q and %d errors", ops, errs, tt.want, tt.errs)
			}
		})
	}
}

// applyMultiset runs an answer through the model on a channel holding vars
// and returns the channel after it; the model must have nothing to say, and
// the only expansions are the two export lists referring to themselves.
func applyMultiset(t testing.TB, body string, vars map[string]string) map[string]string {
	t.Helper()
	if body != "" && !strings.HasPrefix(body, fsvars.MultisetPrefix) {
		t.Fatalf("answer %q does not start with %s", body, fsvars.MultisetPrefix)
	}
	ch := maps.Clone(vars)
	if ch == nil {
		ch = map[string]string{}
	}
	ops, refs, errs := fsMultiset(body, ch)
	if len(errs) > 0 {
		t.Fatalf("FreeSWITCH would log or act on %q: %q", body, errs)
	}
	seen := map[string]bool{}
	for _, op := range ops {
		if seen[op.name] {
			t.Fatalf("%s set twice by %q", op.name, body)
		}
		seen[op.name] = true
	}
	for _, r := range refs {
		if r != "export_vars" && r != "cc_export_vars" {
			t.Fatalf("answer %q expands ${%s}", body, r)
		}
	}
	return ch
}

func TestRouteMultiset(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	te.fake.add("+31208888888", map[string]any{
		"id":       "^^|C-7",
		"name":     "Eve|callpop_queue=evil|cc_base_score=99999 ${system(id)}; 'x'\n\\s|",
		"tier":     "|",
		"language": "de|callpop_match=miss",
		"url":      "https://crm.example/c/7?a=b|c&d=${x}",
	})
	srv := startHTTP(t, te.router)
	known := map[string]string{
		"callpop_match": "hit", "callpop_e164": "+31201234567", "callpop_source": "cli", "callpop_customer_id": "C-1001",
		"callpop_name": "Jan de Vries", "callpop_tier": "vip", "callpop_lang": "nl", "callpop_priority": "10",
		"callpop_queue": "vip", "callpop_skill": "senior", "callpop_flags": "vip", "callpop_pop_url": "https://crm.example/c/1001",
		"cc_base_score": "600",
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name, query string
		before      map[string]string // the channel's variables before multiset
		want        map[string]string // and after
	}{
		{"known caller with a call id", "number=0201234567&call_id=7f1c3a52-0b8e-4d6a-9a51-2c6f3e1d9b70",
			map[string]string{"export_vars": "foo,bar", "callpop_queue": "support"},
			with(known, "callpop_call_id", "7f1c3a52-0b8e-4d6a-9a51-2c6f3e1d9b70",
				"export_vars", "foo,bar,callpop_call_id", "cc_export_vars", ",callpop_call_id")},
		{"known caller, no call id: no exports", "number=0201234567", nil, known},
		{"withheld, known by ANI", "number=anonymous&ani=0201234567&privacy=1", nil,
			with(known, "callpop_source", "ani")},
		{"hostile CRM data", "number=0208888888&call_id=u-1%7Cx%3Dy", map[string]string{"callpop_tier": "default"}, map[string]string{
			"callpop_match": "hit", "callpop_e164": "+31208888888", "callpop_source": "cli", "callpop_customer_id": "C-7",
			"callpop_name": "Eve callpop_queue=evil cc_base_score=99999 system(id) x s", "callpop_tier": "default",
			"callpop_lang": "de callpop_match=miss", "callpop_priority": "5", "callpop_queue": "support",
			"callpop_pop_url": "https://crm.example/c/7?a=b%7Cc&d=%24%7Bx%7D", "cc_base_score": "300",
			"callpop_call_id": "u-1xy", "export_vars": ",callpop_call_id", "cc_export_vars": ",callpop_call_id"}},
		{"anonymous: defaults for what callpop does not know stay", "number=anonymous",
			map[string]string{"callpop_name": "unknown caller"}, map[string]string{
				"callpop_match": "anonymous", "callpop_priority": "1", "callpop_queue": "general", "cc_base_score": "60",
				"callpop_name": "unknown caller"}},
		{"not a phone number: a decision, not an error", "number=abc", nil, map[string]string{
			"callpop_match": "invalid", "callpop_priority": "1", "callpop_queue": "general", "cc_base_score": "60"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, h := get(t, srv, "/v1/route?"+tt.query+"&format=multiset")
			if code != 200 || h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("Cache-Control") != "no-store" {
				t.Fatalf("%d %v %q", code, h, body)
			}
			if h.Get("X-Callpop-Match") != tt.want["callpop_match"] {
				t.Errorf("X-Callpop-Match %q", h.Get("X-Callpop-Match"))
			}
			if got := applyMultiset(t, body, tt.before); !maps.Equal(got, tt.want) {
				t.Fatalf("answer %q\nleaves %v\nwant   %v", body, got, tt.want)
			}
		})
	}

	// The values are the JSON answer's (the same decision's, sanitised).
	_, js, _ := get(t, srv, "/v1/route?number=0201234567")
	for name, v := range known {
		if k := strings.ToUpper(name); strings.HasPrefix(k, "CALLPOP_") && !strings.Contains(js, fmt.Sprintf("%q:%q", k, v)) {
			t.Errorf("%s=%q not in the JSON answer %s", k, v, js)
		}
	}
}

// The softphone's caller name and link travel in the same answer; the SIP
// header keeps its `;purpose=info` (no delimiter in a `|` list) and is
// exported to the agent legs.
func TestRouteMultisetSoftphone(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	te.router.SetEndpointDecider(call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		d := te.router.Decide(ctx, c)
		d.CallerName = "VIP | Jan ${x} 'de' Vries"
		d.InfoURL = "https://crm.example/i/1?a=b;c|d"
		return d
	}))
	srv := startHTTP(t, te.router)
	_, body, _ := get(t, srv, "/v1/route?number=0201234567&call_id=abc-1&format=multiset")
	ch := applyMultiset(t, body, map[string]string{"cc_export_vars": "callpop_customer_id"})
	want := map[string]string{
		"effective_caller_id_name": "VIP Jan x de Vries",
		"callpop_info_url":         "https://crm.example/i/1?a=b%3Bc%7Cd",
		"sip_h_Call-Info":          "<https://crm.example/i/1?a=b%3Bc%7Cd>;purpose=info",
		"export_vars":              ",callpop_call_id,sip_h_Call-Info",
		"cc_export_vars":           "callpop_customer_id,callpop_call_id,sip_h_Call-Info",
	}
	for k, v := range want {
		if ch[k] != v {
			t.Errorf("%s = %q, want %q (answer %q)", k, ch[k], v, body)
		}
	}
	_, body, _ = get(t, srv, "/v1/route?number=anonymous&ani=0201234567&privacy=1&format=multiset")
	if ch := applyMultiset(t, body, nil); ch["effective_caller_id_name"] != "" {
		t.Errorf("caller name rewritten for a withheld number: %q", body)
	}
}

// Every answer to format=multiset other than 200 has an empty body (multiset
// sets nothing), the message in X-Callpop-Error; without format=multiset the
// errors stay plain text.
func TestRouteMultisetErrors(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	srv := startHTTP(t, te.router)
	tests := []struct {
		method, query string
		status        int
		msg           string // in X-Callpop-Error (made a header value: no quotes, commas folded), or the plain body
		plain         bool   // not a multiset request: the message is the body
	}{
		{"GET", "format=multiset", 400, "number: missing", false},
		{"GET", "number=" + strings.Repeat("1", 300) + "&format=multiset", 400, "number: longer than 256 bytes", false},
		{"GET", "number=1&field=queue&format=multiset", 400, "field and format: give only one", false},
		{"GET", "number=1&format=multiset&numbr=2", 400, "unknown parameter numbr (allowed: number ani", false},
		{"GET", "number=%zz&format=multiset", 400, "malformed query", false},
		{"GET", "number=1&format=multiset&format=multiset", 400, "format: given 2 times", false},
		{"GET", "number=1&profile=nope&format=multiset", 400, "profile:", false},
		{"GET", "number=1&format=Multiset", 400, "format: Multiset is not one of json multiset", false},
		{"POST", "number=1&format=multiset", 405, "", false},
		{"GET", "number=1&format=xml", 400, `format: "xml" is not one of json, multiset`, true},
		{"GET", "number=1&format=json&field=queue", 400, "field and format: give only one", true},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.query, func(t *testing.T) {
			code, body, h := do(t, srv, tt.method, "/v1/route?"+tt.query)
			if code != tt.status {
				t.Fatalf("%d %q, want %d", code, body, tt.status)
			}
			if tt.plain {
				if !strings.Contains(body, tt.msg) || h.Get("X-Callpop-Error") != "" {
					t.Fatalf("body %q, want the message %q", body, tt.msg)
				}
				return
			}
			if body != "" || h.Get("Content-Length") != "0" || !strings.Contains(h.Get("X-Callpop-Error"), tt.msg) {
				t.Fatalf("body %q, X-Callpop-Error %q, want an empty body and %q", body, h.Get("X-Callpop-Error"), tt.msg)
			}
			if tt.status == 405 && h.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	if code, body, _ := get(t, srv, "/v1/route?number=0201234567&format=json"); code != 200 || !strings.HasPrefix(body, "{") {
		t.Fatalf("format=json: %d %q", code, body)
	}

	// A decider that panics: the guard's 503 goes out empty too.
	te.router.SetEndpointDecider(call.DeciderFunc(func(context.Context, call.Call) call.Decision { panic("boom") }))
	code, body, h := get(t, srv, "/v1/route?number=1&format=multiset")
	if code != 503 || body != "" || h.Get("X-Callpop-Error") != "internal error" {
		t.Fatalf("panic: %d %q %v", code, body, h)
	}
}

// newRouteHandler serves the router as callpop run does: MultisetSafe around
// the key check around the router's handler. With a key, name is its key's.
func newRouteHandler(t *testing.T, r *Router, name, key string) http.Handler {
	t.Helper()
	var cfg apiauth.Config
	if name != "" {
		t.Setenv(apiauth.EnvName(name), key)
		cfg.Keys = []apiauth.KeyConfig{{Name: name, Scopes: []string{apiauth.ScopeRoute}}}
	}
	auth, err := apiauth.New(cfg, apiauth.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return MultisetSafe(auth.Require(apiauth.ScopeRoute, r.Handler()))
}

// The key check's refusals reach FreeSWITCH empty, their headers intact.
func TestMultisetSafeKeyRefusals(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	srv := httptest.NewServer(newRouteHandler(t, te.router, "freeswitch", "route-key-0123456789abcdef"))
	t.Cleanup(srv.Close)
	send := func(auth, query string) (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/route?"+query, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	for _, auth := range []string{"", "Bearer wrong-key", "Basic eDp5"} {
		code, body, h := send(auth, "number=0201234567&format=multiset")
		if code != 401 || body != "" || h.Get("WWW-Authenticate") == "" || h.Get("X-Callpop-Error") == "" {
			t.Errorf("auth %q: %d %q %v", auth, code, body, h)
		}
		if code, body, _ := send(auth, "number=0201234567"); code != 401 || !strings.HasPrefix(body, "callpop: ") {
			t.Errorf("auth %q without multiset: %d %q, want the plain refusal", auth, code, body)
		}
	}
	code, body, _ := send("Bearer route-key-0123456789abcdef", "number=0201234567&format=multiset")
	if code != 200 || applyMultiset(t, body, nil)["callpop_match"] != "hit" {
		t.Fatalf("%d %q", code, body)
	}
}

// The snippets of docs/freeswitch.md's multiset section run as written: the
// dialplan and the keyed action, their ${curl(…)} sent to callpop's handler
// (the keyed one over TLS behind the real key check), the answer through
// the model of multiset.
func TestDocsMultisetSnippets(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	te.fake.add("+31208888888", map[string]any{"id": "C-7", "name": "Eve|callpop_queue=evil|${system(id)}", "tier": "gold", "language": "de"})
	plain := httptest.NewServer(newRouteHandler(t, te.router, "", ""))
	t.Cleanup(plain.Close)
	const key = "fs-route-key-0123456789abcdef"
	tlsSrv := httptest.NewTLSServer(newRouteHandler(t, te.router, "freeswitch", key))
	t.Cleanup(tlsSrv.Close)
	down := "http://" + closingListener(t)

	raw, err := os.ReadFile("../docs/freeswitch.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## One request from the dialplan: multiset\n")
	if !ok {
		t.Fatal("docs/freeswitch.md: no multiset section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for rest := section; ; {
		var block string
		if _, rest, ok = strings.Cut(rest, "```xml\n"); !ok {
			break
		}
		block, rest, _ = strings.Cut(rest, "```")
		blocks = append(blocks, block)
	}
	if len(blocks) != 2 {
		t.Fatalf("%d xml blocks in the multiset section, want the dialplan and the keyed action", len(blocks))
	}
	// The keyed block: env-set of the key, and one action, run in the
	// dialplan's extension in place of its multiset.
	var keyed struct {
		Pre []struct {
			Cmd  string `xml:"cmd,attr"`
			Data string `xml:"data,attr"`
		} `xml:"X-PRE-PROCESS"`
	}
	if err := xml.NewDecoder(strings.NewReader("<x>" + blocks[1] + "</x>")).Decode(&keyed); err != nil {
		t.Fatalf("XML: %v", err)
	}
	keyedAction := regexp.MustCompile(`<action application="multiset" data="[^"]*"/>`).FindString(blocks[1])
	plainAction := regexp.MustCompile(`<action application="multiset" data="[^"]*"/>`).FindString(blocks[0])
	if len(keyed.Pre) != 1 || keyed.Pre[0].Cmd != "env-set" || keyedAction == "" || plainAction == "" {
		t.Fatalf("snippets changed shape: %+v %q %q", keyed, keyedAction, plainAction)
	}
	keyVar, env, _ := strings.Cut(keyed.Pre[0].Data, "=$")

	const vip, uuid = "+31201234567", "0c6b2f1e-9a43-4c57-8f0e-5d2a7b3c1e90"
	tests := []struct {
		name           string
		cli, ani, hide string
		keyed          string // the keyed action with this key in FreeSWITCH's environment
		plain          string // where http://127.0.0.1:8080 points
		status         int    // what callpop answered; 0: nothing
		queue, match   string
		score, callID  string
		callerName     string
	}{
		{"known caller", vip, vip, "false", "", plain.URL, 200, "vip@default", "hit", "600", uuid, "Jan de Vries"},
		{"withheld, known by ANI", "anonymous", vip, "true", "", plain.URL, 200, "vip@default", "hit", "600", uuid, "Jan de Vries"},
		{"hostile CRM data", "+31208888888", "", "false", "", plain.URL, 200, "support-de@default", "hit", "300", uuid, "Eve callpop_queue=evil system(id)"},
		{"number over 256 bytes: 400", strings.Repeat("1", 300), "", "false", "", plain.URL, 400, "support@default", "unavailable", "", "", ""},
		{"callpop down", vip, vip, "false", "", down, 0, "support@default", "unavailable", "", "", ""},
		{"keyed", vip, vip, "false", key, plain.URL, 200, "vip@default", "hit", "600", uuid, "Jan de Vries"},
		{"keyed, wrong key: 401", vip, vip, "false", "not-the-key", plain.URL, 401, "support@default", "unavailable", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := blocks[0]
			vars := map[string]string{"caller_id_number": tt.cli, "ani": tt.ani, "privacy_hide_number": tt.hide,
				"uuid": uuid, "destination_number": "5551000"}
			if tt.keyed != "" {
				t.Setenv(env, tt.keyed)
				vars[keyVar] = os.Getenv(env) // env-set: a global variable, read when the call runs
				doc = strings.Replace(doc, plainAction, keyedAction, 1)
			}
			cm := &curlModel{t: t, plain: tt.plain, tls: tlsSrv}
			c := &fsChannel{t: t, vars: vars, curlAPI: cm.curl}
			queue := c.run(doc)
			if len(cm.statuses) != 1 || cm.statuses[0] != tt.status {
				t.Fatalf("callpop answered %v, want [%d]", cm.statuses, tt.status)
			}
			got := []string{queue, c.vars["callpop_match"], c.vars["cc_base_score"], c.vars["callpop_call_id"], c.vars["callpop_name"]}
			want := []string{tt.queue, tt.match, tt.score, tt.callID, tt.callerName}
			if !slices.Equal(got, want) {
				t.Fatalf("queue, match, score, call id, name = %q, want %q", got, want)
			}
			if tt.callID != "" && (c.vars["export_vars"] != ",callpop_call_id" || c.vars["cc_export_vars"] != ",callpop_call_id") {
				t.Errorf("exports %q %q", c.vars["export_vars"], c.vars["cc_export_vars"])
			}
		})
	}
}

// curlModel models the snippets' ${curl(…)}: callpop at plain (the docs'
// http://127.0.0.1:8080) or behind TLS (https://callpop.example.net:8443).
type curlModel struct {
	t        *testing.T
	plain    string
	tls      *httptest.Server
	statuses []int // callpop's answers; 0: none
}

// curl is mod_curl's curl API: arguments split like switch_separate_string
// (quotes hold spaces), a GET, the body whatever the status, "" without an
// answer.
func (c *curlModel) curl(cmd string) string {
	args := fsSeparate(cmd, ' ', 31)
	var headers []string
	var secure bool
	var timeouts int
	for i := 1; i < len(args); i++ {
		switch opt := args[i]; opt {
		case "append_headers":
			i++
			headers = append(headers, args[i])
		case "connect-timeout", "timeout":
			i++
			if n, err := strconv.Atoi(args[i]); err != nil || n <= 0 {
				c.t.Fatalf("%s %q: mod_curl ignores it", opt, args[i])
			}
			timeouts++
		case "secure":
			secure = true
		default:
			c.t.Fatalf("curl option %q is not modelled", opt)
		}
	}
	if timeouts != 2 {
		c.t.Fatalf("curl %q: without connect-timeout and timeout a silent callpop holds the call", cmd)
	}
	client := &http.Client{Timeout: time.Minute}
	target := args[0]
	switch {
	case strings.HasPrefix(target, "http://127.0.0.1:8080/"):
		target = c.plain + "/" + strings.TrimPrefix(target, "http://127.0.0.1:8080/")
	case strings.HasPrefix(target, "https://callpop.example.net:8443/"):
		if !secure {
			c.t.Fatal("https without secure: mod_curl would not check the certificate")
		}
		client = c.tls.Client()
		target = c.tls.URL + "/" + strings.TrimPrefix(target, "https://callpop.example.net:8443/")
	default:
		c.t.Fatalf("snippet asks %q", target)
	}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		c.t.Fatalf("%s: %v", target, err)
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			c.t.Fatalf("append_headers %q: not a header", h)
		}
		req.Header.Add(name, strings.TrimSpace(value))
	}
	resp, err := client.Do(req)
	if err != nil {
		c.statuses = append(c.statuses, 0)
		return ""
	}
	defer resp.Body.Close()
	c.statuses = append(c.statuses, resp.StatusCode)
	b, _ := io.ReadAll(resp.Body)
	if string(b) == " " {
		return "" // do_lookup_url keeps no body of one space
	}
	return string(b)
}

var uuidLike = regexp.MustCompile(`^[0-9a-fA-F-]+$`)

// FuzzMultisetAnswer: whatever a caller or a CRM sends, the answer splits
// into exactly callpop's variables, each stored as sent (no quote, escape,
// trim or expansion changes it), none carrying the delimiter, `$ { }`, a
// backslash, a quote or a control character; the export lists are the only
// expansion.
func FuzzMultisetAnswer(f *testing.F) {
	for _, s := range []string{"", "|", "a|b=c", "${system(id)}", "$${x}", "^^|a=b", "^^;x", "ARRAY::|x", "'|'", `\|`,
		"x\n|y", " | ", "=|=", "a;b,c", "\u2028|\u00a0", "\xff|", strings.Repeat("|", 200), "|^^|ARRAY::^|x"} {
		f.Add(s, "0c6b2f1e-"+s)
	}
	fixed := []string{"callpop_match", "callpop_e164", "callpop_source", "callpop_customer_id", "callpop_name", "callpop_tier",
		"callpop_lang", "callpop_priority", "callpop_queue", "callpop_skill", "callpop_flags", "callpop_pop_url",
		"cc_base_score", "callpop_info_url", "callpop_call_id", "export_vars", "cc_export_vars",
		"effective_caller_id_name", "sip_h_Call-Info", "callpop_note", "callpop_segment"}
	f.Fuzz(func(t *testing.T, v, callID string) {
		d := call.Decision{
			Match: call.MatchHit, E164: "+49201234567" + v, Source: call.SourceCLI, Priority: 5, BaseScore: 300,
			Customer: &call.Customer{ID: v, Name: v, Tier: v, Language: v},
			Queue:    v, Skill: v, Flags: []string{v, "vip"}, PopURL: "https://crm.example/p?q=" + v,
			CallerName: v, InfoURL: "https://crm.example/i/" + v, Extra: map[string]string{"note": v, "segment": v},
		}
		body := fsvars.Multiset(d, callID)
		before := map[string]string{"export_vars": "a,b"}
		ch := applyMultiset(t, body, before)
		sent := strings.Split(strings.TrimPrefix(body, fsvars.MultisetPrefix), "|")
		for _, p := range sent {
			name, val, ok := strings.Cut(p, "=")
			if !ok || !slices.Contains(fixed, name) || val == "" {
				t.Fatalf("part %q of %q", p, body)
			}
			if name == "export_vars" || name == "cc_export_vars" {
				if !strings.HasPrefix(val, "${"+name+"},callpop_call_id") {
					t.Fatalf("%s=%q", name, val)
				}
				continue
			}
			if ch[name] != val {
				t.Fatalf("%s sent %q, stored %q (answer %q)", name, val, ch[name], body)
			}
			if strings.ContainsAny(val, "|${}\\'\"`") || val != strings.TrimSpace(val) || !utf8.ValidString(val) ||
				strings.IndexFunc(val, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 ||
				strings.HasPrefix(val, "^") || strings.HasPrefix(strings.ToUpper(val), "ARRAY::") {
				t.Fatalf("%s = %q", name, val)
			}
		}
		if ch["callpop_match"] != "hit" || ch["cc_base_score"] != "300" || ch["callpop_priority"] != "5" {
			t.Fatalf("callpop's own variables changed: %v", ch)
		}
		if uuidLike.MatchString(callID) && ch["callpop_call_id"] != callID {
			t.Fatalf("call id %q → %q", callID, ch["callpop_call_id"])
		}
		if (ch["callpop_call_id"] != "") != strings.HasPrefix(ch["export_vars"], "a,b,callpop_call_id") {
			t.Fatalf("call id %q, export_vars %q", ch["callpop_call_id"], ch["export_vars"])
		}
	})
}
