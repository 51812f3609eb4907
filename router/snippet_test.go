package router

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/internal/apiauth"
)

// The dialplan snippets of docs/dialplan-routing.md are run as written: their
// URLs and headers go to the real HTTP handler behind the API-key check (as
// callpop run wires it), and a small model of each dialplan (only the
// applications and functions the snippets use; anything else fails the
// test) follows the answer to the queue the call reaches.
func TestDocsDialplanSnippets(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	const routeKey, lookupKey = "dialplan-0123456789abcdef0123", "ops-0123456789abcdef01234567"
	keys := []apiauth.KeyConfig{
		{Name: "dialplan", Scopes: []string{apiauth.ScopeRoute}, KeyFile: writeKey(t, routeKey)},
		{Name: "ops", Scopes: []string{apiauth.ScopeLookup}, KeyFile: writeKey(t, lookupKey)},
	}
	rec := &requestLog{}
	guarded := func(rl apiauth.RateLimit) string {
		auth, err := apiauth.New(apiauth.Config{Keys: keys, RateLimit: rl}, apiauth.Options{})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("/v1/route", auth.Require(apiauth.ScopeRoute, te.router.Handler()))
		srv := httptest.NewServer(rec.wrap(mux))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	base := guarded(apiauth.DefaultConfig().RateLimit)
	// One request a key, then 429 for as long as the test runs.
	spent := guarded(apiauth.RateLimit{PerSecond: 1e-9, Burst: 1})
	if code, _ := rec.send(t, spent, http.MethodGet, "http://127.0.0.1:8080/v1/route?number=1", "", []string{"Authorization: Bearer " + routeKey}); code != 200 {
		t.Fatalf("spending the only request: %d", code)
	}
	down := closingListener(t) // accepts and hangs up at once: callpop gone

	asterisk := docsBlock(t, "## Asterisk: HTTP with `CURL()`", "ini")
	freeswitch := docsBlock(t, "## FreeSWITCH: mod_curl", "xml")

	const vip, unknown = "+31201234567", "+31201111111"
	type env = map[string]string // the PBX's environment
	keyed := env{"CALLPOP_API_KEY": routeKey}
	tests := []struct {
		name     string
		cli, ani string
		withheld bool
		env      env
		base     string // where http://127.0.0.1:8080 points
		status   int    // what callpop answers; 0: no answer
		astQueue string // Asterisk: Queue() and QUEUE_PRIO
		astPrio  string
		fsQueue  string // FreeSWITCH: callcenter and cc_base_score
		fsScore  string
	}{
		{"known caller", vip, vip, false, keyed, base, 200, "vip", "10", "vip@default", "600"},
		{"withheld, known by ANI", "anonymous", vip, true, keyed, base, 200, "vip", "10", "vip@default", "600"},
		{"unknown caller", unknown, unknown, false, keyed, base, 200, "general", "1", "general@default", "60"},
		// A quote (url_encode keeps it) must not move mod_curl's arguments.
		{"a caller ID with a quote", "'" + unknown, unknown, false, keyed, base, 200, "general", "1", "general@default", "60"},
		// The fallbacks: QUEUE_PRIO and cc_base_score stay unset.
		{"number over 256 bytes", strings.Repeat("1", 300), "", false, keyed, base, 400, "general", "", "support@default", ""},
		{"no key in the PBX's environment", vip, vip, false, env{}, base, 401, "general", "", "support@default", ""},
		{"a wrong key", vip, vip, false, env{"CALLPOP_API_KEY": "not-the-key-0123456789abcdef"}, base, 401, "general", "", "support@default", ""},
		{"a key without the route scope", vip, vip, false, env{"CALLPOP_API_KEY": lookupKey}, base, 403, "general", "", "support@default", ""},
		{"over the rate limit", vip, vip, false, keyed, spent, 429, "general", "", "support@default", ""},
		{"callpop down", vip, vip, false, keyed, "http://" + down, 0, "general", "", "support@default", ""},
	}
	for _, tt := range tests {
		t.Run("asterisk/"+tt.name, func(t *testing.T) {
			pres := "allowed_not_screened"
			if tt.withheld {
				pres = "prohib_not_screened"
			}
			ch := &astChannel{t: t, base: tt.base, rec: rec, env: tt.env, opts: map[string]string{}, vars: map[string]string{
				"CALLERID(num)": tt.cli, "CALLERID(ani)": tt.ani, "CALLERID(num-pres)": pres, "EXTEN": "0800123456"}}
			rec.reset()
			queue := ch.run(asterisk)
			defer rec.check(t, tt.status)
			if queue != tt.astQueue || ch.vars["QUEUE_PRIO"] != tt.astPrio {
				t.Errorf("Queue(%s) with QUEUE_PRIO=%q, want Queue(%s) with QUEUE_PRIO=%q", queue, ch.vars["QUEUE_PRIO"], tt.astQueue, tt.astPrio)
			}
		})
		t.Run("freeswitch/"+tt.name, func(t *testing.T) {
			ch := &fsChannel{t: t, base: tt.base, rec: rec, env: tt.env, vars: map[string]string{
				"caller_id_number": tt.cli, "ani": tt.ani, "privacy_hide_number": strconv.FormatBool(tt.withheld),
				"destination_number": "0800123456"}}
			rec.reset()
			queue := ch.run(freeswitch)
			defer rec.check(t, tt.status)
			if queue != tt.fsQueue || ch.vars["cc_base_score"] != tt.fsScore {
				t.Errorf("callcenter %s with cc_base_score=%q, want callcenter %s with cc_base_score=%q", queue, ch.vars["cc_base_score"], tt.fsQueue, tt.fsScore)
			}
		})
	}
}

// writeKey stores an API key in a file, as a mounted secret.
func writeKey(t *testing.T, key string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(f, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// A list of fields is one decision, answered as name=value pairs in the order asked.
func TestRouteFieldList(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	srv := startHTTP(t, te.router)
	tests := []struct {
		query string
		want  string
	}{
		{"number=0201234567&field=queue,cc_base_score", "queue=vip&cc_base_score=600"},
		{"number=0201234567&field=match,%20queue_prio,name,pop_url,CALLPOP_FLAGS",
			"match=hit&queue_prio=10&name=Jan%20de%20Vries&pop_url=https%3A%2F%2Fcrm.example%2Fc%2F1001&CALLPOP_FLAGS=vip"},
		{"number=&ani=0201234567&privacy=1&field=source,e164", "source=ani&e164=%2B31201234567"},
		{"number=0209999999&field=name,customer_id", "name=Evil%20SHELL%28id%29%20HANGUP&customer_id=C-6666%20EXEC%20System%20rm"},
		{"number=anonymous&field=match,queue,queue", "match=anonymous&queue=general&queue=general"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			code, body, h := get(t, srv, "/v1/route?"+tt.query)
			if code != 200 || h.Get("Content-Type") != "application/x-www-form-urlencoded" || h.Get("X-Callpop-Match") == "" || body != tt.want {
				t.Fatalf("%d %s %q, want %q", code, h.Get("Content-Type"), body, tt.want)
			}
		})
	}
	for _, tt := range []struct{ field, want string }{
		{"queue,bogus", `field: "bogus" is not one of`},
		{"queue,", `field: "" is not one of`},
		{",queue", `field: "" is not one of`},
	} {
		code, body, _ := get(t, srv, "/v1/route?number=0201234567&field="+url.QueryEscape(tt.field))
		if code != 400 || !strings.Contains(body, tt.want) {
			t.Errorf("field=%s: %d %q, want 400 with %q", tt.field, code, body, tt.want)
		}
	}
}

// docsBlock returns the first ```lang block after heading in docs/dialplan-routing.md.
func docsBlock(t *testing.T, heading, lang string) string {
	t.Helper()
	raw, err := os.ReadFile("../docs/dialplan-routing.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/dialplan-routing.md: no heading %q", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, ok := strings.Cut(section, "```"+lang+"\n")
	if !ok {
		t.Fatalf("docs/dialplan-routing.md %q: no %s block", heading, lang)
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// requestLog records what the dialplans asked callpop and what it answered.
type requestLog struct {
	mu       sync.Mutex
	queries  []url.Values
	statuses []int
	tried    int // requests a dialplan sent, answered or not
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		q, _ := url.ParseQuery(r.URL.RawQuery)
		l.mu.Lock()
		l.queries = append(l.queries, q)
		l.statuses = append(l.statuses, sw.code)
		l.mu.Unlock()
	})
}

func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queries, l.statuses, l.tried = nil, nil, 0
}

// check: the dialplan sent one request, carrying every caller parameter, and
// callpop answered status (0: the request found no callpop).
func (l *requestLog) check(t *testing.T, status int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tried != 1 {
		t.Fatalf("the dialplan sent %d requests, want one", l.tried)
	}
	if status == 0 {
		if len(l.statuses) != 0 {
			t.Fatalf("callpop answered %v, want no answer", l.statuses)
		}
		return
	}
	if len(l.statuses) != 1 || l.statuses[0] != status {
		t.Fatalf("callpop answered %v, want [%d]", l.statuses, status)
	}
	for _, p := range []string{"number", "ani", "dnis", "privacy"} {
		if !l.queries[0].Has(p) {
			t.Errorf("request %v lacks %s", l.queries[0], p)
		}
	}
}

// send is the HTTP request of CURL() or mod_curl: the snippets' address
// replaced by base, headers ("Name: value") sent as libcurl sends them.
// status 0 means no answer.
func (l *requestLog) send(t *testing.T, base, method, rawURL, body string, headers []string) (int, string) {
	t.Helper()
	const docsAddr = "http://127.0.0.1:8080/"
	if !strings.HasPrefix(rawURL, docsAddr) {
		t.Fatalf("snippet asks %q, not callpop's default listener %s", rawURL, docsAddr)
	}
	l.mu.Lock()
	l.tried++
	l.mu.Unlock()
	req, err := http.NewRequest(method, base+"/"+strings.TrimPrefix(rawURL, docsAddr), strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", rawURL, err) // libcurl would refuse it too
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			t.Fatalf("header %q: no colon", h)
		}
		req.Header.Add(name, strings.TrimLeft(value, " "))
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// closingListener accepts connections and closes them at once.
func closingListener(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// expand substitutes ${…} (and $[…] when expr is set) left to right, inner
// ones first, results not re-read: as Asterisk and FreeSWITCH do.
func expand(t *testing.T, s string, eval func(string) string, expr func(string) string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) || (s[i+1] != '{' && (s[i+1] != '[' || expr == nil)) {
			b.WriteByte(s[i])
			continue
		}
		open, end := s[i+1], byte('}')
		if open == '[' {
			end = ']'
		}
		depth, j := 0, i+1
		for ; j < len(s); j++ {
			if s[j] == open {
				depth++
			} else if s[j] == end {
				if depth--; depth == 0 {
					break
				}
			}
		}
		if j == len(s) {
			t.Fatalf("unbalanced %q", s[i:])
		}
		inner := expand(t, s[i+2:j], eval, expr)
		if open == '{' {
			b.WriteString(eval(inner))
		} else {
			b.WriteString(expr(inner))
		}
		i = j
	}
	return b.String()
}

var callForm = regexp.MustCompile(`^([A-Za-z_]+)\((.*)\)$`)

// astChannel runs an extensions.conf snippet (one extension) on one channel.
type astChannel struct {
	t    *testing.T
	base string
	rec  *requestLog
	env  map[string]string // Asterisk's environment, for ENV()
	vars map[string]string // channel and global variables; CALLERID(x) and EXTEN included
	opts map[string]string // CURLOPT
	// CURLOPT(httpheader): each Set adds one, and every later CURL() sends them all.
	headers []string
}

// run returns the queue Queue() was called with, or "" at Hangup().
func (c *astChannel) run(conf string) string {
	type prio struct{ label, app, data string }
	var prios []prio
	context := ""
	for line := range strings.SplitSeq(conf, "\n") {
		line, _, _ = strings.Cut(line, ";") // a comment; the snippets escape no ';'
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			context = line[1 : len(line)-1]
			continue
		}
		if context == "globals" && line != "" {
			// Expanded once, without a channel, when the dialplan loads.
			name, value, ok := strings.Cut(line, "=")
			if !ok {
				c.t.Fatalf("[globals] %q: no =", line)
			}
			c.vars[strings.TrimSpace(name)] = expand(c.t, strings.TrimLeft(strings.TrimPrefix(value, ">"), " "), c.evalGlobal, nil)
			continue
		}
		kind, rest, ok := strings.Cut(line, "=>")
		if !ok {
			continue // blank
		}
		rest = strings.TrimSpace(rest)
		if strings.TrimSpace(kind) == "exten" {
			_, rest, _ = strings.Cut(rest, ",") // the pattern
		}
		p, app, _ := strings.Cut(rest, ",")
		var label string
		if m := callForm.FindStringSubmatch(p); m != nil {
			label = m[2]
		}
		m := callForm.FindStringSubmatch(app)
		if m == nil {
			c.t.Fatalf("cannot read %q", line)
		}
		prios = append(prios, prio{label, m[1], m[2]})
	}
	for pc := 0; pc < len(prios); pc++ {
		p := prios[pc]
		data := expand(c.t, p.data, c.eval, c.expr)
		switch p.app {
		case "NoOp":
		case "Set":
			name, value, ok := strings.Cut(data, "=")
			if !ok {
				c.t.Fatalf("Set(%s): no =", data)
			}
			switch m := callForm.FindStringSubmatch(name); {
			case m != nil && m[1] == "CURLOPT" && m[2] == "httpheader":
				c.headers = append(c.headers, value)
			case m != nil && m[1] == "CURLOPT":
				c.opts[m[2]] = value
			default:
				c.vars[name] = value
			}
		case "GotoIf":
			cond, dest, _ := strings.Cut(data, "?")
			yes, no, _ := strings.Cut(dest, ":")
			target := no
			if cond = strings.TrimSpace(cond); cond != "" && cond != "0" {
				target = yes
			}
			if target != "" {
				pc = slices.IndexFunc(prios, func(p prio) bool { return p.label == target }) - 1
				if pc < -1 {
					c.t.Fatalf("GotoIf: no label %q", target)
				}
			}
		case "Queue":
			queue, _, _ := strings.Cut(data, ",")
			return queue
		case "Hangup":
			return ""
		default:
			c.t.Fatalf("application %s(%s) is not modelled", p.app, data)
		}
	}
	c.t.Fatal("the dialplan ran off its end")
	return ""
}

// eval reads a variable or calls a function.
func (c *astChannel) eval(s string) string {
	m := callForm.FindStringSubmatch(s)
	if m == nil || m[1] == "CALLERID" {
		v, ok := c.vars[s]
		if !ok {
			c.t.Fatalf("${%s} is not set on the channel", s)
		}
		return v
	}
	switch fn, args := m[1], m[2]; fn {
	case "URIENCODE":
		return asteriskURIEncode(args)
	case "IF":
		cond, branches, _ := strings.Cut(args, "?")
		yes, no, _ := strings.Cut(branches, ":")
		if cond = strings.TrimSpace(cond); cond != "" && cond != "0" {
			return yes
		}
		return no
	case "CURL":
		// Function arguments split at commas: a second one is POST data.
		u, post, isPost := strings.Cut(args, ",")
		method := http.MethodGet
		if isPost {
			method = http.MethodPost
		}
		status, body := c.rec.send(c.t, c.base, method, u, post, c.headers)
		for code := range strings.SplitSeq(c.opts["failurecodes"], ",") {
			if code == strconv.Itoa(status) {
				return "" // the function fails: it expands to nothing
			}
		}
		return strings.TrimRight(body, " \t\r\n")
	case "JSON_DECODE":
		name, key, _ := strings.Cut(args, ",")
		raw, ok := c.vars[name]
		if !ok {
			c.t.Fatalf("JSON_DECODE: ${%s} is not set", name)
		}
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return "" // not JSON: func_json logs and returns nothing
		}
		for k := range strings.SplitSeq(key, ".") {
			obj, _ := v.(map[string]any)
			v = obj[k]
		}
		switch v := v.(type) {
		case string:
			return v
		case json.Number:
			return v.String()
		case nil:
			return ""
		}
		c.t.Fatalf("JSON_DECODE(%s): a %T is not modelled", args, v)
	}
	c.t.Fatalf("function %s is not modelled", s)
	return ""
}

