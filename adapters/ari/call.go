package ari

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
)

// stasisChannel is what a StasisStart (or reconcile) tells about a channel.
type stasisChannel struct {
	ID, Name, CLI, CLIName, DNIS string
	Args                         []string
	carried                      callerID // the caller-ID functions channelvars carried
	inherited                    string   // CALLPOP_CALL_ID as channelvars carried it
}

// callerVars takes CALLERID(ani) and CALLERID(num-pres) from a snapshot's channelvars.
// It also keeps the call id the channel carries (CALLPOP_CALL_ID).
func (sc *stasisChannel) callerVars(vars map[string]string) {
	sc.carried.take(vars)
	sc.inherited = vars["CALLPOP_CALL_ID"]
}

// callRun is one channel's trip through callpop. There is one path whatever
// channelvars carried: a goroutine reads the caller-ID functions that are
// missing (readCallerID) and asks the decider once (askDecider); while the
// decider holds the call, this struct, the decision's context and the
// watchdog's timer are all there is of it: no goroutine. The answer (or the
// cutoff's timeout) ends the call (end): its variables, its continue, its
// count.
type callRun struct {
	a          *Adapter
	ch         stasisChannel
	received   time.Time
	deadline   time.Time // received + budget: the channel must be continued by then
	reconciled bool      // taken over by reconcile, not from its StasisStart
	continued  atomic.Bool
	gone       atomic.Bool
	by         atomic.Pointer[string] // who continued: "handler" or "watchdog" (set by the winner)

	// The decision's variables and the continue exclude each other: apply
	// holds setting while it sets them; release closes it (no variable is
	// set after) before it continues, waiting for a set in flight. So no
	// path continues the channel between a decision's first and last variable.
	setting sync.Mutex
	closed  bool // under setting

	cancel   context.CancelFunc       // the decision's context
	wd       *time.Timer              // the watchdog
	wdRun    sync.WaitGroup           // 1 while the watchdog is armed or running
	answered atomic.Bool              // an answer (the decider's, or the cutoff's) took the call
	stage    atomic.Int32             // stageAsking → stageHeld (the decider holds the call) or stageAnswered
	early    *call.Decision           // the answer given before the decider returned (stage answered)
	read     atomic.Pointer[callerID] // what the caller-ID read gave, when channelvars did not carry both
}

// Stages of a decision, seen from the goroutine that asks.
const (
	stageAsking   int32 = iota // the decider has not returned yet
	stageHeld                  // it returned without an answer: the answer starts a goroutine
	stageAnswered              // it answered first: the asking goroutine ends the call
)

// watchdogLead is how long before the budget's end the watchdog continues
// a channel that is still held, so the continue lands within the budget.
const watchdogLead = 10 * time.Millisecond

// decideGrace is how long past its deadline a decider's answer is waited
// for before the call goes on with a timeout decision.
const decideGrace = 2 * time.Millisecond

// startCall takes a channel in unless a run handles it already, and reports
// whether it did. The watchdog is armed here, before anything can delay the
// call; a goroutine then asks for the decision (a decider's synchronous part
// never delays the event reader).
func (a *Adapter) startCall(ch stasisChannel, received time.Time, reconciled bool) bool {
	if ch.ID == "" {
		return false
	}
	r := &callRun{a: a, ch: ch, received: received, deadline: received.Add(a.deps.Budget), reconciled: reconciled}
	if !a.claim(r) {
		return false
	}
	a.calls.Add(1)
	if a.enriching.Add(1) > int64(a.cfg.MaxCalls) {
		go r.shed()
		return true
	}
	ctx, cancel := context.WithDeadline(context.Background(), r.deadline.Add(-a.cfg.ApplyReserve))
	r.cancel = cancel
	r.wdRun.Add(1)
	r.wd = time.AfterFunc(time.Until(r.deadline.Add(-watchdogLead)), r.watchdog)
	go r.askDecider(ctx)
	return true
}

// claim makes r the channel's run in a.inflight, and reports whether it did.
// A run that has continued the channel is only finishing up: a StasisStart
// then is a new trip into Stasis (the dialplan ran Stasis() again). One
// still holding the channel is the same trip seen twice (StasisStart and
// reconcile); so is a reconcile racing a run that has just continued it.
func (a *Adapter) claim(r *callRun) bool {
	for {
		prev, busy := a.inflight.LoadOrStore(r.ch.ID, r)
		if !busy {
			return true
		}
		if r.reconciled || !prev.(*callRun).continued.Load() {
			return false
		}
		if a.inflight.CompareAndSwap(r.ch.ID, prev, r) {
			return true
		}
	}
}

// shed lets a channel beyond max_calls go on at once, unenriched, rather
// than pile up goroutines and requests.
func (r *callRun) shed() {
	defer r.leave()
	r.release("shed")
	r.a.m.calls.WithLabelValues("shed").Inc()
}

// leave ends the call's bookkeeping: its inflight entry, its max_calls
// slot, its count in a.calls (Run waits for that).
func (r *callRun) leave() {
	r.a.inflight.CompareAndDelete(r.ch.ID, r)
	r.a.enriching.Add(-1)
	r.a.calls.Done()
}

