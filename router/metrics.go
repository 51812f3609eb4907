package router

import (
	"github.com/callpop/callpop/call"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	decisions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_router_decisions_total",
		Help: "Routing decisions, by match (hit, miss, anonymous, invalid, timeout, error).",
	}, []string{"match"})
	decideSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "callpop_router_decide_seconds",
		Help:    "Time from a call's arrival to its decision.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .2, .3, .5, 1},
	})
	ruleMatches = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_router_rule_matches_total",
		Help: "Rules that matched, by rule name.",
	}, []string{"rule"})
	ruleErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_router_rule_errors_total",
		Help: "Rule expressions that failed at run time (the rule or output was skipped).",
	})
	reloads = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_router_reloads_total",
		Help: "Rule reloads, by result (ok, error).",
	}, []string{"result"})
	blockListNumbers = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "callpop_router_block_list_numbers",
		Help: "Entries in the block-list file currently loaded.",
	})
	blockListErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_router_block_list_errors_total",
		Help: "Block-list failures, by source (file, redis).",
	}, []string{"source"})
	agiSessions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_router_fastagi_sessions_total",
		Help: "FastAGI sessions, by result (ok, hangup, closed, error, refused).",
	}, []string{"result"})
	agiANI = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_router_fastagi_ani_total",
		Help: "FastAGI sessions by where the ANI came from: get (GET VARIABLE CALLERID(ani)), script (ani= in the AGI URL), refused (ani= malformed, oversized or hostile; decided without the ANI).",
	}, []string{"source"})
	byChannel = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_decisions_by_channel_total",
		Help: "Routing decisions, by the contact's channel (voice, chat, email, sms, social, callback; other for none of these).",
	}, []string{"channel"})
	httpRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_router_http_requests_total",
		Help: "Dialplan HTTP requests, by endpoint and status code.",
	}, []string{"endpoint", "code"})
)

// decisionCounters are the decisions counter's children, resolved once.
var decisionCounters = func() map[call.Match]prometheus.Counter {
	m := map[call.Match]prometheus.Counter{}
	for _, k := range []call.Match{call.MatchHit, call.MatchMultiple, call.MatchMiss, call.MatchAnonymous, call.MatchInvalid, call.MatchTimeout, call.MatchError} {
		m[k] = decisions.WithLabelValues(string(k))
	}
	return m
}()

func countDecision(m call.Match) {
	if c, ok := decisionCounters[m]; ok {
		c.Inc()
		return
	}
	decisions.WithLabelValues(string(m)).Inc()
}

// Channels are the values of callpop_decisions_by_channel_total's channel
// label, besides "other" (a channel none of these: never expected).
var Channels = []string{call.ChannelVoice, call.ChannelChat, call.ChannelEmail, call.ChannelSMS, call.ChannelSocial, call.ChannelCallback}

// channelCounters are the by-channel counter's children, resolved once (so
// the series exist, at 0, from the start).
var channelCounters = func() map[string]prometheus.Counter {
	m := map[string]prometheus.Counter{}
	for _, ch := range Channels {
		m[ch] = byChannel.WithLabelValues(ch)
	}
	return m
}()

// countChannel counts one decision under its channel; the label stays
// bounded whatever a Call carries.
func countChannel(ch string) {
	if c, ok := channelCounters[ch]; ok {
		c.Inc()
		return
	}
	byChannel.WithLabelValues("other").Inc()
}
