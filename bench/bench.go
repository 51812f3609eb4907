package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
)

// dnis is the dialled number of every generated call.
const dnis = "+18005550100"

// collector gathers one phase's calls.
type collector struct {
	budget                           time.Duration
	warm, cold, nolookup, all        series
	offered, completed, misses, lost atomic.Int64
	mu                               sync.Mutex
	matches                          map[string]int
	first, last                      time.Time
	byPBX                            map[string]*collector // with several simulators: each one's calls (under mu)
}

func newCollector(budget time.Duration) *collector {
	return &collector{budget: budget, matches: map[string]int{}}
}

// latencyClass is which of a collector's series a call's latency goes in
// besides all: none (bare client, lost calls), warm, cold, no look-up.
type latencyClass int

const (
	classNone latencyClass = iota
	classWarm
	classCold
	classNoLookup
)

// offer offers one call through t and files its outcome, also under its
// simulator's name when t is several (Outcome.PBX).
func (col *collector) offer(ctx context.Context, t Target, rec *recorder, c Caller) {
	col.offered.Add(1)
	cctx, cancel := context.WithTimeout(ctx, col.budget+5*time.Second)
	o, err := t.Offer(cctx, c, dnis)
	cancel()
	lost := err != nil || o.Released.IsZero()
	match, class := "bare", classNone
	if rec != nil && !lost {
		v, ok := rec.take(o.CallID)
		match = string(v.match)
		switch {
		case !ok:
			match, class = "undecided", classNoLookup
		case v.match == call.MatchAnonymous || v.match == call.MatchInvalid:
			class = classNoLookup
		case v.cached:
			class = classWarm
		default:
			class = classCold
		}
	}
	col.file(o, match, class, lost)
	if o.PBX != "" {
		sub := col.sub(o.PBX)
		sub.offered.Add(1)
		sub.file(o, match, class, lost)
	}
}

// sub is the collector of the simulator named pbx.
func (col *collector) sub(pbx string) *collector {
	col.mu.Lock()
	defer col.mu.Unlock()
	if col.byPBX == nil {
		col.byPBX = map[string]*collector{}
	}
	s, ok := col.byPBX[pbx]
	if !ok {
		s = newCollector(col.budget)
		col.byPBX[pbx] = s
	}
	return s
}

// file counts one call, counted offered already: lost, or released at
// o.Released with its match, its latency in all and in its class's series.
func (col *collector) file(o Outcome, match string, class latencyClass, lost bool) {
	if lost {
		col.lost.Add(1)
		col.misses.Add(1)
		return
	}
	col.completed.Add(1)
	lat := o.Released.Sub(o.Sent)
	if lat > col.budget {
		col.misses.Add(1)
	}
	col.all.add(lat)
	switch class {
	case classWarm:
		col.warm.add(lat)
	case classCold:
		col.cold.add(lat)
	case classNoLookup:
		col.nolookup.add(lat)
	}
	col.mu.Lock()
	col.matches[match]++
	if col.first.IsZero() || o.Sent.Before(col.first) {
		col.first = o.Sent
	}
	if o.Released.After(col.last) {
		col.last = o.Released
	}
	col.mu.Unlock()
}

// merge adds other's samples and counts to col.
func (col *collector) merge(o *collector) {
	for _, p := range [][2]*series{{&col.warm, &o.warm}, {&col.cold, &o.cold}, {&col.nolookup, &o.nolookup}, {&col.all, &o.all}} {
		for _, d := range p[1].sorted() {
			p[0].add(d)
		}
		p[0].mu.Lock()
		p[0].n += p[1].n - len(p[1].vals)
		p[0].mu.Unlock()
	}
	col.offered.Add(o.offered.Load())
	col.completed.Add(o.completed.Load())
	col.misses.Add(o.misses.Load())
	col.lost.Add(o.lost.Load())
	o.mu.Lock()
	defer o.mu.Unlock()
	col.mu.Lock()
	defer col.mu.Unlock()
	for k, v := range o.matches {
		col.matches[k] += v
	}
	for k, s := range o.byPBX {
		if col.byPBX == nil {
			col.byPBX = map[string]*collector{}
		}
		if col.byPBX[k] == nil {
			col.byPBX[k] = newCollector(col.budget)
		}
		col.byPBX[k].merge(s)
	}
}

// drive offers calls from callers at rate for d, keeping at most maxInFlight
// open, and waits for every offered call to end. It returns how long
// offering took, at least d: longer when the calls open held it back.
// (Rates divide by it, not by the wait for the last calls' release.)
func drive(ctx context.Context, t Target, rec *recorder, callers *Callers, rate int, d time.Duration, maxInFlight int, col *collector) time.Duration {
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxInFlight)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	end := start.Add(d)
	for i := 0; ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(end) {
			break
		}
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		c := callers.Next()
		wg.Add(1)
		go func() { // owned by drive: it waits for wg
			defer wg.Done()
			defer func() { <-sem }()
			col.offer(ctx, t, rec, c)
		}()
	}
	span := max(time.Since(start), d)
	wg.Wait()
	return span
}

// Step is one rate of a ramp.
type Step struct {
	Rate     int     `json:"rate"`          // offered calls/s
	Achieved float64 `json:"achieved"`      // completed calls/s
	Goodput  float64 `json:"goodput"`       // calls/s released within the budget
	Misses   int64   `json:"budget_misses"` // released after the budget, or never
	P99      float64 `json:"p99_ms"`        // all calls
	Clean    bool    `json:"clean"`         // 0 misses and ≥ 95% of the rate achieved
}

// BurstReport is the singleflight phase.
type BurstReport struct {
	Numbers        int     `json:"numbers"`           // distinct uncached numbers
	CallsPerNumber int     `json:"calls_per_number"`  // simultaneous calls from each
	CRMLatencyMs   float64 `json:"crm_latency_ms"`    // the stub's answer time during the burst
	RequestsMean   float64 `json:"crm_requests_mean"` // CRM requests per number
	RequestsMax    int     `json:"crm_requests_max"`  // most CRM requests for one number
	Misses         int64   `json:"budget_misses"`
	P99            float64 `json:"p99_ms"`
}

