package esl

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	framesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_esl_frames_total",
		Help: "ESL frames read, by kind (event, disconnect, other = unknown content type skipped, ...).",
	}, []string{"pbx", "kind"})
	callsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_esl_calls_total",
		Help: "Calls handled, by mode and outcome (released, dead = caller gone, late = released after the budget, overload, skipped = not an inbound leg, error).",
	}, []string{"pbx", "mode", "outcome"})
	callSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "callpop_esl_call_seconds",
		Help:    "From the event read to the call released (exit / uuid_transfer answered).",
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .3, .5, 1},
	}, []string{"pbx", "mode"})
	reconnectsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_esl_reconnects_total",
		Help: "Event socket connections (re)established.",
	}, []string{"pbx"})
	reconciledTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_esl_reconciled_total",
		Help: "Parked calls found by reconcile after a (re)connect and processed.",
	}, []string{"pbx"})
	varsDropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_esl_variables_dropped_total",
		Help: "Rule variables left out because one uuid_setvar_multi takes 64 pairs (callpop's own always go).",
	}, []string{"pbx"})
	panicsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_esl_panics_total",
		Help: "Panics recovered at an event-loop boundary.",
	}, []string{"pbx"})
	originateTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_esl_originate_total",
		Help: "Callbacks originated (bgapi originate), by outcome: connected, busy, no_answer, failed, error (not placed: no event connection, refused, bad request).",
	}, []string{"pbx", "outcome"})
	legEventsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_esl_leg_events_total",
		Help: "Agent-leg events reported to the popper, by state.",
	}, []string{"pbx", "state"})
)

// defaultPBX is the pbx label of an adapter given no name (adapters.Deps.PBX).
const defaultPBX = "freeswitch"

// metrics are one adapter's series of the metrics above, labelled once, in
// New, with the name of the PBX it serves (a pbxes entry's name;
// "freeswitch" for the single pbx section): a call only adds its own labels.
type metrics struct {
	frames         *prometheus.CounterVec // by kind
	calls          *prometheus.CounterVec // by mode, outcome
	callSeconds    prometheus.ObserverVec // by mode
	reconnects     prometheus.Counter
	reconciled     prometheus.Counter
	varsDropped    prometheus.Counter
	panics         prometheus.Counter
	legEvents      *prometheus.CounterVec // by state
	dialplanFollow *prometheus.CounterVec // by result
	originate      *prometheus.CounterVec // by outcome
}

// newMetrics returns the series of the PBX named pbx ("" is defaultPBX).
func newMetrics(pbx string) *metrics {
	if pbx == "" {
		pbx = defaultPBX
	}
	l := prometheus.Labels{"pbx": pbx}
	return &metrics{
		frames:         framesTotal.MustCurryWith(l),
		calls:          callsTotal.MustCurryWith(l),
		callSeconds:    callSeconds.MustCurryWith(l),
		reconnects:     reconnectsTotal.With(l),
		reconciled:     reconciledTotal.With(l),
		varsDropped:    varsDropped.With(l),
		panics:         panicsTotal.With(l),
		legEvents:      legEventsTotal.MustCurryWith(l),
		dialplanFollow: dialplanFollowTotal.MustCurryWith(l),
		originate:      originateTotal.MustCurryWith(l),
	}
}
