package crm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpop/callpop/internal/testredis"
)

const budget = 300 * time.Millisecond

// TestBudgetSlowCRM: a CRM that sleeps 2 s → the look-up gives up at the
// caller's deadline (budget + 20 ms), and the late answer still fills the cache.
func TestBudgetSlowCRM(t *testing.T) {
	_, rdb := startRedis(t)
	srv := newCRMServer(t, testCustomers)
	srv.delay.Store(int64(2 * time.Second))
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cfg.Timeout = 3 * time.Second
	c := newTestCRM(t, cfg, testCacheConfig(), rdb)
	_, err, took := lookupWithin(t, c, q("+14155550123"), budget)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow CRM: err %v, want context.DeadlineExceeded", err)
	}
	if took > budget+20*time.Millisecond {
		t.Fatalf("slow CRM: answered after %s, budget %s + 20ms", took, budget)
	}
	waitFor(t, 5*time.Second, "the late CRM answer to fill the cache", func() bool {
		r, err, _ := lookupWithin(t, c, q("+14155550123"), budget)
		return err == nil && r.Cached && customerName(r.Customer) == "Jane Doe"
	})
	if n := srv.calls.Load(); n != 1 {
		t.Fatalf("CRM asked %d times, want 1 (the late answer was reused)", n)
	}
	// The same holds in Redis: another instance sees the late answer.
	settle(t, c)
	other := newTestCRM(t, cfg, testCacheConfig(), rdb)
	if r, err, _ := lookupWithin(t, other, q("+14155550123"), budget); err != nil || !r.Cached {
		t.Fatalf("other instance: %+v, %v", r, err)
	}
}

// TestRedisOutage: Redis stopped mid-test → look-ups still answered within
// budget from the CRM; Redis back → used again.
func TestRedisOutage(t *testing.T) {
	rs, rdb := startRedis(t)
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "main", Kind: "http", URL: srv.URL + "/customers?phone={e164}"}}
	cc := testCacheConfig()
	cc.LocalSize = 0 // every look-up goes to Redis
	cc.Redis.Breaker = BreakerConfig{Failures: 3, Cooldown: 200 * time.Millisecond}
	c := newTestCRM(t, cfg, cc, rdb)
	ctx := context.Background()
	if r, err, _ := lookupWithin(t, c, q("+14155550123"), budget); err != nil || customerName(r.Customer) != "Jane Doe" {
		t.Fatalf("before outage: %+v, %v", r, err)
	}
	rs.Stop()
	for i := 0; i < 10; i++ {
		r, err, took := lookupWithin(t, c, q("+14155550123"), budget)
		if err != nil || customerName(r.Customer) != "Jane Doe" || r.Cached {
			t.Fatalf("outage lookup %d: %+v, %v (want from the CRM)", i, r, err)
		}
		if took > budget {
			t.Fatalf("outage lookup %d took %s, budget %s", i, took, budget)
		}
	}
	if n := srv.calls.Load(); n < 10 {
		t.Fatalf("CRM asked %d times during the outage", n)
	}
	rs.Restart()
	waitFor(t, 10*time.Second, "Redis to be used again", func() bool {
		_, _, _ = lookupWithin(t, c, q("+31201234567"), budget)
		n, err := rdb.DBSize(ctx).Result()
		return err == nil && n > 0
	})
	before := srv.calls.Load()
	if r, err, _ := lookupWithin(t, c, q("+31201234567"), budget); err != nil || !r.Cached {
		t.Fatalf("after restart: %+v, %v (want from redis)", r, err)
	}
	if srv.calls.Load() != before {
		t.Fatal("after restart the CRM was asked for a number Redis holds")
	}
}

// TestRedisUnreachableFromStart: an address nobody listens on costs a call no
// more than its budget.
func TestRedisUnreachableFromStart(t *testing.T) {
	rs := testredis.Start(t)
	addr := rs.Addr
	rs.Stop()
	rdb := openTestRedis(t, addr)
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cc := testCacheConfig()
	cc.LocalSize = 0
	c := newTestCRM(t, cfg, cc, rdb)
	for i := 0; i < 5; i++ {
		r, err, took := lookupWithin(t, c, q("+14155550123"), budget)
		if err != nil || customerName(r.Customer) != "Jane Doe" || took > budget {
			t.Fatalf("lookup %d: %+v, %v in %s", i, r, err, took)
		}
	}
}

