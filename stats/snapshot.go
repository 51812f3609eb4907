package stats

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Snapshot is the body of GET /v1/stats and of each /v1/stats/stream event.
type Snapshot struct {
	At      time.Time `json:"at"`
	Minute  Window    `json:"minute"`
	Hour    Window    `json:"hour"`
	Totals  Totals    `json:"totals"`
	Breaker []Breaker `json:"breakers"`
	// AgentsConnected is callpop_popper_streams: agent streams open on this instance.
	AgentsConnected int   `json:"agents_connected"`
	PBX             PBX   `json:"pbx"`
	Calls           []Row `json:"calls"`
}

// Totals are the counters as /metrics shows them, at At.
type Totals struct {
	Decisions    map[string]float64 `json:"decisions"` // callpop_router_decisions_total by match
	Calls        float64            `json:"calls"`     // their sum
	CacheHits    float64            `json:"cache_hits"`
	CacheReads   float64            `json:"cache_reads"`
	BudgetMisses float64            `json:"budget_misses"`
	Pops         map[string]float64 `json:"pops"` // callpop_popper_pops_total by state
	// Channels are callpop_decisions_by_channel_total by channel (voice,
	// chat, email, sms, social, callback).
	Channels   map[string]float64 `json:"channels"`
	PopsSent   float64            `json:"pops_sent"`
	Reconnects float64            `json:"reconnects"`
}

// Window is one rolling window: the last minute or the last hour.
type Window struct {
	Seconds        float64          `json:"seconds"` // the span covered (shorter just after start-up)
	Calls          float64          `json:"calls"`
	CallsPerSecond float64          `json:"calls_per_second"`
	Matches        map[string]Share `json:"matches"`
	// Channels are the window's decisions by channel (voice, chat, email,
	// sms, social, callback), from callpop_decisions_by_channel_total.
	Channels      map[string]float64 `json:"channels"`
	CacheHitRatio *float64           `json:"cache_hit_ratio"` // null: no cache read
	CRM           []Latency          `json:"crm_latency"`
	BudgetMisses  float64            `json:"budget_misses"`
	PopsSent      float64            `json:"pops_sent"`
	Reconnects    float64            `json:"reconnects"`
	// Chart is calls per step, oldest first: per second over the minute,
	// per minute over the hour.
	Chart     []float64 `json:"chart"`
	ChartStep float64   `json:"chart_step_seconds"`
}

// Share is one match's count and share of the window's calls.
type Share struct {
	Count float64 `json:"count"`
	Share float64 `json:"share"`
}

// Latency is one CRM source's request latency over a window, from
// callpop_crm_source_seconds (every result).
type Latency struct {
	Source   string   `json:"source"`
	Requests float64  `json:"requests"`
	P50ms    *float64 `json:"p50_ms"` // null: no request in the window
	P99ms    *float64 `json:"p99_ms"`
}

// Breaker is one circuit breaker's state from callpop_crm_breaker_state.
type Breaker struct {
	Name  string `json:"name"`
	State string `json:"state"` // closed, half-open, open
}

// PBX is the PBX connection.
type PBX struct {
	Kind       string  `json:"kind"` // asterisk, freeswitch or none
	Connected  bool    `json:"connected"`
	Reason     string  `json:"reason,omitempty"`
	Reconnects float64 `json:"reconnects"` // callpop_ari_reconnects_total + callpop_esl_reconnects_total, all pbx
}

// PBXFunc says what PBX callpop serves and whether it is connected.
type PBXFunc func() PBX

// Snapshot computes the figures at the latest sample.
func (s *Stats) Snapshot(pbx PBXFunc) Snapshot {
	return s.snapshot(s.latest(), pbx)
}

// Fresh reads the registry now and computes the figures at that moment
// (the windows end now), without storing the reading.
func (s *Stats) Fresh(pbx PBXFunc) Snapshot {
	smp, err := s.read()
	if err != nil {
		s.log.Warn("reading the metrics registry", "err", err)
	}
	return s.snapshot(smp, pbx)
}

