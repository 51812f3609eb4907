package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/internal/netallow"
)

// `callpop bench` against a real PBX (--ari-url or --esl-address): it
// originates Local (Asterisk) or loopback (FreeSWITCH) calls into the bench
// context of docs/performance.md, whose dialplan stamps the time around one
// way in (--way) and reports both stamps back; each way runs through callpop
// and through a bare client doing the minimum, in alternating slices.

// Ways in (--way).
const (
	WayARI         = "ari"
	WayFastAGI     = "fastagi"
	WayESLOutbound = "esl-outbound"
	WayHTTP        = "http"
	WayMultiset    = "multiset"  // FreeSWITCH: multiset(${curl(…&format=multiset)})
	WayCIDLookup   = "cidlookup" // FreeSWITCH: mod_cidlookup, the baseline for multiset
)

// BenchContext is the dialplan context the bench originates into; its
// extensions are named after the ways.
const BenchContext = "callpop-bench"

// The ARI applications of the bench context: callpop's, the bare client's,
// and the bench's own, where each call reports its stamps.
const (
	RealARIApp     = "callpop-bench"
	RealARIBareApp = "callpop-bench-bare"
	RealARIReport  = "callpop-bench-report"
)

// RealOptions are `callpop bench`'s flags against a real PBX.
type RealOptions struct {
	ARIURL, ARIUser, ARIPassword string // --ari-url, --ari-user, CALLPOP_PBX_ASTERISK_PASSWORD
	ESLAddress, ESLPassword      string // --esl-address, CALLPOP_PBX_FREESWITCH_PASSWORD
	Ways                         []string
	Rate                         int           // --rate: calls/s offered
	Duration                     time.Duration // --duration: per way, callpop and the bare client together
	Budget                       time.Duration // --budget: call.budget; a step past it is not clean
	Force                        bool          // --force: run although the PBX has other live channels
	// Listen is the address the bench's FastAGI, HTTP and socket listeners
	// bind (port 0 = any); the PBX must reach it. Default 127.0.0.1:0.
	Listen     string
	Population int // customers in the CRM stub (all warmed in the cache first, unless CRMDelay)
	// CRMDelay (--crm-delay) makes the CRM slow: the CRM stub answers each
	// request this late, and the bare HTTP servers (which stand for the PBX
	// asking the CRM itself) answer as late. The cache starts cold, and each
	// way has a pipeline (and cache) of its own, so every way meets the slow
	// CRM on its first calls. 0 = a CRM answering at once, warm cache.
	CRMDelay time.Duration
	allow    []string // the listeners' allow-list: loopback and the PBX's address
	// sample (with CRMDelay) is a warm pipeline on a CRM answering at once,
	// where the bare servers take callpop's answer for a known customer from.
	sample   *Pipeline
	Logger   *slog.Logger
	Progress io.Writer
}

// MaxCRMDelay bounds --crm-delay: a bare call waits that long for the slow
// CRM and must still report its stamps before it is given up.
const MaxCRMDelay = 4 * time.Second

// giveUpAfter is how long after the budget a call that has not reported
// its stamps is given up (the collector's bound).
const giveUpAfter = 5 * time.Second

// Real reports whether o names a real PBX.
func (o *RealOptions) Real() bool { return o.ARIURL != "" || o.ESLAddress != "" }

// asterisk reports whether the PBX is Asterisk (else FreeSWITCH).
func (o *RealOptions) asterisk() bool { return o.ARIURL != "" }

// waysOf lists the ways each PBX has.
var waysOf = map[bool][]string{true: {WayARI, WayFastAGI, WayHTTP}, false: {WayESLOutbound, WayHTTP, WayMultiset, WayCIDLookup}}

