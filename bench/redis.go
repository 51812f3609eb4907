package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/crm"
)

// keyNamespace starts the Redis keys of every bench run: never callpop's own
// prefix, so a shared Redis's production entries are neither read (which
// would skew the figures) nor overwritten.
const keyNamespace = "callpop-bench:"

// newRunPrefix returns a run's own key prefix, keyNamespace plus a random run
// id: only hex digits and colons, so it is also a literal SCAN pattern.
func newRunPrefix() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return keyNamespace + hex.EncodeToString(b[:]) + ":"
}

// redisConfig is cache.redis for --redis ADDR[,ADDR...]: several addresses
// are a Redis Cluster, as in callpop.yaml.
func redisConfig(addrs string) crm.RedisConfig {
	cfg := crm.DefaultCacheConfig().Redis
	if addrs != "" {
		cfg.Addrs = strings.Split(addrs, ",")
		cfg.PoolSize = 64
	}
	return cfg
}

// dropLimit bounds deleting a run's keys: a busy shared Redis must not hold
// an interrupted bench for long (keys left expire with the cache's TTL).
const dropLimit = 30 * time.Second

// eachNode runs fn on the Redis behind rdb: the node, or each master of a cluster.
func eachNode(ctx context.Context, rdb redis.UniversalClient, fn func(context.Context, *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("bench: redis: a %T is neither a node nor a cluster", rdb)
}

// dropKeys deletes every key under prefix from the Redis at addrs (each
// master of a cluster) with SCAN MATCH prefix* and UNLINK, and returns how
// many it deleted. It touches no other key.
func dropKeys(ctx context.Context, addrs, prefix string, log *slog.Logger) (int64, error) {
	if !strings.HasPrefix(prefix, keyNamespace) || strings.ContainsAny(prefix, `*?[]\`) {
		return 0, fmt.Errorf("bench: redis: %q is no run's key prefix", prefix)
	}
	cfg := redisConfig(addrs)
	cfg.Timeout = 2 * time.Second // housekeeping, not a call's path
	cfg.DialTimeout = 2 * time.Second
	rdb, err := crm.OpenRedis(cfg, log)
	if err != nil {
		return 0, err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, dropLimit)
	defer cancel()
	var n atomic.Int64
	scan := func(ctx context.Context, c *redis.Client) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				// One UNLINK per key: a cluster refuses keys of several slots in one.
				cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
					for _, k := range keys {
						p.Unlink(ctx, k)
					}
					return nil
				})
				for _, cmd := range cmds {
					n.Add(cmd.(*redis.IntCmd).Val())
				}
				if err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if err := eachNode(ctx, rdb, scan); err != nil {
		return n.Load(), fmt.Errorf("bench: redis: deleting keys under %s: %w", prefix, err)
	}
	return n.Load(), nil
}

// RedisServer is a throwaway redis-server on a free loopback port, persistence off.
type RedisServer struct {
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	dir  string
}

// StartRedis starts redis-server (from PATH) and waits until it answers PING.
func StartRedis() (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("bench: redis-server not on PATH (install it, or pass --redis ADDR): %w", err)
	}
	dir, err := os.MkdirTemp("", "callpop-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("bench: redis dir: %w", err)
	}
	var last error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, done: make(chan struct{})}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", dir, "--protected-mode", "no", "--daemonize", "no", "--logfile", "")
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("bench: start redis-server: %w", err)
		}
		go func() { _ = s.cmd.Wait(); close(s.done) }() // ends when the process exits
		if last = s.waitReady(5 * time.Second); last == nil {
			return s, nil
		}
		s.Close()
	}
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("bench: redis-server: %w", last)
}

func (s *RedisServer) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("exited")
		default:
		}
		if err := pingRedis(s.Addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not ready on %s in %s", s.Addr, d)
}

// Close kills the server and removes its directory.
func (s *RedisServer) Close() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = os.RemoveAll(s.dir)
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("ping: %q", line)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
