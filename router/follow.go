package router

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/callpop/callpop/call"
)

var dialplanCalls = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "callpop_router_dialplan_calls_total",
	Help: "FastAGI sessions and /v1/route requests with a call id handed on for pops, by endpoint (fastagi, route) and result (followed; bad_id: not a token, not registered).",
}, []string{"endpoint", "result"})

var dialplanFollowWait = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "callpop_router_dialplan_follow_wait_total",
	Help: "Dialplan calls held until following them took hold (the ARI subscription answered), by endpoint (fastagi, route) and result: ready; budget (call.budget ran out first: a Dial right after may ring unseen); ended (the session or request ended first).",
}, []string{"endpoint", "result"})

// SetFollower makes FastAGI sessions and /v1/route requests that carry the
// call's id (agi_uniqueid; call_id=) report their decided call to f, which
// registers it for pops and has the adapter follow its agent legs. f must
// not block; a call.ReadyFollower's channel is waited for, within the
// call's budget, before the dialplan goes on. Call it before serving.
func (r *Router) SetFollower(f call.Follower) {
	r.follower.Store(&f)
}

// follow reports a decided dialplan call to the follower, if one is set and
// the call has a usable id: a token (what __CALLPOP_CALL_ID and an ARI event
// source can carry), else the call is not registered. A follower that
// panics costs the pop, never the call's answer. It returns what
// awaitFollow waits for: a ReadyFollower's channel, or nil.
func (r *Router) follow(endpoint string, c call.Call, d call.Decision) (ready <-chan struct{}) {
	f := r.follower.Load()
	if f == nil || *f == nil || c.ID == "" {
		return nil
	}
	if call.CleanToken(c.ID) != c.ID {
		dialplanCalls.WithLabelValues(endpoint, "bad_id").Inc()
		return nil
	}
	id := d.CallID
	if id == "" {
		id = c.ID
	}
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("follower panicked; the call is not followed", "endpoint", endpoint, "panic", fmt.Sprint(p))
			ready = nil
		}
	}()
	dialplanCalls.WithLabelValues(endpoint, "followed").Inc()
	e := call.Enriched{CallID: id, Call: c, Decision: d}
	if rf, ok := (*f).(call.ReadyFollower); ok {
		return rf.FollowReady(e)
	}
	(*f).Follow(e)
	return nil
}

// awaitFollow holds the dialplan until following the call has taken hold
// (ready closed: a Dial from now on is seen ringing), never past the call's
// answer deadline (answerBy: received plus call.budget less
// router.answer_reserve, on the monotonic clock), nor past ctx. A nil ready returns at once.
func (r *Router) awaitFollow(ctx context.Context, endpoint string, ready <-chan struct{}, c call.Call) {
	if ready == nil {
		return
	}
	select {
	case <-ready:
		dialplanFollowWait.WithLabelValues(endpoint, "ready").Inc()
		return
	default:
	}
	left := time.Until(r.answerBy(c))
	if left <= 0 {
		dialplanFollowWait.WithLabelValues(endpoint, "budget").Inc()
		return
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-ready:
		dialplanFollowWait.WithLabelValues(endpoint, "ready").Inc()
	case <-t.C:
		dialplanFollowWait.WithLabelValues(endpoint, "budget").Inc()
	case <-ctx.Done():
		dialplanFollowWait.WithLabelValues(endpoint, "ended").Inc()
	}
}
