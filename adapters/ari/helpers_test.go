package ari

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

const (
	testUser = "ariuser"
	testPass = "ariS3cret"
)

// recSink records what the adapter reports.
type recSink struct {
	mu       sync.Mutex
	enriched []call.Enriched
	legs     []call.LegEvent
	ended    []call.CallEnd
}

func (s *recSink) CallEnriched(e call.Enriched) {
	s.mu.Lock()
	s.enriched = append(s.enriched, e)
	s.mu.Unlock()
}
func (s *recSink) AgentLeg(e call.LegEvent) { s.mu.Lock(); s.legs = append(s.legs, e); s.mu.Unlock() }
func (s *recSink) CallEnded(e call.CallEnd) { s.mu.Lock(); s.ended = append(s.ended, e); s.mu.Unlock() }

func (s *recSink) snapshot() ([]call.Enriched, []call.LegEvent, []call.CallEnd) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]call.Enriched(nil), s.enriched...), append([]call.LegEvent(nil), s.legs...), append([]call.CallEnd(nil), s.ended...)
}

// logBuf collects log lines (to check for error storms).
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.lines = append(b.lines, string(p))
	b.mu.Unlock()
	return len(p), nil
}

func (b *logBuf) count(level string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		if strings.Contains(l, "level="+level) {
			n++
		}
	}
	return n
}

func newSim(t testing.TB, opts arisim.Options) *arisim.Server {
	t.Helper()
	if opts.Username == "" {
		opts.Username, opts.Password = testUser, testPass
	}
	s, err := arisim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type harness struct {
	sim  *arisim.Server
	a    *Adapter
	sink *recSink
	logs *logBuf
	stop func()
}

// start runs an adapter against sim until the test ends and waits until it is ready.
func start(t testing.TB, sim *arisim.Server, dec call.Decider, budget time.Duration, edit func(*Config)) *harness {
	t.Helper()
	cfg := DefaultConfig()
	cfg.URL = sim.URL()
	cfg.Username, cfg.Password = testUser, testPass
	cfg.App = sim.App()
	cfg.ReconnectMin = 20 * time.Millisecond
	cfg.ReconnectMax = 200 * time.Millisecond
	if edit != nil {
		edit(&cfg)
	}
	h := &harness{sim: sim, sink: &recSink{}, logs: &logBuf{}}
	lvl := slog.LevelInfo
	if os.Getenv("ARI_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: lvl}))
	a, err := New(cfg, adapters.Deps{Decider: dec, Sink: h.sink, Logger: log, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	h.a = a
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return")
			}
		})
	}
	t.Cleanup(h.stop)
	waitFor(t, 5*time.Second, "adapter ready", func() bool { ok, _ := a.Ready(); return ok })
	return h
}

// waitFor polls cond every 5ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// waitContinued waits until every id is continued (or failed / hung up).
func waitSettled(t testing.TB, sim *arisim.Server, ids []string, d time.Duration) {
	t.Helper()
	waitFor(t, d, "all calls settled", func() bool {
		for _, id := range ids {
			r, ok := sim.Record(id)
			if !ok || (!r.Failed && !r.HungUp && r.Continued.IsZero()) {
				return false
			}
		}
		return true
	})
}

// fixedDecider answers d for every call and records the calls it saw.
type fixedDecider struct {
	mu    sync.Mutex
	d     call.Decision
	calls []call.Call
}

func (f *fixedDecider) Decide(ctx context.Context, c call.Call) call.Decision {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	return f.d
}

func (f *fixedDecider) seen() []call.Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call.Call(nil), f.calls...)
}

// counter reads a counter's current value.
func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// testBudget is the call budget of functional tests: long enough that a
// loaded machine never turns them into timing tests.
const testBudget = 2 * time.Second

// budgetMargin is how long past its budget a channel may be held in the
// tests: far past it (a call held 1 s over its budget was not continued by
// the watchdog), never near it. The 20 ms is a speed target, and
// speed targets live in benchmarks (BenchmarkCallsThroughSimulator counts
// budget misses): on a shared 2-core box goroutines were seen waiting 400 ms
// to run, and a 1-minute load average lags a sudden load, so a 20 ms margin
// gated on it failed on a busy machine.
func budgetMargin(t testing.TB) time.Duration {
	t.Helper()
	return time.Second
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func arisimOptions() arisim.Options { return arisim.Options{} }

func depsFor(dec call.Decider) adapters.Deps {
	return adapters.Deps{Decider: dec, Logger: discard(), Budget: testBudget}
}

// runAdapter runs a until the returned stop is called.
func runAdapter(t testing.TB, a *Adapter) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	return func() { cancel(); <-done }
}

// contains reports whether a log line holds s.
func (b *logBuf) contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// testM is the series of adapters built without a PBX name (pbx="asterisk"),
// as the tests of this package build them.
var testM = newMetrics("")
