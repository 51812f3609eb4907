package ari

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
)

// The caller-ID functions a call needs beyond the event's caller number.
// Listed in ari.conf channelvars, they arrive in the StasisStart snapshot
// and no request reads them.
const (
	varANI     = "CALLERID(ani)"
	varNumPres = "CALLERID(num-pres)"
)

// stasisChannel is what a StasisStart (or reconcile) tells about a channel.
type stasisChannel struct {
	ID, Name, CLI, CLIName, DNIS string
	Args                         []string
	// ANI and NumPres as channelvars carried them; hasANI/hasPres say the
	// key was there ("" then means empty or unset). A key absent is read
	// with a GET.
	ANI, NumPres    string
	hasANI, hasPres bool
}

// callerVars takes CALLERID(ani) and CALLERID(num-pres) from a snapshot's channelvars.
func (sc *stasisChannel) callerVars(vars map[string]string) {
	sc.ANI, sc.hasANI = vars[varANI]
	sc.NumPres, sc.hasPres = vars[varNumPres]
}

// callRun is one channel's trip through callpop.
type callRun struct {
	a         *Adapter
	ch        stasisChannel
	received  time.Time
	deadline  time.Time // received + budget: the channel must be continued by then
	continued atomic.Bool
	gone      atomic.Bool
	by        atomic.Pointer[string] // who continued: "handler" or "watchdog" (set by the winner)

	// The decision's variables and the continue exclude each other: apply
	// holds setting while it sets them; release closes it (no variable is
	// set after) before it continues, waiting for a set in flight. So no
	// path continues the channel between a decision's first and last variable.
	setting sync.Mutex
	closed  bool // under setting

	// The asynchronous path (both caller-ID functions in channelvars): while
	// the decider holds the call, this struct, the decision's context and
	// the watchdog's timer are all there is of it: no goroutine.
	reconciled bool
	cancel     context.CancelFunc // the decision's context
	wd         *time.Timer        // the watchdog
	wdRun      sync.WaitGroup     // 1 while the watchdog is armed or running
	decided    atomic.Bool        // a decision (the decider's, or the cutoff's) took the call
	stage      atomic.Int32       // stageDeciding → stageWaiting (the decider holds the call) or stageDecided
	syncD      *call.Decision     // a decision given before DecideAsync returned (stage decided)
}

// Stages of an asynchronous decision, seen from the goroutine that asks.
const (
	stageDeciding int32 = iota // DecideAsync has not returned yet
	stageWaiting               // it returned without an answer: done starts a goroutine
	stageDecided               // it answered first: the asking goroutine finishes the call
)

// startCall hands a channel to its own goroutine unless one handles it
// already, and reports whether it did. When channelvars carried both caller-ID
// functions that goroutine only asks for the decision: while the decider
// holds the call no goroutine is left, and the answer starts one (or the
// asking goroutine, answered at once, finishes the call).
func (a *Adapter) startCall(ch stasisChannel, received time.Time, reconciled bool) bool {
	if ch.ID == "" {
		return false
	}
	r := &callRun{a: a, ch: ch, received: received, deadline: received.Add(a.deps.Budget)}
	for {
		prev, busy := a.inflight.LoadOrStore(ch.ID, r)
		if !busy {
			break
		}
		// A run that has continued the channel is only finishing up: this
		// is a new trip into Stasis (the dialplan ran Stasis() again).
		// One still holding the channel is the same trip seen twice
		// (StasisStart and reconcile); so is a reconcile racing a run that
		// has just continued it.
		if reconciled || !prev.(*callRun).continued.Load() {
			return false
		}
		if a.inflight.CompareAndSwap(ch.ID, prev, r) {
			break
		}
	}
	a.calls.Add(1)
	if a.enriching.Add(1) > int64(a.cfg.MaxCalls) {
		// A flood beyond max_calls: let the channel go on at once,
		// unenriched, rather than pile up goroutines and requests.
		go func() {
			defer a.calls.Done()
			defer a.enriching.Add(-1)
			defer a.inflight.CompareAndDelete(ch.ID, r)
			r.release("shed")
			metricCalls.WithLabelValues("shed").Inc()
		}()
		return true
	}
	if ch.hasANI && ch.hasPres {
		// Nothing to read: the decision runs without holding a goroutine
		// while it waits. The watchdog is armed here, before anything
		// can delay the call.
		r.reconciled = reconciled
		ctx, cancel := context.WithDeadline(context.Background(), r.deadline.Add(-a.cfg.ApplyReserve))
		r.cancel = cancel
		r.wdRun.Add(1)
		r.wd = time.AfterFunc(time.Until(r.deadline.Add(-watchdogLead)), r.watchdog)
		go r.decideAsync(ctx)
		return true
	}
	go func() {
		defer a.calls.Done()
		defer a.enriching.Add(-1)
		defer a.inflight.CompareAndDelete(ch.ID, r)
		r.run(reconciled)
	}()
	return true
}

