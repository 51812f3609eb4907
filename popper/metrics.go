package popper

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	eventsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_popper_events_total",
		Help: "Reports from the adapters, by kind (enriched, leg, end), and contacts offered and ended (contact, contact_end; POST /v1/contacts).",
	}, []string{"kind"})
	eventsDroppedTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_popper_events_dropped_total",
		Help: "Adapter reports dropped because the popper's queue was full.",
	})
	popsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_popper_pops_total",
		Help: "Pops produced, by state.",
	}, []string{"state"})
	evictedTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_popper_calls_evicted_total",
		Help: "Calls forgotten early because popper.max_calls was reached.",
	})
	streamsGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "callpop_popper_streams",
		Help: "Agent SSE streams connected to this instance.",
	})
	streamDropsTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_popper_stream_slow_total",
		Help: "SSE streams closed because the client did not keep up (it reconnects and replays).",
	})
	authFailuresTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_popper_auth_failures_total",
		Help: "Rejected agent requests, by reason (token, agent, origin).",
	}, []string{"reason"})
	pubsubErrorsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_popper_pubsub_errors_total",
		Help: "Redis Pub/Sub failures, by op (publish, subscribe, catch_up, decode, queue_full, retry_full); a failed publish is delivered locally and published again.",
	}, []string{"op"})
	popsPublishedTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_popper_pubsub_published_total",
		Help: "Pops this instance published to Redis (on their agent group's channel).",
	})
	popsDeliveredTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_popper_pubsub_delivered_total",
		Help: "Pops received from Redis for an agent with a stream on this instance.",
	})
	popsNotOursTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_popper_pubsub_not_ours_total",
		Help: "Pops received from Redis for an agent with no stream on this instance (another agent of a group held here); should stay near 0.",
	})
	groupSubsGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "callpop_popper_pubsub_groups",
		Help: "Agent-group channels this instance is subscribed to (one per group with a stream here).",
	})
	webhookTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_popper_webhook_deliveries_total",
		Help: "Webhook deliveries, by result (ok, retry, failed, gave_up).",
	}, []string{"result"})
	actionsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_popper_actions_total",
		Help: "One-click actions sent for agents, by result (ok, failed, busy).",
	}, []string{"result"})
	webhookDroppedTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "callpop_popper_webhook_dropped_total",
		Help: "Pops not sent to a webhook because its queue was full.",
	})
	deliverSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "callpop_popper_delivery_seconds",
		Help:    "From the adapter's report to the pop handed to the agent streams of this instance.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	})
)
