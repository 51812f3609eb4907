package crm

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/internal/testcerts"
	"github.com/callpop/callpop/internal/testredis"
)

// TestRedisTLSAndACLUser: cache.redis.tls and cache.redis.username reach a
// real redis-server that speaks only TLS, wants client certificates and an
// ACL user; the look-up's answer lands there under the configured secret.
func TestRedisTLSAndACLUser(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "redis CA")
	srv := ca.Server(t, "redis").Write(t, dir, "redis")
	cli := ca.Client(t, "callpop").Write(t, dir, "callpop")
	caFile := ca.WriteFile(t, dir, "ca.pem")
	kp, err := tls.X509KeyPair(cli.CertPEM, cli.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	admin := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{kp}, ServerName: "localhost"}
	rs := testredis.StartTLS(t, testredis.TLSFiles{CertFile: srv.CertFile, KeyFile: srv.KeyFile, CAFile: caFile, Client: admin})
	ctx := context.Background()
	root := redis.NewClient(&redis.Options{Addr: rs.Addr, TLSConfig: admin})
	defer root.Close()
	if err := root.Do(ctx, "ACL", "SETUSER", "callpop", "on", ">redis-pass-0123456789", "~callpop:*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}

	cc := testCacheConfig()
	cc.Redis.Addrs = []string{rs.Addr}
	cc.Redis.Username = "callpop"
	cc.Redis.Timeout, cc.Redis.DialTimeout = 2*time.Second, 2*time.Second
	cc.Redis.TLS = RedisTLS{Enabled: true, CAFile: caFile, CertFile: cli.CertFile, KeyFile: cli.KeyFile, ServerName: "localhost"}
	if err := cc.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CALLPOP_CACHE_REDIS_PASSWORD", "redis-pass-0123456789")
	rdb, err := OpenRedis(cc.Redis, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	crmSrv := newCRMServer(t, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", crmSrv.URL)}
	c := newTestCRM(t, cfg, cc, rdb)
	if res, err := c.Lookup(ctx, q("+14155550123")); err != nil || res.Customer == nil {
		t.Fatalf("lookup: %+v, %v", res, err)
	}
	settle(t, c)
	keys, err := root.Keys(ctx, "callpop:c:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys over TLS as the ACL user: %v, %v", keys, err)
	}

	// Without the client certificate, or as another user, Redis refuses.
	for name, mod := range map[string]func(*RedisConfig){
		"no client certificate": func(r *RedisConfig) { r.TLS.CertFile, r.TLS.KeyFile = "", "" },
		"plain TCP":             func(r *RedisConfig) { r.TLS = RedisTLS{} },
		"wrong user":            func(r *RedisConfig) { r.Username = "default-nobody" },
	} {
		r := cc.Redis
		mod(&r)
		bad, err := OpenRedis(r, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		if err := bad.Ping(ctx).Err(); err == nil {
			t.Errorf("%s: Redis answered", name)
		} else if strings.Contains(err.Error(), "redis-pass") {
			t.Errorf("%s: the error repeats the password: %v", name, err)
		}
		bad.Close()
	}
}