// Validate checks the options; messages name the flag or variable.
func (o *RealOptions) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch {
	case o.ARIURL != "" && o.ESLAddress != "":
		bad("--ari-url and --esl-address: one PBX at a time")
	case o.ARIURL != "":
		if u, err := url.Parse(o.ARIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			bad("--ari-url: %q is not Asterisk's HTTP base, e.g. http://127.0.0.1:8088", o.ARIURL)
		}
		if o.ARIUser == "" {
			bad("--ari-user: required with --ari-url (an ari.conf user)")
		}
		if o.ARIPassword == "" {
			bad("CALLPOP_PBX_ASTERISK_PASSWORD: not set; it holds --ari-user's password")
		}
	case o.ESLAddress != "":
		if _, port, err := net.SplitHostPort(o.ESLAddress); err != nil || port == "" {
			bad("--esl-address: %q is not HOST:PORT (e.g. 127.0.0.1:8021)", o.ESLAddress)
		}
		if o.ESLPassword == "" {
			bad("CALLPOP_PBX_FREESWITCH_PASSWORD: not set; it holds the Event Socket password")
		}
	default:
		bad("bench: no real PBX: give --ari-url or --esl-address")
	}
	if len(o.Ways) == 0 {
		bad("--way: give one or more of %s", strings.Join(waysOf[o.asterisk()], ","))
	}
	for _, w := range o.Ways {
		if !slices.Contains(waysOf[o.asterisk()], w) {
			pbx, flag := "FreeSWITCH", "--esl-address"
			if o.asterisk() {
				pbx, flag = "Asterisk", "--ari-url"
			}
			bad("--way: %q is not a way into %s (%s): one of %s", w, pbx, flag, strings.Join(waysOf[o.asterisk()], ","))
		}
	}
	if o.Rate <= 0 || o.Rate > 5000 {
		bad("--rate: a real PBX is benched at a fixed rate between 1 and 5000 calls/s")
	}
	if o.Duration <= 0 || o.Duration > time.Hour {
		bad("--duration: must be between 0 and 1h")
	}
	if o.Budget <= 0 {
		bad("--budget: must be positive")
	}
	if host, _, err := net.SplitHostPort(o.Listen); o.Listen != "" && err != nil {
		bad("--listen: %q is not HOST:PORT", o.Listen)
	} else if ip := net.ParseIP(host); o.Listen != "" && (ip == nil || ip.IsUnspecified()) {
		bad("--listen: %q: give the IP address the PBX reaches the bench at (not a name, not 0.0.0.0)", o.Listen)
	}
	if o.CRMDelay < 0 || o.CRMDelay > MaxCRMDelay {
		bad("--crm-delay: must be between 0 and %s (a call whose stamps are not back %s after --budget is given up)", MaxCRMDelay, giveUpAfter)
	}
	if o.Population < 1 || o.Population > 100_000 {
		bad("--population: must be between 1 and 100000 with a real PBX (every customer is looked up once first)")
	}
	return errors.Join(errs...)
}

// SideReport is one side (callpop or the bare client) of one way.
type SideReport struct {
	Offered   int64   `json:"offered"`
	Completed int64   `json:"completed"` // reported their stamps
	Clean     int64   `json:"clean"`     // completed with the step within the budget
	CleanCPS  float64 `json:"clean_calls_per_second"`
	StepP50   float64 `json:"step_p50_ms"`
	StepP99   float64 `json:"step_p99_ms"`
	// StepMean stays right when the PBX's clock ticks coarser than the step
	// (FreeSWITCH's 20 ms): a step of d spans a tick T apart with odds d/T.
	StepMean float64 `json:"step_mean_ms"`
	// CPUPerCallMs is the PBX's CPU time per completed call; 0 = not measured.
	CPUPerCallMs float64 `json:"pbx_cpu_per_call_ms,omitempty"`
	// RequestsPerCall is what the client sent the PBX per call (ARI: REST
	// requests; FastAGI: AGI commands; HTTP: requests it served; ESL: commands).
	RequestsPerCall float64 `json:"requests_per_call"`
	StepMax         float64 `json:"step_max_ms"`
	// OverBudget counts the completed calls whose step exceeded --budget.
	OverBudget      int64   `json:"over_budget"`
	OverBudgetShare float64 `json:"over_budget_share"`
	// Matches counts what the dialplan saw per call, as the bench context
	// reports it (callpop_bench_match): callpop_match for multiset and
	// esl-outbound, the caller ID name mod_cidlookup set for cidlookup, and
	// for http the match of the answer the bench served to the call's id
	// ("name" for a name, else its value such as UNKNOWN); "(empty)" = nothing.
	Matches map[string]int64 `json:"matches,omitempty"`
	// AfterTimeout (with --crm-delay) is the next call from a number whose
	// call saw "timeout", once the slow CRM has answered it (starting at
	// least --crm-delay + --budget later): how many, and how many were
	// answered from the cache the late answer filled.
	AfterTimeout *AfterTimeout `json:"after_timeout,omitempty"`
}

