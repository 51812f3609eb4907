// Package stats is callpop's live statistics for supervisors: the page
// /stats, the JSON snapshot GET /v1/stats and its stream GET
// /v1/stats/stream. Every figure is read from the Prometheus registry that
// /metrics serves (the same counters, never a copy of their own): once a
// second the registry is read into a sample, and the last minute and the
// last hour are differences between samples (at most 3600 kept). The last
// calls list is the one thing kept here: it is a log, not a counter.
package stats

import (
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/callpop/callpop/call"
)

// MaxSamples bounds the samples kept: one an hour at one a second.
const MaxSamples = 3600

// maxSeries bounds the series one sample holds (label values come from the
// config: sources, breakers, states).
const maxSeries = 4096

// Matches are the decision outcomes the page shows, in its order.
var Matches = []string{"hit", "miss", "multiple", "anonymous", "invalid", "timeout", "error"}

// Channels are the channels the page counts decisions by, in its order
// (callpop_decisions_by_channel_total's label; "other" only when counted).
var Channels = []string{call.ChannelVoice, call.ChannelChat, call.ChannelEmail, call.ChannelSMS, call.ChannelSocial, call.ChannelCallback}

// The metric families read. Keep in step with the packages that define them.
const (
	famDecisions   = "callpop_router_decisions_total"
	famChannels    = "callpop_decisions_by_channel_total"
	famCache       = "callpop_cache_requests_total"
	famSource      = "callpop_crm_source_seconds"
	famBreaker     = "callpop_crm_breaker_state"
	famPops        = "callpop_popper_pops_total"
	famStreams     = "callpop_popper_streams"
	famARIMiss     = "callpop_ari_budget_miss_total"
	famESLCalls    = "callpop_esl_calls_total"
	famARIConn     = "callpop_ari_connected"
	famARIReconn   = "callpop_ari_reconnects_total"
	famESLReconn   = "callpop_esl_reconnects_total"
	sourceBucketSp = "\x00" // separates a source's name from its bucket bound in a series key
)

// Options configure a Stats.
type Options struct {
	// Gatherer is the registry read; prometheus.DefaultGatherer (what
	// /metrics serves) when nil.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// Interval between samples; one second when 0 (tests shorten it).
	Interval time.Duration
}

// sample is the registry read at one moment: counters by series key, and
// the gauges (only the latest sample's are shown).
type sample struct {
	at     time.Time
	vals   []float64 // by series index; a series born later is 0 in older samples
	gauges gauges
}

type gauges struct {
	breakers     map[string]float64
	streams      float64
	ariConnected float64 // the least of callpop_ari_connected's series (one per Asterisk)
	ariSeen      bool    // the ARI adapter's gauge exists (an Asterisk adapter ran)
}

// Stats samples the registry and serves the page and snapshots.
type Stats struct {
	g        prometheus.Gatherer
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	index   map[string]int // series key → position in sample.vals
	keys    []string       // position → series key
	ring    []sample       // oldest first once full: ring[(head+i)%len]
	head    int            // position of the oldest sample when full
	tick    chan struct{}  // closed and replaced after each sample
	calls   recent
	stopped bool

	stop chan struct{}
	done chan struct{}
}

// New reads the registry once and starts sampling it every second until
// Close.
func New(o Options) *Stats {
	if o.Gatherer == nil {
		o.Gatherer = prometheus.DefaultGatherer
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	s := &Stats{g: o.Gatherer, log: o.Logger.With("component", "stats"), interval: o.Interval,
		index: map[string]int{}, tick: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	s.sampleNow()
	go s.run()
	return s
}

// Close stops the sampling; snapshots still answer from what was sampled.
func (s *Stats) Close() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
}

func (s *Stats) run() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sampleNow()
		}
	}
}

// sampleNow reads the registry into the ring and wakes the streams.
func (s *Stats) sampleNow() {
	smp, err := s.read()
	if err != nil {
		s.log.Warn("reading the metrics registry", "err", err)
	}
	s.mu.Lock()
	if len(s.ring) < MaxSamples {
		s.ring = append(s.ring, smp)
	} else {
		s.ring[s.head] = smp
		s.head = (s.head + 1) % MaxSamples
	}
	close(s.tick)
	s.tick = make(chan struct{})
	s.mu.Unlock()
}

