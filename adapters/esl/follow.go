package esl

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/callpop/callpop/call"
)

var dialplanFollowTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "callpop_esl_dialplan_follow_total",
	Help: "Calls decided over /v1/route whose agent legs the event connection follows, by result: followed, disabled (no event connection: pbx.freeswitch.events off in outbound mode), full (tracking bound reached).",
}, []string{"pbx", "result"})

// Follow registers a call decided for the dialplan (GET /v1/route with
// call_id=${uuid}) on the event connection, which already sees every
// channel: its agent legs, which carry the exported callpop_call_id, are
// correlated as an enriched call's, and its hang-up ends it. It never blocks.
func (a *Adapter) Follow(e call.Enriched) {
	if !a.cfg.needsSocket() {
		a.m.dialplanFollow.WithLabelValues("disabled").Inc()
		return
	}
	callID := e.CallID
	if callID == "" {
		callID = e.Call.ID
	}
	if !a.legs.enriched(e.Call.ID, call.CleanCallID(callID)) {
		a.m.dialplanFollow.WithLabelValues("full").Inc()
		return
	}
	a.m.dialplanFollow.WithLabelValues("followed").Inc()
}

// FollowReady is Follow; the event connection needs no subscription, so
// the call is ready at once.
func (a *Adapter) FollowReady(e call.Enriched) <-chan struct{} {
	a.Follow(e)
	return call.ReadyNow()
}
