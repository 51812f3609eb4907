package crm

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	case d.Histogram != nil:
		return float64(d.Histogram.GetSampleCount())
	}
	return -1
}

func TestMetricsCount(t *testing.T) {
	srv := newCRMServer(t, testCustomers)
	srv.status.Store(0)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("metrics", srv.URL)}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	hits := value(lookupsTotal.WithLabelValues("hit"))
	misses := value(lookupsTotal.WithLabelValues("miss"))
	localHits := value(cacheTotal.WithLabelValues("local", "hit"))
	ctx := context.Background()
	_, _ = c.Lookup(ctx, q("+14155550123"))
	_, _ = c.Lookup(ctx, q("+14155550123"))
	_, _ = c.Lookup(ctx, q("+442079460000"))
	if d := value(lookupsTotal.WithLabelValues("hit")) - hits; d != 2 {
		t.Fatalf("hits +%v, want +2", d)
	}
	if d := value(lookupsTotal.WithLabelValues("miss")) - misses; d != 1 {
		t.Fatalf("misses +%v, want +1", d)
	}
	if d := value(cacheTotal.WithLabelValues("local", "hit")) - localHits; d != 1 {
		t.Fatalf("local cache hits +%v, want +1", d)
	}
	if n := value(sourceSeconds.WithLabelValues("metrics", "hit").(prometheus.Histogram)); n < 1 {
		t.Fatal("no source latency recorded")
	}
	if v := value(breakerState.WithLabelValues("metrics")); v != 0 {
		t.Fatalf("breaker state %v, want 0 (closed)", v)
	}
}
