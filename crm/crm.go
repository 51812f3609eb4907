package crm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/loglimit"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// ErrNotFound is what a Source returns on a miss.
var ErrNotFound = errors.New("crm: not found")

// errClosed is returned by look-ups after Close.
var errClosed = errors.New("crm: closed")

// Query is one look-up: the number's variants, or an e-mail address (Email
// set, E164 empty: only the sources that can look up by e-mail are asked),
// and, optionally, which sources to ask.
type Query struct {
	E164, National, Digits string
	Email                  string   // look up by e-mail instead; normalised by the CRM (NormalizeEmail)
	Sources                []string // source names to use, in configured order; nil or empty = all
}

// LogValue masks the number and the e-mail address in logs.
func (q Query) LogValue() slog.Value {
	if q.Email != "" {
		return slog.GroupValue(slog.String("email", call.MaskEmail(q.Email)), slog.Any("sources", q.Sources))
	}
	return slog.GroupValue(slog.String("e164", call.MaskNumber(q.E164)), slog.Any("sources", q.Sources))
}

// Result is the outcome of a look-up.
type Result struct {
	Customer *call.Customer // nil on a miss; with several matches, the source's first
	// Candidates are every customer owning the number, in the source's
	// order (Customer first), when the source found more than one; at most
	// call.MaxCandidates. nil on a single match.
	Candidates []*call.Customer
	Cached     bool   // served from a cache tier
	Stale      bool   // served stale while a refresh runs
	Source     string // which source (or "cache") answered
}

// Source is one CRM back-end.
type Source interface {
	Name() string
	Lookup(ctx context.Context, q Query) (*call.Customer, error) // ErrNotFound on a miss
}

// MultiSource is a Source that can return every customer owning a number (a
// company switchboard, a family landline): LookupAll answers them in the
// source's order, ErrNotFound (or none) on a miss. The CRM asks LookupAll
// when a source has it, and keeps at most call.MaxCandidates.
type MultiSource interface {
	Source
	LookupAll(ctx context.Context, q Query) ([]*call.Customer, error)
}

// source is a configured Source with its timeout, breaker and slots: at most
// slots requests run at once; flights beyond wait in queue, costing no
// goroutine, for at most timeout.
type source struct {
	Source
	timeout time.Duration
	breaker *gobreaker.CircuitBreaker[[]*call.Customer]
	slots   int

	mu   sync.Mutex
	warn loglimit.Limiter // its failures are logged at most once a second

	running int        // workers asking this source
	queue   flightFIFO // flights waiting for a worker; non-empty only when running == slots
}

// flight is the one source request for a key (number and source set) and
// what its waiters read once done is closed. It is handed from source to
// source in order; one goroutine at a time owns it.
type flight struct {
	key     localKey
	h       string // the key's HMAC (Redis key, Forget)
	q       Query
	srcs    []*source
	next    int       // index in srcs of the source to ask
	started time.Time // for Forget
	queued  time.Time // when it joined a source's queue; zero when not queued
	errs    []error
	refresh bool // a stale-while-revalidate refresh (counted in refreshTotal)

	waiters []*waiter // callers waiting; guarded by CRM.fmu until endFlight takes them
}

// flightFIFO is a queue of flights, oldest first.
type flightFIFO struct {
	items []*flight
	head  int
}

func (q *flightFIFO) push(f *flight) {
	if q.head > 0 && len(q.items) == cap(q.items) { // reuse the popped front
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, f)
}

func (q *flightFIFO) pop() *flight {
	if q.head == len(q.items) {
		return nil
	}
	f := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return f
}

// CRM looks numbers up through the cache tiers (in-process LRU, Redis) and the
// configured sources in order. Concurrent look-ups of one number share one
// flight; it runs detached from the callers so an answer that arrives after
// their deadline still fills the cache. A flight waiting for a source's slot
// is a queued struct, not a goroutine: a stalled CRM holding thousands of
// calls costs their callers' goroutines (none through LookupAsync) and little more.
type CRM struct {
	sources []*source
	byName  map[string]int
	cache   *cache
	log     *slog.Logger

	fmu     sync.Mutex
	flights map[localKey]*flight // while under way

	rmu      sync.Mutex
	rslots   int        // Redis readers for LookupAsync's flights at most (the pool's size)
	rrunning int        // Redis readers running
	rqueue   flightFIFO // flights waiting for a Redis reader; non-empty only when rrunning == rslots

	ctx       context.Context // ends on Close; parent of detached work
	cancel    context.CancelFunc
	wctx      context.Context // of the Redis writes: ends on Close once they had their chance
	wcancel   context.CancelFunc
	mu        sync.Mutex // guards closed, wg.Add and wwg.Add
	closed    bool
	wg        sync.WaitGroup // fetches and Redis readers
	wwg       sync.WaitGroup // Redis writes
	forgotten sync.Map       // hash key → time.Time of its last Forget: older fetches must not re-fill it
	closers   []func() error
	maxFetch  time.Duration // the longest a fetch can run: the sum of the source timeouts
	writes    atomic.Int64  // Redis writes under way (tests wait for them)

	redisReadWarn, redisWriteWarn loglimit.Limiter // a failing Redis fails every call: a line a second, not a line a call
}

