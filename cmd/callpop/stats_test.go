package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/internal/apiauth"
	"github.com/callpop/callpop/popper"
	"github.com/callpop/callpop/stats"
)

// metricLine is one sample of /metrics in the text format.
var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$`)
var metricLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// scrape reads /metrics: family name → its samples' labels and values.
type scraped map[string][]struct {
	labels map[string]string
	value  float64
}

func scrape(t *testing.T, base string) scraped {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := scraped{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		labels := map[string]string{}
		for _, l := range metricLabel.FindAllStringSubmatch(m[2], -1) {
			labels[l[1]] = l[2]
		}
		out[m[1]] = append(out[m[1]], struct {
			labels map[string]string
			value  float64
		}{labels, v})
	}
	if resp.StatusCode != 200 || len(out) == 0 {
		t.Fatalf("/metrics: %d, %d families", resp.StatusCode, len(out))
	}
	return out
}

// sum adds the samples of name whose labels include every pair of want.
func (s scraped) sum(name string, want ...string) float64 {
	t := 0.0
	for _, smp := range s[name] {
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			if smp.labels[want[i]] != want[i+1] {
				ok = false
			}
		}
		if ok {
			t += smp.value
		}
	}
	return t
}

func getSnapshot(t *testing.T, hc *http.Client, base string) (stats.Snapshot, string) {
	t.Helper()
	resp, err := hc.Get(base + "/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/v1/stats: %d %s", resp.StatusCode, b)
	}
	var snap stats.Snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}
	return snap, string(b)
}

// The snapshot's figures are /metrics' counters: after calls of several
// kinds through the real pipeline (sample CRM, /v1/route), the totals equal
// the counters /metrics shows, and the hour window counts the calls made
// since the server started as the counters' difference does.
func TestStatsAgreeWithMetrics(t *testing.T) {
	srv := newTestServer(t, DefaultConfig())
	before := scrape(t, srv.URL)
	numbers := map[string]int{
		"+31201234567": 4, // Anna de Vries: hit
		"+14155550123": 2, // hit
		"+31209999999": 3, // nobody: miss
		"12":           2, // invalid
		"anonymous":    1,
	}
	for n, times := range numbers {
		for range times {
			resp, err := http.Get(srv.URL + "/v1/route?number=" + url.QueryEscape(n))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	snap, body := getSnapshot(t, http.DefaultClient, srv.URL)
	t.Logf("hour matches %+v, cache %v, crm %+v", snap.Hour.Matches, *snap.Hour.CacheHitRatio, snap.Hour.CRM)
	after := scrape(t, srv.URL)

	for _, m := range stats.Matches {
		want := after.sum("callpop_router_decisions_total", "match", m)
		if got := snap.Totals.Decisions[m]; got != want {
			t.Errorf("totals.decisions[%s] = %v, /metrics %v", m, got, want)
		}
		if got, want := snap.Hour.Matches[m].Count, want-before.sum("callpop_router_decisions_total", "match", m); got != want {
			t.Errorf("hour.matches[%s] = %v, /metrics grew by %v", m, got, want)
		}
	}
	if made := after.sum("callpop_router_decisions_total") - before.sum("callpop_router_decisions_total"); made != 12 || snap.Hour.Calls != made {
		t.Errorf("hour.calls %v, /metrics grew by %v, 12 calls made", snap.Hour.Calls, made)
	}
	if snap.Hour.Matches["hit"].Count != 6 || snap.Hour.Matches["miss"].Count != 3 {
		t.Errorf("hour matches %+v", snap.Hour.Matches)
	}
	if got, want := snap.Totals.CacheReads, after.sum("callpop_cache_requests_total", "tier", "local"); got != want || want == 0 {
		t.Errorf("cache reads %v, /metrics %v", got, want)
	}
	hits := after.sum("callpop_cache_requests_total", "tier", "local", "result", "hit") + after.sum("callpop_cache_requests_total", "tier", "local", "result", "stale") +
		after.sum("callpop_cache_requests_total", "tier", "redis", "result", "hit") + after.sum("callpop_cache_requests_total", "tier", "redis", "result", "stale")
	if snap.Totals.CacheHits != hits {
		t.Errorf("cache hits %v, /metrics %v", snap.Totals.CacheHits, hits)
	}
	if r := snap.Hour.CacheHitRatio; r == nil || *r <= 0 || *r >= 1 {
		t.Errorf("hour cache hit ratio %v (the repeated numbers hit the cache, the first ones did not)", r)
	}
	if got, want := snap.Totals.PopsSent, after.sum("callpop_popper_pops_total"); got != want {
		t.Errorf("pops %v, /metrics %v", got, want)
	}
	if len(snap.Hour.CRM) == 0 {
		t.Fatalf("no CRM latency: %s", body)
	}
	for _, l := range snap.Hour.CRM {
		grew := after.sum("callpop_crm_source_seconds_count", "source", l.Source) - before.sum("callpop_crm_source_seconds_count", "source", l.Source)
		if l.Requests != grew {
			t.Errorf("crm %s: %v requests, /metrics grew by %v", l.Source, l.Requests, grew)
		}
		if grew > 0 && (l.P50ms == nil || l.P99ms == nil || *l.P99ms < *l.P50ms) {
			t.Errorf("crm %s quantiles %+v", l.Source, l)
		}
	}
	if snap.PBX.Kind != "none" || snap.AgentsConnected != int(after.sum("callpop_popper_streams")) {
		t.Errorf("pbx %+v agents %d", snap.PBX, snap.AgentsConnected)
	}
	if len(snap.Calls) != 12 {
		t.Errorf("%d calls listed", len(snap.Calls))
	}
	for _, n := range []string{"31201234567", "14155550123", "31209999999"} {
		if strings.Contains(body, n) {
			t.Errorf("the whole number %s in /v1/stats", n)
		}
	}
	for _, c := range snap.Calls {
		if c.Match == "hit" && (c.Number == "" || !strings.Contains(c.Number, "***")) {
			t.Errorf("row %+v", c)
		}
	}
}

// Who may read the stats: an API key with the scope stats, a supervisor's
// panel token or session cookie; not a key without the scope, not another
// agent, not nobody.
func TestStatsAuth(t *testing.T) {
	const statsKey, metricsKey = "stats-key-0123456789abcdef", "metrics-key-0123456789abcdef"
	t.Setenv(apiauth.EnvName("wall"), statsKey)
	t.Setenv(apiauth.EnvName("prom"), metricsKey)
	cfg := DefaultConfig()
	cfg.API.Keys = []apiauth.KeyConfig{{Name: "wall", Scopes: []string{apiauth.ScopeStats}}, {Name: "prom", Scopes: []string{apiauth.ScopeMetrics}}}
	cfg.Popper.TokenSecret = "stats-test-secret-0123456789"
	cfg.Popper.Supervisors = []string{"boss"}
	srv := newTestServer(t, cfg)
	tok := func(agent string) string {
		s, err := popper.IssueToken([]byte(cfg.Popper.TokenSecret), agent, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// the panel's sign-in sets the session cookie, as a browser gets it
	signedIn := func(agent string) *http.Client {
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
		resp, err := hc.Get(srv.URL + "/agent?token=" + tok(agent))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		u, _ := url.Parse(srv.URL)
		if len(jar.Cookies(u)) == 0 {
			t.Fatalf("no session cookie for %s", agent)
		}
		return hc
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	for _, tc := range []struct {
		name   string
		client *http.Client
		bearer string
		want   int
	}{
		{"no key", plain, "", 401},
		{"unknown key", plain, "nope-0123456789", 401},
		{"key without stats", plain, metricsKey, 403},
		{"key with stats", plain, statsKey, 200},
		{"supervisor token", plain, tok("boss"), 200},
		{"supervisor cookie", signedIn("boss"), "", 200},
		{"agent token", plain, tok("alice"), 403},
		{"agent cookie", signedIn("alice"), "", 403},
	} {
		for _, path := range []string{"/v1/stats", "/v1/stats/stream"} {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			if tc.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.name, path, err)
			}
			if resp.StatusCode != tc.want {
				b, _ := io.ReadAll(resp.Body)
				t.Errorf("%s %s: %d %s, want %d", tc.name, path, resp.StatusCode, b, tc.want)
			} else if tc.want == 200 {
				// the body is a snapshot: the JSON, or the stream's first event
				line, _ := bufio.NewReader(resp.Body).ReadString('}')
				if !strings.Contains(line, `"at"`) {
					t.Errorf("%s %s: %q", tc.name, path, line)
				}
			}
			resp.Body.Close()
		}
	}
	// the page holds no data: served to all, with its CSP; no CDN
	resp, err := plain.Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "/stats/app.js") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("/stats: %d %s", resp.StatusCode, page)
	}
	for _, asset := range []string{"/stats/app.js", "/stats/style.css"} {
		resp, err := plain.Get(srv.URL + asset)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) == 0 || strings.Contains(string(b), "https://") {
			t.Errorf("%s: %d, %d bytes", asset, resp.StatusCode, len(b))
		}
	}
}