// read gathers the registry into a sample (not stored).
func (s *Stats) read() (sample, error) {
	fams, err := s.g.Gather()
	smp := sample{at: time.Now(), gauges: gauges{breakers: map[string]float64{}}}
	vals := map[string]float64{}
	for _, f := range fams {
		name := f.GetName()
		for _, m := range f.GetMetric() {
			switch name {
			case famDecisions:
				vals["d|"+label(m, "match")] += m.GetCounter().GetValue()
			case famChannels:
				vals["ch|"+label(m, "channel")] += m.GetCounter().GetValue()
			case famCache:
				vals["c|"+label(m, "tier")+"|"+label(m, "result")] += m.GetCounter().GetValue()
			case famSource:
				h := m.GetHistogram()
				src := label(m, "source")
				vals["hc|"+src] += float64(h.GetSampleCount())
				for _, b := range h.GetBucket() {
					vals["hb|"+src+sourceBucketSp+formatBound(b.GetUpperBound())] += float64(b.GetCumulativeCount())
				}
			case famPops:
				vals["p|"+label(m, "state")] += m.GetCounter().GetValue()
			case famARIMiss:
				vals["bm|asterisk"] += m.GetCounter().GetValue()
			case famESLCalls:
				if label(m, "outcome") == "late" {
					vals["bm|freeswitch"] += m.GetCounter().GetValue()
				}
			case famARIReconn:
				vals["r|asterisk"] += m.GetCounter().GetValue()
			case famESLReconn:
				vals["r|freeswitch"] += m.GetCounter().GetValue()
			case famBreaker:
				smp.gauges.breakers[label(m, "breaker")] = m.GetGauge().GetValue()
			case famStreams:
				smp.gauges.streams = m.GetGauge().GetValue()
			case famARIConn: // one series per Asterisk (pbx label): connected while all are
				if v := m.GetGauge().GetValue(); !smp.gauges.ariSeen || v < smp.gauges.ariConnected {
					smp.gauges.ariConnected = v
				}
				smp.gauges.ariSeen = true
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	smp.vals = make([]float64, len(s.keys), len(s.keys)+4)
	for k, v := range vals {
		i, ok := s.index[k]
		if !ok {
			if len(s.keys) >= maxSeries {
				continue
			}
			i = len(s.keys)
			s.index[k] = i
			s.keys = append(s.keys, k)
			smp.vals = append(smp.vals, 0)
		}
		smp.vals[i] = v
	}
	return smp, err
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func formatBound(b float64) string {
	if math.IsInf(b, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(b, 'g', -1, 64)
}

// view reads a sample's counters by key.
type view struct {
	s    *Stats
	smp  sample
	keys []string
}

func (v view) get(k string) float64 {
	i, ok := v.s.index[k]
	if !ok || i >= len(v.smp.vals) {
		return 0
	}
	return v.smp.vals[i]
}

// sum adds every series whose key starts with prefix.
func (v view) sum(prefix string) float64 {
	t := 0.0
	for i, k := range v.keys {
		if strings.HasPrefix(k, prefix) && i < len(v.smp.vals) {
			t += v.smp.vals[i]
		}
	}
	return t
}

// at returns the i-th sample, oldest first. Caller holds mu.
func (s *Stats) at(i int) sample {
	if len(s.ring) < MaxSamples {
		return s.ring[i]
	}
	return s.ring[(s.head+i)%MaxSamples]
}

// before returns the newest sample taken at or before t, or the oldest one
// when none is that old. Caller holds mu.
func (s *Stats) before(t time.Time) sample {
	n := len(s.ring)
	// the first sample after t
	i := sort.Search(n, func(i int) bool { return s.at(i).at.After(t) })
	if i == 0 {
		return s.at(0)
	}
	return s.at(i - 1)
}

// latest returns the newest sample.
func (s *Stats) latest() sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at(len(s.ring) - 1)
}

// ticked returns a channel closed at the next sample.
func (s *Stats) ticked() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tick
}
