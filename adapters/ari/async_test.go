package ari

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

// callerVars makes every snapshot carry both caller-ID functions: the
// asynchronous path.
var callerVars = []string{"CALLPOP_CALL_ID", "CALLERID(ani)", "CALLERID(num-pres)"}

// heldDecider is an AsyncDecider that holds each call's done until release,
// or answers timeout at the call's deadline (unless ignoreDeadline: then it
// breaks the contract and answers only when released, if ever). It holds no
// goroutine per call: a waiter and a context.AfterFunc.
type heldDecider struct {
	d              call.Decision
	ignoreDeadline bool
	syncAnswer     bool // answer at once, before DecideAsync returns (an in-process hit)
	panicSync      bool // panic in DecideAsync's synchronous part
	entered        atomic.Int64
	answered       atomic.Int64 // done calls made (by release or deadline)

	mu   sync.Mutex
	held []*heldCall
}

type heldCall struct {
	done func(call.Decision)
	once atomic.Bool
	mu   sync.Mutex
	stop func() bool // the deadline's AfterFunc (set once registered)
}

func (w *heldCall) answer(h *heldDecider, d call.Decision) {
	if !w.once.CompareAndSwap(false, true) {
		return
	}
	w.mu.Lock()
	stop := w.stop
	w.mu.Unlock()
	if stop != nil {
		stop()
	}
	h.answered.Add(1)
	w.done(d)
}

func (h *heldDecider) Decide(ctx context.Context, c call.Call) call.Decision {
	ch := make(chan call.Decision, 1)
	h.DecideAsync(ctx, c, func(d call.Decision) { ch <- d })
	return <-ch
}

func (h *heldDecider) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	h.entered.Add(1)
	if h.panicSync {
		panic("crm client bug")
	}
	w := &heldCall{done: done}
	if h.syncAnswer {
		w.answer(h, h.d)
		return
	}
	if !h.ignoreDeadline {
		stop := context.AfterFunc(ctx, func() { w.answer(h, call.Decision{Match: call.MatchTimeout}) })
		w.mu.Lock()
		w.stop = stop
		w.mu.Unlock()
	}
	h.mu.Lock()
	h.held = append(h.held, w)
	h.mu.Unlock()
}

// release answers every held call with h.d and reports how many it held.
func (h *heldDecider) release() int {
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for _, w := range held {
		w.answer(h, h.d)
	}
	return len(held)
}

func outcomes() map[string]float64 {
	m := map[string]float64{}
	for _, o := range []string{"handler", "watchdog", "gone", "none", "shed", "handler_reconciled", "watchdog_reconciled"} {
		m[o] = counter(testM.calls.WithLabelValues(o))
	}
	return m
}

func outcomeDelta(before map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range outcomes() {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// continueCounter counts the continues the simulator accepted, per channel.
type continueCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *continueCounter) hook(id string, _ time.Time) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[id]++
	c.mu.Unlock()
}

func (c *continueCounter) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

// settledAsync checks what every asynchronous call must end with: the
// adapter's accounting back to zero, each channel continued exactly once,
// no continue refused (a second one would be: 409).
func settledAsync(t *testing.T, h *harness, cc *continueCounter, ids []string, goneBefore, contErrBefore float64) {
	t.Helper()
	waitSettled(t, h.sim, ids, 10*time.Second)
	waitFor(t, 5*time.Second, "calls finished", func() bool {
		n := 0
		h.a.inflight.Range(func(any, any) bool { n++; return true })
		return h.a.enriching.Load() == 0 && n == 0
	})
	for _, id := range ids {
		if n := cc.count(id); n != 1 {
			t.Errorf("%s continued %d times", id, n)
		}
	}
	if d := counter(testM.gone) - goneBefore; d != 0 {
		t.Errorf("%v calls counted gone (a second continue meets 409)", d)
	}
	if d := counter(testM.restErrors.WithLabelValues("continue")) - contErrBefore; d != 0 {
		t.Errorf("%v continues failed", d)
	}
}

