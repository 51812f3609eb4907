package router

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/callpop/callpop/call"
)

var dialplanCalls = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "callpop_router_dialplan_calls_total",
	Help: "FastAGI sessions and /v1/route requests with a call id handed on for pops, by endpoint (fastagi, route) and result (followed; bad_id: not a token, not registered).",
}, []string{"endpoint", "result"})

// SetFollower makes FastAGI sessions and /v1/route requests that carry the
// call's id (agi_uniqueid; call_id=) report their decided call to f, which
// registers it for pops and has the adapter follow its agent legs. f must
// not block. Call it before serving.
func (r *Router) SetFollower(f call.Follower) {
	r.follower.Store(&f)
}

// follow reports a decided dialplan call to the follower, if one is set and
// the call has a usable id: a token (what __CALLPOP_CALL_ID and an ARI event
// source can carry), else the call is not registered. A follower that
// panics costs the pop, never the call's answer.
func (r *Router) follow(endpoint string, c call.Call, d call.Decision) {
	f := r.follower.Load()
	if f == nil || *f == nil || c.ID == "" {
		return
	}
	if call.CleanToken(c.ID) != c.ID {
		dialplanCalls.WithLabelValues(endpoint, "bad_id").Inc()
		return
	}
	id := d.CallID
	if id == "" {
		id = c.ID
	}
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("follower panicked; the call is not followed", "endpoint", endpoint, "panic", fmt.Sprint(p))
		}
	}()
	dialplanCalls.WithLabelValues(endpoint, "followed").Inc()
	(*f).Follow(call.Enriched{CallID: id, Call: c, Decision: d})
}
