package crm

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/redis/go-redis/v9"
)

// gateSource answers every request once its gate opens (or the request's
// context ends): the customer for known numbers, ErrNotFound for the rest.
type gateSource struct {
	gate     chan struct{}
	requests atomic.Int64
	known    map[string]*call.Customer
}

func newGateSource() *gateSource {
	return &gateSource{gate: make(chan struct{}), known: map[string]*call.Customer{
		"+14155550123": {ID: "C1", Name: "Jane Doe"},
	}}
}

func (s *gateSource) Name() string { return "gate" }
func (s *gateSource) Lookup(ctx context.Context, q Query) (*call.Customer, error) {
	s.requests.Add(1)
	select {
	case <-s.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c, ok := s.known[q.E164]; ok {
		return c, nil
	}
	return nil, ErrNotFound
}

// asyncResult is one LookupAsync answer; calls counts how often done ran.
type asyncResult struct {
	calls atomic.Int64
	res   Result
	err   error
	ch    chan struct{}
}

func newAsyncResult() *asyncResult { return &asyncResult{ch: make(chan struct{})} }

func (a *asyncResult) done(r Result, err error) {
	if a.calls.Add(1) == 1 {
		a.res, a.err = r, err
		close(a.ch)
	}
}

func (a *asyncResult) wait(t testing.TB) (Result, error) {
	t.Helper()
	select {
	case <-a.ch:
	case <-time.After(30 * time.Second): // a bound for a stuck look-up, not a timing check
		t.Fatal("LookupAsync never called done")
	}
	return a.res, a.err
}

func newGateCRM(t testing.TB, cc CacheConfig, withRedis bool) (*CRM, *gateSource) {
	t.Helper()
	src := newGateSource()
	var rdb redis.UniversalClient
	if withRedis {
		_, rdb = startRedis(t)
	}
	// A stalled source is held, not failed: no source timeout or breaker
	// within a test on a loaded machine.
	cfg := DefaultConfig()
	cfg.Timeout = time.Hour
	cfg.Breaker.Failures = 0
	ctx, cancel := context.WithCancel(context.Background())
	c, err := newCRM(ctx, cancel, cfg, cc, rdb, quietLog(), []Source{src})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { close(src.gate); _ = c.Close() })
	return c, src
}

func TestLookupAsync(t *testing.T) {
	for _, withRedis := range []bool{false, true} {
		t.Run(fmt.Sprintf("redis=%v", withRedis), func(t *testing.T) {
			c, src := newGateCRM(t, testCacheConfig(), withRedis)
			const n = 200
			rs := make([]*asyncResult, n)
			for i := range rs {
				rs[i] = newAsyncResult()
				c.LookupAsync(context.Background(), q("+14155550123"), rs[i].done)
			}
			for i, r := range rs {
				if r.calls.Load() != 0 {
					t.Fatalf("waiter %d answered before the CRM did", i)
				}
			}
			src.gate <- struct{}{} // one request answers
			for i, r := range rs {
				res, err := r.wait(t)
				if err != nil || customerName(res.Customer) != "Jane Doe" || res.Cached {
					t.Fatalf("waiter %d: %+v, %v", i, res, err)
				}
			}
			if got := src.requests.Load(); got != 1 {
				t.Fatalf("%d requests for %d waiters of one number, want 1", got, n)
			}
			// A repeat: answered in-process before LookupAsync returns.
			r := newAsyncResult()
			c.LookupAsync(context.Background(), q("+14155550123"), r.done)
			if r.calls.Load() != 1 || !r.res.Cached || customerName(r.res.Customer) != "Jane Doe" {
				t.Fatalf("repeat: calls %d, %+v, %v", r.calls.Load(), r.res, r.err)
			}
			for _, r := range rs {
				if n := r.calls.Load(); n != 1 {
					t.Fatalf("done called %d times", n)
				}
			}
		})
	}
}

// TestLookupAsyncRedisTier: with no in-process tier, a number in Redis is
// answered from it by the flight's worker, without asking the source.
func TestLookupAsyncRedisTier(t *testing.T) {
	cc := testCacheConfig()
	cc.LocalSize = 0
	c, src := newGateCRM(t, cc, true)
	first := newAsyncResult()
	c.LookupAsync(context.Background(), q("+14155550123"), first.done)
	src.gate <- struct{}{}
	if res, err := first.wait(t); err != nil || res.Customer == nil {
		t.Fatalf("first: %+v, %v", res, err)
	}
	settle(t, c)
	r := newAsyncResult()
	c.LookupAsync(context.Background(), q("+14155550123"), r.done)
	if res, err := r.wait(t); err != nil || !res.Cached || res.Source != "cache" || customerName(res.Customer) != "Jane Doe" {
		t.Fatalf("from redis: %+v, %v", res, err)
	}
	if got := src.requests.Load(); got != 1 {
		t.Fatalf("%d source requests, want 1", got)
	}
}

