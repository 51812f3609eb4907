package crm

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpop/callpop/internal/heldcalls"
)

// stalledCRM is an HTTP CRM that holds every request until release (or the
// client gives up), then answers 404. It counts the connections clients open.
type stalledCRM struct {
	*httptest.Server
	release  chan struct{}
	once     sync.Once
	requests atomic.Int64
	open     atomic.Int64 // connections open now
	maxOpen  atomic.Int64 // most connections open at once
	opened   atomic.Int64 // connections ever opened
}

func newStalledCRM(t testing.TB) *stalledCRM {
	t.Helper()
	s := &stalledCRM{release: make(chan struct{})}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		select {
		case <-s.release:
		case <-r.Context().Done():
			return
		}
		http.NotFound(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.opened.Add(1)
			n := s.open.Add(1)
			for m := s.maxOpen.Load(); n > m && !s.maxOpen.CompareAndSwap(m, n); m = s.maxOpen.Load() {
			}
		case http.StateClosed, http.StateHijacked:
			s.open.Add(-1)
		}
	}
	s.Start()
	t.Cleanup(func() { s.releaseAll(); s.Close() })
	return s
}

// releaseAll lets every held request (and any later one) answer.
func (s *stalledCRM) releaseAll() { s.once.Do(func() { close(s.release) }) }

// heldNumber is the i-th distinct test number (none is a customer).
func heldNumber(i int) string { return fmt.Sprintf("+1415%07d", 1000000+i) }

// holdLookups starts n look-ups of distinct numbers, each with its own
// deadline; the returned channel yields each one's error once it returns.
func holdLookups(c *CRM, n int, deadline time.Duration) <-chan error {
	done := make(chan error, n)
	for i := range n {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			_, err := c.Lookup(ctx, q(heldNumber(i)))
			done <- err
		}()
	}
	return done
}

// TestHeldLookupsBoundedConns: 1,000 distinct numbers looked up at once on a
// stalled CRM open at most max_conns connections to it, and every look-up
// returns (at its deadline) all the same.
func TestHeldLookupsBoundedConns(t *testing.T) {
	for _, maxConns := range []int{0, 8} {
		t.Run(fmt.Sprintf("max_conns=%d", maxConns), func(t *testing.T) {
			srv := newStalledCRM(t)
			cfg := DefaultConfig()
			sc := httpSourceConfig("main", srv.URL)
			sc.MaxConns = maxConns
			cfg.Sources = []SourceConfig{sc}
			c := newTestCRM(t, cfg, testCacheConfig(), nil)
			const n = 1000
			done := holdLookups(c, n, 500*time.Millisecond)
			for i := range n {
				select {
				case err := <-done:
					if err == nil {
						t.Fatalf("look-up %d answered from a stalled CRM", i)
					}
				case <-time.After(30 * time.Second): // a bound for a stuck look-up, not a timing check
					t.Fatalf("only %d of %d look-ups returned", i, n)
				}
			}
			want := int64(maxConns)
			if want == 0 {
				want = DefaultMaxConns
			}
			if got := srv.maxOpen.Load(); got > want {
				t.Fatalf("%d connections open at once to the CRM, max_conns %d", got, want)
			}
			if got := srv.requests.Load(); got == 0 || got > want {
				t.Fatalf("%d requests reached the stalled CRM, want 1..%d", got, want)
			}
		})
	}
}

// TestQueuedFlightsAllRun: with max_conns 2, 50 distinct numbers at once are
// each asked once, at most two at a time, and all answered.
func TestQueuedFlightsAllRun(t *testing.T) {
	srv := newStalledCRM(t)
	srv.releaseAll() // answers 404 at once
	cfg := DefaultConfig()
	sc := httpSourceConfig("main", srv.URL)
	sc.MaxConns = 2
	cfg.Sources = []SourceConfig{sc}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	const n = 50
	done := holdLookups(c, n, time.Minute)
	for range n {
		if err := <-done; err != nil {
			t.Fatalf("look-up: %v", err)
		}
	}
	if got := srv.requests.Load(); got != n {
		t.Fatalf("%d CRM requests for %d distinct numbers", got, n)
	}
	if got := srv.maxOpen.Load(); got > 2 {
		t.Fatalf("%d connections open at once, max_conns 2", got)
	}
	// Answered misses are cached: no further request.
	done = holdLookups(c, n, time.Minute)
	for range n {
		if err := <-done; err != nil {
			t.Fatalf("cached look-up: %v", err)
		}
	}
	if got := srv.requests.Load(); got != n {
		t.Fatalf("%d CRM requests after the misses were cached, want %d", got, n)
	}
}

// BenchmarkHeldLookups measures what a look-up held on a stalled CRM costs:
// 10,000 distinct numbers wait (their callers' goroutines included) until the
// CRM is released. It holds one wave whatever -benchtime says.
func BenchmarkHeldLookups(b *testing.B) {
	const n = 10000
	// One held wave whatever b.N is (b.Loop below only satisfies the harness):
	// the figures are per held call and reported after it.
	srv := newStalledCRM(b)
	cfg := DefaultConfig()
	cfg.Timeout = time.Minute
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	c, err := New(cfg, testCacheConfig(), nil, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	// One look-up first so the transport's and the metrics' one-time
	// allocations are not counted per call.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	_, _ = c.Lookup(ctx, q(heldNumber(n)))
	cancel()

	g0, m0 := heldcalls.Snapshot()
	done := holdLookups(c, n, time.Minute)
	heldcalls.Settle()
	g1, m1 := heldcalls.Snapshot()
	conns := srv.maxOpen.Load()
	srv.releaseAll()
	for range n {
		<-done
	}
	_ = c.Close()
	srv.Close()
	for b.Loop() {
	}
	b.ReportMetric(float64(g1-g0)/n, "goroutines/held")
	b.ReportMetric(float64(m1.HeapInuse-m0.HeapInuse)/n, "heapB/held")
	b.ReportMetric(float64(m1.StackInuse-m0.StackInuse)/n, "stackB/held")
	b.ReportMetric(float64(conns), "conns")
}
