package router

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

// /v1/route, /v1/lookup and FastAGI decide by received + call.budget less
// router.answer_reserve, so the answer is back at the PBX within the budget.
// Checked on the deadline the decider is given, bracketed by the real clock
// around each request: no timing assert.
func TestAnswerReserve(t *testing.T) {
	cfg := testConfig()
	cfg.AnswerReserve = 300 * time.Millisecond
	te := newTestEnv(t, cfg, nil, testBudget)
	var mu sync.Mutex
	var seen []time.Time
	te.router.SetEndpointDecider(call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		d, ok := ctx.Deadline()
		if !ok {
			t.Error("the endpoint decided without a deadline")
		}
		mu.Lock()
		seen = append(seen, d)
		mu.Unlock()
		return te.router.Decide(ctx, c)
	}))
	last := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			t.Fatal("the endpoint decider was not asked")
		}
		return seen[len(seen)-1]
	}
	within := func(way string, before, after time.Time) {
		t.Helper()
		lo, hi := before.Add(testBudget-cfg.AnswerReserve), after.Add(testBudget-cfg.AnswerReserve)
		if d := last(); d.Before(lo) || d.After(hi) {
			t.Errorf("%s: decided by %v after the request started, want budget %v less the reserve %v",
				way, d.Sub(before), testBudget, cfg.AnswerReserve)
		}
	}

	srv := startHTTP(t, te.router)
	for _, path := range []string{"/v1/route?number=%2B31201234567&field=match", "/v1/lookup?number=%2B31201234567"} {
		before := time.Now()
		if code, body, _ := get(t, srv, path); code != 200 {
			t.Fatalf("%s: %d %q", path, code, body)
		}
		within(path, before, time.Now())
	}

	addr := startAGI(t, te.router)
	before := time.Now()
	s := (&asterisk{env: defaultAGIEnv("route", "0201234567", "Jan de Vries", "0800123456"), ani: "0201234567"}).run(t, addr)
	if n := len(s.vars); s.closedBy != "server" || n == 0 || s.vars[n-1] != (call.Var{Name: "CALLPOP_MATCH", Value: "hit"}) {
		t.Fatalf("FastAGI: closed by %q, vars %q", s.closedBy, s.vars)
	}
	within("FastAGI", before, time.Now())

	// A reserve of half the budget or more leaves the decision too little:
	// refused at check-config (cmd/callpop), negative here.
	bad := testConfig()
	bad.AnswerReserve = -time.Millisecond
	if err := bad.Validate(); err == nil {
		t.Error("a negative router.answer_reserve was accepted")
	}
}
