package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/internal/testredis"
)

// With cache.redis configured (addresses from the environment), the
// sidecar's look-up fills Redis under an HMAC key (no number in it), another
// process's look-up (the CLI) is served from it, and `cache forget` removes it.
func TestLookupAndForgetWithRedis(t *testing.T) {
	srv := testredis.Start(t)
	t.Setenv("CALLPOP_CACHE_REDIS_ADDRS", srv.Addr)
	t.Setenv("CALLPOP_CACHE_KEY_SECRET", "test-key-secret-for-hmac-0123456789")
	cfg := writeConfig(t, runConfig)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	keys := func() []string { return redisKeys(t, ctx, rdb) }
	lookup := func() lookupJSON {
		t.Helper()
		out, logs, err := execute(t, ctx, "lookup", "--config", cfg, "--timeout", "5s", "--explain=false", "+14155550123")
		if err != nil {
			t.Fatalf("%v\n%s", err, logs)
		}
		var got lookupJSON
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	base, logs, stop := startRun(t, cfg)
	defer func() { _ = stop() }()
	code, body := get(t, base+"/v1/lookup?number=%2B14155550123")
	var first lookupJSON
	if err := json.Unmarshal([]byte(body), &first); err != nil || code != 200 || first.Match != "hit" || first.Cached {
		t.Fatalf("first look-up: %d %s\n%s", code, body, logs.String())
	}
	// The CRM answer is written to Redis in the background; wait for it.
	var ks []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ks = keys(); len(ks) > 0 {
			break
		}
	}
	if len(ks) == 0 {
		t.Fatal("nothing cached in Redis")
	}
	for _, k := range ks {
		if strings.Contains(k, "14155550123") || strings.Contains(k, "4155550123") {
			t.Fatalf("raw number in Redis key %q", k)
		}
	}
	// The CLI (in-process here, but with its own fresh in-process tier) is
	// served from Redis.
	if got := lookup(); got.Match != "hit" || !got.Cached {
		t.Fatalf("second look-up: match %q cached %v, want a cached hit", got.Match, got.Cached)
	}

	out, flogs, err := execute(t, ctx, "cache", "forget", "--config", cfg, "+14155550123")
	if err != nil || out != "forgot +14155550123\n" {
		t.Fatalf("cache forget: %q %v\n%s", out, err, flogs)
	}
	if left := keys(); len(left) >= len(ks) {
		t.Fatalf("keys before %q, after forget %q", ks, left)
	}
	if got := lookup(); got.Match != "hit" || got.Cached {
		t.Fatalf("after forget: match %q cached %v, want a fresh hit", got.Match, got.Cached)
	}
}

// redisKeys lists every key in Redis.
func redisKeys(t *testing.T, ctx context.Context, rdb *redis.Client) []string {
	t.Helper()
	var out []string
	iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// pausingCRMConfig starts a redis-server and an HTTP CRM that waits for
// callers requests, pauses Redis writes for pause (CLIENT PAUSE WRITE), then
// answers them all: the cache writes of its answers are still waiting when
// callpop has the answers. It returns a config using both (one Redis
// connection, cache.redis.timeout above the pause) and a Redis client.
func pausingCRMConfig(t *testing.T, callers int, pause time.Duration) (string, *redis.Client) {
	t.Helper()
	srv := testredis.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() {
		_ = rdb.Do(context.Background(), "CLIENT", "UNPAUSE").Err()
		_ = rdb.Close()
	})
	t.Setenv("CALLPOP_CACHE_KEY_SECRET", "test-key-secret-for-hmac-0123456789")
	var arrived sync.WaitGroup
	arrived.Add(callers)
	paused := sync.OnceValue(func() error {
		arrived.Wait()
		return rdb.Do(context.Background(), "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err()
	})
	crmSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		if err := paused(); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"C1","name":"Jane Doe","tier":"gold","language":"en"}`)
	}))
	t.Cleanup(crmSrv.Close)
	cfg := writeConfig(t, testConfig+`
call: {budget: 5s}
cache:
  redis: {addrs: ["`+srv.Addr+`"], timeout: 20s, pool_size: 1}
crm:
  sources:
    - {name: main, kind: http, url: "`+crmSrv.URL+`/customers?phone={e164}"}
`)
	return cfg, rdb
}

// `callpop lookup` leaves its CRM answer in Redis for the other instances:
// the cache write is under way when the answer is printed, and the command
// waits for it before it exits.
func TestLookupWritesRedis(t *testing.T) {
	cfg, rdb := pausingCRMConfig(t, 1, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, logs, err := execute(t, ctx, "lookup", "--config", cfg, "--explain=false", "(415) 555-0123")
	if err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	var got lookupJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Match != "hit" || got.Cached {
		t.Fatalf("lookup: %s (%v), want a hit from the CRM\n%s", out, err, logs)
	}
	if ks := redisKeys(t, ctx, rdb); len(ks) != 1 {
		t.Fatalf("keys in Redis after lookup: %q, want the answer's\n%s", ks, logs)
	}
}

// `callpop run` stopping (a drain) lets the cache writes of its last calls
// land before it returns, those still waiting for a Redis connection too.
func TestRunStopWritesRedis(t *testing.T) {
	// More calls than Redis connections (pool_size 1 and go-redis's pipeline
	// pool): some writes are still waiting for a connection at the stop.
	var numbers []string
	for i := range 40 {
		numbers = append(numbers, fmt.Sprintf("+141555501%02d", i))
	}
	cfg, rdb := pausingCRMConfig(t, len(numbers), 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base, logs, stop := startRun(t, cfg)
	defer func() { _ = stop() }()
	var wg sync.WaitGroup
	for _, n := range numbers {
		wg.Go(func() {
			code, body := get(t, base+"/v1/lookup?number="+url.QueryEscape(n))
			if code != 200 || !strings.Contains(body, `"match":"hit"`) {
				t.Errorf("look-up %s: %d %s", n, code, body)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.Fatal(logs.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if ks := redisKeys(t, ctx, rdb); len(ks) != len(numbers) {
		t.Fatalf("%d keys in Redis once run returned, want the %d last calls' answers\n%s", len(ks), len(numbers), logs.String())
	}
}
