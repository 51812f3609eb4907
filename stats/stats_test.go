package stats

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callpop/callpop/call"
)

// registry is a private registry with the families the stats read, named
// and labelled as the packages that own them define them.
type registry struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec
	channels  *prometheus.CounterVec
	cache     *prometheus.CounterVec
	source    *prometheus.HistogramVec
	breaker   *prometheus.GaugeVec
	pops      *prometheus.CounterVec
	streams   prometheus.Gauge
	ariMiss   *prometheus.CounterVec
	eslCalls  *prometheus.CounterVec
}

func newRegistry() *registry {
	r := &registry{reg: prometheus.NewRegistry()}
	r.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: famDecisions, Help: "h"}, []string{"match"})
	r.channels = prometheus.NewCounterVec(prometheus.CounterOpts{Name: famChannels, Help: "h"}, []string{"channel"})
	r.cache = prometheus.NewCounterVec(prometheus.CounterOpts{Name: famCache, Help: "h"}, []string{"tier", "result"})
	r.source = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: famSource, Help: "h",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .2, .3, .5, 1, 2, 5}}, []string{"source", "result"})
	r.breaker = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: famBreaker, Help: "h"}, []string{"breaker"})
	r.pops = prometheus.NewCounterVec(prometheus.CounterOpts{Name: famPops, Help: "h"}, []string{"state"})
	r.streams = prometheus.NewGauge(prometheus.GaugeOpts{Name: famStreams, Help: "h"})
	r.ariMiss = prometheus.NewCounterVec(prometheus.CounterOpts{Name: famARIMiss, Help: "h"}, []string{"pbx"})
	r.eslCalls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: famESLCalls, Help: "h"}, []string{"pbx", "mode", "outcome"})
	r.reg.MustRegister(r.decisions, r.channels, r.cache, r.source, r.breaker, r.pops, r.streams, r.ariMiss, r.eslCalls)
	return r
}