func (s *Stats) snapshot(now sample, pbx PBXFunc) Snapshot {
	out := Snapshot{At: now.at, Calls: s.calls.list()}
	s.mu.Lock() // the views read the series index, which a sample may grow
	keys := s.keys
	nv := view{s: s, smp: now, keys: keys}
	out.Totals = totals(nv)
	out.Minute = window(nv, view{s: s, smp: s.before(now.at.Add(-time.Minute)), keys: keys})
	out.Minute.Chart, out.Minute.ChartStep = s.chart(now, time.Second, 60, keys), 1
	out.Hour = window(nv, view{s: s, smp: s.before(now.at.Add(-time.Hour)), keys: keys})
	out.Hour.Chart, out.Hour.ChartStep = s.chart(now, time.Minute, 60, keys), 60
	s.mu.Unlock()
	out.AgentsConnected = int(now.gauges.streams)
	names := make([]string, 0, len(now.gauges.breakers))
	for n := range now.gauges.breakers {
		names = append(names, n)
	}
	sort.Strings(names)
	out.Breaker = make([]Breaker, 0, len(names))
	for _, n := range names {
		out.Breaker = append(out.Breaker, Breaker{Name: n, State: breakerName(now.gauges.breakers[n])})
	}
	if pbx != nil {
		out.PBX = pbx()
	}
	if out.PBX.Kind == "" {
		out.PBX.Kind = "none"
	}
	out.PBX.Reconnects = out.Totals.Reconnects
	return out
}

func breakerName(v float64) string {
	switch v {
	case 0:
		return "closed"
	case 1:
		return "half-open"
	}
	return "open"
}

func totals(v view) Totals {
	t := Totals{Decisions: map[string]float64{}, Pops: map[string]float64{}, Channels: map[string]float64{}}
	for _, ch := range Channels {
		t.Channels[ch] = v.get("ch|" + ch)
	}
	for _, m := range Matches {
		t.Decisions[m] = v.get("d|" + m)
	}
	t.Calls = v.sum("d|")
	for i, k := range v.keys {
		if st, ok := strings.CutPrefix(k, "p|"); ok && i < len(v.smp.vals) {
			t.Pops[st] = v.smp.vals[i]
		}
		if m, ok := strings.CutPrefix(k, "d|"); ok && i < len(v.smp.vals) {
			t.Decisions[m] = v.smp.vals[i] // a match the page does not know yet still counts
		}
		if ch, ok := strings.CutPrefix(k, "ch|"); ok && i < len(v.smp.vals) {
			t.Channels[ch] = v.smp.vals[i]
		}
	}
	t.PopsSent = v.sum("p|")
	t.CacheHits, t.CacheReads = cacheFigures(v)
	t.BudgetMisses = v.sum("bm|")
	t.Reconnects = v.sum("r|")
	return t
}

// cacheFigures are the look-ups answered from a cache tier (hit or stale,
// local or Redis) and the look-ups that read the cache: every read of the
// local tier, or of Redis when there is no local tier.
func cacheFigures(v view) (hits, reads float64) {
	hits = v.get("c|local|hit") + v.get("c|local|stale") + v.get("c|redis|hit") + v.get("c|redis|stale")
	reads = v.sum("c|local|")
	if reads == 0 {
		reads = v.sum("c|redis|")
	}
	return hits, reads
}

