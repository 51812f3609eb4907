package callbacks

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	requestsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_callbacks_requests_total",
		Help: "POST /v1/callbacks requests by result: created, updated, invalid, rate_limited, error.",
	}, []string{"result"})
	attemptsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_callbacks_attempts_total",
		Help: "Callback attempts by outcome: connected, busy, no_answer, failed, unknown (the instance dialling died), pbx_error (the PBX could not be asked).",
	}, []string{"outcome"})
	pendingGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "callpop_callbacks_pending",
		Help: "Callback requests pending or being dialled (across instances sharing the Redis), as this instance last read.",
	})
)
