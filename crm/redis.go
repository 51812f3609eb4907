package crm

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/internal/secret"
)

var setLoggerOnce sync.Once

// slogRedis routes go-redis's own log lines to slog.
type slogRedis struct{ log *slog.Logger }

func (l slogRedis) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// OpenRedis opens the shared Redis client; nil, nil when no addrs are
// configured. One address = single node, several = cluster, master_name =
// sentinel (addrs are then the sentinels). The client honours context
// deadlines (ContextTimeoutEnabled), does not retry on the hot path, and dials
// with a short timeout, so a Redis outage costs a call at most
// cache.redis.timeout. It does not connect until first used.
func OpenRedis(cfg RedisConfig, log *slog.Logger) (redis.UniversalClient, error) {
	if len(cfg.Addrs) == 0 {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	setLoggerOnce.Do(func() {
		redis.SetLogger(slogRedis{log.With("component", "redis")})
	})
	pw, err := readSecret(cfg.Password, cfg.PasswordFile, "CALLPOP_CACHE_REDIS_PASSWORD", "cache.redis.password")
	if err != nil {
		return nil, err
	}
	tlsc, err := cfg.TLS.config()
	if err != nil {
		return nil, fmt.Errorf("crm: %w", err)
	}
	def := DefaultCacheConfig().Redis
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = def.DialTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = def.Timeout
	}
	opts := &redis.UniversalOptions{
		Addrs:                 cfg.Addrs,
		MasterName:            cfg.MasterName,
		Username:              cfg.Username,
		Password:              pw,
		SentinelUsername:      cfg.Username,
		SentinelPassword:      pw,
		DB:                    cfg.DB,
		ClientName:            "callpop",
		DialTimeout:           cfg.DialTimeout,
		DialerRetries:         1,
		ReadTimeout:           cfg.Timeout,
		WriteTimeout:          cfg.Timeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1, // no retries: the call's budget is too short for them
		MaxRedirects:          2,  // cluster MOVED/ASK after a failover
		PoolSize:              cfg.PoolSize,
		PoolTimeout:           cfg.Timeout,
		DisableIdentity:       true,
		TLSConfig:             tlsc,
	}
	return redis.NewUniversalClient(opts), nil
}

// readSecret is the secret for key: its variable, else its file, else inline.
func readSecret(inline, file, env, key string) (string, error) {
	v, err := secret.Resolve(env, file, inline, key)
	if err != nil {
		return "", fmt.Errorf("crm: %w", err)
	}
	return v, nil
}
