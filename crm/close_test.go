package crm

import (
	"context"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/redis/go-redis/v9"
)

// pausingSource answers every number, but first pauses the Redis writes of
// every client for pause (CLIENT PAUSE WRITE): the CRM's cache write of its
// answer is then still under way when the caller has the answer.
type pausingSource struct {
	rdb   *redis.Client
	pause time.Duration
}

func (s pausingSource) Name() string { return "main" }

func (s pausingSource) Lookup(ctx context.Context, q Query) (*call.Customer, error) {
	if err := s.rdb.Do(ctx, "CLIENT", "PAUSE", s.pause.Milliseconds(), "WRITE").Err(); err != nil {
		return nil, err
	}
	return &call.Customer{ID: "C1", Name: "Jane Doe"}, nil
}

// closeTestCRM is a CRM over a pausingSource with cache.redis.timeout
// timeout, and a client of its own to read Redis during the pause.
func closeTestCRM(t *testing.T, pause, timeout time.Duration) (*CRM, *redis.Client, CacheConfig) {
	t.Helper()
	s, _ := startRedis(t)
	cc := testCacheConfig()
	cc.Redis.Addrs = []string{s.Addr}
	cc.Redis.Timeout = timeout
	rdb, err := OpenRedis(cc.Redis, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	admin := rdbFor(s.Addr)
	t.Cleanup(func() {
		_ = admin.Do(context.Background(), "CLIENT", "UNPAUSE").Err()
		_ = admin.Close()
	})
	c, err := NewWithSources(cc, rdb, quietLog(), pausingSource{rdb: admin, pause: pause})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, admin, cc
}

// Close lets a cache write under way land (a one-shot `callpop lookup`, the
// last calls of a drain) before it cancels anything.
func TestCloseLetsPendingWritesLand(t *testing.T) {
	c, admin, cc := closeTestCRM(t, 500*time.Millisecond, 10*time.Second)
	ctx := context.Background()
	r, err := c.Lookup(ctx, q("+14155550123"))
	if err != nil || customerName(r.Customer) != "Jane Doe" {
		t.Fatalf("lookup: %+v, %v", r, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	key := cc.KeyPrefix + c.cache.hashKey("+14155550123")
	if n, err := admin.HLen(ctx, key).Result(); err != nil || n != 1 {
		t.Fatalf("after Close: %s has %d fields (%v), want the answer written", key, n, err)
	}
}

// A Redis that does not answer holds Close at most about cache.redis.timeout,
// not as long as it stays silent.
func TestCloseBoundedByRedisTimeout(t *testing.T) {
	c, _, _ := closeTestCRM(t, time.Minute, 200*time.Millisecond)
	if _, err := c.Lookup(context.Background(), q("+14155550123")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("Close took %v with Redis writes paused", time.Since(start))
	case <-time.After(20 * time.Second): // far below the pause, far above the timeout
		t.Fatal("Close still waiting after 20s on a Redis that does not answer")
	}
}

// With Redis down (nothing listening), Close returns at once.
func TestCloseRedisDown(t *testing.T) {
	srv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	c := newTestCRM(t, cfg, testCacheConfig(), openTestRedis(t, "127.0.0.1:1"))
	if _, err := c.Lookup(context.Background(), q("+14155550123")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Close still waiting after 20s with Redis down")
	}
}
