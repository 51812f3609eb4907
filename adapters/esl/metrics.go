package esl

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	framesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_esl_frames_total",
		Help: "ESL frames read, by kind (event, disconnect, other = unknown content type skipped, ...).",
	}, []string{"kind"})
	callsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_esl_calls_total",
		Help: "Calls handled, by mode and outcome (released, dead = caller gone, late = released after the budget, overload, skipped = not an inbound leg, error).",
	}, []string{"mode", "outcome"})
	callSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "callpop_esl_call_seconds",
		Help:    "From the event read to the call released (exit / uuid_transfer answered).",
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .3, .5, 1},
	}, []string{"mode"})
	reconnectsTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_esl_reconnects_total",
		Help: "Event socket connections (re)established.",
	})
	reconciledTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_esl_reconciled_total",
		Help: "Parked calls found by reconcile after a (re)connect and processed.",
	})
	varsDropped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_esl_variables_dropped_total",
		Help: "Rule variables left out because one uuid_setvar_multi takes 64 pairs (callpop's own always go).",
	})
	panicsTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_esl_panics_total",
		Help: "Panics recovered at an event-loop boundary.",
	})
	legEventsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_esl_leg_events_total",
		Help: "Agent-leg events reported to the popper, by state.",
	}, []string{"state"})
)
