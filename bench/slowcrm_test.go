package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
)

// --crm-delay against the ESL simulator running the documented bench
// context: the CRM stub and the bare servers answer late, callpop's ways
// answer "timeout" for a number the cache does not hold yet, and the report
// carries the step's max, the calls over the budget, the match values seen
// and what the next call after a timeout got. Times are checked only as
// lower bounds (a delay honoured), which a busy machine cannot break.
func TestRealFreeSWITCHSlowCRM(t *testing.T) {
	const pass = "bench-ClueCon"
	const delay = 700 * time.Millisecond // past the budget, within mod_cidlookup's 2 s
	sim, err := eslsim.NewInbound(eslsim.Options{Password: pass,
		Dialplan: docSnippet(t, "xml", "<include>\n  <context name=\"callpop-bench\">"), CIDLookupURL: cidlookupURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var progress bytes.Buffer
	ways := []string{WayMultiset, WayCIDLookup, WayHTTP}
	o := RealOptions{ESLAddress: sim.Addr(), ESLPassword: pass, Ways: ways, Rate: 20, Duration: 2 * time.Second,
		Budget: 300 * time.Millisecond, Population: 5, CRMDelay: delay, Progress: &progress}
	rep, err := RunReal(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if rep.Cache != "cold" || rep.CRMDelayMs != ms(delay) || rep.CRMTimeoutMs <= 0 {
		t.Errorf("report: cache %q, crm delay %.1f ms, crm timeout %.1f ms", rep.Cache, rep.CRMDelayMs, rep.CRMTimeoutMs)
	}
	if !strings.Contains(progress.String(), "cold cache") || strings.Contains(progress.String(), "cache warmed") {
		t.Errorf("progress: %s", progress.String())
	}
	if len(rep.Ways) != len(ways) {
		t.Fatalf("ways: %+v", rep.Ways)
	}
	for _, w := range rep.Ways {
		for who, s := range map[string]SideReport{"callpop": w.Callpop, "bare": w.Bare} {
			if s.Offered < 5 || s.Completed != s.Offered {
				t.Errorf("%s %s: offered %d, completed %d (notes %v)", w.Way, who, s.Offered, s.Completed, w.Notes)
			}
			if s.StepMax < s.StepP99 || s.OverBudget < 0 || s.OverBudget > s.Completed || s.AfterTimeout == nil {
				t.Errorf("%s %s: max %.1f p99 %.1f over budget %d of %d, after timeout %v", w.Way, who, s.StepMax, s.StepP99, s.OverBudget, s.Completed, s.AfterTimeout)
			}
			var n int64
			for _, c := range s.Matches {
				n += c
			}
			if n != s.Completed {
				t.Errorf("%s %s: matches %v count %d calls, %d completed", w.Way, who, s.Matches, n, s.Completed)
			}
			if a := s.AfterTimeout; a != nil && (a.Hits > a.Calls || a.Calls > s.Completed) {
				t.Errorf("%s %s: after timeout %+v", w.Way, who, *a)
			}
		}
		// The bare server stands for the slow CRM: every bare step waited for it.
		if w.Bare.StepP50 < ms(delay) || w.Bare.OverBudget != w.Bare.Completed {
			t.Errorf("%s bare: step p50 %.1f ms, %d of %d over the budget, want every step ≥ the %s delay", w.Way, w.Bare.StepP50, w.Bare.OverBudget, w.Bare.Completed, delay)
		}
		switch w.Way {
		case WayMultiset, WayHTTP:
			// Each way starts cold and the CRM answers past the budget: the first calls time
			// out. (http: the match of the answer the bench served, by the call's id.)
			if w.Callpop.Matches["timeout"] == 0 || w.Bare.Matches["hit"] != w.Bare.Completed {
				t.Errorf("%s matches: callpop %v, bare %v", w.Way, w.Callpop.Matches, w.Bare.Matches)
			}
		case WayCIDLookup:
			// callpop answers no name on a timeout: mod_cidlookup says UNKNOWN; the bare
			// server's name, or UNKNOWN if it came after curl-timeout on a busy machine.
			if w.Callpop.Matches["UNKNOWN"] == 0 || w.Bare.Matches["name"]+w.Bare.Matches["UNKNOWN"] != w.Bare.Completed {
				t.Errorf("cidlookup matches: callpop %v, bare %v", w.Callpop.Matches, w.Bare.Matches)
			}
		}
	}
	for _, want := range []string{"answers 700 ms late", "cold cache", "step max", "over the budget", "matches seen", "timeout", "next call after a timeout"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"crm_delay_ms"`, `"cache"`, `"step_max_ms"`, `"over_budget"`, `"over_budget_share"`, `"matches"`, `"after_timeout"`} {
		if !strings.Contains(js.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	if len(sim.Parked()) > 0 {
		t.Errorf("%d channels left parked", len(sim.Parked()))
	}
}

// The stub answers no earlier than its latency (a lower bound only).
func TestCRMStubDelay(t *testing.T) {
	const delay = 150 * time.Millisecond
	s, err := StartCRMStub(3, delay, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Now()
	resp, err := http.Get(s.URL + "/customers?phone=" + strings.ReplaceAll(CustomerNumber(1), "+", "%2B"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c stubCustomer
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || c.ID != "C1" {
		t.Fatalf("answer %+v, %v", c, err)
	}
	if took := time.Since(t0); took < delay {
		t.Errorf("answered after %s, before its %s delay", took, delay)
	}
}

func TestAfterTimeout(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	calls := []loggedCall{ // out of order, as calls complete
		{"a", at(3.5), "hit"},     // a's next call after its timeout and the wait: a hit
		{"a", at(0), "timeout"},   //
		{"a", at(1), "timeout"},   // within the wait: another timeout, the wait starts again
		{"a", at(5), "hit"},       // only the next call counts
		{"b", at(0.5), "UNKNOWN"}, // (cidlookup)
		{"b", at(4), "timeout"},   // counted, no hit; and the wait starts again
		{"c", at(0), "hit"},       // never timed out: not counted
		{"d", at(0), "timeout"},   // never called again
		{"e", at(0), "timeout"},   //
		{"e", at(2), "name"},      // cidlookup's name is a hit
	}
	got := afterTimeout(calls, 2*time.Second)
	if got.Calls != 3 || got.Hits != 2 {
		t.Fatalf("after timeout: %+v, want 3 calls, 2 hits", *got)
	}
	for v, want := range map[string]string{"": "(empty)", "hit": "hit", "timeout": "timeout", "unknown": "UNKNOWN", "Customer 7": "name", "UNAVAILABLE": "UNAVAILABLE"} {
		if got := matchKey(v, false); got != want {
			t.Errorf("matchKey(%q) = %q, want %q", v, got, want)
		}
	}
	if got := matchKey("acme", true); got != "name" {
		t.Errorf("a cidlookup name: %q", got)
	}
}
