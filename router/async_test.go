package router

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/internal/heldcalls"
	"github.com/callpop/callpop/internal/testredis"
)

// asyncDecision collects one DecideAsync's done calls.
type asyncDecision struct {
	calls atomic.Int64
	d     call.Decision
	ch    chan struct{}
}

func newAsyncDecision() *asyncDecision { return &asyncDecision{ch: make(chan struct{})} }

func (a *asyncDecision) done(d call.Decision) {
	if a.calls.Add(1) == 1 {
		a.d = d
		close(a.ch)
	}
}

func (a *asyncDecision) wait(t testing.TB) call.Decision {
	t.Helper()
	select {
	case <-a.ch:
	case <-time.After(30 * time.Second): // a bound for a stuck decision, not a timing check
		t.Fatal("DecideAsync never called done")
	}
	return a.d
}

func decideAsync(t testing.TB, r *Router, ctx context.Context, c call.Call) call.Decision {
	t.Helper()
	a := newAsyncDecision()
	r.DecideAsync(ctx, c, a.done)
	d := a.wait(t)
	if n := a.calls.Load(); n != 1 {
		t.Fatalf("done called %d times", n)
	}
	return d
}

// blockListEnv is a test env whose router also asks a shared block list in
// a Redis of its own (which is its CRM's cache tier too).
func blockListEnv(t *testing.T) *testEnv {
	t.Helper()
	te, _, _ := blockListEnvRedis(t)
	return te
}

// blockListEnvRedis is blockListEnv, also giving its Redis server and client.
func blockListEnvRedis(t *testing.T) (*testEnv, *testredis.Server, redis.UniversalClient) {
	t.Helper()
	srv := testredis.Start(t)
	rcfg := crm.DefaultCacheConfig().Redis
	rcfg.Addrs = []string{srv.Addr}
	rcfg.Timeout = time.Second // a loaded test machine, not a hot path
	rdb, err := crm.OpenRedis(rcfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.SAdd(context.Background(), "callpop:blocklist", "+14155550123").Err(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Flags.BlockListRedisKey = "callpop:blocklist"
	return newTestEnv(t, cfg, rdb, testBudget), srv, rdb
}

// TestDecideAsyncTimeout: a stalled CRM; the decision is a timeout by the
// budget (ctx without deadline) and by ctx's deadline.
func TestDecideAsyncTimeout(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, 100*time.Millisecond)
	te.fake.setDelay(time.Hour)
	d := decideAsync(t, te.router, context.Background(), call.Call{CLI: "+31201234567"})
	if d.Match != call.MatchTimeout || d.Queue == "" {
		t.Fatalf("budget: match %q queue %q", d.Match, d.Queue)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	d = decideAsync(t, te.router, ctx, call.Call{CLI: "+31301112233", Received: time.Now()})
	if d.Match != call.MatchTimeout {
		t.Fatalf("deadline: match %q", d.Match)
	}
	// Cancelled before the call: decided at once.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	a := newAsyncDecision()
	te.router.DecideAsync(ctx, call.Call{CLI: "+31612340000"}, a.done)
	if a.calls.Load() != 1 || (a.d.Match != call.MatchError && a.d.Match != call.MatchTimeout) {
		t.Fatalf("cancelled: calls %d match %q", a.calls.Load(), a.d.Match)
	}
}

// TestDecideAsyncDeadlineOrAnswer races the CRM's answer against each
// call's deadline: done runs exactly once either way.
func TestDecideAsyncDeadlineOrAnswer(t *testing.T) {
	for _, redisBlockList := range []bool{false, true} {
		t.Run(fmt.Sprintf("redis_block_list=%v", redisBlockList), func(t *testing.T) {
			te := newTestEnv(t, testConfig(), nil, testBudget)
			if redisBlockList {
				te = blockListEnv(t)
			}
			te.fake.setDelay(20 * time.Millisecond)
			const n = 200
			as := make([]*asyncDecision, n)
			var wg sync.WaitGroup
			for i := range as {
				as[i] = newAsyncDecision()
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%80)*time.Millisecond)
				defer cancel()
				wg.Go(func() {
					te.router.DecideAsync(ctx, call.Call{CLI: fmt.Sprintf("020%07d", 3000000+i%20), Received: time.Now()}, as[i].done)
				})
			}
			wg.Wait()
			counts := map[call.Match]int{}
			for _, a := range as {
				counts[a.wait(t).Match]++
			}
			waitFor := time.Now().Add(5 * time.Second) // late done calls would show here
			for time.Now().Before(waitFor) && te.fake.requests.Load() < 20 {
				time.Sleep(10 * time.Millisecond)
			}
			for i, a := range as {
				if got := a.calls.Load(); got != 1 {
					t.Fatalf("call %d: done called %d times", i, got)
				}
			}
			t.Logf("matches: %v", counts)
		})
	}
}