// New builds the CRM from its config sections. rdb may be nil (in-process
// cache only); it is shared and not closed by Close. With no sources
// configured, the embedded sample CSV is the source.
func New(cfg Config, cache CacheConfig, rdb redis.UniversalClient, log *slog.Logger) (*CRM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "crm")
	ctx, cancel := context.WithCancel(context.Background())
	var srcs []Source
	var closers []func() error
	fail := func(err error) (*CRM, error) {
		cancel()
		for _, c := range closers {
			_ = c()
		}
		return nil, err
	}
	if len(cfg.Sources) == 0 {
		s, err := newSampleSource(cfg.Region, log)
		if err != nil {
			return fail(err)
		}
		log.Info("no crm.sources configured: using the embedded sample CSV CRM", "customers", s.Len())
		srcs = append(srcs, s)
	}
	for i, sc := range cfg.Sources {
		s, closer, err := openSource(ctx, cfg, sc, log)
		if err != nil {
			return fail(fmt.Errorf("crm: crm.sources[%d] (%s): %w", i, sc.Name, err))
		}
		if closer != nil {
			closers = append(closers, closer)
		}
		srcs = append(srcs, s)
	}
	c, err := newCRM(ctx, cancel, cfg, cache, rdb, log, srcs)
	if err != nil {
		return fail(err)
	}
	c.closers = closers
	return c, nil
}

