package callbacks

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"time"
)

// memStore is the in-process store: the same behaviour as the Redis one
// for a single instance (callpop demo, callpop run without cache.redis
// refuses callbacks). Nothing survives a restart.
type memStore struct {
	mu       sync.Mutex
	records  map[string][]byte // JSON, as Redis keeps it: no aliasing
	expires  map[string]time.Time
	byNumber map[string]string
	leases   map[string]memLease
	counters map[string]memLease // value in n, until
	now      func() time.Time
}

type memLease struct {
	owner string
	n     int64
	until time.Time
}

func newMemStore() *memStore {
	return &memStore{
		records: map[string][]byte{}, expires: map[string]time.Time{}, byNumber: map[string]string{},
		leases: map[string]memLease{}, counters: map[string]memLease{}, now: time.Now,
	}
}

func (m *memStore) read(id string) (*Record, error) {
	if until, ok := m.expires[id]; ok && !m.now().Before(until) {
		delete(m.records, id)
		delete(m.expires, id)
	}
	b, ok := m.records[id]
	if !ok {
		return nil, nil
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (m *memStore) write(r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	m.records[r.ID] = b
	if r.State.Terminal() {
		m.expires[r.ID] = m.now().Add(keepTerminal)
		if m.byNumber[r.NumKey] == r.ID {
			delete(m.byNumber, r.NumKey)
		}
	} else {
		delete(m.expires, r.ID)
		m.byNumber[r.NumKey] = r.ID
	}
	return nil
}

func (m *memStore) upsert(_ context.Context, numKey string, fn func(cur *Record) (*Record, error)) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var cur *Record
	if id, ok := m.byNumber[numKey]; ok {
		r, err := m.read(id)
		if err != nil {
			return nil, err
		}
		if r != nil && !r.State.Terminal() {
			cur = r
		}
	}
	rec, err := fn(cur)
	if err != nil {
		return nil, err
	}
	rec.NumKey = numKey
	return rec, m.write(rec)
}

func (m *memStore) get(_ context.Context, id string) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.read(id)
}

func (m *memStore) update(_ context.Context, id string, fn func(r *Record) error) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.read(id)
	if err != nil || r == nil {
		return nil, err
	}
	if err := fn(r); errors.Is(err, errNoChange) {
		return r, nil
	} else if err != nil {
		return nil, err
	}
	return r, m.write(r)
}

// active lists the pending and dialing requests by NextAt.
func (m *memStore) active() []*Record {
	var out []*Record
	for id := range m.records {
		if r, err := m.read(id); err == nil && r != nil && !r.State.Terminal() {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NextAt.Before(out[j].NextAt) })
	return out
}

func (m *memStore) due(_ context.Context, now time.Time, n int) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for _, r := range m.active() {
		if r.NextAt.After(now) || len(ids) == n {
			break
		}
		ids = append(ids, r.ID)
	}
	return ids, nil
}

func (m *memStore) next(context.Context) (time.Time, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.active()
	if len(a) == 0 {
		return time.Time{}, false, nil
	}
	return a[0].NextAt, true, nil
}

func (m *memStore) lease(_ context.Context, id, owner string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[id]; ok && time.Now().Before(l.until) {
		return false, nil
	}
	m.leases[id] = memLease{owner: owner, until: time.Now().Add(ttl)}
	return true, nil
}

func (m *memStore) renew(_ context.Context, id, owner string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[id]; !ok || l.owner != owner || !time.Now().Before(l.until) {
		return false, nil
	}
	m.leases[id] = memLease{owner: owner, until: time.Now().Add(ttl)}
	return true, nil
}

func (m *memStore) release(_ context.Context, id, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[id]; ok && l.owner == owner {
		delete(m.leases, id)
	}
	return nil
}

func (m *memStore) count(_ context.Context, name string, ttl time.Duration) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for k, c := range m.counters { // bounded by the windows alive
		if !now.Before(c.until) {
			delete(m.counters, k)
		}
	}
	c, ok := m.counters[name]
	if !ok {
		c = memLease{until: now.Add(ttl)}
	}
	c.n++
	m.counters[name] = c
	return c.n, nil
}

func (m *memStore) pending(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.active())), nil
}
