package crm

import (
	"context"
	"errors"
	"log/slog"

	"github.com/callpop/callpop/call"
	"github.com/redis/go-redis/v9"
)

// ErrNotFound is what a Source returns on a miss.
var ErrNotFound = errors.New("crm: not found")

// Query is one look-up: the number's variants and, optionally, which sources to ask.
type Query struct {
	E164, National, NationalFormat, Digits string
	Sources                                []string // source names to use, in configured order; nil = all
}

// Result is the outcome of a look-up.
type Result struct {
	Customer *call.Customer // nil on a miss
	Cached   bool           // served from a cache tier
	Stale    bool           // served stale while a refresh runs
	Source   string         // which source (or "cache") answered
}

// Source is one CRM back-end.
type Source interface {
	Name() string
	Lookup(ctx context.Context, q Query) (*call.Customer, error) // ErrNotFound on a miss
}

// CRM looks numbers up through the cache tiers and the configured sources.
type CRM struct {
	log *slog.Logger
}

// OpenRedis opens the shared Redis client; nil, nil when no addrs are configured.
func OpenRedis(cfg RedisConfig, log *slog.Logger) (redis.UniversalClient, error) { return nil, nil }

// New builds the CRM. rdb may be nil (in-process cache only).
func New(cfg Config, cache CacheConfig, rdb redis.UniversalClient, log *slog.Logger) (*CRM, error) {
	return &CRM{log: log}, nil
}

// Lookup finds the customer owning q.E164. Miss: Result{Customer: nil}, nil.
// ctx deadline: ctx.Err() (a late CRM answer still fills the cache).
// Sources failing: an error.
func (c *CRM) Lookup(ctx context.Context, q Query) (Result, error) { return Result{}, nil }

// Forget deletes a number from every cache tier.
func (c *CRM) Forget(ctx context.Context, e164 string) error { return nil }

// Close stops background work and releases sources. It does not close the shared Redis client.
func (c *CRM) Close() error { return nil }