// evalGlobal expands a [globals] value: only ENV() is modelled.
func (c *astChannel) evalGlobal(s string) string {
	m := callForm.FindStringSubmatch(s)
	if m == nil || m[1] != "ENV" {
		c.t.Fatalf("[globals]: ${%s} is not modelled", s)
	}
	return c.env[m[2]] // unset: empty
}

var astCompare = regexp.MustCompile(`^\s*"([^"]*)"\s*(=|!=)\s*"([^"]*)"\s*$`)

// expr evaluates $[…]: string comparisons only.
func (c *astChannel) expr(s string) string {
	m := astCompare.FindStringSubmatch(s)
	if m == nil {
		c.t.Fatalf("expression $[%s] is not modelled", s)
	}
	if (m[1] == m[3]) == (m[2] == "=") {
		return "1"
	}
	return "0"
}

// asteriskURIEncode is URIENCODE(): all but letters, digits and -_.!~*'() as %XX.
func asteriskURIEncode(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// fsChannel runs an XML dialplan snippet on one channel.
type fsChannel struct {
	t       *testing.T
	base    string
	rec     *requestLog
	env     map[string]string        // FreeSWITCH's environment, for env-set
	vars    map[string]string        // channel and global variables
	curlAPI func(args string) string // the curl API, when a test answers it itself; nil: c.curl
}

type fsAction struct {
	App    string `xml:"application,attr"`
	Data   string `xml:"data,attr"`
	Inline bool   `xml:"inline,attr"`
}

// run hunts the extensions (inline actions run during the hunt), then runs
// the actions found; it returns callcenter's argument, or "".
func (c *fsChannel) run(doc string) string {
	var dp struct {
		Pre []struct {
			Cmd  string `xml:"cmd,attr"`
			Data string `xml:"data,attr"`
		} `xml:"X-PRE-PROCESS"`
		Extensions []struct {
			Name       string `xml:"name,attr"`
			Continue   bool   `xml:"continue,attr"`
			Conditions []struct {
				Field       string     `xml:"field,attr"`
				Expression  string     `xml:"expression,attr"`
				Actions     []fsAction `xml:"action"`
				AntiActions []fsAction `xml:"anti-action"`
			} `xml:"condition"`
		} `xml:"extension"`
	}
	if err := xml.NewDecoder(bytes.NewReader([]byte("<x>" + doc + "</x>"))).Decode(&dp); err != nil {
		c.t.Fatalf("dialplan XML: %v", err)
	}
	for _, p := range dp.Pre {
		name, ref, _ := strings.Cut(p.Data, "=")
		env, ok := strings.CutPrefix(ref, "$")
		if p.Cmd != "env-set" || !ok {
			c.t.Fatalf("X-PRE-PROCESS %s %q is not modelled", p.Cmd, p.Data)
		}
		c.vars[name] = c.env[env] // unset: the global stays unset, ${name} expands to nothing
	}
	var queued []fsAction
	for _, ext := range dp.Extensions {
		found := false
		for _, cond := range ext.Conditions {
			value, ok := c.vars[cond.Field]
			if strings.Contains(cond.Field, "$") {
				value, ok = c.expand(cond.Field), true
			}
			if !ok {
				c.t.Fatalf("extension %s: no field %q", ext.Name, cond.Field)
			}
			m := regexp.MustCompile(cond.Expression).FindStringSubmatch(value)
			actions := cond.Actions
			if m == nil {
				actions = cond.AntiActions
			}
			for _, a := range actions {
				for i := len(m) - 1; i > 0; i-- {
					a.Data = strings.ReplaceAll(a.Data, "$"+strconv.Itoa(i), m[i])
				}
				if a.Inline {
					if a.App != "set" && a.App != "curl" {
						c.t.Fatalf("%s cannot run inline", a.App)
					}
					c.exec(a)
				} else {
					queued = append(queued, a)
				}
				found = true
			}
			if m == nil {
				break
			}
		}
		if found && !ext.Continue {
			break
		}
	}
	for _, a := range queued {
		if q := c.exec(a); q != "" {
			return q
		}
	}
	return ""
}

func (c *fsChannel) exec(a fsAction) string {
	data := c.expand(a.Data)
	switch a.App {
	case "set":
		name, value, ok := strings.Cut(data, "=")
		if !ok {
			c.t.Fatalf("set %s: no =", data)
		}
		c.vars[name] = value
	case "curl":
		status, body := c.curl(data)
		c.vars["curl_response_code"], c.vars["curl_response_data"] = strconv.Itoa(status), body
	case "multiset":
		c.vars = applyMultiset(c.t, data, c.vars)
	case "callcenter":
		return data
	default:
		c.t.Fatalf("application %s is not modelled", a.App)
	}
	return ""
}

func (c *fsChannel) expand(s string) string {
	return expand(c.t, s, func(s string) string {
		m := callForm.FindStringSubmatch(s)
		if m == nil {
			v, ok := c.vars[s]
			if !ok {
				c.t.Fatalf("${%s} is not set on the channel", s)
			}
			return v
		}
		switch m[1] {
		case "url_encode":
			return freeswitchURLEncode(m[2])
		case "curl": // the API: the body, whatever the status
			if c.curlAPI != nil {
				return c.curlAPI(m[2])
			}
			_, body := c.curl(m[2])
			return body
		}
		c.t.Fatalf("API %s is not modelled", m[1])
		return ""
	}, nil)
}

// curl is mod_curl's request: "url [append_headers 'Name: value']… [get]",
// split as switch_separate_string splits it.
func (c *fsChannel) curl(data string) (int, string) {
	args := fsSeparate(data, ' ', 64) // mod_curl's argv
	var headers []string
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "append_headers":
			if i++; i < len(args) {
				headers = append(headers, args[i])
			}
		case "get", "secure", "insecure":
		default:
			c.t.Fatalf("curl option %q is not modelled", args[i])
		}
	}
	return c.rec.send(c.t, c.base, http.MethodGet, args[0], "", headers)
}

// freeswitchURLEncode is url_encode: controls, non-ASCII and
// SWITCH_URL_UNSAFE as %XX, an existing %XX kept.
func freeswitchURLEncode(s string) string {
	const unsafe = "\r\n #%&+:;<=>?@[\\]^`{|}\""
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		escaped := c == '%' && i+2 < len(s) && strings.IndexByte("0123456789ABCDEF", s[i+1]) >= 0 &&
			strings.IndexByte("0123456789ABCDEF", s[i+2]) >= 0
		if !escaped && (c < ' ' || c > '~' || strings.IndexByte(unsafe, c) >= 0) {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