// AfterTimeout is what happened to the next call from a number after callpop
// answered "timeout" for it and the slow CRM's late answer came in.
type AfterTimeout struct {
	Calls int64 `json:"calls"`
	Hits  int64 `json:"hits"` // match hit (cidlookup: a name)
}

// WayReport is one way in, both sides and their ratios (callpop / bare).
type WayReport struct {
	Way     string             `json:"way"`
	Callpop SideReport         `json:"callpop"`
	Bare    SideReport         `json:"bare"`
	Ratio   map[string]float64 `json:"ratio"`
	Notes   []string           `json:"notes,omitempty"`
}

// RealReport is a run against a real PBX.
type RealReport struct {
	PBX       string  `json:"pbx"` // the URL or address
	Kind      string  `json:"kind"`
	Machine   Machine `json:"machine"`
	Rate      int     `json:"rate"`
	DurationS float64 `json:"duration_s"`
	BudgetMs  float64 `json:"budget_ms"`
	// CRMDelayMs is --crm-delay; CRMTimeoutMs callpop's crm.timeout (its
	// default), after which callpop gives a slow CRM up; Cache "warm" (every
	// customer looked up first) or "cold" (with --crm-delay).
	CRMDelayMs   float64     `json:"crm_delay_ms"`
	CRMTimeoutMs float64     `json:"crm_timeout_ms"`
	Cache        string      `json:"cache"`
	CPU          string      `json:"pbx_cpu"` // how the PBX's CPU was measured, or why not
	Ways         []WayReport `json:"ways"`
}

// realPBX is the PBX side of a run: the live-channel count, originating a
// call into the bench context, and the stamps each call reports.
type realPBX interface {
	// connect logs in and starts hearing reports (to w); it ends with ctx.
	connect(ctx context.Context, w *reportWaiter) error
	liveChannels(ctx context.Context) (int, error)
	// originate starts one call to exten way of the bench context, from cli, with vars.
	originate(ctx context.Context, way, cli string, vars map[string]string) error
	// handler builds what answers way: callpop's (bare false) or the bare client's.
	handler(way string, bare bool, o *RealOptions, p *Pipeline) (wayHandler, error)
	host() string    // where it runs
	port() int       // the TCP port the bench reaches it on
	process() string // its process name (/proc/*/comm)
	close()
}

// wayHandler answers one way in: callpop's listener or adapter, or the bare client's.
type wayHandler interface {
	start(ctx context.Context) error
	ready() bool
	// vars are the channel variables that point the bench context at it.
	vars(cli string) map[string]string
	requests() int64
	close()
}

// turnTaker is a wayHandler that points the PBX at itself before each of
// its turns (a setting the PBX holds for every call, not one per call).
type turnTaker interface {
	turn(ctx context.Context) error
}

// stamps is what a call reported: its PBX id, the times around the step and
// what the way in decided (callpop_bench_match; "" when not reported).
type stamps struct {
	id     string
	t0, t1 time.Time
	match  string
}

