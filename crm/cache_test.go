package crm

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/internal/testredis"
	"github.com/redis/go-redis/v9"
)

func TestCacheHitInProcess(t *testing.T) {
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	r, err := c.Lookup(context.Background(), q("+14155550123"))
	if err != nil || r.Customer == nil || r.Customer.Name != "Jane Doe" || r.Cached || r.Source != "main" {
		t.Fatalf("first lookup: %+v, %v", r, err)
	}
	r, err = c.Lookup(context.Background(), q("+14155550123"))
	if err != nil || !r.Cached || r.Source != "cache" || customerName(r.Customer) != "Jane Doe" {
		t.Fatalf("second lookup: %+v, %v", r, err)
	}
	if n := srv.calls.Load(); n != 1 {
		t.Fatalf("CRM asked %d times, want 1", n)
	}
}

func TestCacheHitRedisSharedBetweenInstances(t *testing.T) {
	_, rdb := startRedis(t)
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	a := newTestCRM(t, cfg, testCacheConfig(), rdb)
	b := newTestCRM(t, cfg, testCacheConfig(), rdb)
	if r, err := a.Lookup(context.Background(), q("+31201234567")); err != nil || customerName(r.Customer) != "Anna de Vries" {
		t.Fatalf("a: %+v, %v", r, err)
	}
	settle(t, a)
	r, err := b.Lookup(context.Background(), q("+31201234567"))
	if err != nil || !r.Cached || customerName(r.Customer) != "Anna de Vries" || r.Customer.Tier != "gold" {
		t.Fatalf("b (from redis): %+v, %v", r, err)
	}
	if n := srv.calls.Load(); n != 1 {
		t.Fatalf("CRM asked %d times, want 1", n)
	}
}

