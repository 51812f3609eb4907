package crm

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"sync"
	"time"

	"github.com/callpop/callpop/call"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// minKeySecret is the shortest cache.key_secret taken: the key is all that
// stands between a Redis dump and the callers' numbers.
const minKeySecret = 16

// entryVersion is the version of the cached value format; any other is a miss.
// 2: customers carry lists, and an entry every match (All).
const entryVersion = 2

// entry is one cached answer, stored as JSON in Redis and as is in-process.
type entry struct {
	V        int              `json:"v"`
	At       int64            `json:"at"` // unix ms when the answer was fetched
	Miss     bool             `json:"miss,omitempty"`
	Source   string           `json:"src,omitempty"`
	Customer *call.Customer   `json:"c,omitempty"`
	All      []*call.Customer `json:"all,omitempty"` // several matches: every customer owning the number, Customer first

	cached bool // answered from the cache (not stored)
	stale  bool // served stale while a refresh runs (not stored)
}

// result is what a look-up answered from e returns.
func (e entry) result() Result {
	r := Result{Customer: e.Customer, Candidates: e.All, Source: e.Source}
	if e.cached {
		r.Cached, r.Source, r.Stale = true, "cache", e.stale
	}
	return r
}

// freshness of an entry at a moment.
type freshness int

const (
	expired freshness = iota
	fresh
	stale
)

// cache is the two tiers: an in-process LRU in front of Redis (optional).
type cache struct {
	cfg     CacheConfig
	key     []byte
	local   *lru.Cache[localKey, localEntry]
	rdb     redis.UniversalClient
	breaker *gobreaker.CircuitBreaker[[]byte]
	now     func() time.Time
	macs    sync.Pool // of *keyHasher: HMACs keyed with key
}

// localKey names an in-process entry: the key (the E.164, or emailKeyPrefix
// and the e-mail address) and the source set. The
// in-process tier needs no HMAC (its keys never leave the process), so a hit
// costs no hashing and no key string.
type localKey struct{ e164, field string }

type localEntry struct {
	e      entry
	stored time.Time
}

// hashKey is the per-number part of every key: HMAC-SHA256 of the E.164.
func (c *cache) hashKey(e164 string) string {
	m, _ := c.macs.Get().(*keyHasher)
	if m == nil {
		m = &keyHasher{mac: hmac.New(sha256.New, c.key)}
	}
	m.mac.Reset()
	m.in = append(m.in[:0], e164...)
	m.mac.Write(m.in)
	hex.Encode(m.out[:], m.mac.Sum(m.sum[:0]))
	h := string(m.out[:])
	c.macs.Put(m)
	return h
}

// keyHasher is an HMAC and its buffers, pooled: a key costs one string.
type keyHasher struct {
	mac hash.Hash
	in  []byte
	sum [sha256.Size]byte
	out [2 * sha256.Size]byte
}

func (c *cache) redisKey(h string) string { return c.cfg.KeyPrefix + h }

func (c *cache) state(e entry, now time.Time) freshness {
	age := now.Sub(time.UnixMilli(e.At))
	if e.Miss {
		if age < c.cfg.MissTTL {
			return fresh
		}
		return expired
	}
	switch {
	case age < c.cfg.TTL:
		return fresh
	case age < c.cfg.TTL+c.cfg.StaleFor:
		return stale
	}
	return expired
}

// getLocal reads the in-process tier. With Redis configured, local entries
// live at most local_ttl so other instances' changes are seen soon.
func (c *cache) getLocal(k localKey) (entry, bool) {
	le, ok := c.local.Get(k)
	if !ok {
		return entry{}, false
	}
	if c.rdb != nil && c.cfg.LocalTTL > 0 && c.now().Sub(le.stored) >= c.cfg.LocalTTL {
		c.local.Remove(k)
		return entry{}, false
	}
	return le.e, true
}

func (c *cache) putLocal(k localKey, e entry) {
	c.local.Add(k, localEntry{e: e, stored: c.now()})
}

// forgetLocal drops every source set's entry for a number.
func (c *cache) forgetLocal(e164 string) {
	for _, k := range c.local.Keys() {
		if k.e164 == e164 {
			c.local.Remove(k)
		}
	}
}

// errCorrupt marks a Redis value that is not a readable entry of this version.
var errCorrupt = errors.New("crm: unreadable cache value")

// getRedis reads one field of a number's hash. found=false on a miss; errors
// (Redis down, breaker open) are returned for logging and are a miss to the caller.
func (c *cache) getRedis(ctx context.Context, h, field string) (entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return entry{}, false, err // the caller ran out before asking: no fault of Redis
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Redis.Timeout)
	defer cancel()
	start := time.Now()
	b, err := run(c.breaker, func() ([]byte, error) {
		return c.rdb.HGet(ctx, c.redisKey(h), field).Bytes()
	})
	redisSeconds.WithLabelValues("get").Observe(since(start))
	switch {
	case errors.Is(err, redis.Nil):
		return entry{}, false, nil
	case err != nil:
		return entry{}, false, err
	}
	var e entry
	if err := json.Unmarshal(b, &e); err != nil || e.V != entryVersion || e.At <= 0 || (!e.Miss && e.Customer == nil) || len(e.All) == 1 || len(e.All) > call.MaxCandidates {
		return entry{}, false, errCorrupt
	}
	if len(e.All) > 0 {
		e.All[0] = e.Customer // one record, as stored
	}
	return e, true, nil
}

// putRedis stores one field; the whole hash expires after the longest life
// any field can have (freshness itself is judged from each entry's time).
func (c *cache) putRedis(ctx context.Context, h, field string, e entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	life := max(c.cfg.TTL+c.cfg.StaleFor, c.cfg.MissTTL)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Redis.Timeout)
	defer cancel()
	start := time.Now()
	_, err = run(c.breaker, func() ([]byte, error) {
		k := c.redisKey(h)
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, k, field, b)
			p.PExpire(ctx, k, life)
			return nil
		})
		return nil, err
	})
	redisSeconds.WithLabelValues("set").Observe(since(start))
	return err
}

func (c *cache) forgetRedis(ctx context.Context, h string) error {
	ctx, cancel := context.WithTimeout(ctx, max(c.cfg.Redis.Timeout, time.Second))
	defer cancel()
	start := time.Now()
	err := c.rdb.Del(ctx, c.redisKey(h)).Err()
	redisSeconds.WithLabelValues("del").Observe(since(start))
	return err
}