func newStats(t *testing.T, r *registry, interval time.Duration) *Stats {
	t.Helper()
	s := New(Options{Gatherer: r.reg, Interval: interval})
	t.Cleanup(s.Close)
	return s
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// The snapshot's totals are the registry's values; its windows count what
// happened since the first sample.
func TestSnapshotReadsTheRegistry(t *testing.T) {
	r := newRegistry()
	r.decisions.WithLabelValues("hit").Add(100) // before the stats started: in the totals, not the windows
	s := newStats(t, r, time.Hour)
	r.decisions.WithLabelValues("hit").Add(6)
	r.decisions.WithLabelValues("miss").Add(3)
	r.decisions.WithLabelValues("timeout").Inc()
	r.channels.WithLabelValues("voice").Add(7)
	r.channels.WithLabelValues("chat").Add(2)
	r.channels.WithLabelValues("callback").Add(1)
	r.cache.WithLabelValues("local", "hit").Add(5)
	r.cache.WithLabelValues("local", "stale").Add(1)
	r.cache.WithLabelValues("local", "miss").Add(4)
	r.cache.WithLabelValues("redis", "hit").Add(2)
	r.cache.WithLabelValues("redis", "miss").Add(2)
	for range 98 {
		r.source.WithLabelValues("crm", "hit").Observe(.004) // (.0025, .005]
	}
	r.source.WithLabelValues("crm", "miss").Observe(.15) // (.1, .2]
	r.source.WithLabelValues("crm", "error").Observe(.4) // (.3, .5]
	r.breaker.WithLabelValues("crm").Set(2)
	r.breaker.WithLabelValues("redis").Set(0)
	r.pops.WithLabelValues("ringing").Add(4)
	r.pops.WithLabelValues("answered").Add(1)
	r.streams.Set(3)
	r.ariMiss.WithLabelValues("ast-a").Inc() // the adapters' metrics carry a pbx label: summed
	r.ariMiss.WithLabelValues("ast-b")
	r.eslCalls.WithLabelValues("fs-a", "outbound", "late").Add(1)
	r.eslCalls.WithLabelValues("fs-b", "outbound", "late").Add(1)
	r.eslCalls.WithLabelValues("fs-a", "outbound", "released").Add(7)

	snap := s.Fresh(func() PBX { return PBX{Kind: "asterisk", Connected: true} })
	if got := snap.Totals.Decisions["hit"]; got != testutil.ToFloat64(r.decisions.WithLabelValues("hit")) || got != 106 {
		t.Errorf("totals hit %v", got)
	}
	if snap.Totals.Calls != 110 || snap.Totals.PopsSent != 5 || snap.Totals.BudgetMisses != 3 {
		t.Errorf("totals %+v", snap.Totals)
	}
	m := snap.Minute
	if m.Calls != 10 || m.Matches["hit"].Count != 6 || !near(m.Matches["hit"].Share, .6) || !near(m.Matches["timeout"].Share, .1) {
		t.Errorf("minute %+v", m)
	}
	for _, k := range Matches {
		if _, ok := m.Matches[k]; !ok {
			t.Errorf("match %s missing", k)
		}
	}
	// per channel, every channel named (0 when none)
	if m.Channels["voice"] != 7 || m.Channels["chat"] != 2 || m.Channels["callback"] != 1 || len(m.Channels) != len(Channels) ||
		snap.Totals.Channels["chat"] != 2 || snap.Hour.Channels["voice"] != 7 {
		t.Errorf("channels %v, totals %v", m.Channels, snap.Totals.Channels)
	}
	for _, ch := range Channels {
		if _, ok := m.Channels[ch]; !ok {
			t.Errorf("channel %s missing", ch)
		}
	}
	// hits: local 5 + stale 1 + redis 2 = 8 of 10 local reads
	if m.CacheHitRatio == nil || !near(*m.CacheHitRatio, .8) {
		t.Errorf("cache hit ratio %v", m.CacheHitRatio)
	}
	if m.BudgetMisses != 3 || m.PopsSent != 5 {
		t.Errorf("misses %v pops %v", m.BudgetMisses, m.PopsSent)
	}
	if len(m.CRM) != 1 || m.CRM[0].Source != "crm" || m.CRM[0].Requests != 100 {
		t.Fatalf("crm %+v", m.CRM)
	}
	// p50: rank 50 of 98 in (.0025, .005] → 2.5 + 2.5*50/98 ms; p99: rank 99 is the miss in (.1, .2] → 100+100*(99-98)/1 ms
	if p50 := *m.CRM[0].P50ms; !near(p50, 2.5+2.5*50/98.0) {
		t.Errorf("p50 %v", p50)
	}
	if p99 := *m.CRM[0].P99ms; !near(p99, 200) {
		t.Errorf("p99 %v", p99)
	}
	if snap.AgentsConnected != 3 || len(snap.Breaker) != 2 || snap.Breaker[0] != (Breaker{"crm", "open"}) || snap.Breaker[1] != (Breaker{"redis", "closed"}) {
		t.Errorf("gauges %+v %+v", snap.AgentsConnected, snap.Breaker)
	}
	if snap.PBX.Kind != "asterisk" || !snap.PBX.Connected {
		t.Errorf("pbx %+v", snap.PBX)
	}
	if h := snap.Hour; h.Calls != 10 || h.CRM[0].Requests != 100 {
		t.Errorf("hour %+v", h)
	}
}

// A window with no calls has no shares and no cache ratio (null, not 0).
func TestEmptyWindow(t *testing.T) {
	s := newStats(t, newRegistry(), time.Hour)
	snap := s.Fresh(nil)
	if snap.Minute.Calls != 0 || snap.Minute.CacheHitRatio != nil || snap.PBX.Kind != "none" || len(snap.Minute.Chart) != 60 {
		t.Fatalf("%+v", snap)
	}
	b, _ := json.Marshal(snap)
	if !strings.Contains(string(b), `"cache_hit_ratio":null`) {
		t.Fatalf("%s", b)
	}
}

// The ring never holds more than an hour of samples, and keeps the newest.
func TestRingBounded(t *testing.T) {
	r := newRegistry()
	s := newStats(t, r, time.Hour)
	for i := range MaxSamples + 250 {
		r.decisions.WithLabelValues("hit").Add(float64(i % 2))
		s.sampleNow()
	}
	s.mu.Lock()
	n := len(s.ring)
	last := s.at(n - 1)
	first := s.at(0)
	s.mu.Unlock()
	if n != MaxSamples {
		t.Fatalf("ring holds %d samples", n)
	}
	if !first.at.Before(last.at) && !first.at.Equal(last.at) {
		t.Fatalf("ring out of order: %v after %v", first.at, last.at)
	}
	if got := (view{s: s, smp: last, keys: s.keys}).get("d|hit"); got != testutil.ToFloat64(r.decisions.WithLabelValues("hit")) {
		t.Fatalf("newest sample %v", got)
	}
}

// The interpolation matches histogram_quantile's on hand-made buckets.
func TestQuantile(t *testing.T) {
	les := []float64{.1, .2, .5, math.Inf(1)}
	for _, tc := range []struct {
		q      float64
		counts []float64
		want   float64
	}{
		{.5, []float64{10, 20, 20, 20}, .1},            // rank 10 ends the first bucket
		{.75, []float64{10, 20, 20, 20}, .15},          // halfway into (.1, .2]
		{.99, []float64{0, 0, 10, 20}, .5},             // in +Inf: the highest finite bound
		{.5, []float64{0, 0, 4, 4}, .2 + .3*2/4},       // in (.2, .5]
		{.01, []float64{100, 100, 100, 100}, .1 / 100}, // from 0 in the first bucket
	} {
		if got := quantile(tc.q, les, tc.counts, tc.counts[3]); !near(got, tc.want) {
			t.Errorf("q%v of %v: %v, want %v", tc.q, tc.counts, got, tc.want)
		}
	}
}

// Masking never shows the whole number, whatever its length, and hides at
// least a third of it.
func TestMaskNeverShowsTheNumber(t *testing.T) {
	if got := Mask("+14155550123"); got != "+141***0123" {
		t.Errorf("Mask: %q", got)
	}
	call.SetMasking(false) // the logs' switch does not unmask the page
	defer call.SetMasking(true)
	digits := "+3120123456789012"
	for n := 1; n <= len(digits); n++ {
		num := digits[:n]
		got := Mask(num)
		shown := strings.ReplaceAll(got, "***", "")
		if strings.Contains(got, num) || len(shown)*3 > 2*n || !strings.Contains(got, "***") {
			t.Errorf("Mask(%q) = %q", num, got)
		}
	}
	if got := Mask("<script>12345678"); strings.ContainsAny(got, "<>") {
		t.Errorf("Mask kept markup: %q", got)
	}
}

// asyncDecider answers on another goroutine.
type asyncDecider struct{ dec call.Decision }

func (a asyncDecider) Decide(context.Context, call.Call) call.Decision { return a.dec }
func (a asyncDecider) DecideAsync(_ context.Context, _ call.Call, done func(call.Decision)) {
	go done(a.dec)
}

// The decorator lists the last 20 decisions, newest first, masked; the
// decision passes unchanged; an AsyncDecider stays one.
func TestDecorateListsLastCalls(t *testing.T) {
	s := newStats(t, newRegistry(), time.Hour)
	base := call.Decision{Match: call.MatchHit, E164: "+31201234567", Queue: "vip", Priority: 7, Elapsed: 3 * time.Millisecond}
	d := s.Decorate(call.DeciderFunc(func(_ context.Context, c call.Call) call.Decision {
		dec := base
		dec.Queue = c.DNIS
		return dec
	}))
	if _, ok := d.(call.AsyncDecider); ok {
		t.Fatal("a plain decider became async")
	}
	for i := range 25 {
		dec := d.Decide(context.Background(), call.Call{CLI: "+31201234567", DNIS: "q" + string(rune('a'+i))})
		if dec.E164 != base.E164 || dec.Priority != 7 {
			t.Fatalf("decision changed: %+v", dec)
		}
	}
	ad := s.Decorate(asyncDecider{call.Decision{Match: call.MatchMiss, E164: "+31209999999", Privacy: true}})
	a, ok := ad.(call.AsyncDecider)
	if !ok {
		t.Fatal("async decider lost DecideAsync")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	a.DecideAsync(context.Background(), call.Call{}, func(dec call.Decision) {
		if dec.Match != call.MatchMiss {
			t.Errorf("async decision %+v", dec)
		}
		wg.Done()
	})
	wg.Wait()
	rows := s.calls.list()
	if len(rows) != RecentCalls {
		t.Fatalf("%d rows", len(rows))
	}
	if rows[0].Match != "miss" || rows[0].Number != "withheld" {
		t.Errorf("newest row %+v", rows[0])
	}
	if r := rows[1]; r.Queue != "qy" || r.Match != "hit" || r.Priority != 7 || r.MS != 3 || r.Number != Mask("+31201234567") {
		t.Errorf("row %+v", r)
	}
	if rows[RecentCalls-1].Queue != "qg" { // 25 calls + 1: the oldest kept is the 7th
		t.Errorf("oldest row %+v", rows[RecentCalls-1])
	}
	if rows[1].Channel != "voice" {
		t.Errorf("a call's channel %q", rows[1].Channel)
	}
	b, _ := json.Marshal(rows)
	if strings.Contains(string(b), "31201234567") || strings.Contains(string(b), "31209999999") {
		t.Fatalf("a whole number in %s", b)
	}
	// A contact shows its channel; without a number, its address masked.
	cd := s.Decorate(call.DeciderFunc(func(context.Context, call.Call) call.Decision { return call.Decision{Match: call.MatchHit} }))
	cd.Decide(context.Background(), call.Call{Channel: call.ChannelChat, Email: "jane.doe@example.com"})
	cd.Decide(context.Background(), call.Call{Channel: call.ChannelCallback, CLI: "+31201234567"})
	rows = s.calls.list()
	if rows[1].Channel != "chat" || rows[1].Number != "j***@example.com" || rows[0].Channel != "callback" || rows[0].Number != Mask("+31201234567") {
		t.Errorf("contact rows %+v", rows[:2])
	}
	for in, want := range map[string]string{"x@y.z": "x***@y.z", "nobody": "***", "@x": "***", "\n@evil${x}": "***@evilx"} {
		if got := MaskEmail(in); got != want {
			t.Errorf("MaskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

// The stream sends a snapshot at once and one after each sample.
func TestStreamSendsSnapshots(t *testing.T) {
	r := newRegistry()
	s := newStats(t, r, 20*time.Millisecond)
	open := Access{Require: func(h http.Handler) http.Handler { return h }}
	srv := httptest.NewServer(s.Handler(open, nil))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/stats/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var seen []float64
	for len(seen) < 3 && sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			if line != "" && line != "event: stats" {
				t.Fatalf("unexpected line %q", line)
			}
			continue
		}
		var snap Snapshot
		if err := json.Unmarshal([]byte(data), &snap); err != nil {
			t.Fatal(err)
		}
		seen = append(seen, snap.Totals.Calls)
		r.decisions.WithLabelValues("hit").Inc() // the next snapshots see it
	}
	if len(seen) < 3 || seen[2] <= seen[0] {
		t.Fatalf("snapshots %v (%v)", seen, sc.Err())
	}
}

// The charts count the calls per second (minute) and per minute (hour),
// the newest step last, the current minute included.
func TestCharts(t *testing.T) {
	r := newRegistry()
	s := newStats(t, r, time.Hour)
	for i := range 5 {
		r.decisions.WithLabelValues("hit").Add(float64(i + 1)) // 1..5 calls in five steps
		s.sampleNow()
	}
	snap := s.Snapshot(nil)
	sum := 0.0
	for _, v := range snap.Minute.Chart {
		sum += v
	}
	if sum != 15 || snap.Minute.Chart[59] == 0 {
		t.Errorf("minute chart %v", snap.Minute.Chart)
	}
	if h := snap.Hour.Chart; len(h) != 60 || h[59] != 15 {
		t.Errorf("hour chart %v", h)
	}
}

// Snapshots taken while samples add new series (a new breaker, a new
// match) race with nothing (go test -race).
func TestSnapshotsWhileSampling(t *testing.T) {
	r := newRegistry()
	s := newStats(t, r, time.Hour)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			r.source.WithLabelValues("src"+strconv.Itoa(i%50), "hit").Observe(.01)
			s.sampleNow()
		}
	})
	for range 200 {
		_ = s.Fresh(nil)
		_ = s.Snapshot(nil)
	}
	wg.Wait()
	if n := len(s.Snapshot(nil).Hour.CRM); n != 50 {
		t.Fatalf("%d sources", n)
	}
}