func TestMissTTL(t *testing.T) {
	_, rdb := startRedis(t)
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cc := testCacheConfig()
	cc.MissTTL = time.Minute
	c := newTestCRM(t, cfg, cc, rdb)
	clock := newFakeClock()
	c.cache.now = clock.Now
	for i := 0; i < 3; i++ {
		r, err := c.Lookup(context.Background(), q("+442079460000"))
		if err != nil || r.Customer != nil {
			t.Fatalf("lookup %d: %+v, %v", i, r, err)
		}
		if i > 0 && !r.Cached {
			t.Fatalf("lookup %d: miss not served from cache", i)
		}
	}
	if n := srv.calls.Load(); n != 1 {
		t.Fatalf("CRM asked %d times for a cached miss, want 1", n)
	}
	clock.Add(61 * time.Second)
	if r, err := c.Lookup(context.Background(), q("+442079460000")); err != nil || r.Cached {
		t.Fatalf("after miss_ttl: %+v, %v", r, err)
	}
	if n := srv.calls.Load(); n != 2 {
		t.Fatalf("after miss_ttl CRM asked %d times, want 2", n)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	_, rdb := startRedis(t)
	srv := newCRMServer(t, map[string]map[string]any{"+14155550123": {"id": "C1", "name": "Old Name"}})
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cfg.Timeout = 10 * time.Second // the refresh below takes 2 s
	cc := testCacheConfig()
	cc.TTL, cc.StaleFor = time.Minute, time.Hour
	c := newTestCRM(t, cfg, cc, rdb)
	clock := newFakeClock()
	c.cache.now = clock.Now
	if r, err := c.Lookup(context.Background(), q("+14155550123")); err != nil || customerName(r.Customer) != "Old Name" {
		t.Fatalf("first: %+v, %v", r, err)
	}
	settle(t, c)
	srv.customers["+14155550123"] = map[string]any{"id": "C1", "name": "New Name"} // no request is in flight
	const refreshDelay = 2 * time.Second
	srv.delay.Store(int64(refreshDelay))
	clock.Add(2 * time.Minute) // past ttl, within stale_for
	r, err, took := lookupWithin(t, c, q("+14155550123"), roomy)
	if err != nil || !r.Stale || !r.Cached || customerName(r.Customer) != "Old Name" {
		t.Fatalf("stale lookup: %+v, %v", r, err)
	}
	// The stale hit did not wait for the refresh (the old name already says
	// so; the CRM answers after refreshDelay). No bound nearer: a loaded
	// machine breaks it.
	if took >= refreshDelay {
		t.Fatalf("stale hit waited %s for the refresh", took)
	}
	waitFor(t, 10*time.Second, "background refresh", func() bool {
		r, err := c.Lookup(context.Background(), q("+14155550123"))
		return err == nil && !r.Stale && customerName(r.Customer) == "New Name"
	})
	if n := srv.calls.Load(); n != 2 {
		t.Fatalf("CRM asked %d times, want 2 (first + one refresh)", n)
	}
	// Past ttl+stale_for the entry is gone: a plain fetch.
	clock.Add(3 * time.Hour)
	srv.delay.Store(0)
	if r, err := c.Lookup(context.Background(), q("+14155550123")); err != nil || r.Cached {
		t.Fatalf("expired: %+v, %v", r, err)
	}
}

func TestCorruptedRedisValue(t *testing.T) {
	_, rdb := startRedis(t)
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cc := testCacheConfig()
	cc.LocalSize = 0 // Redis only
	c := newTestCRM(t, cfg, cc, rdb)
	ctx := context.Background()
	key := c.cache.redisKey(c.cache.hashKey("+14155550123"))
	values := []string{
		"not json", `{"v":2,"at":1,"c":{"id":"x","name":"future"}}`, `{"v":0,"at":1}`, `{"v":1,"at":1}`,
		`{"v":1,"at":-5,"miss":true}`, "\x00\xff", `[]`,
	}
	for i, v := range values {
		if err := rdb.HSet(ctx, key, "*", v).Err(); err != nil {
			t.Fatal(err)
		}
		r, err := c.Lookup(ctx, q("+14155550123"))
		if err != nil || r.Cached || customerName(r.Customer) != "Jane Doe" {
			t.Fatalf("value %q: %+v, %v (want a fresh fetch)", v, r, err)
		}
		if n := srv.calls.Load(); n != int64(i+1) {
			t.Fatalf("value %q: CRM asked %d times", v, n)
		}
		// the fetch replaced the bad value with a good one
		settle(t, c)
		if r, err := c.Lookup(ctx, q("+14155550123")); err != nil || !r.Cached {
			t.Fatalf("after repair: %+v, %v", r, err)
		}
	}
}

func TestRedisKeysAreHMAC(t *testing.T) {
	_, rdb := startRedis(t)
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL), httpSourceConfig("second", srv.URL)}
	numbers := []string{"+14155550123", "+31201234567", "+442079460000"}
	ctx := context.Background()
	keysWith := func(secret string) []string {
		cc := testCacheConfig()
		cc.KeySecret = secret
		c := newTestCRM(t, cfg, cc, rdb)
		for _, n := range numbers {
			if _, err := c.Lookup(ctx, q(n)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Lookup(ctx, Query{E164: n, Sources: []string{"second"}}); err != nil {
				t.Fatal(err)
			}
		}
		settle(t, c)
		var keys []string
		iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	keys := keysWith(testKeySecret)
	if len(keys) != len(numbers) {
		t.Fatalf("got %d keys %v, want %d (one hash per number)", len(keys), keys, len(numbers))
	}
	for _, k := range keys {
		for _, n := range numbers {
			for _, variant := range []string{n, n[1:], n[len(n)-7:]} {
				if strings.Contains(k, variant) {
					t.Fatalf("key %q holds number %s", k, variant)
				}
			}
		}
		h := strings.TrimPrefix(k, "callpop:c:")
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
			t.Fatalf("key %q is not prefix + hex HMAC-SHA256", k)
		}
		fields, err := rdb.HKeys(ctx, k).Result()
		if err != nil || len(fields) != 2 {
			t.Fatalf("key %q fields %v, %v; want * and second", k, fields, err)
		}
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	other := keysWith("another secret of 16+ bytes")
	for _, k := range other {
		for _, k0 := range keys {
			if k == k0 {
				t.Fatalf("a different key_secret gave the same key %s", k)
			}
		}
	}
}

func TestConcurrentLookupsOneRequest(t *testing.T) {
	_, rdb := startRedis(t)
	srv := newCRMServer(t, testCustomers)
	srv.delay.Store(int64(100 * time.Millisecond))
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	c := newTestCRM(t, cfg, testCacheConfig(), rdb)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 1000)
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := c.Lookup(ctx, q("+14155550123"))
			if err == nil && customerName(r.Customer) != "Jane Doe" {
				err = errors.New("wrong customer")
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("lookup: %v", err)
	}
	if n := srv.calls.Load(); n != 1 {
		t.Fatalf("1000 concurrent look-ups made %d CRM requests, want exactly 1", n)
	}
}