// window is what happened between then and now.
func window(now, then view) Window {
	w := Window{Seconds: now.smp.at.Sub(then.smp.at).Seconds(), Matches: map[string]Share{}, Channels: map[string]float64{}}
	d := func(k string) float64 { return math.Max(0, now.get(k)-then.get(k)) }
	ds := func(p string) float64 { return math.Max(0, now.sum(p)-then.sum(p)) }
	w.Calls = ds("d|")
	if w.Seconds > 0 {
		w.CallsPerSecond = w.Calls / w.Seconds
	}
	for i, k := range now.keys {
		if m, ok := strings.CutPrefix(k, "d|"); ok && i < len(now.smp.vals) {
			w.Matches[m] = Share{Count: d(k)}
		}
	}
	for _, m := range Matches {
		w.Matches[m] = Share{Count: d("d|" + m)}
	}
	for i, k := range now.keys {
		if ch, ok := strings.CutPrefix(k, "ch|"); ok && i < len(now.smp.vals) {
			w.Channels[ch] = d(k)
		}
	}
	for _, ch := range Channels {
		w.Channels[ch] = d("ch|" + ch)
	}
	for m, sh := range w.Matches {
		if w.Calls > 0 {
			sh.Share = sh.Count / w.Calls
		}
		w.Matches[m] = sh
	}
	nh, nr := cacheFigures(now)
	th, tr := cacheFigures(then)
	if reads := nr - tr; reads > 0 {
		r := math.Max(0, math.Min(1, (nh-th)/reads))
		w.CacheHitRatio = &r
	}
	w.BudgetMisses = ds("bm|")
	w.PopsSent = ds("p|")
	w.Reconnects = ds("r|")
	w.CRM = latencies(now, then)
	return w
}

// latencies are each source's p50 and p99 over the window, interpolated in
// the histogram's buckets as Prometheus's histogram_quantile does.
func latencies(now, then view) []Latency {
	type bucket struct {
		le    float64
		count float64
	}
	buckets := map[string][]bucket{}
	for i, k := range now.keys {
		rest, ok := strings.CutPrefix(k, "hb|")
		if !ok || i >= len(now.smp.vals) {
			continue
		}
		src, le, _ := strings.Cut(rest, sourceBucketSp)
		b, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		buckets[src] = append(buckets[src], bucket{b, math.Max(0, now.smp.vals[i]-then.get(k))})
	}
	srcs := make([]string, 0, len(buckets))
	for src := range buckets {
		srcs = append(srcs, src)
	}
	sort.Strings(srcs)
	out := make([]Latency, 0, len(srcs))
	for _, src := range srcs {
		bs := buckets[src]
		sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
		l := Latency{Source: src, Requests: math.Max(0, now.get("hc|"+src)-then.get("hc|"+src))}
		if l.Requests > 0 {
			les := make([]float64, len(bs))
			counts := make([]float64, len(bs))
			for i, b := range bs {
				les[i], counts[i] = b.le, b.count
			}
			p50 := 1000 * quantile(0.5, les, counts, l.Requests)
			p99 := 1000 * quantile(0.99, les, counts, l.Requests)
			l.P50ms, l.P99ms = &p50, &p99
		}
		out = append(out, l)
	}
	return out
}

// quantile interpolates q in cumulative bucket counts (les ascending, the
// last may be +Inf); total is the observations. In the +Inf bucket it
// answers the highest finite bound.
func quantile(q float64, les, counts []float64, total float64) float64 {
	rank := q * total
	prevLE, prevCount := 0.0, 0.0
	for i, le := range les {
		if counts[i] >= rank && counts[i] > prevCount {
			if math.IsInf(le, 1) {
				return prevLE
			}
			return prevLE + (le-prevLE)*(rank-prevCount)/(counts[i]-prevCount)
		}
		if !math.IsInf(le, 1) {
			prevLE = le
		}
		prevCount = counts[i]
	}
	return prevLE
}

// chart is the calls per step over n steps up to now. Caller holds mu.
func (s *Stats) chart(now sample, step time.Duration, n int, keys []string) []float64 {
	out := make([]float64, n)
	calls := func(smp sample) float64 { return view{s: s, smp: smp, keys: keys}.sum("d|") }
	oldest := s.at(0).at
	end := calls(now)
	for i := n - 1; i >= 0; i-- {
		from := now.at.Add(-time.Duration(n-i) * step)
		start := calls(s.before(from.Add(step / 10)))
		out[i] = math.Max(0, end-start)
		end = start
		if !from.After(oldest) {
			break // not sampled further back: this step began before the first sample
		}
	}
	return out
}
