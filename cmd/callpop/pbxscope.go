package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
)

var pbxCallsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "callpop_pbx_calls_total",
	Help: "Calls an adapter asked a decision for, by PBX (pbxes[].name, or the kind of the single pbx section) and result: the decision's match, or inherited (a call passed over a trunk from another PBX, carrying its call id: the first decision again, no second look-up).",
}, []string{"pbx", "result"})

// Bounds of the decisions kept for calls that may pass to another PBX.
const (
	sharedDecisions   = 20000
	sharedDecisionTTL = 4 * time.Hour
)

// decisionStore keeps recent decisions by call id, for a call that passes
// from one PBX to another carrying its call id (X-Callpop-Call-Id →
// CALLPOP_CALL_ID): the receiving PBX's channel gets the first decision,
// with no second CRM look-up. Safe for concurrent use.
type decisionStore struct {
	lru *expirable.LRU[string, call.Decision]
}

func newDecisionStore() *decisionStore {
	return &decisionStore{lru: expirable.NewLRU[string, call.Decision](sharedDecisions, nil, sharedDecisionTTL)}
}

func (s *decisionStore) put(d call.Decision) {
	if d.CallID != "" {
		s.lru.Add(d.CallID, d)
	}
}

func (s *decisionStore) get(callID string) (call.Decision, bool) {
	if callID == "" {
		return call.Decision{}, false
	}
	return s.lru.Get(callID)
}

// pbxScope is what one PBX's adapter gets as its decider and its sink: the
// pipeline's, with the PBX's name on every call. With pbxes (namespaced)
// call ids and channel ids are "<name>/<the PBX's id>", so two PBXs that
// reuse a channel id make two calls; with the single pbx section ids stay
// the PBX's own, as before pbxes.
type pbxScope struct {
	name       string
	namespaced bool
	decider    call.Decider
	sink       call.LegSink
	shared     *decisionStore // several PBXs: decisions a call carries to another PBX; nil with one
	log        *slog.Logger
}

// qualify names a PBX channel id after the PBX ("" stays "").
func (s *pbxScope) qualify(id string) string {
	if !s.namespaced || id == "" {
		return id
	}
	return s.name + "/" + id
}

// Decide is DecideAsync, waited for.
func (s *pbxScope) Decide(ctx context.Context, c call.Call) call.Decision {
	out := make(chan call.Decision, 1)
	s.DecideAsync(ctx, c, func(d call.Decision) { out <- d })
	return <-out
}

// DecideAsync asks the pipeline for c's decision under the PBX's call id. A
// channel that carries the call id of a call decided on another PBX (a
// transfer over a trunk) gets that call's decision at once: one call, one
// look-up, its pops following it.
func (s *pbxScope) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	if s.shared != nil && c.Inherited != "" {
		if d, ok := s.shared.get(call.CleanCallID(c.Inherited)); ok {
			pbxCallsTotal.WithLabelValues(s.name, "inherited").Inc()
			d.Elapsed = 0
			done(d)
			return
		}
	}
	c.ID = s.qualify(c.ID)
	adapters.DecideAsync(ctx, s.decider, c, s.log, func(d call.Decision) {
		pbxCallsTotal.WithLabelValues(s.name, string(d.Match)).Inc()
		if s.shared != nil && d.Match != call.MatchTimeout {
			s.shared.put(d)
		}
		done(d)
	})
}

// CallEnriched reports the call with its PBX's name.
func (s *pbxScope) CallEnriched(e call.Enriched) {
	e.PBX = s.name
	e.Call.ID = s.qualify(e.Call.ID)
	s.sink.CallEnriched(e)
}

// AgentLeg reports the leg with its PBX's name.
func (s *pbxScope) AgentLeg(e call.LegEvent) {
	e.PBX = s.name
	e.CallerChannel = s.qualify(e.CallerChannel)
	e.Leg = s.qualify(e.Leg)
	s.sink.AgentLeg(e)
}

// CallEnded reports the end with the caller's channel named after its PBX.
func (s *pbxScope) CallEnded(e call.CallEnd) {
	e.CallerChannel = s.qualify(e.CallerChannel)
	s.sink.CallEnded(e)
}

// pbxFollower makes calls decided for the dialplan (FastAGI, /v1/route with
// a call id) followed by the PBX adapters: the call registered once with
// the popper, and each adapter that may carry it asked to follow its agent
// legs (an Asterisk adapter for FastAGI; any for /v1/route, which does not
// say which PBX asks). Legs find the call by the call id they inherit.
// Ready once every adapter's following has taken hold or never will.
type pbxFollower struct {
	sink     call.LegSink
	adapters []pbxAdapter
}

func (f pbxFollower) Follow(e call.Enriched) { f.FollowReady(e) }

func (f pbxFollower) FollowReady(e call.Enriched) <-chan struct{} {
	f.sink.CallEnriched(e)
	var waits []<-chan struct{}
	for _, pa := range f.adapters {
		if e.Call.PBX == "agi" && pa.entry.Kind != PBXAsterisk {
			continue
		}
		fl, ok := pa.adapter.(call.Follower)
		if !ok {
			continue
		}
		if rf, ok := fl.(call.ReadyFollower); ok {
			waits = append(waits, rf.FollowReady(e))
			continue
		}
		fl.Follow(e)
	}
	switch len(waits) {
	case 0:
		return call.ReadyNow()
	case 1:
		return waits[0]
	}
	all := make(chan struct{})
	go func() {
		for _, w := range waits {
			<-w
		}
		close(all)
	}()
	return all
}

// pbxReady is callpop_pbx_ready: each PBX's readiness as /readyz reports it,
// read at scrape time from the running sidecar's checks.
var pbxReady = func() *pbxReadyCollector {
	c := &pbxReadyCollector{desc: prometheus.NewDesc("callpop_pbx_ready",
		"1 while the PBX's adapter is connected and receiving calls, by PBX (pbxes[].name, or the kind of the single pbx section).",
		[]string{"pbx"}, nil)}
	prometheus.MustRegister(c)
	return c
}()

type pbxReadyCollector struct {
	desc *prometheus.Desc
	rd   atomic.Pointer[readiness]
}

func (c *pbxReadyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *pbxReadyCollector) Collect(ch chan<- prometheus.Metric) {
	rd := c.rd.Load()
	if rd == nil {
		return
	}
	rd.mu.Lock()
	checks := append([]readyCheck(nil), rd.checks...)
	rd.mu.Unlock()
	for _, chk := range checks {
		if chk.pbx == "" {
			continue
		}
		v := 0.0
		if ok, _ := chk.ready(); ok {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, chk.pbx)
	}
}
