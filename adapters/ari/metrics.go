package ari

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	metricCalls = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_calls_total",
		Help: "Channels handled from StasisStart or reconcile, by how they left Stasis (continued, watchdog, gone, error).",
	}, []string{"pbx", "outcome"})
	metricContinueSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "callpop_ari_continue_seconds",
		Help:    "Time from reading StasisStart to Asterisk accepting the continue.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .2, .3, .5, 1},
	}, pbxLabel)
	metricBudgetMiss = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_budget_miss_total",
		Help: "Channels continued after their deadline budget had run out.",
	}, pbxLabel)
	metricGone = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_caller_gone_total",
		Help: "Calls whose channel was gone or out of Stasis (404/409) while callpop enriched it: the caller hung up.",
	}, pbxLabel)
	metricRESTErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_rest_errors_total",
		Help: "ARI REST requests that failed other than with 404/409, by operation.",
	}, []string{"pbx", "op"})
	metricEvents = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_events_total",
		Help: "ARI events read from the WebSocket.",
	}, pbxLabel)
	metricUnknownEvents = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_events_unknown_total",
		Help: "ARI events of a type the ari/v5 library does not know; skipped.",
	}, pbxLabel)
	metricBadEvents = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_events_bad_total",
		Help: "ARI events that could not be decoded; skipped.",
	}, pbxLabel)
	metricReconnects = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_reconnects_total",
		Help: "WebSocket connections opened after the first one.",
	}, pbxLabel)
	metricReconciled = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_reconciled_total",
		Help: "Channels found waiting in the app after a (re)connect and taken over.",
	}, pbxLabel)
	metricReplaced = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_app_replaced_total",
		Help: "ApplicationReplaced received: another connection took the app name.",
	}, pbxLabel)
	metricConnected = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "callpop_ari_connected",
		Help: "1 while the ARI event WebSocket is connected and reconciled.",
	}, pbxLabel)
	metricPanics = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_panics_total",
		Help: "Panics recovered in the ARI adapter's event or call handling.",
	}, pbxLabel)
	metricLegs = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_legs_total",
		Help: "Agent-leg events reported to the pop sink, by state.",
	}, []string{"pbx", "state"})
	metricSessionsRefused = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_sessions_refused_total",
		Help: "Requests whose new HTTP connection Asterisk closed without answering (beyond http.conf sessionlimit).",
	}, pbxLabel)
	metricApplied = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_decisions_applied_total",
		Help: "Decisions by what reached the channel: whole, none (a request failed: CALLPOP_MATCH stays empty) or late (continued before the variables could be set).",
	}, []string{"pbx", "result"})
	metricCallerVarsUnread = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_caller_vars_unread_total",
		Help: "Calls that would have been called anonymous without their CALLERID(ani)/CALLERID(num-pres), unread in time: decided timeout instead.",
	}, pbxLabel)
	metricOriginate = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_originate_total",
		Help: "Callbacks originated (POST /channels into the dialplan), by outcome: connected, busy, no_answer, failed, or error (Asterisk could not be asked or refused the request).",
	}, []string{"pbx", "outcome"})
	metricFollowFull = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_follow_full_total",
		Help: "Enriched calls not followed because pbx.asterisk.max_follow was reached.",
	}, pbxLabel)
)

// pbxLabel is the label every adapter metric carries: the name of the PBX
// the adapter serves (a pbxes entry's name; "asterisk" for the single pbx
// section), so several Asterisks under one callpop are told apart.
var pbxLabel = []string{"pbx"}

// defaultPBX is the pbx label of an adapter given no name (adapters.Deps.PBX).
const defaultPBX = "asterisk"

// metrics are one adapter's series of the metrics above, labelled with its
// PBX's name once, in New: a call only adds its own labels (outcome, op…).
type metrics struct {
	calls            *prometheus.CounterVec // by outcome
	continueSeconds  prometheus.Observer
	budgetMiss       prometheus.Counter
	gone             prometheus.Counter
	restErrors       *prometheus.CounterVec // by op
	events           prometheus.Counter
	unknownEvents    prometheus.Counter
	badEvents        prometheus.Counter
	reconnects       prometheus.Counter
	reconciled       prometheus.Counter
	replaced         prometheus.Counter
	connected        prometheus.Gauge
	panics           prometheus.Counter
	legs             *prometheus.CounterVec // by state
	sessionsRefused  prometheus.Counter
	applied          *prometheus.CounterVec // by result
	callerVarsUnread prometheus.Counter
	followFull       prometheus.Counter
	dialplanFollow   *prometheus.CounterVec // by result
	dialplanQueued   prometheus.Gauge
	originate        *prometheus.CounterVec // by outcome
}

// newMetrics returns the series of the PBX named pbx ("" is defaultPBX).
func newMetrics(pbx string) *metrics {
	if pbx == "" {
		pbx = defaultPBX
	}
	l := prometheus.Labels{"pbx": pbx}
	return &metrics{
		calls:            metricCalls.MustCurryWith(l),
		continueSeconds:  metricContinueSeconds.With(l),
		budgetMiss:       metricBudgetMiss.With(l),
		gone:             metricGone.With(l),
		restErrors:       metricRESTErrors.MustCurryWith(l),
		events:           metricEvents.With(l),
		unknownEvents:    metricUnknownEvents.With(l),
		badEvents:        metricBadEvents.With(l),
		reconnects:       metricReconnects.With(l),
		reconciled:       metricReconciled.With(l),
		replaced:         metricReplaced.With(l),
		connected:        metricConnected.With(l),
		panics:           metricPanics.With(l),
		legs:             metricLegs.MustCurryWith(l),
		sessionsRefused:  metricSessionsRefused.With(l),
		applied:          metricApplied.MustCurryWith(l),
		callerVarsUnread: metricCallerVarsUnread.With(l),
		followFull:       metricFollowFull.With(l),
		dialplanFollow:   metricDialplanFollow.MustCurryWith(l),
		dialplanQueued:   metricDialplanQueued.With(l),
		originate:        metricOriginate.MustCurryWith(l),
	}
}