// askDecider runs on the call's goroutine, which ends as soon as the decider
// holds the call, or ends the call itself when the answer came at once (an
// in-process hit; a plain Decider answers here too, on this goroutine).
func (r *callRun) askDecider(ctx context.Context) {
	r.ask(ctx)
	if !r.stage.CompareAndSwap(stageAsking, stageHeld) {
		r.end(*r.early, false) // stageAnswered
	}
}

// ask completes what the call tells of its caller (readCallerID) and hands
// the call to the decider once; onAnswer is its done. A panic on the way
// is the call's answer: Match=error.
func (r *callRun) ask(ctx context.Context) {
	a := r.a
	defer func() {
		if p := recover(); p != nil {
			r.a.m.panics.Inc()
			a.log.Error("panic asking for a decision; the call goes on undecided", "chan", r.ch.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r.onAnswer(call.Decision{Match: call.MatchError, Err: "internal error"})
		}
	}()
	if !r.ch.carried.known() {
		id := r.readCallerID(ctx)
		r.read.Store(&id)
		if r.answered.Load() {
			return // the cutoff ended the call while the read ran
		}
	}
	c := r.newCall()
	in := withCallerID(c, r.callerID())
	if addsNothing(c, in) {
		in = c // the caller number alone decides: an ANI equal to it is not a second number
	}
	if _, ok := a.deps.Decider.(call.AsyncDecider); ok {
		adapters.DecideAsync(ctx, a.deps.Decider, in, a.log, r.onAnswer)
	} else {
		r.onAnswer(adapters.Decide(ctx, a.deps.Decider, in, a.log))
	}
}

// onAnswer is the decider's done. It never blocks: the first answer goes to
// end on a goroutine (or to the asking goroutine, when the decider has not
// returned yet); any later one (after the cutoff) is dropped.
func (r *callRun) onAnswer(d call.Decision) {
	if !r.answered.CompareAndSwap(false, true) {
		return
	}
	r.early = &d
	if r.stage.CompareAndSwap(stageAsking, stageAnswered) {
		return
	}
	go r.end(d, false)
}

// watchdog continues the channel at the end of its budget if nothing has.
// When the decider has not answered by then either (it overstays its own
// deadline), the call goes on with a timeout decision at the cutoff, grace
// past that deadline, so the call's state and its count in a.calls end even
// if the answer never comes.
func (r *callRun) watchdog() {
	defer r.wdRun.Done()
	r.release("watchdog")
	if r.answered.Load() {
		return
	}
	cutoff := r.deadline.Add(-r.a.cfg.ApplyReserve + decideGrace)
	time.AfterFunc(max(time.Until(cutoff), 0), func() {
		if r.answered.CompareAndSwap(false, true) {
			r.end(call.Decision{Match: call.MatchTimeout, Err: "decider did not answer by its deadline"}, true)
		}
	})
}

// end delivers the call's answer and ends the call, on whichever goroutine
// got the answer. fired says the watchdog has run already (end is the cutoff
// it left): r.wd is not touched then.
func (r *callRun) end(d call.Decision, fired bool) {
	a := r.a
	defer r.leave()
	defer func() {
		if !fired && r.wd.Stop() {
			r.wdRun.Done() // it will not run
		}
		r.wdRun.Wait() // it ran: its continue is over before the call leaves inflight
	}()
	defer func() {
		if p := recover(); p != nil {
			r.a.m.panics.Inc()
			a.log.Error("panic handling call; continuing it", "chan", r.ch.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r.release("handler")
		}
	}()
	r.cancel()
	c := r.newCall()
	id := r.callerID()
	full := withCallerID(c, id)
	if d.Match == call.MatchAnonymous && !id.known() && !addsNothing(c, full) {
		d = r.unread(d)
	}
	r.deliver(full, d)
}

// newCall is the call as the channel's event tells it.
func (r *callRun) newCall() call.Call {
	c := call.Call{
		ID: r.ch.ID, PBX: "asterisk", CLI: r.ch.CLI, CLIName: r.ch.CLIName, DNIS: r.ch.DNIS, Received: r.received,
		Inherited: r.ch.inherited,
	}
	if len(r.ch.Args) > 0 {
		c.Profile = strings.TrimSpace(r.ch.Args[0])
	}
	return c
}

// deliver applies the decision, continues the channel and counts the call.
func (r *callRun) deliver(c call.Call, d call.Decision) {
	a := r.a
	if d.CallID == "" {
		d.CallID = c.ID
	}
	if !r.gone.Load() {
		r.apply(c, d)
	}
	if !r.gone.Load() {
		r.release("handler")
	}
	outcome := "none"
	if by := r.by.Load(); by != nil {
		outcome = *by
	}
	if r.gone.Load() {
		outcome = "gone"
		r.a.m.gone.Inc()
	}
	if r.reconciled {
		outcome += "_reconciled"
	}
	r.a.m.calls.WithLabelValues(outcome).Inc()
	if a.log.Enabled(context.Background(), slog.LevelDebug) {
		if r.gone.Load() {
			a.log.Debug("caller hung up during the look-up", "chan", r.ch.ID)
		}
		a.log.Debug("call handled", "call", c, "match", d.Match, "source", d.Source, "priority", d.Priority,
			"queue", d.Queue, "outcome", outcome, "gone", r.gone.Load(), "elapsed", time.Since(r.received))
	}
}