// reportWaiter hands each call's stamps to its Offer, by the bench's call id.
type reportWaiter struct {
	mu      sync.Mutex
	pending map[string]chan stamps
}

func newReportWaiter() *reportWaiter { return &reportWaiter{pending: map[string]chan stamps{}} }

func (w *reportWaiter) expect(id string) <-chan stamps {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan stamps, 1)
	w.pending[id] = ch
	return ch
}

func (w *reportWaiter) forget(id string) {
	w.mu.Lock()
	delete(w.pending, id)
	w.mu.Unlock()
}

// report files a call's stamps; false when no Offer waits for id (not ours, or given up).
func (w *reportWaiter) report(benchID string, s stamps) bool {
	w.mu.Lock()
	ch, ok := w.pending[benchID]
	delete(w.pending, benchID)
	w.mu.Unlock()
	if ok {
		ch <- s
	}
	return ok
}

// parseStamp reads a dialplan's epoch: seconds with a fraction (Asterisk
// "1795311890.123456") or microseconds (FreeSWITCH "1795311890123456").
func parseStamp(s string) (time.Time, error) {
	sec, frac, hasFrac := strings.Cut(strings.TrimSpace(s), ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bench: stamp %q is not epoch seconds", s)
	}
	if !hasFrac && n > 1e14 { // no second count is that large before the year 3 million
		return time.UnixMicro(n), nil
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, fmt.Errorf("bench: stamp %q is not epoch seconds", s)
		}
	}
	return time.Unix(n, ns), nil
}

// stampTick is the coarsest clock tick a bench context stamps with
// (FreeSWITCH's core timer: ${strmicroepoch()} moves in 20 ms steps).
const stampTick = 20 * time.Millisecond

// realTarget is one side of one way as a Target: Offer originates a call
// and waits for its stamps; Sent and Released are the dialplan's t0 and t1.
type realTarget struct {
	pbx   realPBX
	way   string
	h     wayHandler
	w     *reportWaiter
	runID string
	seq   *atomic.Int64
	n     atomic.Int64 // offered
	calls callLog
}

func (t *realTarget) Start(ctx context.Context, _ adapters.Deps) error { return t.h.start(ctx) }
func (t *realTarget) Ready() bool                                      { return t.h.ready() }
func (t *realTarget) Close() error                                     { t.h.close(); return nil }
func (t *realTarget) requests() (int64, int64)                         { return t.h.requests(), t.n.Load() }