// TestLookupAsyncStale: a stale Redis entry is served, and refreshed once.
func TestLookupAsyncStale(t *testing.T) {
	cc := testCacheConfig()
	cc.LocalSize = 0
	cc.TTL, cc.StaleFor = time.Minute, time.Hour
	c, src := newGateCRM(t, cc, true)
	clock := newFakeClock()
	c.cache.now = clock.Now
	first := newAsyncResult()
	c.LookupAsync(context.Background(), q("+14155550123"), first.done)
	src.gate <- struct{}{}
	first.wait(t)
	settle(t, c)
	clock.Add(2 * time.Minute)
	r := newAsyncResult()
	c.LookupAsync(context.Background(), q("+14155550123"), r.done)
	if res, err := r.wait(t); err != nil || !res.Stale || !res.Cached || customerName(res.Customer) != "Jane Doe" {
		t.Fatalf("stale: %+v, %v", res, err)
	}
	src.gate <- struct{}{} // the refresh's request
	waitFor(t, 5*time.Second, "the refresh", func() bool { return src.requests.Load() == 2 && c.writes.Load() == 0 })
}

// TestLookupAsyncDeadlineOrAnswer races each waiter's deadline against the
// source's answer: every done runs exactly once, with one or the other, and
// a late answer still fills the cache.
func TestLookupAsyncDeadlineOrAnswer(t *testing.T) {
	c, src := newGateCRM(t, testCacheConfig(), false)
	const n = 500
	rs := make([]*asyncResult, n)
	cancels := make([]context.CancelFunc, n)
	for i := range rs {
		ctx, cancel := context.WithCancel(context.Background())
		rs[i], cancels[i] = newAsyncResult(), cancel
		c.LookupAsync(ctx, q("+14155550123"), rs[i].done)
	}
	var wg sync.WaitGroup
	wg.Go(func() { src.gate <- struct{}{} })
	for _, cancel := range cancels {
		wg.Go(cancel)
	}
	wg.Wait()
	answered, timedOut := 0, 0
	for i, r := range rs {
		res, err := r.wait(t)
		switch {
		case err == nil && customerName(res.Customer) == "Jane Doe":
			answered++
		case errors.Is(err, context.Canceled):
			timedOut++
		default:
			t.Fatalf("waiter %d: %+v, %v", i, res, err)
		}
	}
	waitFor(t, 5*time.Second, "the flight's end", func() bool {
		c.fmu.Lock()
		defer c.fmu.Unlock()
		return len(c.flights) == 0
	})
	for i, r := range rs {
		if got := r.calls.Load(); got != 1 {
			t.Fatalf("waiter %d: done called %d times", i, got)
		}
	}
	t.Logf("%d answered, %d ended by their context", answered, timedOut)
	if r, ok := c.LookupLocal(q("+14155550123")); !ok || customerName(r.Customer) != "Jane Doe" {
		t.Fatalf("the answer did not fill the cache: %+v, %v", r, ok)
	}
}

// TestLookupAsyncDeadline: a stalled source; each waiter ends at its own
// deadline with the context's error.
func TestLookupAsyncDeadline(t *testing.T) {
	c, _ := newGateCRM(t, testCacheConfig(), true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	r := newAsyncResult()
	c.LookupAsync(ctx, q("+14155550999"), r.done)
	if _, err := r.wait(t); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the deadline", err)
	}
	// Already ended: answered at once.
	r = newAsyncResult()
	c.LookupAsync(ctx, q("+14155550998"), r.done)
	if r.calls.Load() != 1 || !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("ended context: calls %d, err %v", r.calls.Load(), r.err)
	}
	// Bad queries: answered at once.
	r = newAsyncResult()
	c.LookupAsync(context.Background(), Query{}, r.done)
	if r.calls.Load() != 1 || r.err == nil {
		t.Fatalf("empty query: calls %d, err %v", r.calls.Load(), r.err)
	}
}

