package main

import (
	"context"
	"encoding/json"
	"strings"
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

	keys := func() []string {
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
