package crm

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/testredis"
	"github.com/redis/go-redis/v9"
)

// crmServer is a real HTTP CRM: customers by E.164 (from ?phone=), an
// optional delay, and a request counter.
type crmServer struct {
	*httptest.Server
	calls     atomic.Int64
	delay     atomic.Int64 // nanoseconds
	status    atomic.Int64 // forced status, 0 = normal
	customers map[string]map[string]any
}

func newCRMServer(t testing.TB, customers map[string]map[string]any) *crmServer {
	t.Helper()
	s := &crmServer{customers: customers}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		if d := time.Duration(s.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if st := s.status.Load(); st != 0 {
			w.WriteHeader(int(st))
			return
		}
		c, ok := s.customers[r.URL.Query().Get("phone")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c)
	}))
	t.Cleanup(s.Close)
	return s
}

var testCustomers = map[string]map[string]any{
	"+14155550123": {"id": "C1", "name": "Jane Doe", "tier": "vip", "language": "en", "url": "https://crm.example/c/C1"},
	"+31201234567": {"id": "C2", "name": "Anna de Vries", "tier": "gold", "language": "nl"},
}

func quietLog() *slog.Logger {
	if os.Getenv("CALLPOP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func httpSourceConfig(name, base string) SourceConfig {
	return SourceConfig{Name: name, Kind: "http", URL: base + "/customers?phone={e164}"}
}

// newTestCRM builds a CRM over the given sources with test-friendly breakers.
func newTestCRM(t testing.TB, cfg Config, cc CacheConfig, rdb redis.UniversalClient) *CRM {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	c, err := New(cfg, cc, rdb, quietLog())
	if err != nil {
		t.Fatalf("crm.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func openTestRedis(t testing.TB, addrs ...string) redis.UniversalClient {
	t.Helper()
	return openTestRedisTimeout(t, testCacheConfig().Redis.Timeout, addrs...)
}

// openTestRedisTimeout opens a client whose commands may take timeout (the
// default 100 ms turns a Redis hit into a miss on a loaded machine; a test
// that needs the hit gives it room, and the same cache.redis.timeout).
func openTestRedisTimeout(t testing.TB, timeout time.Duration, addrs ...string) redis.UniversalClient {
	t.Helper()
	rc := testCacheConfig().Redis
	rc.Addrs = addrs
	rc.Timeout = timeout
	rdb, err := OpenRedis(rc, quietLog())
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func startRedis(t testing.TB) (*testredis.Server, redis.UniversalClient) {
	t.Helper()
	s := testredis.Start(t)
	return s, openTestRedis(t, s.Addr)
}

func q(e164 string) Query {
	return Query{E164: e164, Digits: strings.TrimPrefix(e164, "+")}
}

// lookupWithin looks query up with a deadline budget after the start of
// the call, so a look-up that ended at its deadline took at least budget.
func lookupWithin(t testing.TB, c *CRM, query Query, budget time.Duration) (Result, error, time.Duration) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(budget))
	defer cancel()
	r, err := c.Lookup(ctx, query)
	return r, err, time.Since(start)
}

// roomy is the deadline of a look-up a test needs answered (from a cache
// tier, or from a CRM that is up): such a test checks where the answer came
// from, not how fast, and a loaded machine must not turn it into a timeout.
// How a deadline is honoured is TestBudgetSlowCRM's business.
const roomy = 10 * time.Second

// waitFor polls cond for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeClock lets cache tests move time without sleeping.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func customerName(c *call.Customer) string {
	if c == nil {
		return ""
	}
	return c.Name
}

func rdbFor(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
}

// settle waits for c's background Redis writes.
func settle(t testing.TB, c *CRM) {
	t.Helper()
	waitFor(t, 5*time.Second, "redis writes", func() bool { return c.writes.Load() == 0 })
}

// testKeySecret is the tests' cache.key_secret (Redis needs one).
const testKeySecret = "test-cache-key-secret-0123456789"

// testCacheConfig is the cache defaults with a key secret, as any set-up
// with Redis must have.
func testCacheConfig() CacheConfig {
	cc := DefaultCacheConfig()
	cc.KeySecret = testKeySecret
	return cc
}