func TestForget(t *testing.T) {
	_, rdb := startRedis(t)
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL), httpSourceConfig("second", srv.URL)}
	c := newTestCRM(t, cfg, testCacheConfig(), rdb)
	ctx := context.Background()
	for _, qq := range []Query{q("+14155550123"), {E164: "+14155550123", Sources: []string{"second"}}} {
		if _, err := c.Lookup(ctx, qq); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, c)
	if n, _ := rdb.DBSize(ctx).Result(); n != 1 {
		t.Fatalf("redis holds %d keys before forget, want 1", n)
	}
	if err := c.Forget(ctx, "+14155550123"); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.DBSize(ctx).Result(); n != 0 {
		t.Fatalf("redis holds %d keys after forget", n)
	}
	before := srv.calls.Load()
	for _, qq := range []Query{q("+14155550123"), {E164: "+14155550123", Sources: []string{"second"}}} {
		r, err := c.Lookup(ctx, qq)
		if err != nil || r.Cached {
			t.Fatalf("after forget: %+v, %v (want a fresh fetch)", r, err)
		}
	}
	if n := srv.calls.Load() - before; n != 2 {
		t.Fatalf("after forget CRM asked %d times, want 2", n)
	}
	if err := c.Forget(ctx, ""); err == nil {
		t.Fatal("forget of an empty number succeeded")
	}
}

func TestUnknownSourceInQuery(t *testing.T) {
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	if _, err := c.Lookup(context.Background(), Query{E164: "+14155550123", Sources: []string{"nope"}}); err == nil {
		t.Fatal("unknown source accepted")
	}
	if _, err := c.Lookup(context.Background(), Query{}); err == nil {
		t.Fatal("empty query accepted")
	}
}

var _ = redis.Nil

// TestForgetDuringFetch: an answer fetched before a Forget does not re-fill the cache.
func TestForgetDuringFetch(t *testing.T) {
	_, rdb := startRedis(t)
	srv := newCRMServer(t, testCustomers)
	srv.delay.Store(int64(300 * time.Millisecond))
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	c := newTestCRM(t, cfg, testCacheConfig(), rdb)
	_, _, _ = lookupWithin(t, c, q("+14155550123"), 50*time.Millisecond) // starts the fetch, gives up
	if err := c.Forget(context.Background(), "+14155550123"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the fetch to end", func() bool { return srv.calls.Load() == 1 })
	time.Sleep(400 * time.Millisecond)
	srv.delay.Store(0)
	r, err := c.Lookup(context.Background(), q("+14155550123"))
	if err != nil || r.Cached {
		t.Fatalf("after forget: %+v, %v; the pre-forget answer was cached", r, err)
	}
}

// TestRedisSentinel: master_name makes addrs the sentinels; the cache lands on the master.
func TestRedisSentinel(t *testing.T) {
	sen := testredis.StartSentinel(t)
	rc := testCacheConfig().Redis
	rc.Addrs, rc.MasterName = sen.Addrs, sen.MasterName
	rdb, err := OpenRedis(rc, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cc := testCacheConfig()
	cc.LocalSize = 0
	c := newTestCRM(t, cfg, cc, rdb)
	for i := 0; i < 2; i++ {
		r, err := c.Lookup(context.Background(), q("+14155550123"))
		if err != nil || customerName(r.Customer) != "Jane Doe" || r.Cached != (i == 1) {
			t.Fatalf("lookup %d: %+v, %v", i, r, err)
		}
		settle(t, c)
	}
	master := rdbFor(sen.Master.Addr)
	defer master.Close()
	if n, err := master.DBSize(context.Background()).Result(); err != nil || n != 1 {
		t.Fatalf("master holds %d keys, %v", n, err)
	}
}

func TestLookupLocal(t *testing.T) {
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cc := testCacheConfig()
	cc.TTL, cc.StaleFor = time.Minute, time.Hour
	c := newTestCRM(t, cfg, cc, nil)
	clock := newFakeClock()
	c.cache.now = clock.Now
	if _, ok := c.LookupLocal(q("+14155550123")); ok {
		t.Fatal("answered before anything was cached")
	}
	if _, err := c.Lookup(context.Background(), q("+14155550123")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(context.Background(), q("+14155550199")); err != nil { // a cached miss
		t.Fatal(err)
	}
	if r, ok := c.LookupLocal(q("+14155550123")); !ok || !r.Cached || r.Stale || customerName(r.Customer) != "Jane Doe" {
		t.Fatalf("hit: %+v %v", r, ok)
	}
	if r, ok := c.LookupLocal(q("+14155550199")); !ok || r.Customer != nil {
		t.Fatalf("cached miss: %+v %v", r, ok)
	}
	if _, ok := c.LookupLocal(Query{E164: "+14155550123", Sources: []string{"nope"}}); ok {
		t.Fatal("answered for an unknown source")
	}
	clock.Add(2 * time.Minute) // stale: served, refreshed in the background
	if r, ok := c.LookupLocal(q("+14155550123")); !ok || !r.Stale {
		t.Fatalf("stale: %+v %v", r, ok)
	}
	waitFor(t, 5*time.Second, "the refresh", func() bool { return srv.calls.Load() == 3 })
	clock.Add(3 * time.Minute) // the cached miss (miss_ttl 1m) has expired
	if _, ok := c.LookupLocal(q("+14155550199")); ok {
		t.Fatal("answered from an expired miss")
	}
}
