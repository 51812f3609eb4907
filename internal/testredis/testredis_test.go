package testredis

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	s.Stop()
	if s.Running() {
		t.Fatal("running after Stop")
	}
	if err := rdb.Get(ctx, "k").Err(); err == nil {
		t.Fatal("get succeeded with the server stopped")
	}
	s.Restart()
	// persistence is off: the key is gone after a restart, the server answers.
	if err := rdb.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("get after restart: %v, want redis.Nil", err)
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t, 3)
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	defer rdb.Close()
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := rdb.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	var n atomic.Int32
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n.Add(1)
		return nil
	})
	if err != nil || n.Load() != 3 {
		t.Fatalf("masters: %d, %v", n.Load(), err)
	}
}

func TestSentinel(t *testing.T) {
	s := StartSentinel(t)
	ctx := context.Background()
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: s.Addrs})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set through sentinel: %v", err)
	}
	direct := redis.NewClient(&redis.Options{Addr: s.Master.Addr})
	defer direct.Close()
	if v, err := direct.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("master holds %q, %v", v, err)
	}
}