// decideGrace is how long past its deadline a decider's answer is waited
// for before the call goes on with a timeout decision.
const decideGrace = 2 * time.Millisecond

// decideAsync asks the decider for the call's decision. It runs on a
// goroutine of its own (a decider's synchronous part never delays the event
// reader) that ends as soon as the decider holds the call, or finishes the
// call itself when the answer came at once (an in-process hit; a plain
// Decider answers here too, on this goroutine).
func (r *callRun) decideAsync(ctx context.Context) {
	r.ask(ctx)
	if !r.stage.CompareAndSwap(stageDeciding, stageWaiting) {
		r.finish(*r.syncD, false) // stageDecided
	}
}

// ask hands the call to the decider; done is onDecision.
func (r *callRun) ask(ctx context.Context) {
	a := r.a
	defer func() {
		if p := recover(); p != nil {
			metricPanics.Inc()
			a.log.Error("panic asking for a decision; the call goes on undecided", "chan", r.ch.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r.onDecision(call.Decision{Match: call.MatchError, Err: "internal error"})
		}
	}()
	c := r.newCall()
	full := withCallerVars(c, r.ch.ANI, r.ch.NumPres)
	in := full
	if addsNothing(c, full) {
		in = c // as the GET path's speculative run would have seen it
	}
	if _, ok := a.deps.Decider.(call.AsyncDecider); ok {
		adapters.DecideAsync(ctx, a.deps.Decider, in, a.log, r.onDecision)
	} else {
		r.onDecision(adapters.Decide(ctx, a.deps.Decider, in, a.log))
	}
}

// onDecision is the decider's done. It never blocks: the first answer goes
// to finish on a goroutine (or to the asking goroutine, when DecideAsync has
// not returned yet); any later one (after the cutoff) is dropped.
func (r *callRun) onDecision(d call.Decision) {
	if !r.decided.CompareAndSwap(false, true) {
		return
	}
	r.syncD = &d
	if r.stage.CompareAndSwap(stageDeciding, stageDecided) {
		return
	}
	go r.finish(d, false)
}

// watchdog continues the channel at the end of its budget if nothing has.
// When the decider has not answered by then either (it overstays its own
// deadline), the call goes on with a timeout decision at the cutoff, grace
// past that deadline, so the call's state and its count in a.calls end even
// if the answer never comes.
func (r *callRun) watchdog() {
	defer r.wdRun.Done()
	r.release("watchdog")
	if r.decided.Load() {
		return
	}
	cutoff := r.deadline.Add(-r.a.cfg.ApplyReserve + decideGrace)
	time.AfterFunc(max(time.Until(cutoff), 0), func() {
		if r.decided.CompareAndSwap(false, true) {
			r.finish(call.Decision{Match: call.MatchTimeout, Err: "decider did not answer by its deadline"}, true)
		}
	})
}

// finish applies an asynchronous decision and ends the call: the tail of
// run, on whichever goroutine got the decision. fired says the watchdog has
// run already (finish is the cutoff it left): r.wd is not touched then.
func (r *callRun) finish(d call.Decision, fired bool) {
	a := r.a
	defer a.calls.Done()
	defer a.enriching.Add(-1)
	defer a.inflight.CompareAndDelete(r.ch.ID, r)
	defer func() {
		if !fired && r.wd.Stop() {
			r.wdRun.Done() // it will not run
		}
		r.wdRun.Wait() // it ran: its continue is over before the call leaves inflight
	}()
	defer func() {
		if p := recover(); p != nil {
			metricPanics.Inc()
			a.log.Error("panic handling call; continuing it", "chan", r.ch.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r.release("handler")
		}
	}()
	r.cancel()
	c := r.newCall()
	full := withCallerVars(c, r.ch.ANI, r.ch.NumPres)
	r.conclude(c, decided{Decision: d, ani: full.ANI, privacy: full.Privacy}, r.reconciled)
}

// newCall is the call as the channel's event tells it.
func (r *callRun) newCall() call.Call {
	c := call.Call{
		ID: r.ch.ID, PBX: "asterisk", CLI: r.ch.CLI, CLIName: r.ch.CLIName, DNIS: r.ch.DNIS, Received: r.received,
	}
	if len(r.ch.Args) > 0 {
		c.Profile = strings.TrimSpace(r.ch.Args[0])
	}
	return c
}

// watchdogLead is how long before the budget's end the watchdog continues
// a channel that is still held, so the continue lands within the budget.
const watchdogLead = 10 * time.Millisecond

func (r *callRun) run(reconciled bool) {
	a := r.a
	// The hard guarantee: whatever happens below (a hang, a panic), the
	// watchdog continues the channel at the end of its budget.
	wdDone := make(chan struct{})
	wd := time.AfterFunc(time.Until(r.deadline.Add(-watchdogLead)), func() {
		defer close(wdDone)
		r.release("watchdog")
	})
	defer func() {
		if !wd.Stop() {
			<-wdDone // the watchdog fired: wait for its continue to finish
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			metricPanics.Inc()
			a.log.Error("panic handling call; continuing it", "chan", r.ch.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r.release("handler")
		}
	}()

	c := r.newCall()
	r.conclude(c, r.decide(c), reconciled)
}

// conclude applies the decision, continues the channel and counts the call.
func (r *callRun) conclude(c call.Call, d decided, reconciled bool) {
	a := r.a
	if d.CallID == "" {
		d.CallID = c.ID
	}
	c.ANI, c.Privacy = d.ani, d.privacy
	dec := d.Decision
	if !r.gone.Load() {
		r.apply(c, dec)
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
		metricGone.Inc()
	}
	if reconciled {
		outcome += "_reconciled"
	}
	metricCalls.WithLabelValues(outcome).Inc()
	if a.log.Enabled(context.Background(), slog.LevelDebug) {
		if r.gone.Load() {
			a.log.Debug("caller hung up during the look-up", "chan", r.ch.ID)
		}
		a.log.Debug("call handled", "call", c, "match", dec.Match, "source", dec.Source, "priority", dec.Priority,
			"queue", dec.Queue, "outcome", outcome, "gone", r.gone.Load(), "elapsed", time.Since(r.received))
	}
}

type decided struct {
	call.Decision
	ani     string
	privacy bool
}

// decide runs the pipeline when a caller-ID function is missing from the
// snapshot (when channelvars carried both, startCall takes the asynchronous
// path instead: decideAsync). The call needs CALLERID(ani) and
// CALLERID(num-pres) besides the event's caller number: the look-up on the
// caller number starts at once and the missing ones are read concurrently
// (one GET /variables where Asterisk has it). With a usable caller number
// the reads are bounded by caller_vars_timeout (its decision stands without
// them); without one they are waited for until the decision's deadline,
// since nothing can be decided without them. When they show nothing the
// first decision did not know (no ANI or the same number, not withheld) it
// stands; otherwise the pipeline runs again with them: the router then
// picks ANI when the CLI is withheld or invalid, and marks privacy. The
// second run is cheap: the first one warmed the cache (concurrent look-ups
// of one number share a request). A CLI that is plainly withheld skips the
// first run. A read that did not answer is not an answer: the call is
// never called anonymous for it (see unread).
func (r *callRun) decide(c call.Call) decided {
	a := r.a
	ctx, cancel := context.WithDeadline(context.Background(), r.deadline.Add(-a.cfg.ApplyReserve))
	defer cancel()

	var spec chan call.Decision
	bound := ctx
	if usableCLI(c.CLI) {
		spec = make(chan call.Decision, 1)
		a.decideInto(ctx, c, spec)
		// (a decider that ignores its deadline is cut off in wait below)
		var vcancel context.CancelFunc
		bound, vcancel = context.WithTimeout(ctx, a.cfg.CallerVarsTimeout)
		defer vcancel()
	}
	got := map[string]string{}
	if r.ch.hasANI {
		got[varANI] = r.ch.ANI
	}
	if r.ch.hasPres {
		got[varNumPres] = r.ch.NumPres
	}
	r.readCallerVars(bound, got)
	_, knowANI := got[varANI]
	_, knowPres := got[varNumPres]
	full := withCallerVars(c, got[varANI], got[varNumPres])
	if spec != nil && addsNothing(c, full) {
		return decided{Decision: wait(ctx, spec), ani: full.ANI}
	}
	out := make(chan call.Decision, 1)
	a.decideInto(ctx, full, out)
	d := wait(ctx, out)
	if d.Match == call.MatchAnonymous && !(knowANI && knowPres) {
		d = unread(d)
	}
	return decided{Decision: d, ani: full.ANI, privacy: full.Privacy}
}

// unread turns an "anonymous" decision taken without the caller's ANI or
// presentation (their read did not answer in time) into what it is: the
// call was not identified in time. A known customer calling withheld must
// not be told apart from a caller who withheld everything by a slow read.
func unread(d call.Decision) call.Decision {
	metricCallerVarsUnread.Inc()
	d.Match = call.MatchTimeout
	d.Err = "caller-ID variables not read in time"
	return d
}

// readCallerVars reads into got the caller-ID functions it lacks, until
// bound ends: one GET /channels/{id}/variables where Asterisk has it, else
// one GET per function, concurrently. The reads run on goroutines of their
// own (counted in a.calls), not the call's; one already on its connection
// when bound ends still finishes there, so the connection stays open. A
// function missing from got afterwards was not read.
func (r *callRun) readCallerVars(bound context.Context, got map[string]string) {
	a := r.a
	var names []string
	for _, n := range []string{varANI, varNumPres} {
		if _, ok := got[n]; !ok {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return
	}
	// At most two reads: a nil channel is one not made or already answered.
	var first, second <-chan varsRead
	if a.multi.Load() {
		first = a.readVars(bound, r.ch.ID, names...)
	} else {
		first = a.readVars(bound, r.ch.ID, names[0])
		if len(names) > 1 {
			second = a.readVars(bound, r.ch.ID, names[1])
		}
	}
	for first != nil || second != nil {
		var v varsRead
		select {
		case v = <-first:
			first = nil
		case v = <-second:
			second = nil
		case <-bound.Done():
			metricRESTErrors.WithLabelValues("get_callerid_timeout").Inc()
			return
		}
		switch {
		case v.err == nil:
			maps.Copy(got, v.values)
		case errors.Is(v.err, ErrGone):
			r.gone.Store(true)
			return
		case errors.Is(v.err, context.DeadlineExceeded) || errors.Is(v.err, context.Canceled):
			metricRESTErrors.WithLabelValues("get_callerid_timeout").Inc()
		default:
			metricRESTErrors.WithLabelValues("get_callerid").Inc()
		}
	}
}

// decideInto asks for c's decision on a goroutine of its own and delivers
// it to out (buffered: done never blocks). An AsyncDecider (the router)
// holds the call without that goroutine, which ends once the decider has
// taken the call; a plain Decider answers on it.
func (a *Adapter) decideInto(ctx context.Context, c call.Call, out chan<- call.Decision) {
	if _, ok := a.deps.Decider.(call.AsyncDecider); ok {
		go adapters.DecideAsync(ctx, a.deps.Decider, c, a.log, func(d call.Decision) { out <- d })
		return
	}
	go func() { out <- adapters.Decide(ctx, a.deps.Decider, c, a.log) }()
}

// varsRead is what one read of caller variables gave.
type varsRead struct {
	values map[string]string
	err    error
}

// readVars reads channel variables on a goroutine of its own (counted in
// a.calls, so Run waits for it; it ends within request_timeout): all names
// in one GET /variables, or a single name with GET /variable.
func (a *Adapter) readVars(ctx context.Context, chanID string, names ...string) <-chan varsRead {
	out := make(chan varsRead, 1)
	a.calls.Add(1)
	go func() {
		defer a.calls.Done()
		if len(names) == 1 && !a.multi.Load() {
			v, err := a.rest.getVar(ctx, chanID, names[0])
			out <- varsRead{map[string]string{names[0]: v}, err}
			return
		}
		v, err := a.rest.getVars(ctx, chanID, names...)
		out <- varsRead{v, err}
	}()
	return out
}

// withCallerVars adds what CALLERID(ani) and CALLERID(num-pres) read to c.
func withCallerVars(c call.Call, ani, numPres string) call.Call {
	c.ANI = strings.TrimSpace(ani)
	c.Privacy = strings.HasPrefix(strings.ToLower(numPres), "prohib")
	return c
}

// addsNothing reports whether the caller vars leave a usable CLI's decision
// as it was: no ANI or the same number, and not withheld.
func addsNothing(c, full call.Call) bool {
	return usableCLI(c.CLI) && (full.ANI == "" || full.ANI == full.CLI) && !full.Privacy
}

// wait takes the decider's answer, or a timeout decision shortly after the
// deadline when the decider does not honour its context.
func wait(ctx context.Context, ch <-chan call.Decision) call.Decision {
	select {
	case d := <-ch:
		return d
	case <-ctx.Done():
	}
	t := time.NewTimer(2 * time.Millisecond)
	defer t.Stop()
	select {
	case d := <-ch:
		return d
	case <-t.C:
		return call.Decision{Match: call.MatchTimeout, Err: "decider did not return by its deadline"}
	}
}

// usableCLI reports whether a caller number is worth looking up before
// ANI and presentation are known: not empty, not "anonymous", has digits.
func usableCLI(s string) bool {
	if s == "" || strings.EqualFold(strings.TrimSpace(s), "anonymous") {
		return false
	}
	return strings.ContainsAny(s, "0123456789")
}

// channelVars is the full list of variables set on an enriched channel.
func channelVars(callID string, d call.Decision) []call.Var {
	vars := d.Vars()
	vars = append(vars,
		call.Var{Name: "QUEUE_PRIO", Value: strconv.Itoa(max(d.QueuePrio, 0))},
		call.Var{Name: "__CALLPOP_CALL_ID", Value: call.CleanToken(callID)},
	)
	if d.CallerName != "" {
		if n := call.CleanValue(d.CallerName); n != "" {
			vars = append(vars, call.Var{Name: "CALLERID(name)", Value: n})
		}
	}
	if d.InfoURL != "" {
		vars = append(vars, call.Var{Name: "CALLPOP_INFO_URL", Value: call.CleanURL(d.InfoURL)})
	}
	return vars
}

// matchVar is the decision's commit marker on an Asterisk that takes one
// variable per request: written last, only when all others were.
const matchVar = "CALLPOP_MATCH"

// applyWorkers bounds the requests one call has in flight while it sets
// variables one per request (an Asterisk without POST /variables; the
// call's own goroutine is one of them): a few rounds on warm keep-alive
// connections, without a goroutine and a connection per request.
const applyWorkers = 4

// apply sets the decision's variables and the follow subscription (the two
// concurrently), bounded by the budget (less the watchdog's lead). When the
// watchdog has continued the channel already, the variables are too late,
// but the call is still followed for its pops.
func (r *callRun) apply(c call.Call, d call.Decision) {
	a := r.a
	late := r.continued.Load()
	deadline := r.deadline.Add(-watchdogLead)
	if late {
		deadline = time.Now().Add(a.cfg.RequestTimeout)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	// A call seen before keeps its follow entry (and its subscription).
	seen := a.follow.following(c.ID)
	vars := channelVars(d.CallID, d)
	// On a channel's first trip through callpop none of these variables
	// exist (CALLPOP_* are not inherited), so an empty value needs no
	// setting: unset reads as empty. A channel seen before (re-entering
	// Stasis) gets every variable, empty ones as "", so nothing stale
	// survives.
	if !seen {
		vars = slices.DeleteFunc(vars, func(v call.Var) bool { return v.Value == "" })
	}
	// Follow the call only once it is subscribed: best effort, and never a
	// sign the caller left (the app itself may be unregistered for a moment:
	// 404 while the socket is down).
	subscribe := a.cfg.FollowLegs && (seen || a.follow.room())
	var subscribed atomic.Bool
	parallel(2, 2, func(i int) {
		if i == 1 {
			r.setDecision(ctx, cancel, c.ID, vars)
			return
		}
		if !subscribe {
			return
		}
		if err := a.rest.subscribe(ctx, a.cfg.App, c.ID); err != nil {
			metricRESTErrors.WithLabelValues("subscribe").Inc()
			if a.log.Enabled(ctx, slog.LevelDebug) {
				a.log.Debug("subscribe failed; agent legs of this call are not followed", "chan", c.ID, "err", err)
			}
			return
		}
		subscribed.Store(true)
	})
	if r.gone.Load() {
		return
	}
	if subscribed.Load() && !seen {
		a.follow.add(c.ID, d.CallID)
	}
	a.sink().CallEnriched(call.Enriched{CallID: d.CallID, Call: c, Decision: d})
}

// setDecision puts the decision on the channel whole, or leaves
// CALLPOP_MATCH empty. Where Asterisk has it that is one POST
// /channels/{id}/variables. An older Asterisk gets one request per variable,
// applyWorkers at a time, and CALLPOP_MATCH last, only once every other one
// went through: a dialplan that sees CALLPOP_MATCH may trust the rest. It
// holds r.setting throughout, so nothing continues the channel in between;
// once the channel is released (the watchdog) it sets nothing.
func (r *callRun) setDecision(ctx context.Context, abort context.CancelFunc, chanID string, vars []call.Var) {
	a := r.a
	r.setting.Lock()
	defer r.setting.Unlock()
	if r.closed || r.continued.Load() {
		metricApplied.WithLabelValues("late").Inc()
		return
	}
	if r.gone.Load() || len(vars) == 0 {
		return
	}
	if a.multi.Load() {
		if err := a.rest.setVars(ctx, chanID, vars); err != nil {
			r.restErr("set_variables", err, nil)
			metricApplied.WithLabelValues("none").Inc()
			return
		}
		metricApplied.WithLabelValues("whole").Inc()
		return
	}
	i := slices.IndexFunc(vars, func(v call.Var) bool { return v.Name == matchVar })
	var match call.Var
	if i >= 0 {
		match = vars[i]
		vars = slices.Delete(slices.Clone(vars), i, i+1)
	}
	var failed atomic.Bool
	parallel(len(vars), applyWorkers, func(i int) {
		if r.gone.Load() || failed.Load() {
			failed.Store(true)
			return // the rest would fail the same way, or not count
		}
		v := vars[i]
		if err := a.rest.setVar(ctx, chanID, v.Name, v.Value); err != nil {
			failed.Store(true)
			r.restErr("set_variable", err, abort)
		}
	})
	if !failed.Load() && match.Name != "" {
		if err := a.rest.setVar(ctx, chanID, match.Name, match.Value); err != nil {
			failed.Store(true)
			r.restErr("set_variable", err, abort)
		}
	}
	if failed.Load() {
		metricApplied.WithLabelValues("none").Inc()
		return
	}
	metricApplied.WithLabelValues("whole").Inc()
}

// release ends the channel's variables (waiting for a set in flight: see
// setDecision) and continues it.
func (r *callRun) release(by string) {
	r.setting.Lock()
	r.closed = true
	r.setting.Unlock()
	r.continueOnce(by)
}

// parallel runs f(0..n-1) on at most k goroutines, the caller's among them,
// and returns when all are done.
func parallel(n, k int, f func(i int)) {
	var next atomic.Int64
	work := func() {
		for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
			f(i)
		}
	}
	var wg sync.WaitGroup
	for range min(k, n) - 1 {
		wg.Add(1)
		go func() { defer wg.Done(); work() }()
	}
	work()
	wg.Wait()
}

// restErr classes an error: 404/409 means the caller hung up (or the
// watchdog continued first), anything else is counted and logged.
func (r *callRun) restErr(op string, err error, abort context.CancelFunc) {
	if errors.Is(err, ErrGone) {
		if !r.continued.Load() && !r.gone.Swap(true) && abort != nil {
			abort()
		}
		return
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		metricRESTErrors.WithLabelValues(op + "_timeout").Inc()
		return
	}
	metricRESTErrors.WithLabelValues(op).Inc()
	r.a.log.Warn("ARI request failed", "op", op, "chan", r.ch.ID, "err", err)
}

// continueOnce sends the one continue this channel gets, on a context of its
// own (not the call's, not Run's: a stopping callpop still lets calls go on).
func (r *callRun) continueOnce(by string) {
	if r.gone.Load() || !r.continued.CompareAndSwap(false, true) {
		return
	}
	r.by.Store(&by)
	a := r.a

	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.RequestTimeout)
	defer cancel()
	var err error
	for try := 0; try < 3; try++ {
		if err = a.rest.continueChannel(ctx, r.ch.ID, a.cfg.Continue); err == nil || errors.Is(err, ErrGone) || ctx.Err() != nil {
			break
		}
		if !sleepCtx(ctx, 10*time.Millisecond<<try) { // a refused connection: a moment, then again
			break
		}
	}
	now := time.Now()
	switch {
	case err == nil:
		metricContinueSeconds.Observe(now.Sub(r.received).Seconds())
		if now.After(r.deadline) {
			metricBudgetMiss.Inc()
		}
	case errors.Is(err, ErrGone):
		r.gone.Store(true)
	default:
		metricRESTErrors.WithLabelValues("continue").Inc()
		a.log.Error("continue failed; reconciling soon to take the channel over again", "chan", r.ch.ID, "err", err)
		a.askRecheck()
	}
}
