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

// redisRoom is cache.redis.timeout for tests that need a Redis hit to be a
// hit on a loaded machine.
const redisRoom = 2 * time.Second

// TestBudgetSlowCRM: a CRM that sleeps 2 s → the look-up gives up at the
// caller's deadline, not before and without waiting for the CRM, and the late
// answer still fills the cache.
func TestBudgetSlowCRM(t *testing.T) {
	const crmDelay = 2 * time.Second
	rs := testredis.Start(t)
	rdb := openTestRedisTimeout(t, redisRoom, rs.Addr)
	srv := newCRMServer(t, testCustomers)
	srv.delay.Store(int64(crmDelay))
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cfg.Timeout = 3 * time.Second
	cc := testCacheConfig()
	cc.Redis.Timeout = redisRoom
	c := newTestCRM(t, cfg, cc, rdb)
	r, err, took := lookupWithin(t, c, q("+14155550123"), budget)
	if !errors.Is(err, context.DeadlineExceeded) || r.Customer != nil {
		t.Fatalf("slow CRM: %+v, err %v, want context.DeadlineExceeded", r, err)
	}
	// It ended at the deadline (budget after the call began), not before, and
	// did not wait for the CRM's answer. (No bound nearer the budget: a loaded
	// machine breaks it.)
	if took < budget || took >= crmDelay {
		t.Fatalf("slow CRM: gave up after %s, budget %s, the CRM answers after %s", took, budget, crmDelay)
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
	other := newTestCRM(t, cfg, cc, rdb)
	if r, err, _ := lookupWithin(t, other, q("+14155550123"), roomy); err != nil || !r.Cached || customerName(r.Customer) != "Jane Doe" {
		t.Fatalf("other instance: %+v, %v", r, err)
	}
	if n := srv.calls.Load(); n != 1 {
		t.Fatalf("CRM asked %d times, want 1 (the other instance read Redis)", n)
	}
}

// TestRedisOutage: Redis stopped mid-test → look-ups still answered from
// the CRM; Redis back → used again. (A stopped Redis refuses at once; how long
// a hung one may hold a look-up is TestRedisHung's.)
func TestRedisOutage(t *testing.T) {
	rs := testredis.Start(t)
	rdb := openTestRedisTimeout(t, redisRoom, rs.Addr)
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "main", Kind: "http", URL: srv.URL + "/customers?phone={e164}"}}
	cc := testCacheConfig()
	cc.Redis.Timeout = redisRoom
	cc.LocalSize = 0 // every look-up goes to Redis
	cc.Redis.Breaker = BreakerConfig{Failures: 3, Cooldown: 200 * time.Millisecond}
	c := newTestCRM(t, cfg, cc, rdb)
	ctx := context.Background()
	if r, err, _ := lookupWithin(t, c, q("+14155550123"), roomy); err != nil || customerName(r.Customer) != "Jane Doe" {
		t.Fatalf("before outage: %+v, %v", r, err)
	}
	rs.Stop()
	for i := 0; i < 10; i++ {
		r, err, _ := lookupWithin(t, c, q("+14155550123"), roomy)
		if err != nil || customerName(r.Customer) != "Jane Doe" || r.Cached || r.Source != "main" {
			t.Fatalf("outage lookup %d: %+v, %v (want from the CRM)", i, r, err)
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
	if r, err, _ := lookupWithin(t, c, q("+31201234567"), roomy); err != nil || !r.Cached {
		t.Fatalf("after restart: %+v, %v (want from redis)", r, err)
	}
	if srv.calls.Load() != before {
		t.Fatal("after restart the CRM was asked for a number Redis holds")
	}
}

// TestRedisUnreachableFromStart: with an address nobody listens on, every
// look-up is answered from the CRM (the refused connection costs nothing to
// wait for; a hung Redis is TestRedisHung's).
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
		r, err, took := lookupWithin(t, c, q("+14155550123"), roomy)
		if err != nil || customerName(r.Customer) != "Jane Doe" || r.Cached || r.Source != "main" {
			t.Fatalf("lookup %d: %+v, %v in %s (want from the CRM)", i, r, err, took)
		}
	}
}

// TestRedisCluster: a 3-master cluster serves the cache through the same
// config (several addresses); with one master killed, look-ups are still
// answered, those of its numbers from the CRM.
func TestRedisCluster(t *testing.T) {
	cl := testredis.StartCluster(t, 3)
	rdb := openTestRedisTimeout(t, redisRoom, cl.Addrs...)
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
	cc.Redis.Timeout = redisRoom
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
		if r, err, _ := lookupWithin(t, c, q(n), roomy); err != nil || !r.Cached {
			t.Fatalf("%s from the cluster: %+v, %v", n, r, err)
		}
	}
	if srv.calls.Load() != before {
		t.Fatal("the cluster did not serve cached numbers")
	}
	cl.Nodes[0].Stop()
	var fromCRM atomic.Int64
	for i, n := range numbers {
		b := srv.calls.Load()
		r, err, _ := lookupWithin(t, c, q(n), roomy)
		if err != nil || customerName(r.Customer) != "Customer "+fmt.Sprint(i) {
			t.Fatalf("%s with a master down: %+v, %v", n, r, err)
		}
		if srv.calls.Load() != b {
			if r.Cached || r.Source != "main" {
				t.Fatalf("%s: the CRM was asked but the answer says %+v", n, r)
			}
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
	if r, err, _ := lookupWithin(t, c, q("+14155559999"), roomy); err != nil || r.Customer == nil {
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
	const crmDelay = 5 * time.Second
	srv := newCRMServer(t, testCustomers)
	srv.delay.Store(int64(crmDelay))
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
	// Close did not wait for the fetch: the CRM answers after crmDelay.
	if d := time.Since(start); d >= crmDelay {
		t.Fatalf("Close waited %s for a detached fetch", d)
	}
	if _, err := c.Lookup(context.Background(), q("+31201234567")); err == nil {
		t.Fatal("lookup after Close succeeded")
	}
}

// TestRedisHung: a Redis that accepts but never answers (SIGSTOP) holds a
// look-up no longer than cache.redis.timeout (100 ms), not until the caller's
// deadline: answers come from the CRM. The caller's deadline is roomy (10 s,
// far from the Redis timeout) so a loaded machine cannot fail the test, and a
// look-up that waited on Redis until it would end with an error.
func TestRedisHung(t *testing.T) {
	rs, rdb := startRedis(t)
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cc := testCacheConfig()
	cc.LocalSize = 0
	c := newTestCRM(t, cfg, cc, rdb)
	if _, err, _ := lookupWithin(t, c, q("+14155550123"), roomy); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	rs.Pause()
	defer rs.Resume()
	for i := 0; i < 8; i++ {
		r, err, took := lookupWithin(t, c, q("+14155550123"), roomy)
		if err != nil || customerName(r.Customer) != "Jane Doe" || r.Cached || r.Source != "main" {
			t.Fatalf("lookup %d with Redis hung: %+v, %v in %s (want from the CRM)", i, r, err, took)
		}
	}
}