// Calls held by an AsyncDecider hold no goroutine; released, each is
// enriched and continued once by its handler.
func TestAsyncHeldThenReleased(t *testing.T) {
	cc := &continueCounter{}
	sim := newSim(t, arisim.Options{ChannelVars: callerVars, OnContinue: cc.hook})
	dec := &heldDecider{d: call.Decision{Match: call.MatchHit, Priority: 5, QueuePrio: 5, Queue: "vip"}}
	h := start(t, sim, dec, time.Minute, nil)
	before, gone0, cerr0 := outcomes(), counter(testM.gone), counter(testM.restErrors.WithLabelValues("continue"))
	const n = 200
	g0 := runtime.NumGoroutine()
	var ids []string
	for i := range n {
		ids = append(ids, sim.OfferCall(arisim.CallSpec{CLI: fmt.Sprintf("+3120%07d", i), ANI: "0201234567"}))
	}
	waitFor(t, 10*time.Second, "all calls held", func() bool { return dec.entered.Load() == n })
	// The asking goroutines end once the decider holds the call; give the
	// scheduler a moment to retire them, then count.
	waitFor(t, 10*time.Second, "asking goroutines gone", func() bool { return runtime.NumGoroutine()-g0 < n/4 })
	if got := h.a.enriching.Load(); got != n {
		t.Errorf("enriching %d, want %d", got, n)
	}
	for _, id := range ids {
		if r, _ := sim.Record(id); !r.Continued.IsZero() {
			t.Fatalf("%s continued while held", id)
		}
	}
	if got := dec.release(); got != n {
		t.Fatalf("released %d, want %d", got, n)
	}
	settledAsync(t, h, cc, ids, gone0, cerr0)
	for _, id := range ids {
		r, _ := sim.Record(id)
		if r.Vars["CALLPOP_QUEUE"] != "vip" || r.Vars["QUEUE_PRIO"] != "5" || r.Vars["__CALLPOP_CALL_ID"] != id {
			t.Fatalf("%s vars %v", id, r.Vars)
		}
	}
	if d := outcomeDelta(before); d["handler"] != n || len(d) != 1 {
		t.Errorf("outcomes %v, want %d handler", d, n)
	}
	waitFor(t, 5*time.Second, "CallEnriched", func() bool { e, _, _ := h.sink.snapshot(); return len(e) == n })
	if e, _, _ := h.sink.snapshot(); e[0].Call.ANI != "0201234567" {
		t.Errorf("enriched call lost its ANI: %+v", e[0].Call)
	}
	if got := sim.Stats().VarGets; got != 0 {
		t.Errorf("%d GETs on the channelvars path", got)
	}
}

// An answer before DecideAsync returns (an in-process hit) is applied by the
// asking goroutine; a synchronous panic becomes Match=error, still applied
// and continued by the handler.
func TestAsyncSynchronousAnswers(t *testing.T) {
	tests := []struct {
		name  string
		dec   *heldDecider
		match string
	}{
		{"hit", &heldDecider{syncAnswer: true, d: call.Decision{Match: call.MatchHit, Queue: "gold"}}, "hit"},
		{"panic", &heldDecider{panicSync: true}, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := &continueCounter{}
			sim := newSim(t, arisim.Options{ChannelVars: callerVars, OnContinue: cc.hook})
			h := start(t, sim, tt.dec, testBudget, nil)
			before, gone0, cerr0 := outcomes(), counter(testM.gone), counter(testM.restErrors.WithLabelValues("continue"))
			var ids []string
			for i := range 10 {
				ids = append(ids, sim.OfferCall(arisim.CallSpec{CLI: fmt.Sprintf("+3120%07d", i)}))
			}
			settledAsync(t, h, cc, ids, gone0, cerr0)
			for _, id := range ids {
				if r, _ := sim.Record(id); r.Vars["CALLPOP_MATCH"] != tt.match {
					t.Errorf("%s match %q, want %q", id, r.Vars["CALLPOP_MATCH"], tt.match)
				}
			}
			if d := outcomeDelta(before); d["handler"] != 10 || len(d) != 1 {
				t.Errorf("outcomes %v, want 10 handler", d)
			}
		})
	}
}

// A decider that never calls done: the watchdog continues each channel by
// its budget, the cutoff ends the call (its count, its inflight entry), a
// late answer is dropped, and Run returns.
func TestAsyncDecisionNeverComes(t *testing.T) {
	const budget = 300 * time.Millisecond
	cc := &continueCounter{}
	sim := newSim(t, arisim.Options{ChannelVars: callerVars, OnContinue: cc.hook})
	dec := &heldDecider{ignoreDeadline: true, d: call.Decision{Match: call.MatchHit, Queue: "late"}}
	h := start(t, sim, dec, budget, nil)
	before, gone0, cerr0 := outcomes(), counter(testM.gone), counter(testM.restErrors.WithLabelValues("continue"))
	margin := budgetMargin(t)
	var ids []string
	for i := range 10 {
		ids = append(ids, sim.OfferCall(arisim.CallSpec{CLI: fmt.Sprintf("+3120%07d", i)}))
	}
	settledAsync(t, h, cc, ids, gone0, cerr0)
	for _, id := range ids {
		r, _ := sim.Record(id)
		if held := r.Continued.Sub(r.Offered); held > budget+margin {
			t.Errorf("%s held %v > budget %v + %v", id, held, budget, margin)
		}
		if r.Vars["CALLPOP_QUEUE"] == "late" {
			t.Errorf("%s got the late answer's variables", id)
		}
	}
	if d := outcomeDelta(before); d["watchdog"] != 10 || len(d) != 1 {
		t.Errorf("outcomes %v, want 10 watchdog", d)
	}
	if got := dec.release(); got != 10 {
		t.Errorf("released %d late answers, want 10", got)
	}
	e, _, _ := h.sink.snapshot()
	if len(e) != 10 {
		t.Fatalf("%d enriched, want 10", len(e))
	}
	for _, en := range e {
		if en.Decision.Match != call.MatchTimeout {
			t.Errorf("enriched with %s, want timeout", en.Decision.Match)
		}
	}
	h.stop()
}

