package callbacks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// keyPrefix starts every key; the hash tag {cb} puts them all in one
// Cluster slot, so a transaction may touch several.
const keyPrefix = "callpop:callbacks:{cb}:"

func recordKey(id string) string     { return keyPrefix + "r:" + id }
func numberIndexKey(h string) string { return keyPrefix + "n:" + h }
func leaseKey(id string) string      { return keyPrefix + "lease:" + id }
func counterKey(name string) string  { return keyPrefix + "count:" + name }

const dueKey = keyPrefix + "due"

// maxTxRetries bounds the optimistic transactions' retries under contention.
const maxTxRetries = 50

type redisStore struct {
	rdb redis.UniversalClient
}

func newRedisStore(rdb redis.UniversalClient) *redisStore { return &redisStore{rdb: rdb} }

// write queues rec and its indexes on p.
func writeRecord(ctx context.Context, p redis.Pipeliner, rec *Record, numKey string) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if rec.State.Terminal() {
		p.Set(ctx, recordKey(rec.ID), b, keepTerminal)
		p.ZRem(ctx, dueKey, rec.ID)
		if numKey != "" {
			// the number's next request is a new one; only this record's
			// entry goes (checked by the caller, which watched it)
			p.Del(ctx, numberIndexKey(numKey))
		}
		return nil
	}
	p.Set(ctx, recordKey(rec.ID), b, 0)
	p.ZAdd(ctx, dueKey, redis.Z{Score: float64(rec.NextAt.UnixMilli()), Member: rec.ID})
	if numKey != "" {
		p.Set(ctx, numberIndexKey(numKey), rec.ID, 0)
	}
	return nil
}

func readRecord(ctx context.Context, c redis.Cmdable, id string) (*Record, error) {
	b, err := c.Get(ctx, recordKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("callbacks: record %s: %w", id, err)
	}
	return &r, nil
}

// watch runs fn in an optimistic transaction on keys, retried while
// another writer gets in between.
func (s *redisStore) watch(ctx context.Context, fn func(tx *redis.Tx) error, keys ...string) error {
	for range maxTxRetries {
		err := s.rdb.Watch(ctx, fn, keys...)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("callbacks: too much contention on %s", keys[0])
}

func (s *redisStore) upsert(ctx context.Context, numKey string, fn func(cur *Record) (*Record, error)) (*Record, error) {
	var out *Record
	nk := numberIndexKey(numKey)
	err := s.watch(ctx, func(tx *redis.Tx) error {
		out = nil
		var cur *Record
		id, err := tx.Get(ctx, nk).Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return err
		default:
			if err := tx.Watch(ctx, recordKey(id)).Err(); err != nil {
				return err
			}
			if cur, err = readRecord(ctx, tx, id); err != nil {
				return err
			}
			if cur != nil && cur.State.Terminal() {
				cur = nil
			}
		}
		rec, err := fn(cur)
		if err != nil {
			return err
		}
		rec.NumKey = numKey
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error { return writeRecord(ctx, p, rec, numKey) })
		out = rec
		return err
	}, nk)
	return out, err
}

func (s *redisStore) get(ctx context.Context, id string) (*Record, error) {
	return readRecord(ctx, s.rdb, id)
}

func (s *redisStore) update(ctx context.Context, id string, fn func(r *Record) error) (*Record, error) {
	var out *Record
	err := s.watch(ctx, func(tx *redis.Tx) error {
		out = nil
		r, err := readRecord(ctx, tx, id)
		if err != nil || r == nil {
			return err
		}
		if err := fn(r); errors.Is(err, errNoChange) {
			out = r
			return nil
		} else if err != nil {
			return err
		}
		numKey := ""
		if r.State.Terminal() {
			// drop the number's index only when it still names this request
			nk := r.NumKey
			if err := tx.Watch(ctx, numberIndexKey(nk)).Err(); err != nil {
				return err
			}
			if cur, err := tx.Get(ctx, numberIndexKey(nk)).Result(); err == nil && cur == r.ID {
				numKey = nk
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error { return writeRecord(ctx, p, r, numKey) })
		out = r
		return err
	}, recordKey(id))
	return out, err
}

func (s *redisStore) due(ctx context.Context, now time.Time, n int) ([]string, error) {
	return s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: dueKey, Start: "-inf", Stop: strconv.FormatInt(now.UnixMilli(), 10), ByScore: true, Count: int64(n),
	}).Result()
}

func (s *redisStore) next(ctx context.Context) (time.Time, bool, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, dueKey, 0, 0).Result()
	if err != nil || len(zs) == 0 {
		return time.Time{}, false, err
	}
	return time.UnixMilli(int64(zs[0].Score)), true, nil
}

func (s *redisStore) lease(ctx context.Context, id, owner string, ttl time.Duration) (bool, error) {
	return s.rdb.SetNX(ctx, leaseKey(id), owner, ttl).Result()
}

// renewScript extends the lease only for its owner.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

// releaseScript drops the lease only for its owner.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0`)

func (s *redisStore) renew(ctx context.Context, id, owner string, ttl time.Duration) (bool, error) {
	n, err := renewScript.Run(ctx, s.rdb, []string{leaseKey(id)}, owner, ttl.Milliseconds()).Int()
	return n == 1, err
}

func (s *redisStore) release(ctx context.Context, id, owner string) error {
	return releaseScript.Run(ctx, s.rdb, []string{leaseKey(id)}, owner).Err()
}

// countScript increments a window counter, setting its expiry on creation.
var countScript = redis.NewScript(`
local n = redis.call("INCR", KEYS[1])
if n == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
return n`)

func (s *redisStore) count(ctx context.Context, name string, ttl time.Duration) (int64, error) {
	return countScript.Run(ctx, s.rdb, []string{counterKey(name)}, ttl.Milliseconds()).Int64()
}

func (s *redisStore) pending(ctx context.Context) (int64, error) {
	return s.rdb.ZCard(ctx, dueKey).Result()
}
