package crm

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics live on the default registry (package-level, so tests that build
// several CRMs do not register twice).
var (
	lookupsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_crm_lookups_total",
		Help: "CRM look-ups by result: hit, miss, error, timeout.",
	}, []string{"result"})
	sourceSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "callpop_crm_source_seconds",
		Help:    "Latency of one CRM source request by source and result (hit, miss, error, open, busy: no free slot within the timeout).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .2, .3, .5, 1, 2, 5},
	}, []string{"source", "result"})
	cacheTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_cache_requests_total",
		Help: "Cache reads by tier (local, redis) and result (hit, miss, stale, invalid, error).",
	}, []string{"tier", "result"})
	redisSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "callpop_cache_redis_seconds",
		Help:    "Latency of Redis cache commands by operation (get, set, del).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	}, []string{"op"})
	breakerState = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "callpop_crm_breaker_state",
		Help: "Circuit breaker state by breaker (source name or redis): 0 closed, 1 half-open, 2 open.",
	}, []string{"breaker"})
	refreshTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_cache_refreshes_total",
		Help: "Background refreshes (stale-while-revalidate and late answers after a deadline) by result.",
	}, []string{"result"})
)

// The hot path's counters, resolved once.
var (
	localHits    = cacheTotal.WithLabelValues("local", "hit")
	localStale   = cacheTotal.WithLabelValues("local", "stale")
	localMisses  = cacheTotal.WithLabelValues("local", "miss")
	lookupHits   = lookupsTotal.WithLabelValues("hit")
	lookupMisses = lookupsTotal.WithLabelValues("miss")
)