// InFlightReport is the memory phase.
type InFlightReport struct {
	Calls          int     `json:"calls"`              // calls held inside callpop at once
	Reached        int     `json:"reached"`            // how many were inside the pipeline when sampled
	Goroutines     int     `json:"goroutines"`         // whole process, at the sample
	GoroutinesIdle int     `json:"goroutines_idle"`    // whole process, before the phase
	RSSMiB         float64 `json:"rss_mib"`            // VmRSS at the sample
	RSSIdleMiB     float64 `json:"rss_idle_mib"`       // VmRSS before the phase
	HeapMiB        float64 `json:"heap_mib"`           // Go heap in use at the sample
	StackMiB       float64 `json:"stack_mib"`          // goroutine stacks at the sample
	MemLimit       string  `json:"memlimit,omitempty"` // GOMEMLIMIT of the sidecar child, when set
	Process        string  `json:"process"`            // what the figures cover
	DrainS         float64 `json:"drain_s"`            // from the CRM answering to every held call released
}

// Machine is where the figures were taken.
type Machine struct {
	NProc     int    `json:"nproc"`
	CPU       string `json:"cpu"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
}

// Report is the outcome of a bench run; --json writes it.
type Report struct {
	PBX            string         `json:"pbx"`
	Machine        Machine        `json:"machine"`
	Rate           int            `json:"rate"` // requested; 0 = ramp
	DurationS      float64        `json:"duration_s"`
	BudgetMs       float64        `json:"budget_ms"`
	Population     int            `json:"population"`
	CRMLatencyMs   float64        `json:"crm_latency_ms"`
	CallsOffered   int64          `json:"calls_offered"`
	CallsCompleted int64          `json:"calls_completed"`
	CallsPerSecond float64        `json:"calls_per_second"`            // sustained with 0 budget misses
	AchievedCPS    float64        `json:"achieved_calls_per_second"`   // completed calls/s of the reported phase
	SaturationCPS  float64        `json:"saturation_calls_per_second"` // the most calls/s released within the budget in any step
	BudgetMisses   int64          `json:"budget_misses"`
	Lost           int64          `json:"lost"`
	Matches        map[string]int `json:"matches"`

	Warm     Latency `json:"warm"`
	Cold     Latency `json:"cold"`
	NoLookup Latency `json:"no_lookup"` // anonymous and invalid callers
	All      Latency `json:"all"`
	Bare     Latency `json:"bare"`

	// OverheadRatio is what callpop adds: warm (cache-hit) p50 / bare client
	// p50, at the same rate. A warm call makes the bare client's round trips
	// plus the look-up; a cold one waits for the CRM, which is no overhead of callpop's.
	OverheadRatio    float64 `json:"overhead_ratio"`
	OverheadRatioP99 float64 `json:"overhead_ratio_p99"` // warm p99 / bare p99
	// OverheadRatioAll is all calls p50 / bare p50 (cold CRM waits included).
	OverheadRatioAll float64 `json:"overhead_ratio_all"`
	// OverheadBasis says which samples the ratios compare.
	OverheadBasis string `json:"overhead_basis,omitempty"`
	// A ramp's ratios (p50, p99) at callpop's highest clean rate (BareRate),
	// where callpop's own queues may already grow.
	OverheadAtCleanRate    float64 `json:"overhead_ratio_at_clean_rate,omitempty"`
	OverheadAtCleanRateP99 float64 `json:"overhead_ratio_p99_at_clean_rate,omitempty"`
	BareRate               int     `json:"bare_rate"` // calls/s the bare client's figures were taken at
	// RequestsPerCall is the PBX requests per call (ARI: REST requests the
	// simulator served / calls offered) of callpop and of the bare client:
	// the same round trips when they match.
	RequestsPerCall     float64 `json:"requests_per_call,omitempty"`
	BareRequestsPerCall float64 `json:"bare_requests_per_call,omitempty"`
	// BreakRate is the first ramp step that was not clean (0: none within --duration).
	BreakRate int `json:"break_rate,omitempty"`
	// BareSteps ramp the bare client from BareRate within --bare-duration (--rate 0).
	BareSteps []Step `json:"bare_steps,omitempty"`
	// BareCleanCPS is the bare client's highest clean step; BareBreakRate its
	// first unclean one (0: none within --bare-duration).
	BareCleanCPS  float64 `json:"bare_clean_calls_per_second,omitempty"`
	BareBreakRate int     `json:"bare_break_rate,omitempty"`

	CRMRequests               int64       `json:"crm_requests"`
	CRMRequestsPerBurstNumber float64     `json:"crm_requests_per_burst_number"`
	Burst                     BurstReport `json:"burst"`

	PeakRSSMiB float64        `json:"peak_rss_mib"`
	InFlight   InFlightReport `json:"inflight"`
	ReadyMs    float64        `json:"ready_ms"` // a sidecar process: exec → adapter ready; else in process: pipeline built → ready
	// ReadyInProcessMs is the in-process figure when ReadyMs is the child's.
	ReadyInProcessMs float64  `json:"ready_in_process_ms,omitempty"`
	Steps            []Step   `json:"steps,omitempty"`
	Notes            []string `json:"notes,omitempty"`
	// PBXes are the load phase's figures of each simulator, in --pbx order,
	// when there are several (--pbx asterisk,freeswitch-outbound): the
	// calls went to each in turn; the figures above are all of them.
	PBXes []PBXReport `json:"pbxes,omitempty"`

	dists map[string][]time.Duration // for the plot
}

// PBXReport is one simulator's share of the load phase.
type PBXReport struct {
	Name           string         `json:"name"` // its --pbx name
	CallsOffered   int64          `json:"calls_offered"`
	CallsCompleted int64          `json:"calls_completed"`
	BudgetMisses   int64          `json:"budget_misses"`
	Lost           int64          `json:"lost"`
	Matches        map[string]int `json:"matches"`
	Warm           Latency        `json:"warm"`
	Cold           Latency        `json:"cold"`
	NoLookup       Latency        `json:"no_lookup"`
	All            Latency        `json:"all"`
}

// Run runs the whole bench: ready, load (fixed or ramp), bare client, burst,
// in-flight. Its Redis keys are under a prefix of its own, deleted at the end
// (also when the run fails or ctx ends).
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	r := newBenchRun(ctx, o)
	defer func() {
		r.close()
		if r.dropKeys {
			// last: after every pipeline and sidecar child that could still write has closed
			err = rep.dropRunKeys(ctx, err, r.redisAddr, r.keyPrefix, r.log, r.note)
		}
	}()
	if err := r.startServices(); err != nil {
		return nil, err
	}
	if err := r.startSidecar(); err != nil {
		return nil, err
	}
	r.prepareBare()
	r.load()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.reportLoad()
	r.burstPhase()
	r.stopSidecar()
	r.bareRamp()
	r.compareBare()
	r.inFlight()
	if r.rep.PeakRSSMiB == 0 {
		r.rep.PeakRSSMiB = mib(procStatusKiB("VmHWM"))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return r.rep, nil
}

// benchRun is one Run: what its phases share, in the order they set it.
type benchRun struct {
	ctx    context.Context // the caller's: its end ends the run
	runCtx context.Context // the phases' (cancelled when the run is over)
	o      Options
	log    *slog.Logger
	note   func(format string, a ...any)
	rep    *Report
	// closers run in reverse order when the run is over, as defers would.
	closers []func()

	// startServices
	redisAddr, keyPrefix string
	dropKeys             bool // a Redis of the user's: delete the run's keys at the end
	stub                 *CRMStub
	pc                   PipelineConfig
	// startSidecar
	p   *Pipeline
	rec *recorder
	tc  targetConfig
	tgt Target
	// prepareBare
	wantBare bool
	// load
	callers *Callers
	final   *collector // the load's calls (a ramp: the clean steps' latencies)
	atRate  *collector // callpop at the bare client's rate: the whole fixed-rate phase; a ramp's highest clean step
	lowCol  *collector // a ramp: its first step
	lowRate int        // a ramp: its first step's rate
	bare    *bareResult
}

func newBenchRun(ctx context.Context, o Options) *benchRun {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	return &benchRun{
		ctx: ctx, o: o, log: log,
		note: func(format string, a ...any) { fmt.Fprintf(progress, "bench: "+format+"\n", a...) },
		rep: &Report{
			PBX: o.PBX, Machine: machine(), Rate: o.Rate, DurationS: o.Duration.Seconds(), BudgetMs: ms(o.Budget),
			Population: o.Population, CRMLatencyMs: ms(o.CRMLatency), dists: map[string][]time.Duration{},
		},
	}
}

// onClose runs f when the run is over, before what was registered earlier.
func (r *benchRun) onClose(f func()) { r.closers = append(r.closers, f) }

func (r *benchRun) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// startServices starts what the sidecar talks to: Redis (unless --redis
// names one) and the CRM stub.
func (r *benchRun) startServices() error {
	o := r.o
	r.redisAddr, r.keyPrefix = o.Redis, newRunPrefix()
	if r.redisAddr == "" {
		rs, err := StartRedis()
		if err != nil {
			return err
		}
		r.onClose(rs.Close)
		r.redisAddr = rs.Addr
		r.note("redis-server on %s", r.redisAddr)
	} else {
		r.dropKeys = true
		r.note("redis at %s: keys under %s", r.redisAddr, r.keyPrefix)
	}
	r.pc = PipelineConfig{RedisAddr: r.redisAddr, KeyPrefix: r.keyPrefix, Logger: r.log}
	stub, err := StartCRMStub(o.Population, o.CRMLatency, o.CRMJitter)
	if err != nil {
		return err
	}
	r.onClose(func() { _ = stub.Close() })
	r.stub = stub
	r.note("CRM stub on %s: %d customers, latency %s + up to %s", stub.URL, o.Population, o.CRMLatency, o.CRMJitter)
	return nil
}

// startSidecar builds the pipeline and the adapter on the PBX simulator and
// times start → ready.
func (r *benchRun) startSidecar() error {
	o := r.o
	runCtx, stop := context.WithCancel(r.ctx)
	r.runCtx = runCtx
	r.onClose(stop)
	t0 := time.Now()
	r.pc.CRMURL = r.stub.SourceURL()
	p, err := NewPipeline(r.pc.with(o.Budget, 0))
	if err != nil {
		return err
	}
	r.onClose(p.Close)
	r.p, r.rec = p, &recorder{dec: p.Router, log: r.log}
	r.tc = o.targetConfig(r.log)
	tgt, err := newTarget(o.PBX, false, r.tc)
	if err != nil {
		return err
	}
	r.onClose(func() { _ = tgt.Close() })
	r.tgt = tgt
	if err := tgt.Start(runCtx, adapters.Deps{Decider: r.rec, Logger: r.log, Budget: o.Budget}); err != nil {
		return err
	}
	if err := waitReady(runCtx, tgt, 10*time.Second); err != nil {
		return err
	}
	r.rep.ReadyMs = ms(time.Since(t0))
	r.note("%s ready in %.1f ms", o.PBX, r.rep.ReadyMs)
	return nil
}

// prepareBare decides whether there is a bare client and gives it what
// callpop sets for known callers, one of each CRM stub tier in turn
// (customers the load phase's Zipf draw all but never picks).
func (r *benchRun) prepareBare() {
	o := r.o
	for i := max(o.Population-len(tiers), 0); i < o.Population; i++ {
		if d := r.p.Router.Decide(r.runCtx, call.Call{ID: "bench-bare", PBX: "bench", CLI: CustomerNumber(i), DNIS: dnis, Received: time.Now()}); d.Match == call.MatchHit {
			r.tc.bareDecisions = append(r.tc.bareDecisions, d)
		}
	}
	r.wantBare = o.PBX != PBXDirect && o.BareDuration > 0
	if !r.wantBare && o.PBX == PBXDirect {
		r.rep.Notes = append(r.rep.Notes, "--pbx direct has no protocol round trips: no bare client, no overhead ratio")
	}
}

// load is the measured load phase: a fixed rate or a ramp. Each measured
// phase starts on a fresh simulator after a collection.
func (r *benchRun) load() {
	o := r.o
	r.callers = NewCallers(o.Population, o.Zipf, o.Mix, o.Seed)
	r.final = newCollector(o.Budget)
	r.atRate = r.final
	if o.Rate > 0 {
		r.loadFixed()
	} else {
		r.loadRamp()
	}
	if rc, ok := r.tgt.(requestCounter); ok {
		r.rep.RequestsPerCall = perCall(rc)
	}
}

// loadFixed offers o.Rate calls/s. The bare client runs interleaved with
// callpop, so both meet the same machine (others' load comes and goes).
func (r *benchRun) loadFixed() {
	o, rep := r.o, r.rep
	var bt Target
	if r.wantBare {
		var err error
		if bt, err = startBare(r.runCtx, o, r.tc, r.log); err != nil {
			rep.Notes = append(rep.Notes, "bare client: "+err.Error())
		} else {
			r.onClose(func() { _ = bt.Close() })
			r.bare = &bareResult{atRate: newCollector(o.Budget)}
			r.note("load: %d calls/s for %s, interleaved with the bare client for %s", o.Rate, o.Duration, o.BareDuration)
		}
	}
	if r.bare == nil {
		r.note("load: %d calls/s for %s", o.Rate, o.Duration)
	}
	runtime.GC()
	var bareCol *collector
	if r.bare != nil {
		bareCol = r.bare.atRate
	}
	busy := interleave(r.runCtx, r.tgt, r.rec, bt, r.callers, o, r.final, bareCol, nil)
	rep.AchievedCPS = rate(r.final.completed.Load(), busy)
	if r.final.misses.Load() == 0 {
		rep.CallsPerSecond = rep.AchievedCPS
	}
	rep.BareRate = o.Rate
	if r.bare != nil {
		if rc, ok := bt.(requestCounter); ok {
			r.bare.requestsPerCall = perCall(rc)
		}
		_ = bt.Close()
	}
}

// loadRamp raises the rate from 250 calls/s until a step is not clean.
func (r *benchRun) loadRamp() {
	rep := r.rep
	runtime.GC()
	res := ramp(r.runCtx, r.tgt, r.rec, r.callers, 250, r.o.Duration, r.o, "", r.note)
	rep.Steps, r.final, r.atRate, r.lowCol = res.steps, res.clean, res.top, res.first
	rep.CallsPerSecond, rep.AchievedCPS, rep.BreakRate = res.cleanRate, res.cleanAchieved, res.breakRate
	rep.BareRate = int(res.cleanRate)
	for _, s := range rep.Steps {
		rep.SaturationCPS = max(rep.SaturationCPS, s.Goodput)
	}
	if len(rep.Steps) > 0 {
		r.lowRate = rep.Steps[0].Rate
	}
	if rep.BareRate == 0 {
		rep.BareRate = r.lowRate
	}
}

// reportLoad files the load phase's counts and latencies.
func (r *benchRun) reportLoad() {
	rep, final := r.rep, r.final
	rep.CallsOffered, rep.CallsCompleted = final.offered.Load(), final.completed.Load()
	rep.BudgetMisses, rep.Lost = final.misses.Load(), final.lost.Load()
	final.mu.Lock()
	rep.Matches = final.matches
	final.mu.Unlock()
	for _, l := range []struct {
		name string
		s    *series
		into *Latency
	}{{"warm", &final.warm, &rep.Warm}, {"cold", &final.cold, &rep.Cold}, {"no_lookup", &final.nolookup, &rep.NoLookup}, {"all", &final.all, &rep.All}} {
		sorted := l.s.sorted()
		rep.dists[l.name] = sorted
		*l.into = summarize(sorted, l.s.n)
	}
	final.mu.Lock()
	byPBX := maps.Clone(final.byPBX)
	final.mu.Unlock()
	for _, name := range pbxList(r.o.PBX) {
		if c, ok := byPBX[name]; ok {
			rep.PBXes = append(rep.PBXes, c.pbxReport(name))
		}
	}
}

// pbxReport is col's figures as one PBX's share of the load.
func (col *collector) pbxReport(name string) PBXReport {
	x := PBXReport{Name: name, CallsOffered: col.offered.Load(), CallsCompleted: col.completed.Load(),
		BudgetMisses: col.misses.Load(), Lost: col.lost.Load()}
	col.mu.Lock()
	x.Matches = maps.Clone(col.matches)
	col.mu.Unlock()
	for _, l := range []struct {
		s    *series
		into *Latency
	}{{&col.warm, &x.Warm}, {&col.cold, &x.Cold}, {&col.nolookup, &x.NoLookup}, {&col.all, &x.All}} {
		*l.into = summarize(l.s.sorted(), l.s.n)
	}
	return x
}

// burstPhase is the singleflight burst.
func (r *benchRun) burstPhase() {
	o, rep := r.o, r.rep
	if o.BurstNumbers > 0 && o.BurstCalls > 0 && r.ctx.Err() == nil {
		r.note("burst: %d simultaneous calls from each of %d uncached numbers", o.BurstCalls, o.BurstNumbers)
		rep.Burst = burst(r.runCtx, r.tgt, r.rec, r.stub, o)
		rep.CRMRequestsPerBurstNumber = rep.Burst.RequestsMean
		r.stub.SetLatency(o.CRMLatency, o.CRMJitter)
	}
	rep.CRMRequests = r.stub.Total()
}

// stopSidecar closes the main sidecar: it is done (the bare client and the
// in-flight phase have simulators of their own).
func (r *benchRun) stopSidecar() {
	_ = r.tgt.Close()
	r.p.Close()
}

// bareRamp is the bare client of a ramp: the same round trips, no look-up,
// from callpop's highest clean rate up to the bare client's own break.
func (r *benchRun) bareRamp() {
	o, rep := r.o, r.rep
	if !r.wantBare || o.Rate != 0 || r.ctx.Err() != nil {
		return
	}
	r.note("bare client: %d calls/s, then a ramp from %d calls/s, for %s", r.lowRate, rep.BareRate, o.BareDuration)
	var err error
	if r.bare, err = bareRun(r.runCtx, o, r.tc, r.callers, r.lowRate, rep.BareRate, r.log, r.note); err != nil {
		rep.Notes = append(rep.Notes, "bare client: "+err.Error())
	}
}

// compareBare files the bare client's figures and the overhead ratios.
func (r *benchRun) compareBare() {
	rep, bare := r.rep, r.bare
	if bare == nil {
		return
	}
	if bare.atRate.completed.Load() == 0 {
		rep.Notes = append(rep.Notes, "bare client: no call completed")
		return
	}
	if bare.atRate == bare.low {
		rep.BareRate = r.lowRate
	}
	sorted := bare.atRate.all.sorted()
	rep.dists["bare"] = sorted
	rep.Bare = summarize(sorted, bare.atRate.all.n)
	rep.BareRequestsPerCall = bare.requestsPerCall
	rep.BareSteps, rep.BareCleanCPS, rep.BareBreakRate = bare.steps, bare.cleanRate, bare.breakRate
	if r.o.Rate > 0 {
		rep.overhead(summarize(r.atRate.warm.sorted(), r.atRate.warm.n), rep.All, rep.Bare)
		rep.OverheadBasis = fmt.Sprintf("callpop's warm calls / the bare client's calls, interleaved, both at %d calls/s", rep.BareRate)
		return
	}
	// The headline at the lightest load; then at callpop's highest clean rate.
	lowBare := summarize(bare.low.all.sorted(), bare.low.all.n)
	rep.overhead(summarize(r.lowCol.warm.sorted(), r.lowCol.warm.n), summarize(r.lowCol.all.sorted(), r.lowCol.all.n), lowBare)
	rep.OverheadBasis = fmt.Sprintf("callpop's warm calls in its first ramp step / the bare client's step at the same rate, %d calls/s (lightest load)", r.lowRate)
	top := summarize(r.atRate.warm.sorted(), r.atRate.warm.n)
	if rep.CallsPerSecond > 0 && bare.atRate != bare.low && rep.Bare.P50 > 0 && rep.Bare.P99 > 0 {
		rep.OverheadAtCleanRate = round2(top.P50 / rep.Bare.P50)
		rep.OverheadAtCleanRateP99 = round2(top.P99 / rep.Bare.P99)
	}
}

// inFlight holds o.InFlight calls for the memory and goroutine figures: in
// a sidecar child process when there is a command for one, else in process.
func (r *benchRun) inFlight() {
	o, rep := r.o, r.rep
	if o.InFlight <= 0 || r.ctx.Err() != nil {
		return
	}
	var err error
	several := len(pbxList(o.PBX)) > 1
	if several && len(o.SidecarCommand) > 0 {
		rep.Notes = append(rep.Notes, "in flight: in this process, not a sidecar child (a child runs one PBX)")
	}
	if len(o.SidecarCommand) > 0 && o.PBX != PBXDirect && !several {
		r.note("in flight: holding %d calls in a sidecar child process", o.InFlight)
		var readyMs float64
		rep.InFlight, rep.PeakRSSMiB, readyMs, err = holdInFlightChild(r.runCtx, o, r.stub, r.pc, r.log, r.note)
		if readyMs > 0 {
			rep.ReadyInProcessMs, rep.ReadyMs = rep.ReadyMs, readyMs
		}
	} else {
		r.note("in flight: holding %d calls", o.InFlight)
		rep.InFlight, rep.PeakRSSMiB, err = holdInFlight(r.runCtx, o, r.stub, r.pc, r.log, r.note)
	}
	if err != nil {
		rep.Notes = append(rep.Notes, "in flight: "+err.Error())
	}
}

// dropRunKeys deletes the run's Redis keys (see dropKeys) once it is over,
// however it ended, and returns runErr, joined with a failure to delete when
// the run failed; a successful run's report notes that failure instead.
func (rep *Report) dropRunKeys(ctx context.Context, runErr error, addrs, prefix string, log *slog.Logger, note func(string, ...any)) error {
	n, err := dropKeys(context.WithoutCancel(ctx), addrs, prefix, log)
	if err == nil {
		note("redis: deleted the run's %d keys under %s", n, prefix)
		return runErr
	}
	note("redis: %v", err)
	if runErr != nil || rep == nil {
		return errors.Join(runErr, err)
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("redis: %v (%d deleted; the rest expire with the cache's TTL)", err, n))
	return nil
}

func waitReady(ctx context.Context, t Target, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !t.Ready() {
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: not ready after %s", limit)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

// runStep offers calls at r for d into col and sums them up as a ramp step.
func runStep(ctx context.Context, t Target, rec *recorder, callers *Callers, r int, d time.Duration, o Options, col *collector, who string, note func(string, ...any)) Step {
	elapsed := drive(ctx, t, rec, callers, r, d, o.MaxInFlight, col)
	s := Step{Rate: r, Achieved: rate(col.completed.Load(), elapsed), Misses: col.misses.Load(),
		Goodput: rate(col.completed.Load()-col.misses.Load()+col.lost.Load(), elapsed),
		P99:     ms(quantile(col.all.sorted(), 0.99))}
	s.Clean = s.Misses == 0 && s.Achieved >= 0.95*float64(r)
	note("  %sstep %5d calls/s: achieved %.0f, misses %d, p99 %.2f ms", who, s.Rate, s.Achieved, s.Misses, s.P99)
	return s
}

// rampResult is a ramp's outcome.
type rampResult struct {
	steps []Step
	// clean holds the latencies of the clean steps (all steps when none was
	// clean) and the counts of every step.
	clean *collector
	// top is the highest clean step (the first step when none was clean);
	// first is the first step.
	top, first    *collector
	cleanRate     float64 // the highest clean step's rate (0: none)
	cleanAchieved float64 // and what it achieved
	breakRate     int     // the first step that was not clean (0: none)
}

// ramp raises the rate ×1.4 per one-second step from start calls/s until a
// step is not clean or d is used up. Steps wait for their calls to end, so a
// broken step overruns by at most the budget.
func ramp(ctx context.Context, t Target, rec *recorder, callers *Callers, start float64, d time.Duration, o Options, who string, note func(string, ...any)) rampResult {
	var res rampResult
	clean := newCollector(o.Budget)
	all := newCollector(o.Budget)
	step := min(time.Second, d)
	r := start
	for began := time.Now(); time.Since(began)+step <= d+step/10 && ctx.Err() == nil; {
		col := newCollector(o.Budget)
		s := runStep(ctx, t, rec, callers, int(r), step, o, col, who, note)
		res.steps = append(res.steps, s)
		all.merge(col)
		if res.first == nil {
			res.first = col
		}
		if !s.Clean {
			res.breakRate = s.Rate
			break
		}
		clean.merge(col)
		res.top, res.cleanRate, res.cleanAchieved = col, float64(s.Rate), s.Achieved
		r *= 1.4
	}
	if res.top == nil {
		res.top = res.first
	}
	if clean.offered.Load() == 0 {
		res.clean = all
		return res
	}
	// Report latency of the clean steps, but count every miss.
	clean.misses.Store(all.misses.Load())
	clean.lost.Store(all.lost.Load())
	clean.offered.Store(all.offered.Load())
	clean.completed.Store(all.completed.Load())
	res.clean = clean
	return res
}

// overhead sets the headline overhead ratios from callpop's warm calls and
// the bare client's calls at the same rate.
func (rep *Report) overhead(warm, all, bare Latency) {
	if bare.P50 > 0 {
		rep.OverheadRatio = round2(warm.P50 / bare.P50)
		rep.OverheadRatioAll = round2(all.P50 / bare.P50)
	}
	if bare.P99 > 0 {
		rep.OverheadRatioP99 = round2(warm.P99 / bare.P99)
	}
}

// bareResult is the bare client's phase.
type bareResult struct {
	atRate          *collector // at the requested rate (a ramp: at callpop's highest clean rate)
	low             *collector // a ramp: at callpop's first step's rate
	steps           []Step     // a ramp's steps
	cleanRate       float64
	breakRate       int
	requestsPerCall float64
}

// startBare starts the bare client on a simulator of its own; its
// goroutines end with ctx or Close.
func startBare(ctx context.Context, o Options, tc targetConfig, log *slog.Logger) (Target, error) {
	t, err := newTarget(o.PBX, true, tc)
	if err != nil {
		return nil, err
	}
	if err := t.Start(ctx, adapters.Deps{Logger: log, Budget: o.Budget}); err != nil {
		t.Close()
		return nil, err
	}
	if err := waitReady(ctx, t, 10*time.Second); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// interleaveSlice is the length of one turn when callpop and the bare client alternate.
const interleaveSlice = 500 * time.Millisecond

// interleave offers calls at o.Rate to callpop (tgt) for o.Duration and,
// when bt is not nil, to the bare client for o.BareDuration, in alternating
// slices spread evenly over the phase. It returns the time callpop's slices
// spent offering (see drive). turn, when set, runs each slice (bare: the
// bare client's), e.g. to take the PBX's CPU time around it.
func interleave(ctx context.Context, tgt Target, rec *recorder, bt Target, callers *Callers, o Options, col, bareCol *collector, turn func(bare bool, slice func())) time.Duration {
	if turn == nil {
		turn = func(_ bool, slice func()) { slice() }
	}
	slices := func(d time.Duration) int { return int(max(1, (d+interleaveSlice-1)/interleaveSlice)) }
	nc, nb := slices(o.Duration), 0
	if bt != nil {
		nb = slices(o.BareDuration)
	}
	var busy time.Duration
	for i, j := 0, 0; (i < nc || j < nb) && ctx.Err() == nil; {
		// The bare client's turn whenever it is behind its share of the schedule.
		if j < nb && (i >= nc || j*nc < i*nb) {
			turn(true, func() { drive(ctx, bt, nil, callers, o.Rate, o.BareDuration/time.Duration(nb), o.MaxInFlight, bareCol) })
			j++
			continue
		}
		turn(false, func() {
			busy += drive(ctx, tgt, rec, callers, o.Rate, o.Duration/time.Duration(nc), o.MaxInFlight, col)
		})
		i++
	}
	return busy
}

// bareRun runs the bare client of a ramp on a simulator of its own: one step
// at low calls/s (callpop's first step), then a ramp from r calls/s (callpop's
// highest clean step) until it breaks or --bare-duration is used up.
func bareRun(ctx context.Context, o Options, tc targetConfig, callers *Callers, low, r int, log *slog.Logger, note func(string, ...any)) (*bareResult, error) {
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t, err := startBare(bctx, o, tc, log)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	runtime.GC() // the load phase's garbage is not this phase's
	res := &bareResult{low: newCollector(o.Budget)}
	step := min(time.Second, o.BareDuration)
	first := runStep(bctx, t, nil, callers, max(low, 1), step, o, res.low, "bare ", note)
	rr := ramp(bctx, t, nil, callers, float64(max(r, 1)), o.BareDuration-step, o, "bare ", note)
	res.steps, res.cleanRate, res.breakRate, res.atRate = append([]Step{first}, rr.steps...), rr.cleanRate, rr.breakRate, rr.first
	if res.atRate == nil { // --bare-duration left no time for the ramp
		res.atRate = res.low
	}
	if first.Clean {
		res.cleanRate = max(res.cleanRate, float64(first.Rate))
	} else if res.breakRate == 0 || first.Rate < res.breakRate {
		res.breakRate = first.Rate
	}
	if res.atRate == nil || res.atRate.completed.Load() == 0 {
		return nil, errors.New("no bare call completed")
	}
	if rc, ok := t.(requestCounter); ok {
		res.requestsPerCall = perCall(rc)
	}
	return res, nil
}

// requestCounter is a target whose simulator counts the requests it served.
type requestCounter interface {
	requests() (requests, offered int64)
}

func perCall(rc requestCounter) float64 {
	req, n := rc.requests()
	if n == 0 {
		return 0
	}
	return round2(float64(req) / float64(n))
}

// burst offers BurstCalls simultaneous calls from each of BurstNumbers
// customers never looked up, with the stub slow enough that they overlap.
func burst(ctx context.Context, t Target, rec *recorder, stub *CRMStub, o Options) BurstReport {
	lat := min(max(o.CRMLatency, 100*time.Millisecond), o.Budget/2)
	stub.SetLatency(lat, 0)
	br := BurstReport{Numbers: o.BurstNumbers, CallsPerNumber: o.BurstCalls, CRMLatencyMs: ms(lat)}
	var numbers []string
	for i := o.Population - 1; i >= 0 && len(numbers) < o.BurstNumbers; i-- {
		if e := CustomerNumber(i); stub.Requests(e) == 0 {
			numbers = append(numbers, e)
		}
	}
	col := newCollector(o.Budget)
	// One number's burst at a time: the figure is what 1,000 simultaneous
	// callers of one number cost the CRM, not what 3,000 at once cost a
	// 2-core box (beyond max_calls they would be shed, never looked up).
	for _, e := range numbers {
		gate := make(chan struct{})
		var wg sync.WaitGroup
		for range o.BurstCalls {
			wg.Add(1)
			go func() { // owned by burst: it waits for wg
				defer wg.Done()
				<-gate
				col.offer(ctx, t, rec, Caller{Kind: KindKnown, CLI: e, E164: e})
			}()
		}
		close(gate)
		wg.Wait()
	}
	for _, e := range numbers {
		br.RequestsMax = max(br.RequestsMax, stub.Requests(e))
	}
	br.Misses = col.misses.Load()
	br.P99 = ms(quantile(col.all.sorted(), 0.99))
	br.Numbers = len(numbers)
	n := 0
	for _, e := range numbers {
		n += stub.Requests(e)
	}
	if len(numbers) > 0 {
		br.RequestsMean = round2(float64(n) / float64(len(numbers)))
	}
	return br
}

// entryCounter counts calls that reached the Decider and have not left it.
type entryCounter struct {
	dec call.Decider
	log *slog.Logger // for a decider's panic (adapters.DecideAsync)
	in  atomic.Int64
}

func (e *entryCounter) Decide(ctx context.Context, c call.Call) call.Decision {
	e.in.Add(1)
	defer e.in.Add(-1)
	return e.dec.Decide(ctx, c)
}

// DecideAsync counts a call from its entry until its decision is handed on:
// once, even if the decider panics or calls back twice (adapters.DecideAsync).
func (e *entryCounter) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	e.in.Add(1)
	adapters.DecideAsync(ctx, e.dec, c, e.log, func(d call.Decision) {
		e.in.Add(-1)
		done(d)
	})
}

// The in-flight phase: the held calls' budget covers reaching N, sampling
// and letting them all go, so no call meets its watchdog (which would
// continue thousands at once); the wait for the release is bounded apart.
const (
	holdBudget = 3 * time.Minute
	reachLimit = 30 * time.Second
	drainLimit = time.Minute
)

// releaseAndWait lets the held calls go (the stub answers) and waits until
// every one was released and counted, noting progress, at most drainLimit;
// then it ends the offers left (abort). It returns how long the wait took,
// in seconds, and an error naming the calls not released.
func releaseAndWait(stub *CRMStub, wg *sync.WaitGroup, col *collector, abort func(), note func(string, ...any)) (float64, error) {
	t0 := time.Now()
	stub.Release()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }() // ends when the offers have
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	limit := time.NewTimer(drainLimit)
	defer limit.Stop()
	for {
		select {
		case <-done:
			return math.Round(time.Since(t0).Seconds()*10) / 10, nil
		case <-tick.C:
			note("in flight: %d of %d calls released %.0fs after the CRM answered", col.completed.Load(), col.offered.Load(), time.Since(t0).Seconds())
		case <-limit.C:
			left := col.offered.Load() - col.completed.Load()
			abort()
			<-done
			return drainLimit.Seconds(), fmt.Errorf("%d held calls were not released within %s of the CRM answering", left, drainLimit)
		}
	}
}

// inFlightMaxCalls is the adapter's max_calls for holding n calls: room for
// all of them, so none is shed (continued unenriched) and the figures are n calls'.
func inFlightMaxCalls(n int) int { return n + n/4 + 100 }

// holdInFlight builds a fresh sidecar with a long budget, holds o.InFlight
// calls from distinct uncached numbers inside it (the stub does not answer),
// samples goroutines and memory, then lets them all go.
func holdInFlight(ctx context.Context, o Options, stub *CRMStub, pc PipelineConfig, log *slog.Logger, note func(string, ...any)) (InFlightReport, float64, error) {
	const hold = holdBudget
	r := InFlightReport{Calls: o.InFlight, Process: "whole bench process: sidecar + simulator + CRM stub + load generator (an upper bound for the sidecar)"}
	debug.FreeOSMemory() // return the load phases' heap, so the peak is this phase's
	r.GoroutinesIdle = runtime.NumGoroutine()
	r.RSSIdleMiB = mib(procStatusKiB("VmRSS"))
	peakReset := resetPeakRSS()

	p, err := NewPipeline(pc.with(hold, hold))
	if err != nil {
		return r, 0, err
	}
	defer p.Close()
	ec := &entryCounter{dec: p.Router, log: log}
	tc := o.targetConfig(log)
	tc.maxCalls = inFlightMaxCalls(o.InFlight)
	t, err := newTarget(o.PBX, false, tc)
	if err != nil {
		return r, 0, err
	}
	defer t.Close()
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := t.Start(hctx, adapters.Deps{Decider: ec, Logger: log, Budget: hold}); err != nil {
		return r, 0, err
	}
	if err := waitReady(hctx, t, 10*time.Second); err != nil {
		return r, 0, err
	}
	peak, err := holdSampleRelease(hctx, t, stub, &r, heldSampler{
		place: "pipeline", poll: 10 * time.Millisecond,
		inside: func() (int, error) { return int(ec.in.Load()), nil },
		sample: func(r *InFlightReport) float64 {
			r.Reached = int(ec.in.Load())
			r.Goroutines = runtime.NumGoroutine()
			r.RSSMiB = mib(procStatusKiB("VmRSS"))
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			r.HeapMiB = float64(ms.HeapInuse*10/(1<<20)) / 10
			r.StackMiB = float64(ms.StackInuse*10/(1<<20)) / 10
			if !peakReset {
				return r.RSSMiB
			}
			return mib(procStatusKiB("VmHWM"))
		},
	}, cancel, note)
	return r, peak, err
}

// heldSampler is where the in-flight phase counts and samples its held
// calls: this process's pipeline or the sidecar child.
type heldSampler struct {
	place  string        // where the calls are held, for the error
	poll   time.Duration // how often inside is asked while the calls arrive
	inside func() (int, error)
	// sample fills the figures taken with the calls held and returns the
	// peak RSS in MiB.
	sample func(r *InFlightReport) float64
}

// holdSampleRelease offers r.Calls calls at once from distinct uncached
// numbers while the stub does not answer, waits (at most reachLimit) until s
// counts them inside, lets them settle, samples them, then lets them all go
// (the stub answers, the calls end; abort ends them if they do not).
func holdSampleRelease(ctx context.Context, t Target, stub *CRMStub, r *InFlightReport, s heldSampler, abort func(), note func(string, ...any)) (float64, error) {
	stub.Hold()
	defer stub.Release()
	col := newCollector(holdBudget)
	wg := offerHeld(ctx, t, col, r.Calls)
	var pollErr error
	deadline := time.Now().Add(reachLimit)
	for time.Now().Before(deadline) && ctx.Err() == nil && col.completed.Load() == 0 {
		var n int
		if n, pollErr = s.inside(); pollErr != nil || n >= r.Calls {
			break
		}
		time.Sleep(s.poll)
	}
	time.Sleep(200 * time.Millisecond) // let connections and buffers settle
	peak := s.sample(r)
	var drainErr error
	r.DrainS, drainErr = releaseAndWait(stub, wg, col, abort, note)
	if pollErr == nil && r.Reached < r.Calls {
		pollErr = fmt.Errorf("only %d of %d calls were held in the %s (%d ended early)", r.Reached, r.Calls, s.place, col.completed.Load())
	}
	return peak, errors.Join(pollErr, drainErr)
}

// offerHeld offers n calls at once from distinct uncached numbers, each on a
// goroutine the returned WaitGroup waits for (the caller waits for it).
func offerHeld(ctx context.Context, t Target, col *collector, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range n {
		e := unknownNumber(5_000_000 + i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			col.offer(ctx, t, nil, Caller{Kind: KindUnknown, CLI: e, E164: e})
		}()
	}
	return &wg
}

// holdInFlightChild is holdInFlight with the sidecar in a child process:
// the figures are the sidecar's alone. It also times the child from exec to
// its adapter being ready.
func holdInFlightChild(ctx context.Context, o Options, stub *CRMStub, pc PipelineConfig, log *slog.Logger, note func(string, ...any)) (InFlightReport, float64, float64, error) {
	const hold = holdBudget
	r := InFlightReport{Calls: o.InFlight, MemLimit: o.SidecarMemLimit, Process: "the sidecar alone: a child process (callpop bench --sidecar-child) with the pipeline and the adapter"}
	t, err := newTargetMode(o.PBX, modeExternal, o.targetConfig(log))
	if err != nil {
		return r, 0, 0, err
	}
	defer t.Close()
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := t.Start(hctx, adapters.Deps{Logger: log, Budget: hold}); err != nil {
		return r, 0, 0, err
	}
	so := t.(simOnly)
	spec := SidecarSpec{PBX: o.PBX, Endpoint: so.Endpoint(), CRMURL: pc.CRMURL, RedisAddr: pc.RedisAddr, KeyPrefix: pc.KeyPrefix, Budget: hold, CRMTimeout: hold,
		MaxCalls: inFlightMaxCalls(o.InFlight)}
	t0 := time.Now()
	child, err := startSidecar(hctx, o.SidecarCommand, o.SidecarMemLimit, spec)
	if err != nil {
		return r, 0, 0, err
	}
	defer child.close()
	so.Attach(child.ready.Addr)
	if err := waitReady(hctx, t, 10*time.Second); err != nil {
		return r, 0, 0, err
	}
	readyMs := ms(time.Since(t0))
	idle, err := child.stats()
	if err != nil {
		return r, 0, readyMs, err
	}
	r.GoroutinesIdle, r.RSSIdleMiB = idle.Goroutines, mib(idle.RSSKiB)
	var st sidecarStats // the last the child reported
	peak, err := holdSampleRelease(hctx, t, stub, &r, heldSampler{
		place: "sidecar", poll: 50 * time.Millisecond,
		inside: func() (int, error) {
			var err error
			st, err = child.stats()
			return int(st.InPipeline), err
		},
		sample: func(r *InFlightReport) float64 {
			if o.SidecarProfile != "" {
				_ = child.profile(o.SidecarProfile)
			}
			if st2, err := child.stats(); err == nil {
				st = st2
			}
			r.Reached, r.Goroutines = int(st.InPipeline), st.Goroutines
			r.RSSMiB, r.HeapMiB = mib(st.RSSKiB), float64(st.HeapInuse*10/(1<<20))/10
			r.StackMiB = float64(st.StackInuse*10/(1<<20)) / 10
			return mib(st.HWMKiB)
		},
	}, cancel, note)
	return r, peak, readyMs, err
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(int64(float64(n)/d.Seconds()*10)) / 10
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func machine() Machine {
	m := Machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return m
}