func (t *realTarget) Offer(ctx context.Context, c Caller, _ string) (Outcome, error) {
	t.n.Add(1)
	id := t.runID + "-" + strconv.FormatInt(t.seq.Add(1), 10)
	got := t.w.expect(id)
	defer t.w.forget(id)
	vars := map[string]string{"CALLPOP_BENCH_ID": id}
	for k, v := range t.h.vars(c.CLI) {
		vars[k] = v
	}
	// At a random phase of the PBX's clock tick: paced calls would sample
	// it at a fixed phase, and the stamped steps' mean would not be the true one.
	select {
	case <-time.After(rand.N(stampTick)):
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
	if err := t.pbx.originate(ctx, t.way, c.CLI, vars); err != nil {
		return Outcome{}, err
	}
	select {
	case s := <-got:
		if m, ok := t.h.(interface{ match(string) (string, bool) }); ok && s.match == "" {
			if v, ok := m.match(s.id); ok { // what the handler answered, where the dialplan cannot say
				s.match = v
			}
		}
		t.calls.add(cmp.Or(c.E164, c.CLI), s)
		return Outcome{CallID: s.id, Sent: s.t0, Released: s.t1}, nil
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
}

// RunReal runs every --way against the PBX: the live-channel check, the
// cache warmed with every customer, then per way callpop and the bare
// client in alternating slices at --rate for --duration.
func RunReal(ctx context.Context, o RealOptions) (*RealReport, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	note := func(format string, a ...any) { fmt.Fprintf(progress, "bench: "+format+"\n", a...) }
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	var pbx realPBX
	rep := &RealReport{Machine: machine(), Rate: o.Rate, DurationS: o.Duration.Seconds(), BudgetMs: ms(o.Budget)}
	if o.asterisk() {
		pbx, rep.PBX, rep.Kind = newRealARI(o, log), o.ARIURL, "asterisk"
	} else {
		pbx, rep.PBX, rep.Kind = newRealESL(o, log), o.ESLAddress, "freeswitch"
	}
	defer pbx.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := newReportWaiter()
	if err := pbx.connect(ctx, w); err != nil {
		return nil, err
	}
	n, err := pbx.liveChannels(ctx)
	if err != nil {
		return nil, err
	}
	if n > 0 && !o.Force {
		return nil, fmt.Errorf("bench: %s has %d live channels: a bench beside live calls measures both and may disturb them; run it on a staging PBX, or give --force", rep.Kind, n)
	}
	if n > 0 {
		note("--force: %d live channels on the PBX; its CPU figures include them", n)
	}

	stub, err := StartCRMStub(o.Population, o.CRMDelay, 0)
	if err != nil {
		return nil, err
	}
	defer stub.Close()
	pc := PipelineConfig{CRMURL: stub.SourceURL(), Budget: o.Budget, Logger: log}
	if ip := net.ParseIP(pbx.host()); ip != nil && !ip.IsLoopback() {
		bits := 128
		if ip.To4() != nil {
			bits = 32
		}
		pc.Allow = append(slices.Clone(netallow.DefaultAllow), fmt.Sprintf("%s/%d", ip, bits))
		o.allow = pc.Allow
	}
	rep.CRMDelayMs, rep.CRMTimeoutMs, rep.Cache = ms(o.CRMDelay), ms(crm.DefaultConfig().Timeout), "warm"
	var p *Pipeline
	if o.CRMDelay == 0 {
		if p, err = NewPipeline(pc); err != nil {
			return nil, err
		}
		defer p.Close()
		warm(ctx, p, o.Population)
		note("cache warmed: %d customers looked up once", o.Population)
	} else {
		rep.Cache = "cold"
		fast, err := StartCRMStub(o.Population, 0, 0)
		if err != nil {
			return nil, err
		}
		defer fast.Close()
		spc := pc
		spc.CRMURL = fast.SourceURL()
		if o.sample, err = NewPipeline(spc); err != nil {
			return nil, err
		}
		defer o.sample.Close()
		warm(ctx, o.sample, 1)
		note("--crm-delay %s: the CRM stub and the bare servers answer %s late; each way starts with a cold cache of its own", o.CRMDelay, o.CRMDelay)
	}

	cpu := newPBXCPU(pbx)
	rep.CPU = cpu.describe()
	callers := NewCallers(o.Population, 1.1, Mix{}, 1)
	var seq atomic.Int64
	runID := strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36)
	for _, way := range o.Ways {
		wp := p
		if wp == nil { // --crm-delay: a cold cache for each way
			if wp, err = NewPipeline(pc); err != nil {
				return nil, err
			}
		}
		wr, err := runWay(ctx, pbx, way, o, wp, w, runID, &seq, callers, cpu, note)
		if wp != p {
			wp.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("bench: --way %s: %w", way, err)
		}
		rep.Ways = append(rep.Ways, wr)
	}
	return rep, ctx.Err()
}

// warm looks every customer up once, so the steps measured are warm-cache ones.
func warm(ctx context.Context, p *Pipeline, n int) {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p.Router.Decide(ctx, call.Call{ID: "bench-warm", PBX: "bench", CLI: CustomerNumber(i), DNIS: dnis, Received: time.Now()})
		}()
	}
	wg.Wait()
}

