package esl

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/call"
)

// A socket session that ends before FreeSWITCH's channel thread has parked
// (a fast decision on a busy PBX) must still let the dialplan go on: without
// `resume`, the real FreeSWITCH 1.10.12 left such calls in the socket app for
// good. The simulator's channel thread here never parks in time.
func TestOutboundFastExitNeverStuck(t *testing.T) {
	a := startAdapter(t, outboundConfig(), adapters.Deps{Decider: numbersDecider(t, nil), Budget: 2 * time.Second})
	sim := eslsim.NewOutbound(waitAddr(t, a), eslsim.Options{ParkDelay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, errs := sim.Load(ctx, 20, 200, func(int) eslsim.Caller { return eslsim.Caller{Number: "0201234567"} })
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
			continue
		}
		if res[i].ReleasedBy != "exit" || res[i].Vars["callpop_match"] == "" {
			t.Errorf("call %d: released by %q, callpop_match %q", i, res[i].ReleasedBy, res[i].Vars["callpop_match"])
		}
	}
	if st := sim.Stats(); st.Stuck != 0 {
		t.Errorf("%d calls stuck in the socket app", st.Stuck)
	}
}

// An overloaded adapter (max_calls reached) turns a call away without a
// connect; the dialplan must still go on at once.
func TestOutboundOverloadNeverStuck(t *testing.T) {
	cfg := outboundConfig()
	cfg.MaxCalls = 1
	a := startAdapter(t, cfg, adapters.Deps{Decider: numbersDecider(t, nil), Budget: 5 * time.Second})
	addr := waitAddr(t, a)
	// a socket app that never answers connect holds the only slot
	hold, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	waitFor(t, 5*time.Second, "the silent socket to hold the only slot", func() bool { return len(a.slots) == 1 })
	sim := eslsim.NewOutbound(addr, eslsim.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := sim.Call(ctx, eslsim.Caller{Number: "0201234567"})
	if err != nil || res.ReleasedBy != "close" {
		t.Errorf("overloaded call: released by %q, err %v", res.ReleasedBy, err)
	}
	if st := sim.Stats(); st.Stuck != 0 {
		t.Errorf("%d calls stuck in the socket app", st.Stuck)
	}
}

// TestOutboundMaxCallsCountsWaitingCalls: a call waiting for its decision
// (handed off, no goroutine of its own) still holds its max_calls slot, so
// a call beyond max_calls is let go at once instead of piling up; the slot
// comes back when the call ends.
func TestOutboundMaxCallsCountsWaitingCalls(t *testing.T) {
	cfg := outboundConfig()
	cfg.MaxCalls = 2
	dec := &asyncDecider{delay: -1} // never answers: the calls wait for their deadline
	a := startAdapter(t, cfg, adapters.Deps{Decider: dec, Budget: 3 * time.Second})
	addr := waitAddr(t, a)
	sim := eslsim.NewOutbound(addr, eslsim.Options{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := sim.Call(ctx, eslsim.Caller{Number: "0201234567"}); err != nil {
				t.Errorf("waiting call: %v", err)
			}
		})
	}
	waitFor(t, 5*time.Second, "two calls waiting for their decision", func() bool {
		dec.mu.Lock()
		defer dec.mu.Unlock()
		return dec.n == 2
	})
	if n := len(a.slots); n != 2 {
		t.Errorf("slots held by the two waiting calls: %d, want 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := sim.Call(ctx, eslsim.Caller{Number: "0201234567"})
	if err != nil || res.ReleasedBy != "close" {
		t.Errorf("call beyond max_calls: released by %q, err %v; want let go at once", res.ReleasedBy, err)
	}
	dec.mu.Lock()
	asked := dec.n
	dec.mu.Unlock()
	if asked != 2 {
		t.Errorf("decisions asked: %d, want 2 (the third call was over max_calls)", asked)
	}
	wg.Wait()
	waitFor(t, 5*time.Second, "the slots back once the calls ended", func() bool { return len(a.slots) == 0 })
	if st := sim.Stats(); st.Stuck != 0 {
		t.Errorf("%d calls stuck in the socket app", st.Stuck)
	}
}

// TestOutboundManyRuleVariables: uuid_setvar_multi takes 64 pairs
// (mod_commands.c argv[64]; the rest of the line stays in the 64th value).
// Rules setting 80 variables must not push callpop's own out or corrupt
// them: the last extra ones are left out and counted.
func TestOutboundManyRuleVariables(t *testing.T) {
	extra := map[string]string{}
	for i := range 80 {
		extra[fmt.Sprintf("X%02d", i)] = "v"
	}
	dec := call.DeciderFunc(func(context.Context, call.Call) call.Decision {
		return call.Decision{CallID: "cp-1", Match: call.MatchHit, E164: "+31201234567", Priority: 7, BaseScore: 420, Extra: extra}
	})
	before := testutil.ToFloat64(testM.varsDropped)
	a := startAdapter(t, outboundConfig(), adapters.Deps{Decider: dec, Budget: 2 * time.Second})
	sim := eslsim.NewOutbound(waitAddr(t, a), eslsim.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := sim.Call(ctx, eslsim.Caller{Number: "0201234567", Vars: map[string]string{"export_vars": "a,b"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"callpop_match": "hit", "cc_base_score": "420", "callpop_call_id": "cp-1",
		"export_vars": "a,b,callpop_call_id", "cc_export_vars": "callpop_call_id"} {
		if got := res.Vars[name]; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for n, v := range res.Vars {
		if strings.Contains(v, ";") || strings.Contains(v, "=") && strings.HasPrefix(n, "callpop_x") {
			t.Errorf("%s = %q: pairs ran together", n, v)
		}
	}
	if got := testutil.ToFloat64(testM.varsDropped) - before; got < 1 {
		t.Errorf("dropped variables counted: %v", got)
	}
}