// openSource opens one configured source; closer (nil when it holds
// nothing open) releases it. ctx ends the source's background work.
func openSource(ctx context.Context, cfg Config, sc SourceConfig, log *slog.Logger) (s Source, closer func() error, err error) {
	switch sc.Kind {
	case "http":
		s, err = newHTTPSource(sc, log)
		return s, nil, err
	case "postgres":
		p, err := newPGSource(ctx, sc, log)
		if err != nil {
			return nil, nil, err
		}
		return p, p.Close, nil
	case "csv":
		region := sc.Region
		if region == "" {
			region = cfg.Region
		}
		cs, err := newCSVFileSource(ctx, sc.Name, sc.Path, region, sc.Lists, log)
		if err != nil {
			return nil, nil, err
		}
		return cs, cs.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown kind %q", sc.Kind)
}

// NewWithSources builds a CRM over sources given by the caller (tests, other
// embedders), with crm defaults for timeouts and breakers.
func NewWithSources(cache CacheConfig, rdb redis.UniversalClient, log *slog.Logger, sources ...Source) (*CRM, error) {
	if len(sources) == 0 {
		return nil, errors.New("crm: no sources")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := newCRM(ctx, cancel, DefaultConfig(), cache, rdb, log.With("component", "crm"), sources)
	if err != nil {
		cancel()
	}
	return c, err
}

func newCRM(ctx context.Context, cancel context.CancelFunc, cfg Config, cc CacheConfig, rdb redis.UniversalClient, log *slog.Logger, srcs []Source) (*CRM, error) {
	ch, err := newCache(cc, rdb, log)
	if err != nil {
		return nil, err
	}
	c := &CRM{
		byName:  map[string]int{},
		flights: map[localKey]*flight{},
		log:     log,
		ctx:     ctx,
		cancel:  cancel,
		cache:   ch,
		rslots:  cc.Redis.PoolSize,
	}
	if c.rslots <= 0 {
		c.rslots = DefaultMaxConns
	}
	if err := c.addSources(cfg, srcs); err != nil {
		return nil, err
	}
	c.wctx, c.wcancel = context.WithCancel(context.Background())
	return c, nil
}

// newCache builds the cache tiers of cache section cc (validated here).
func newCache(cc CacheConfig, rdb redis.UniversalClient, log *slog.Logger) (*cache, error) {
	if err := cc.Validate(); err != nil {
		return nil, err
	}
	secretKey, err := readSecret(cc.KeySecret, cc.KeySecretFile, EnvKeySecret, "cache.key_secret")
	if err != nil {
		return nil, err
	}
	if rdb != nil && secretKey == "" {
		return nil, fmt.Errorf("crm: %w", errKeySecret)
	}
	if rdb != nil && len(secretKey) < minKeySecret {
		return nil, fmt.Errorf("crm: cache.key_secret: must be at least %d bytes", minKeySecret)
	}
	if cc.KeyPrefix == "" {
		cc.KeyPrefix = DefaultCacheConfig().KeyPrefix
	}
	ch := &cache{cfg: cc, key: []byte(secretKey), now: time.Now,
		rdb: rdb, breaker: newBreaker[[]byte]("redis", cc.Redis.Breaker, func(err error) bool { return errors.Is(err, redis.Nil) }, log)}
	if cc.LocalSize != 0 {
		if ch.local, err = lru.New[localKey, localEntry](max(cc.LocalSize, 1)); err != nil {
			return nil, fmt.Errorf("crm: cache.local_size: %w", err)
		}
	}
	return ch, nil
}

// addSources takes srcs in order, each with its timeout, slots and breaker
// from cfg (crm defaults for a source cfg does not name).
func (c *CRM) addSources(cfg Config, srcs []Source) error {
	timeouts := map[string]time.Duration{}
	slots := map[string]int{}
	for _, sc := range cfg.Sources {
		timeouts[sc.Name] = sc.Timeout
		slots[sc.Name] = sc.MaxConns
	}
	for i, s := range srcs {
		if _, dup := c.byName[s.Name()]; dup {
			return fmt.Errorf("crm: source %q twice", s.Name())
		}
		c.byName[s.Name()] = i
		t := timeouts[s.Name()]
		if t <= 0 {
			t = cfg.Timeout
		}
		c.maxFetch += t
		n := slots[s.Name()]
		if n <= 0 {
			n = DefaultMaxConns
		}
		c.sources = append(c.sources, &source{Source: s, timeout: t, slots: n,
			breaker: newBreaker[[]*call.Customer](s.Name(), cfg.Breaker, func(err error) bool { return errors.Is(err, ErrNotFound) }, c.log)})
	}
	return nil
}

// Lookup finds the customer owning q.E164. Miss: Result{Customer: nil}, nil.
// ctx deadline: ctx.Err() (a late CRM answer still fills the cache).
// Sources failing: an error. The returned Customer is shared with the cache:
// treat it as read-only. It is LookupAsync, waited for.
func (c *CRM) Lookup(ctx context.Context, q Query) (Result, error) {
	lw := lookupWaits.Get().(*lookupWait)
	defer lookupWaits.Put(lw)
	r, w, err := c.lookup(ctx, time.Time{}, q, lw.done, false)
	if w == nil {
		return r, err
	}
	select {
	case a := <-lw.ch:
		return a.r, a.err
	case <-ctx.Done():
		c.expire(w, ctx.Err(), false) // unless the answer claimed w first
	}
	a := <-lw.ch
	return a.r, a.err
}

// lookupWait is what a blocking Lookup waits on; pooled, so a cache hit
// allocates nothing. Its done is called at most once per look-up (a waiter
// is claimed once), and Lookup reads that before the wait goes back to the pool.
type lookupWait struct {
	ch   chan lookupAnswer
	done func(Result, error)
}

type lookupAnswer struct {
	r   Result
	err error
}

var lookupWaits = sync.Pool{New: func() any {
	w := &lookupWait{ch: make(chan lookupAnswer, 1)}
	w.done = func(r Result, err error) { w.ch <- lookupAnswer{r, err} }
	return w
}}

// LookupLocal answers q from the in-process tier alone: no context, no
// waiting, nothing allocated on a hit. ok=false when it cannot (no such
// entry, an expired one, no in-process tier, an unknown source): then call
// Lookup. A stale entry is served and refreshed in the background, as Lookup does.
func (c *CRM) LookupLocal(q Query) (r Result, ok bool) {
	id, q, err := lookupKey(q)
	if err != nil {
		return Result{}, false
	}
	srcs, field, err := c.pick(q.Sources, q.Email != "")
	if err != nil {
		return Result{}, false
	}
	if r, ok = c.fromLocal(localKey{id, field}, q, srcs); ok {
		countLookup(r)
	} // a miss is counted by the Lookup that follows
	return r, ok
}

// countLookup counts an answered look-up as a hit or a miss.
func countLookup(r Result) {
	if r.Customer == nil {
		lookupMisses.Inc()
	} else {
		lookupHits.Inc()
	}
}

// pick resolves the query's source names to configured sources in configured
// order, and the cache field naming that set ("*" = all). With email, only
// the sources that can look up by e-mail are kept.
func (c *CRM) pick(names []string, email bool) ([]*source, string, error) {
	if len(names) == 0 && !email {
		return c.sources, "*", nil
	}
	want := make([]bool, len(c.sources))
	for _, n := range names {
		i, ok := c.byName[n]
		if !ok {
			return nil, "", fmt.Errorf("crm: unknown source %q", n)
		}
		want[i] = true
	}
	var srcs []*source
	var fieldNames []string
	for i, s := range c.sources {
		if (want[i] || len(names) == 0) && (!email || canEmail(s.Source)) {
			srcs = append(srcs, s)
			fieldNames = append(fieldNames, s.Name())
		}
	}
	if len(srcs) == len(c.sources) {
		return srcs, "*", nil
	}
	return srcs, strings.Join(fieldNames, ","), nil
}

// fromLocal answers from the in-process tier; a stale entry is served and
// refreshed in the background. A miss is the caller's to count.
func (c *CRM) fromLocal(k localKey, q Query, srcs []*source) (Result, bool) {
	if c.cache.local == nil {
		return Result{}, false
	}
	e, ok := c.cache.getLocal(k)
	if !ok {
		return Result{}, false
	}
	switch c.cache.state(e, c.cache.now()) {
	case fresh:
		localHits.Inc()
		return Result{Customer: e.Customer, Candidates: e.All, Cached: true, Source: "cache"}, true
	case stale:
		localStale.Inc()
		c.refresh(k, q, srcs)
		return Result{Customer: e.Customer, Candidates: e.All, Cached: true, Stale: true, Source: "cache"}, true
	}
	return Result{}, false
}

// fromRedis reads the Redis tier (h is k's hash key). A usable entry comes
// back marked cached, and stale when it needs a refresh (the caller starts it).
func (c *CRM) fromRedis(ctx context.Context, k localKey, h string) (entry, bool) {
	now := c.cache.now()
	e, ok, err := c.cache.getRedis(ctx, h, k.field)
	switch {
	case errors.Is(err, errCorrupt):
		cacheTotal.WithLabelValues("redis", "invalid").Inc()
		return entry{}, false
	case err != nil:
		cacheTotal.WithLabelValues("redis", "error").Inc()
		if !isOpen(err) && ctx.Err() == nil {
			c.redisReadWarn.Warn(c.log, "redis read failed; asking the sources", "err", err)
		}
		return entry{}, false
	case !ok:
		cacheTotal.WithLabelValues("redis", "miss").Inc()
		return entry{}, false
	}
	switch c.cache.state(e, now) {
	case fresh:
		cacheTotal.WithLabelValues("redis", "hit").Inc()
		c.putLocal(k, e)
		e.cached = true
		return e, true
	case stale:
		cacheTotal.WithLabelValues("redis", "stale").Inc()
		e.cached, e.stale = true, true
		return e, true
	}
	cacheTotal.WithLabelValues("redis", "miss").Inc()
	return entry{}, false
}

func (c *CRM) putLocal(k localKey, e entry) {
	if c.cache.local != nil {
		c.cache.putLocal(k, e)
	}
}

// track registers detached work in wg; false after Close.
func (c *CRM) track(wg *sync.WaitGroup) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	wg.Add(1)
	return true
}

// join returns the flight for a number and source set, starting one when
// none is under way; nil after Close. A waiter w (nil for a refresh) joins
// the flight's waiters, and a flight it starts reads the Redis tier first,
// on a worker of its own.
func (c *CRM) join(k localKey, q Query, srcs []*source, refresh bool, w *waiter) *flight {
	c.fmu.Lock()
	if f, ok := c.flights[k]; ok {
		if w != nil {
			f.waiters = append(f.waiters, w)
		}
		c.fmu.Unlock()
		return f
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		c.fmu.Unlock()
		return nil
	}
	f := &flight{key: k, h: c.cache.hashKey(k.e164), srcs: srcs, started: time.Now(), refresh: refresh,
		q: Query{E164: q.E164, National: q.National, Digits: q.Digits, Email: q.Email}}
	if w != nil {
		f.waiters = append(f.waiters, w)
	}
	c.flights[k] = f
	c.fmu.Unlock()
	// A caller that missed the cache just before the previous flight for this
	// key stored its answer starts a new flight: answer it from that entry.
	if c.cache.local != nil {
		if e, ok := c.cache.getLocal(k); ok && c.cache.state(e, c.cache.now()) == fresh {
			e.cached = true
			c.endFlight(f, e, nil)
			return f
		}
	}
	if w != nil && c.cache.rdb != nil {
		c.readRedis(f) // on the flight's worker: its callers wait as structs
		return f
	}
	c.advance(f)
	return f
}

// refresh re-fetches a stale entry in the background, once per key at a time.
func (c *CRM) refresh(k localKey, q Query, srcs []*source) {
	c.join(k, q, srcs, true, nil)
}

// endFlight delivers a flight's outcome to its waiters.
func (c *CRM) endFlight(f *flight, e entry, err error) {
	c.fmu.Lock()
	if c.flights[f.key] == f {
		delete(c.flights, f.key)
	}
	ws := f.waiters
	f.waiters = nil
	c.fmu.Unlock()
	for _, w := range ws {
		c.answerWaiter(w, e, err)
	}
	if f.refresh {
		if err != nil {
			refreshTotal.WithLabelValues("error").Inc()
		} else {
			refreshTotal.WithLabelValues("ok").Inc()
		}
	}
}

// advance hands f to its next source: a worker runs it now if the source has
// a free slot, else it waits in the source's queue. With no source left, f
// ends: a miss (cached) when every source missed, else the sources' errors
// (not cached).
func (c *CRM) advance(f *flight) {
	if c.ctx.Err() != nil {
		c.endFlight(f, entry{}, errClosed)
		return
	}
	if f.next >= len(f.srcs) {
		if len(f.errs) > 0 {
			c.endFlight(f, entry{}, errors.Join(f.errs...))
			return
		}
		e := entry{V: entryVersion, At: c.cache.now().UnixMilli(), Miss: true}
		if c.cache.cfg.MissTTL > 0 {
			c.store(f, e)
		}
		c.endFlight(f, e, nil)
		return
	}
	if !c.track(&c.wg) {
		c.endFlight(f, entry{}, errClosed)
		return
	}
	s := f.srcs[f.next]
	s.mu.Lock()
	if s.running >= s.slots {
		f.queued = time.Now()
		s.queue.push(f)
		s.mu.Unlock()
		c.wg.Done() // a running worker will take it
		return
	}
	s.running++
	s.mu.Unlock()
	go c.work(s, f)
}

// work asks s for f, then for the flights queued at s until none is left.
// Each flight goes on to its next source (or ends) as s is done with it.
func (c *CRM) work(s *source, f *flight) {
	defer c.wg.Done()
	for f != nil {
		more := c.step(s, f)
		s.mu.Lock()
		next := s.queue.pop()
		if next == nil {
			s.running--
		}
		s.mu.Unlock()
		if more {
			c.advance(f)
		}
		f = next
	}
}

// step asks s for f within what is left of s's timeout after f's wait in the
// queue. It reports whether f goes on to its next source; false when f ended.
func (c *CRM) step(s *source, f *flight) bool {
	if c.ctx.Err() != nil {
		c.endFlight(f, entry{}, errClosed)
		return false
	}
	timeout := s.timeout
	if !f.queued.IsZero() {
		timeout -= time.Since(f.queued)
		f.queued = time.Time{}
	}
	f.next++
	if timeout <= 0 {
		sourceSeconds.WithLabelValues(s.Name(), "busy").Observe(s.timeout.Seconds())
		f.errs = append(f.errs, fmt.Errorf("crm: source %s: no free slot within its timeout (max_conns %d)", s.Name(), s.slots))
		return true
	}
	custs, err := c.ask(s, f.q, timeout)
	switch {
	case err == nil && len(custs) > 0:
		e := entry{V: entryVersion, At: c.cache.now().UnixMilli(), Source: s.Name(), Customer: capCustomer(custs[0])}
		if len(custs) > 1 {
			e.All = append(e.All, e.Customer)
			for _, x := range custs[1:min(len(custs), call.MaxCandidates)] {
				e.All = append(e.All, capCustomer(x))
			}
		}
		c.store(f, e)
		c.endFlight(f, e, nil)
		return false
	case err == nil || errors.Is(err, ErrNotFound):
	default:
		f.errs = append(f.errs, fmt.Errorf("crm: source %s: %w", s.Name(), err))
	}
	return true
}

// ask calls one source through its breaker within timeout: every customer
// it found (nil records dropped), ErrNotFound when none.
func (c *CRM) ask(s *source, q Query, timeout time.Duration) ([]*call.Customer, error) {
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	start := time.Now()
	custs, err := run(s.breaker, func() ([]*call.Customer, error) {
		var custs []*call.Customer
		var err error
		if ms, ok := s.Source.(MultiSource); ok {
			custs, err = ms.LookupAll(ctx, q)
		} else {
			var cust *call.Customer
			cust, err = s.Lookup(ctx, q)
			custs = []*call.Customer{cust}
		}
		if err != nil {
			return nil, err
		}
		out := custs[:0:0]
		for _, x := range custs {
			if x != nil {
				out = append(out, x)
			}
		}
		if len(out) == 0 {
			return nil, ErrNotFound
		}
		return out, nil
	})
	result := "hit"
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		result = "miss"
	case isOpen(err):
		result = "open"
	default:
		result = "error"
		s.warn.Warn(c.log, "crm source failed", "source", s.Name(), "err", err, "elapsed", time.Since(start))
	}
	sourceSeconds.WithLabelValues(s.Name(), result).Observe(since(start))
	return custs, err
}