// runWay measures one way: callpop and the bare client alternate in
// slices, the PBX's CPU taken around each.
func runWay(ctx context.Context, pbx realPBX, way string, o RealOptions, p *Pipeline, w *reportWaiter, runID string,
	seq *atomic.Int64, callers *Callers, cpu *pbxCPU, note func(string, ...any)) (WayReport, error) {
	wr := WayReport{Way: way}
	var sides [2]*realTarget
	for i, bare := range []bool{false, true} {
		hp := p
		if bare && o.sample != nil {
			hp = o.sample // the bare body: callpop's answer for a known customer, not a cold cache's timeout
		}
		h, err := pbx.handler(way, bare, &o, hp)
		if err != nil {
			return wr, err
		}
		t := &realTarget{pbx: pbx, way: way, h: h, w: w, runID: runID, seq: seq}
		t.calls.keep, t.calls.names = o.CRMDelay > 0, way == WayCIDLookup
		if err := t.Start(ctx, adapters.Deps{}); err != nil {
			t.Close()
			return wr, err
		}
		defer t.Close()
		if err := waitReady(ctx, t, 10*time.Second); err != nil {
			return wr, err
		}
		sides[i] = t
	}
	cols := [2]*collector{newCollector(o.Budget), newCollector(o.Budget)}
	var spent [2]time.Duration
	var ticks [2]int64
	half := max(o.Duration/2, time.Millisecond)
	phase := Options{Rate: o.Rate, Duration: half, BareDuration: half, MaxInFlight: 4096}
	sliceLen := half / max(1, (half+interleaveSlice-1)/interleaveSlice) // interleave's slices
	var turnErr error
	turn := func(bare bool, slice func()) {
		i := 0
		if bare {
			i = 1
		}
		if tt, ok := sides[i].h.(turnTaker); ok && turnErr == nil {
			turnErr = tt.turn(ctx)
		}
		c0, t0 := cpu.ticks(), time.Now()
		slice()
		spent[i] += max(time.Since(t0), sliceLen) // as drive counts: at least the slice
		ticks[i] += cpu.ticks() - c0
	}
	note("%s: %d calls/s for %s, callpop and the bare client in turn", way, o.Rate, o.Duration)
	interleave(ctx, sides[0], nil, sides[1], callers, phase, cols[0], cols[1], turn)
	if err := cmp.Or(ctx.Err(), turnErr); err != nil {
		return wr, err
	}
	for i, sr := range []*SideReport{&wr.Callpop, &wr.Bare} {
		col := cols[i]
		sr.Offered, sr.Completed = col.offered.Load(), col.completed.Load()
		sr.Clean = sr.Completed - (col.misses.Load() - col.lost.Load())
		sr.CleanCPS = rate(sr.Clean, spent[i])
		lat := summarize(col.all.sorted(), int(sr.Completed))
		sr.StepP50, sr.StepP99, sr.StepMean = lat.P50, lat.P99, lat.Mean
		if cpu.ok() && sr.Completed > 0 {
			sr.CPUPerCallMs = round3(cpu.ms(ticks[i]) / float64(sr.Completed))
		}
		sr.RequestsPerCall = perCall(sides[i])
		sr.OverBudget = sr.Completed - sr.Clean
		if sr.Completed > 0 {
			sr.OverBudgetShare = round3(float64(sr.OverBudget) / float64(sr.Completed))
		}
		cl := &sides[i].calls
		cl.mu.Lock()
		sr.StepMax, sr.Matches = ms(cl.max), cl.matches
		if cl.keep {
			sr.AfterTimeout = afterTimeout(cl.calls, o.CRMDelay+o.Budget)
		}
		cl.mu.Unlock()
		if lost := col.lost.Load(); lost > 0 {
			who := [2]string{"callpop", "bare client"}[i]
			wr.Notes = append(wr.Notes, fmt.Sprintf("%s: %d calls never reported their stamps", who, lost))
		}
	}
	if wr.Callpop.Completed == 0 && wr.Bare.Completed == 0 {
		return wr, fmt.Errorf("none of %d calls reported its stamps: is the %s context loaded as docs/performance.md (\"Bench on a real PBX\") has it?",
			wr.Callpop.Offered+wr.Bare.Offered, BenchContext)
	}
	for i, sr := range []SideReport{wr.Callpop, wr.Bare} {
		// A way that asks the bench on every call, which did not: the step ran without it.
		if hh, ok := sides[i].h.(interface{ hint() string }); ok && sr.Completed > 0 && sr.RequestsPerCall == 0 {
			return wr, fmt.Errorf("%d calls reported their stamps but none asked the bench: %s", sr.Completed, hh.hint())
		}
	}
	wr.Ratio = map[string]float64{}
	for k, v := range map[string][2]float64{
		"clean_calls_per_second": {wr.Callpop.CleanCPS, wr.Bare.CleanCPS},
		"step_p50":               {wr.Callpop.StepP50, wr.Bare.StepP50},
		"step_p99":               {wr.Callpop.StepP99, wr.Bare.StepP99},
		"step_mean":              {wr.Callpop.StepMean, wr.Bare.StepMean},
		"pbx_cpu_per_call":       {wr.Callpop.CPUPerCallMs, wr.Bare.CPUPerCallMs},
		"requests_per_call":      {wr.Callpop.RequestsPerCall, wr.Bare.RequestsPerCall},
	} {
		if v[1] > 0 {
			wr.Ratio[k] = round2(v[0] / v[1])
		}
	}
	return wr, nil
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// pbxCPU reads the PBX process's CPU time from /proc when it runs on this host.
type pbxCPU struct {
	pid  int
	why  string // when not measured
	name string
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

func newPBXCPU(pbx realPBX) *pbxCPU {
	c := &pbxCPU{name: pbx.process()}
	if !localHost(pbx.host()) {
		c.why = "not measured: the PBX is not on this host"
		return c
	}
	// The PBX is the process listening on the port the bench reaches, not
	// any process of that name: another PBX, or a simulator, may run here.
	pid, err := listenerPID(pbx.port())
	switch {
	case err != nil:
		c.why = "not measured: " + err.Error()
	case pid == 0:
		c.why = fmt.Sprintf("not measured: no process on this host listens on port %d", pbx.port())
	case processName(pid) != c.name:
		c.why = fmt.Sprintf("not measured: port %d is served by %q (pid %d), not %s", pbx.port(), processName(pid), pid, c.name)
	default:
		c.pid = pid
	}
	return c
}

func (c *pbxCPU) ok() bool { return c.pid != 0 }

func (c *pbxCPU) describe() string {
	if c.ok() {
		return fmt.Sprintf("%s (pid %d): user+system time from /proc/%d/stat", c.name, c.pid, c.pid)
	}
	return c.why
}

// ticks is the process's user+system time in clock ticks (0 when not measured).
func (c *pbxCPU) ticks() int64 {
	if !c.ok() {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) : state is field 3; utime 14, stime 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

func (c *pbxCPU) ms(ticks int64) float64 { return float64(ticks) * 1000 / clockTicks }

// processName is /proc/pid/comm ("" when unreadable).
func processName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// listenerPID returns the pid of the process holding a listening TCP socket
// on port (IPv4 or IPv6), 0 when none does.
func listenerPID(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if p, err := strconv.ParseUint(fs[1][i+1:], 16, 16); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	denied := false
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir("/proc/" + e.Name() + "/fd")
		if err != nil {
			denied = denied || os.IsPermission(err)
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink("/proc/" + e.Name() + "/fd/" + fd.Name()); err == nil && inodes[l] {
				return pid, nil
			}
		}
	}
	if denied {
		return 0, fmt.Errorf("the process listening on port %d is not readable (run as the PBX's user or root)", port)
	}
	return 0, nil
}

// localHost reports whether host is this machine (loopback or one of its addresses).
func localHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}