// TestLookupAsyncClose: Close completes every waiter, and later look-ups
// are answered at once with an error.
func TestLookupAsyncClose(t *testing.T) {
	for _, withRedis := range []bool{false, true} {
		t.Run(fmt.Sprintf("redis=%v", withRedis), func(t *testing.T) {
			src := newGateSource()
			defer close(src.gate)
			var c *CRM
			var err error
			if withRedis {
				_, rdb := startRedis(t)
				c, err = NewWithSources(testCacheConfig(), rdb, quietLog(), src)
			} else {
				c, err = NewWithSources(testCacheConfig(), nil, quietLog(), src)
			}
			if err != nil {
				t.Fatal(err)
			}
			const n = 300 // more numbers than the source has slots: some flights queue
			rs := make([]*asyncResult, n)
			for i := range rs {
				rs[i] = newAsyncResult()
				c.LookupAsync(context.Background(), q(heldNumber(i%100)), rs[i].done)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			for i, r := range rs {
				if _, err := r.wait(t); err == nil {
					t.Fatalf("waiter %d answered without error after Close", i)
				}
				if got := r.calls.Load(); got != 1 {
					t.Fatalf("waiter %d: done called %d times", i, got)
				}
			}
			r := newAsyncResult()
			c.LookupAsync(context.Background(), q(heldNumber(0)), r.done)
			if r.calls.Load() != 1 || r.err == nil {
				t.Fatalf("after Close: calls %d, err %v", r.calls.Load(), r.err)
			}
		})
	}
}

// TestLookupAsyncCallbackPanic: a panicking callback is contained; the
// other waiters of the flight are still answered.
func TestLookupAsyncCallbackPanic(t *testing.T) {
	c, src := newGateCRM(t, testCacheConfig(), false)
	c.LookupAsync(context.Background(), q("+14155550123"), func(Result, error) { panic("callback") })
	r := newAsyncResult()
	c.LookupAsync(context.Background(), q("+14155550123"), r.done)
	src.gate <- struct{}{}
	if _, err := r.wait(t); err != nil {
		t.Fatal(err)
	}
}

// TestHeldAsyncLookupsNoGoroutines: 10,000 distinct numbers held on a
// stalled source cost no goroutine per waiter.
func TestHeldAsyncLookupsNoGoroutines(t *testing.T) {
	c, _ := newGateCRM(t, testCacheConfig(), true)
	before := runtime.NumGoroutine()
	const n = 10000
	ctx, cancel := context.WithCancel(context.Background())
	rs := make([]*asyncResult, n)
	peak := 0
	for i := range rs {
		rs[i] = newAsyncResult()
		c.LookupAsync(ctx, q(heldNumber(i)), rs[i].done)
		if i%100 == 0 {
			peak = max(peak, runtime.NumGoroutine()-before)
		}
	}
	t.Logf("peak while starting %d held look-ups: %d more goroutines", n, peak)
	// Source slots + Redis readers, and room for other tests' goroutines
	// still ending: far from one per flight (4,195 with a reader per flight).
	if bound := n / 10; peak > bound {
		t.Fatalf("%d goroutines while starting %d look-ups, want at most %d", peak, n, bound)
	}
	waitFor(t, 10*time.Second, "the flights to reach the source", func() bool {
		queued := 0
		for _, s := range c.sources {
			s.mu.Lock()
			queued += len(s.queue.items) - s.queue.head
			s.mu.Unlock()
		}
		return queued == n-DefaultMaxConns
	})
	held := runtime.NumGoroutine() - before
	t.Logf("%d held look-ups: %d more goroutines", n, held)
	if held > 2*DefaultMaxConns+10 {
		t.Fatalf("%d goroutines for %d held look-ups (max_conns %d)", held, n, DefaultMaxConns)
	}
	cancel()
	for _, r := range rs {
		if _, err := r.wait(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want canceled", err)
		}
	}
}

// TestLookupAsyncBy: the deadline ends a waiter as a context deadline
// would; ctx's end still ends it first when earlier; a past deadline ends
// it at once.
func TestLookupAsyncBy(t *testing.T) {
	c, _ := newGateCRM(t, testCacheConfig(), false)
	r := newAsyncResult()
	c.LookupAsyncBy(context.Background(), time.Now().Add(30*time.Millisecond), q("+14155550901"), r.done)
	if _, err := r.wait(t); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r = newAsyncResult()
	c.LookupAsyncBy(ctx, time.Now().Add(time.Hour), q("+14155550902"), r.done)
	cancel()
	if _, err := r.wait(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	r = newAsyncResult()
	c.LookupAsyncBy(context.Background(), time.Now().Add(-time.Millisecond), q("+14155550903"), r.done)
	if r.calls.Load() != 1 || !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("past deadline: calls %d, err %v", r.calls.Load(), r.err)
	}
}

// TestLookupAsyncByRace races the answer, each waiter's deadline and its
// context's cancellation: done runs exactly once, whichever wins.
func TestLookupAsyncByRace(t *testing.T) {
	c, src := newGateCRM(t, testCacheConfig(), false)
	const n = 500
	rs := make([]*asyncResult, n)
	cancels := make([]context.CancelFunc, n)
	start := time.Now()
	for i := range rs {
		ctx, cancel := context.WithCancel(context.Background())
		rs[i], cancels[i] = newAsyncResult(), cancel
		c.LookupAsyncBy(ctx, start.Add(time.Duration(i%5)*time.Millisecond), q("+14155550123"), rs[i].done)
	}
	var wg sync.WaitGroup
	wg.Go(func() { src.gate <- struct{}{} })
	for _, cancel := range cancels {
		wg.Go(cancel)
	}
	wg.Wait()
	for i, r := range rs {
		if _, err := r.wait(t); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waiter %d: %v", i, err)
		}
	}
	time.Sleep(10 * time.Millisecond) // past every deadline: a second done would show (not a timing check)
	for i, r := range rs {
		if got := r.calls.Load(); got != 1 {
			t.Fatalf("waiter %d: done called %d times", i, got)
		}
	}
}
