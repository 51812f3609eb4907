package ari

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/call"
)

// channelVars is the full list of variables set on an enriched channel.
func channelVars(callID string, d call.Decision) []call.Var {
	vars := d.Vars()
	vars = append(vars,
		call.Var{Name: "QUEUE_PRIO", Value: strconv.Itoa(max(d.QueuePrio, 0))},
		call.Var{Name: "__CALLPOP_CALL_ID", Value: call.CleanCallID(callID)},
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
	var subscribed bool
	parallel(2, 2, func(i int) {
		if i == 1 {
			r.setDecision(ctx, cancel, c.ID, vars)
		} else if subscribe {
			subscribed = r.subscribe(ctx)
		}
	})
	if r.gone.Load() {
		return
	}
	if subscribed && !seen {
		a.follow.add(c.ID, d.CallID)
	}
	a.sink().CallEnriched(call.Enriched{CallID: d.CallID, Call: c, Decision: d})
}

// subscribe subscribes the app to the channel so its agent legs are
// followed, and reports whether it did.
func (r *callRun) subscribe(ctx context.Context) bool {
	a := r.a
	err := a.rest.subscribe(ctx, a.cfg.App, r.ch.ID)
	if err == nil {
		return true
	}
	r.a.m.restErrors.WithLabelValues("subscribe").Inc()
	if a.log.Enabled(ctx, slog.LevelDebug) {
		a.log.Debug("subscribe failed; agent legs of this call are not followed", "chan", r.ch.ID, "err", err)
	}
	return false
}

// setDecision puts the decision on the channel whole, or leaves
// CALLPOP_MATCH empty: one POST /channels/{id}/variables where Asterisk has
// it, else one request per variable with CALLPOP_MATCH last (setEach). It
// holds r.setting throughout, so nothing continues the channel in between;
// once the channel is released (the watchdog) it sets nothing.
func (r *callRun) setDecision(ctx context.Context, abort context.CancelFunc, chanID string, vars []call.Var) {
	r.setting.Lock()
	defer r.setting.Unlock()
	if r.closed || r.continued.Load() {
		r.a.m.applied.WithLabelValues("late").Inc()
		return
	}
	if r.gone.Load() || len(vars) == 0 {
		return
	}
	whole := false
	if r.a.multi.Load() {
		err := r.a.rest.setVars(ctx, chanID, vars)
		if err != nil {
			r.restErr("set_variables", err, nil)
		}
		whole = err == nil
	} else {
		whole = r.setEach(ctx, abort, chanID, vars)
	}
	if whole {
		r.a.m.applied.WithLabelValues("whole").Inc()
	} else {
		r.a.m.applied.WithLabelValues("none").Inc()
	}
}

// setEach sets the variables one per request (an Asterisk without POST
// /variables), applyWorkers at a time, and CALLPOP_MATCH last, only once
// every other one went through: a dialplan that sees CALLPOP_MATCH may
// trust the rest. It reports whether all were set.
func (r *callRun) setEach(ctx context.Context, abort context.CancelFunc, chanID string, vars []call.Var) bool {
	i := slices.IndexFunc(vars, func(v call.Var) bool { return v.Name == matchVar })
	var match call.Var
	if i >= 0 {
		match = vars[i]
		vars = slices.Delete(slices.Clone(vars), i, i+1)
	}
	var failed atomic.Bool
	set := func(v call.Var) {
		if err := r.a.rest.setVar(ctx, chanID, v.Name, v.Value); err != nil {
			failed.Store(true)
			r.restErr("set_variable", err, abort)
		}
	}
	parallel(len(vars), applyWorkers, func(i int) {
		if r.gone.Load() || failed.Load() {
			failed.Store(true)
			return // the rest would fail the same way, or not count
		}
		set(vars[i])
	})
	if !failed.Load() && match.Name != "" {
		set(match)
	}
	return !failed.Load()
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
		r.a.m.restErrors.WithLabelValues(op + "_timeout").Inc()
		return
	}
	r.a.m.restErrors.WithLabelValues(op).Inc()
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
		r.a.m.continueSeconds.Observe(now.Sub(r.received).Seconds())
		if now.After(r.deadline) {
			r.a.m.budgetMiss.Inc()
		}
	case errors.Is(err, ErrGone):
		r.gone.Store(true)
	default:
		r.a.m.restErrors.WithLabelValues("continue").Inc()
		a.log.Error("continue failed; reconciling soon to take the channel over again", "chan", r.ch.ID, "err", err)
		a.askRecheck()
	}
}