// TestDecideAsyncPanics: a panic in the part before the look-up (on the
// caller's goroutine) or after it (on the CRM's worker) is an error
// decision, done still called once; a panic in done does not crash.
func TestDecideAsyncPanics(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	var panicking atomic.Bool
	now := te.router.ruleClock
	te.router.ruleClock = func() time.Time {
		if panicking.Load() {
			panic("clock")
		}
		return now()
	}
	panicking.Store(true)
	// Anonymous: no look-up, the rules panic on the caller's goroutine.
	d := decideAsync(t, te.router, context.Background(), call.Call{ID: "p1", CLI: "anonymous", Received: time.Now()})
	if d.Match != call.MatchError || d.CallID != "p1" || d.Queue != "" {
		t.Fatalf("sync part: %+v", d)
	}
	// First-time caller: the rules panic on the CRM's worker.
	d = decideAsync(t, te.router, context.Background(), call.Call{ID: "p2", CLI: "0201234567", Received: time.Now()})
	if d.Match != call.MatchError || d.CallID != "p2" {
		t.Fatalf("after the look-up: %+v", d)
	}
	panicking.Store(false)
	// done panics, on the CRM's worker: logged, and the worker goes on.
	te.router.DecideAsync(context.Background(), call.Call{CLI: "0301112233", Received: time.Now()}, func(call.Decision) { panic("done") })
	d = decideAsync(t, te.router, context.Background(), call.Call{CLI: "0301112233", Received: time.Now()})
	if d.Match != call.MatchHit {
		t.Fatalf("after a panicking done: %+v", d)
	}
}

// BenchmarkHeldDecidesAsync is BenchmarkHeldDecides through DecideAsync: a
// held call is its structs, not a goroutine. It holds one wave whatever
// -benchtime says.
func BenchmarkHeldDecidesAsync(b *testing.B) {
	const n = 10000
	te := newTestEnv(b, testConfig(), nil, time.Minute)
	te.fake.setDelay(time.Hour)
	decideAsync(b, te.router, context.Background(), call.Call{ID: "warm-up", CLI: "0201234567", Received: time.Now().Add(-59 * time.Second)})
	g0, m0 := heldcalls.Snapshot()
	ctx, cancel := context.WithCancel(context.Background())
	as := make([]*asyncDecision, n)
	for i := range as {
		as[i] = newAsyncDecision()
	}
	// The decision slots themselves are the caller's, not the held call's.
	_, mAlloc := heldcalls.Snapshot()
	for i, a := range as {
		c := call.Call{ID: "held", CLI: fmt.Sprintf("020%07d", 2000000+i), DNIS: "0800123456", Received: time.Now()}
		te.router.DecideAsync(ctx, c, a.done)
	}
	heldcalls.Settle()
	g1, m1 := heldcalls.Snapshot()
	te.fake.setDelay(0)
	cancel()
	for _, a := range as {
		a.wait(b)
	}
	_ = te.crm.Close()
	for b.Loop() {
	}
	b.ReportMetric(float64(g1-g0)/n, "goroutines/held")
	b.ReportMetric(float64(int64(m1.HeapInuse)-int64(mAlloc.HeapInuse))/n, "heapB/held")
	b.ReportMetric(float64(int64(m1.StackInuse)-int64(m0.StackInuse))/n, "stackB/held")
}

// BenchmarkDecideAsyncWarm is BenchmarkDecideWarm through DecideAsync: a
// repeat caller decided before DecideAsync returns.
func BenchmarkDecideAsyncWarm(b *testing.B) {
	te := newTestEnv(b, testConfig(), nil, testBudget)
	c := call.Call{ID: "bench", CLI: "0201234567", ANI: "0201234567", DNIS: "0800123456"}
	if d := decideAsync(b, te.router, context.Background(), c); d.Match != call.MatchHit {
		b.Fatalf("warm-up: %q %s", d.Match, d.Err)
	}
	var got call.Decision
	done := func(d call.Decision) { got = d }
	b.ReportAllocs()
	for b.Loop() {
		got.Cached = false
		te.router.DecideAsync(context.Background(), c, done)
		if !got.Cached {
			b.Fatal("not decided at once from the cache")
		}
	}
}
