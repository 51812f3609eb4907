package bench

import (
	"math"
	"slices"
	"sync"
	"time"
)

// maxSamples bounds the samples one series keeps (beyond it, reservoir sampling).
const maxSamples = 1 << 21

// series collects latencies of one class of calls.
type series struct {
	mu   sync.Mutex
	n    int
	vals []time.Duration
	seed uint64
}

func (s *series) add(d time.Duration) {
	s.mu.Lock()
	s.n++
	if len(s.vals) < maxSamples {
		s.vals = append(s.vals, d)
	} else {
		// xorshift reservoir: keep a uniform sample of everything seen
		s.seed ^= s.seed << 13
		s.seed ^= s.seed >> 7
		s.seed ^= s.seed << 17
		if j := int(s.seed % uint64(s.n)); j < maxSamples {
			s.vals[j] = d
		}
	}
	s.mu.Unlock()
}

// sorted returns a sorted copy of the samples.
func (s *series) sorted() []time.Duration {
	s.mu.Lock()
	out := slices.Clone(s.vals)
	s.mu.Unlock()
	slices.Sort(out)
	return out
}

// Latency summarises one class of calls, in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

func summarize(sorted []time.Duration, count int) Latency {
	if len(sorted) == 0 {
		return Latency{}
	}
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	return Latency{
		Count: count,
		P50:   ms(quantile(sorted, 0.50)),
		P90:   ms(quantile(sorted, 0.90)),
		P99:   ms(quantile(sorted, 0.99)),
		P999:  ms(quantile(sorted, 0.999)),
		Max:   ms(sorted[len(sorted)-1]),
		Mean:  ms(sum / time.Duration(len(sorted))),
	}
}

// quantile is the nearest-rank quantile of sorted samples.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// ms is d in milliseconds rounded to microseconds.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/1e3) / 1e3
}
