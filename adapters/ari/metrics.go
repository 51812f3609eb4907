package ari

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	metricCalls = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_calls_total",
		Help: "Channels handled from StasisStart or reconcile, by how they left Stasis (continued, watchdog, gone, error).",
	}, []string{"outcome"})
	metricContinueSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "callpop_ari_continue_seconds",
		Help:    "Time from reading StasisStart to Asterisk accepting the continue.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .2, .3, .5, 1},
	})
	metricBudgetMiss = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_budget_miss_total",
		Help: "Channels continued after their deadline budget had run out.",
	})
	metricGone = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_caller_gone_total",
		Help: "Calls whose channel was gone or out of Stasis (404/409) while callpop enriched it: the caller hung up.",
	})
	metricRESTErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_rest_errors_total",
		Help: "ARI REST requests that failed other than with 404/409, by operation.",
	}, []string{"op"})
	metricEvents = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_events_total",
		Help: "ARI events read from the WebSocket.",
	})
	metricUnknownEvents = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_events_unknown_total",
		Help: "ARI events of a type the ari/v5 library does not know; skipped.",
	})
	metricBadEvents = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_events_bad_total",
		Help: "ARI events that could not be decoded; skipped.",
	})
	metricReconnects = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_reconnects_total",
		Help: "WebSocket connections opened after the first one.",
	})
	metricReconciled = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_reconciled_total",
		Help: "Channels found waiting in the app after a (re)connect and taken over.",
	})
	metricReplaced = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_app_replaced_total",
		Help: "ApplicationReplaced received: another connection took the app name.",
	})
	metricConnected = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "callpop_ari_connected",
		Help: "1 while the ARI event WebSocket is connected and reconciled.",
	})
	metricPanics = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_panics_total",
		Help: "Panics recovered in the ARI adapter's event or call handling.",
	})
	metricLegs = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_legs_total",
		Help: "Agent-leg events reported to the pop sink, by state.",
	}, []string{"state"})
	metricSessionsRefused = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_sessions_refused_total",
		Help: "Requests whose new HTTP connection Asterisk closed without answering (beyond http.conf sessionlimit).",
	})
	metricApplied = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_decisions_applied_total",
		Help: "Decisions by what reached the channel: whole, none (a request failed: CALLPOP_MATCH stays empty) or late (continued before the variables could be set).",
	}, []string{"result"})
	metricCallerVarsUnread = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_caller_vars_unread_total",
		Help: "Calls that would have been called anonymous without their CALLERID(ani)/CALLERID(num-pres), unread in time: decided timeout instead.",
	})
	metricFollowFull = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_ari_follow_full_total",
		Help: "Enriched calls not followed because pbx.asterisk.max_follow was reached.",
	})
)