// TestRedisCluster: a 3-master cluster serves the cache through the same
// config (several addresses); with one master killed, look-ups are still
// answered within budget.
func TestRedisCluster(t *testing.T) {
	cl := testredis.StartCluster(t, 3)
	rdb := openTestRedis(t, cl.Addrs...)
	srv := newCRMServer(t, nil)
	srv.customers = map[string]map[string]any{}
	var numbers []string
	for i := 0; i < 30; i++ {
		n := fmt.Sprintf("+1415555%04d", 1000+i)
		numbers = append(numbers, n)
		srv.customers[n] = map[string]any{"id": fmt.Sprint(i), "name": "Customer " + fmt.Sprint(i)}
	}
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cc := testCacheConfig()
	cc.LocalSize = 0
	c := newTestCRM(t, cfg, cc, rdb)
	ctx := context.Background()
	for _, n := range numbers {
		if r, err, _ := lookupWithin(t, c, q(n), 2*time.Second); err != nil || r.Customer == nil {
			t.Fatalf("%s: %+v, %v", n, r, err)
		}
	}
	settle(t, c)
	var perMaster []int64
	for _, node := range cl.Nodes {
		nc := rdbFor(node.Addr)
		n, err := nc.DBSize(ctx).Result()
		_ = nc.Close()
		if err != nil {
			t.Fatal(err)
		}
		perMaster = append(perMaster, n)
	}
	spread := 0
	for _, n := range perMaster {
		if n > 0 {
			spread++
		}
	}
	if spread < 2 {
		t.Fatalf("keys not spread over the cluster: %v", perMaster)
	}
	before := srv.calls.Load()
	for _, n := range numbers {
		if r, err, _ := lookupWithin(t, c, q(n), budget); err != nil || !r.Cached {
			t.Fatalf("%s from the cluster: %+v, %v", n, r, err)
		}
	}
	if srv.calls.Load() != before {
		t.Fatal("the cluster did not serve cached numbers")
	}
	cl.Nodes[0].Stop()
	var fromCRM atomic.Int64
	for _, n := range numbers {
		b := srv.calls.Load()
		r, err, took := lookupWithin(t, c, q(n), budget)
		if err != nil || r.Customer == nil {
			t.Fatalf("%s with a master down: %+v, %v", n, r, err)
		}
		if took > budget {
			t.Fatalf("%s with a master down took %s", n, took)
		}
		if srv.calls.Load() != b {
			fromCRM.Add(1)
		}
	}
	if fromCRM.Load() == 0 {
		t.Fatal("no number lived on the killed master")
	}
	t.Logf("with one master down: %d of %d numbers came from the CRM", fromCRM.Load(), len(numbers))
}

// TestSourceBreaker: a failing source is not asked once its breaker opens,
// and is tried again after the cool-down.
func TestSourceBreaker(t *testing.T) {
	var calls atomic.Int64
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if !healthy.Load() {
			http.Error(w, "<html>down</html>", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, `{"id":"C1","name":"Jane"}`)
	}))
	t.Cleanup(srv.Close)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cfg.Breaker = BreakerConfig{Failures: 3, Cooldown: 300 * time.Millisecond}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	for i := 0; i < 6; i++ {
		if _, err, _ := lookupWithin(t, c, q(fmt.Sprintf("+1415555%04d", 2000+i)), budget); err == nil {
			t.Fatalf("lookup %d succeeded against a failing CRM", i)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("CRM asked %d times, want 3 (then the breaker opens)", n)
	}
	healthy.Store(true)
	time.Sleep(350 * time.Millisecond)
	if r, err, _ := lookupWithin(t, c, q("+14155559999"), budget); err != nil || r.Customer == nil {
		t.Fatalf("after cool-down: %+v, %v", r, err)
	}
}

// TestSourceOrder: first hit wins; an error in one source does not hide a hit
// in the next; errors with no hit are errors, not misses.
func TestSourceOrder(t *testing.T) {
	first := newCRMServer(t, map[string]map[string]any{"+14155550123": {"id": "A", "name": "From first"}})
	second := newCRMServer(t, map[string]map[string]any{
		"+14155550123": {"id": "B", "name": "From second"}, "+31201234567": {"id": "B2", "name": "Only second"}})
	broken := newCRMServer(t, nil)
	broken.status.Store(500)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("broken", broken.URL), httpSourceConfig("first", first.URL), httpSourceConfig("second", second.URL)}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	tests := []struct {
		query   Query
		name    string
		source  string
		wantErr bool
	}{
		{q("+14155550123"), "From first", "first", false},
		{q("+31201234567"), "Only second", "second", false},
		{Query{E164: "+14155550123", Sources: []string{"second"}}, "From second", "second", false},
		{Query{E164: "+14155550123", Sources: []string{"second", "first"}}, "From first", "first", false}, // configured order
		{q("+442079460000"), "", "", true},                                                                // broken + misses → error
		{Query{E164: "+442079460000", Sources: []string{"first", "second"}}, "", "", false},               // plain miss
		{Query{E164: "+14155550123", Sources: []string{}}, "From first", "cache", false},                  // empty = all
	}
	for i, tt := range tests {
		r, err := c.Lookup(context.Background(), tt.query)
		if tt.wantErr {
			if err == nil {
				t.Fatalf("%d: %+v, want an error", i, r)
			}
			continue
		}
		if err != nil || customerName(r.Customer) != tt.name || r.Source != tt.source {
			t.Fatalf("%d: %+v, %v; want %s from %s", i, r, err, tt.name, tt.source)
		}
	}
}

func TestCloseStopsBackgroundWork(t *testing.T) {
	srv := newCRMServer(t, testCustomers)
	srv.delay.Store(int64(5 * time.Second))
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cfg.Timeout = 10 * time.Second
	c, err := New(cfg, testCacheConfig(), nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	_, _, _ = lookupWithin(t, c, q("+14155550123"), 50*time.Millisecond)
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close waited %s for a detached fetch", d)
	}
	if _, err := c.Lookup(context.Background(), q("+31201234567")); err == nil {
		t.Fatal("lookup after Close succeeded")
	}
}

// TestRedisHung: a Redis that accepts but never answers (SIGSTOP) costs a
// look-up at most cache.redis.timeout; answers come from the CRM within budget.
func TestRedisHung(t *testing.T) {
	rs, rdb := startRedis(t)
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cc := testCacheConfig()
	cc.LocalSize = 0
	c := newTestCRM(t, cfg, cc, rdb)
	if _, err, _ := lookupWithin(t, c, q("+14155550123"), budget); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	rs.Pause()
	defer rs.Resume()
	for i := 0; i < 8; i++ {
		r, err, took := lookupWithin(t, c, q("+14155550123"), budget)
		if err != nil || customerName(r.Customer) != "Jane Doe" || took > budget {
			t.Fatalf("lookup %d with Redis hung: %+v, %v in %s", i, r, err, took)
		}
	}
}