// Stopping callpop while calls are held: Run returns only once each has been
// continued (here by the decider's deadline answer), none stranded.
func TestAsyncShutdownDrains(t *testing.T) {
	const budget = 400 * time.Millisecond
	cc := &continueCounter{}
	sim := newSim(t, arisim.Options{ChannelVars: callerVars, OnContinue: cc.hook})
	dec := &heldDecider{d: call.Decision{Match: call.MatchHit}}
	h := start(t, sim, dec, budget, nil)
	var ids []string
	for i := range 20 {
		ids = append(ids, sim.OfferCall(arisim.CallSpec{CLI: fmt.Sprintf("+3120%07d", i)}))
	}
	waitFor(t, 10*time.Second, "all calls held", func() bool { return dec.entered.Load() == 20 })
	h.stop() // waits for Run
	for _, id := range ids {
		r, _ := sim.Record(id)
		if r.Continued.IsZero() {
			t.Errorf("%s not continued when Run returned", id)
		}
		if n := cc.count(id); n != 1 {
			t.Errorf("%s continued %d times", id, n)
		}
	}
	if got := h.a.enriching.Load(); got != 0 {
		t.Errorf("enriching %d after Run returned", got)
	}
}

// The decider's answer, the watchdog and the cutoff race (apply_reserve 0:
// the decider's deadline is after the watchdog's; some answers come from a
// release at about the same moment): every call still gets one continue and
// ends once. Run with -race.
func TestAsyncAnswerRacesWatchdog(t *testing.T) {
	const budget = 60 * time.Millisecond
	cc := &continueCounter{}
	sim := newSim(t, arisim.Options{ChannelVars: callerVars, OnContinue: cc.hook})
	dec := &heldDecider{d: call.Decision{Match: call.MatchHit}}
	h := start(t, sim, dec, budget, func(c *Config) { c.ApplyReserve = 0 })
	before, gone0, cerr0 := outcomes(), counter(testM.gone), counter(testM.restErrors.WithLabelValues("continue"))
	var ids []string
	for round := range 10 {
		for i := range 10 {
			ids = append(ids, sim.OfferCall(arisim.CallSpec{CLI: fmt.Sprintf("+31%02d%07d", round, i)}))
		}
		time.Sleep(budget - watchdogLead - time.Duration(round)*time.Millisecond)
		dec.release()
	}
	settledAsync(t, h, cc, ids, gone0, cerr0)
	d := outcomeDelta(before)
	if d["handler"]+d["watchdog"] != float64(len(ids)) {
		t.Errorf("outcomes %v, want %d handler or watchdog", d, len(ids))
	}
	t.Logf("outcomes %v", d)
	waitFor(t, 5*time.Second, "CallEnriched", func() bool { e, _, _ := h.sink.snapshot(); return len(e) == len(ids) })
}