// store writes both tiers; the Redis write runs in the background, bounded by
// cache.redis.timeout.
// A fetch that started before a Forget of the number stores nothing: its
// answer may be what the Forget meant to drop.
func (c *CRM) store(f *flight, e entry) {
	h, field, started := f.h, f.key.field, f.started
	if t, ok := c.forgotten.Load(h); ok && !started.After(t.(time.Time)) {
		return
	}
	c.putLocal(f.key, e)
	if c.cache.rdb == nil || !c.track(&c.wwg) {
		return
	}
	// The Redis write never delays the answer: waiting callers have it already.
	c.writes.Add(1)
	go func() {
		defer c.wwg.Done()
		defer c.writes.Add(-1)
		if t, ok := c.forgotten.Load(h); ok && !started.After(t.(time.Time)) {
			return
		}
		if err := c.cache.putRedis(c.wctx, h, field, e); err != nil && !isOpen(err) && c.wctx.Err() == nil {
			c.redisWriteWarn.Warn(c.log, "redis write failed", "err", err)
		}
	}()
}

// Forget deletes a number (E.164) from every cache tier, for every source set.
func (c *CRM) Forget(ctx context.Context, e164 string) error {
	if e164 == "" {
		return errors.New("crm: forget without e164")
	}
	h := c.cache.hashKey(e164)
	now := time.Now()
	c.forgotten.Store(h, now)
	c.forgotten.Range(func(k, v any) bool { // keep only what a fetch in flight could still need
		if now.Sub(v.(time.Time)) > c.maxFetch {
			c.forgotten.Delete(k)
		}
		return true
	})
	if c.cache.local != nil {
		c.cache.forgetLocal(e164)
	}
	if c.cache.rdb != nil {
		if err := c.cache.forgetRedis(ctx, h); err != nil {
			return fmt.Errorf("crm: forget in redis: %w", err)
		}
	}
	return nil
}

// Sources lists the configured source names in order.
func (c *CRM) Sources() []string {
	names := make([]string, len(c.sources))
	for i, s := range c.sources {
		names[i] = s.Name()
	}
	return names
}

// Close lets the Redis writes under way finish, for at most
// cache.redis.timeout, then stops background work (in-flight fetches are
// cancelled) and releases sources. It does not close the shared Redis client.
func (c *CRM) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	// The writes carry answers already given (a one-shot lookup, a drain's
	// last calls): cancelling them first would leave Redis without them.
	writesDone := make(chan struct{})
	go func() { c.wwg.Wait(); close(writesDone) }()
	bound := time.NewTimer(c.cache.cfg.Redis.Timeout)
	select {
	case <-writesDone:
	case <-bound.C:
	}
	bound.Stop()
	c.wcancel()
	c.cancel()
	c.wg.Wait()
	<-writesDone
	var errs []error
	for _, cl := range c.closers {
		errs = append(errs, cl())
	}
	return errors.Join(errs...)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${NAME} with the environment variable NAME (other $ stay).
func expandEnv(s string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string { return os.Getenv(m[2 : len(m)-1]) })
}