// Without channelvars the call's goroutine reads the caller-ID functions,
// then asks once through DecideAsync, whatever ANI or presentation add.
// Each call is decided once with what it needs, continued once.
func TestAsyncDeciderOnGETPath(t *testing.T) {
	tests := []struct {
		name     string
		spec     arisim.CallSpec
		wantAsks int64 // decisions asked per call
		wantANI  string
	}{
		{"ANI adds nothing", arisim.CallSpec{CLI: "+31201234567"}, 1, ""},
		{"ANI differs", arisim.CallSpec{CLI: "+31201234567", ANI: "0207654321"}, 1, "0207654321"},
		{"withheld CLI", arisim.CallSpec{CLI: "anonymous", ANI: "0207654321", NumPres: "prohib"}, 1, "0207654321"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := &continueCounter{}
			sim := newSim(t, arisim.Options{OnContinue: cc.hook})
			dec := &heldDecider{syncAnswer: true, d: call.Decision{Match: call.MatchHit, Queue: "gold"}}
			h := start(t, sim, dec, testBudget, nil)
			before, gone0, cerr0 := outcomes(), counter(testM.gone), counter(testM.restErrors.WithLabelValues("continue"))
			var ids []string
			for range 5 {
				ids = append(ids, sim.OfferCall(tt.spec))
			}
			settledAsync(t, h, cc, ids, gone0, cerr0)
			if got := dec.entered.Load(); got != 5*tt.wantAsks {
				t.Errorf("%d decisions asked, want %d", got, 5*tt.wantAsks)
			}
			for _, id := range ids {
				if r, _ := sim.Record(id); r.Vars["CALLPOP_QUEUE"] != "gold" {
					t.Errorf("%s vars %v", id, r.Vars)
				}
			}
			if d := outcomeDelta(before); d["handler"] != 5 || len(d) != 1 {
				t.Errorf("outcomes %v, want 5 handler", d)
			}
			waitFor(t, 5*time.Second, "CallEnriched", func() bool { e, _, _ := h.sink.snapshot(); return len(e) == 5 })
			if e, _, _ := h.sink.snapshot(); e[0].Call.ANI != tt.wantANI {
				t.Errorf("enriched call ANI %q, want %q", e[0].Call.ANI, tt.wantANI)
			}
		})
	}
}

// countingAsync answers synchronously: a hit with a customer the first
// time, a miss after.
type countingAsync struct{ n atomic.Int32 }

func (d *countingAsync) Decide(ctx context.Context, c call.Call) call.Decision {
	if d.n.Add(1) == 1 {
		return call.Decision{Match: call.MatchHit, Customer: &call.Customer{ID: "C-1", Name: "Jan"}, Priority: 9, QueuePrio: 9}
	}
	return call.Decision{Match: call.MatchMiss}
}

func (d *countingAsync) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	done(d.Decide(ctx, c))
}

// On the asynchronous path a channel that enters Stasis again is a new trip
// (every variable set again, empty ones as "value="), and a StasisStart that
// never arrived is reconciled (counted as such).
func TestAsyncReentryAndReconcile(t *testing.T) {
	sim := newSim(t, arisim.Options{ChannelVars: callerVars, Linger: -1})
	h := start(t, sim, &countingAsync{}, testBudget, func(c *Config) { c.ReconcileInterval = 100 * time.Millisecond })
	before := outcomes()
	id := sim.OfferCall(arisim.CallSpec{CLI: "+31201234567"})
	r := enrichThenReenter(t, h, id)
	if v, ok := r.Vars["CALLPOP_NAME"]; !ok || v != "" || r.Vars["CALLPOP_MATCH"] != "miss" || r.Vars["QUEUE_PRIO"] != "0" {
		t.Errorf("second pass %v", r.Vars)
	}
	lost := sim.OfferCall(arisim.CallSpec{CLI: "+14155550123", App: "callpop", Silent: true})
	waitSettled(t, sim, []string{lost}, 3*time.Second)
	if r, _ := sim.Record(lost); r.Continued.IsZero() || r.Vars["CALLPOP_MATCH"] != "miss" {
		t.Errorf("lost StasisStart not reconciled: %+v", r)
	}
	waitFor(t, 2*time.Second, "calls counted", func() bool { d := outcomeDelta(before); return d["handler"] == 2 && d["handler_reconciled"] == 1 })
}

// A continue that fails every try on the asynchronous path still asks for
// the prompt reconcile, which takes the channel over again.
func TestAsyncFailedContinueRechecked(t *testing.T) {
	sim := newSim(t, arisim.Options{ChannelVars: callerVars})
	dec := &heldDecider{syncAnswer: true, d: call.Decision{Match: call.MatchHit, Priority: 4, QueuePrio: 4}}
	h := start(t, sim, dec, testBudget, func(c *Config) { c.ReconcileInterval = time.Hour })
	sim.FailNext("continue", 3) // all three tries of the first continue
	id := sim.OfferCall(arisim.CallSpec{CLI: "+14155550123"})
	waitSettled(t, sim, []string{id}, 10*time.Second)
	if r, _ := sim.Record(id); r.Continued.IsZero() {
		t.Fatalf("not continued: %+v", r)
	}
	if h.logs.count("ERROR") != 1 {
		t.Errorf("want the one failed continue logged once, got %d ERROR lines", h.logs.count("ERROR"))
	}
	if got := dec.entered.Load(); got != 2 {
		t.Errorf("%d decisions, want 2 (the first trip and the reconcile's)", got)
	}
}
