package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/router"
)

// Pipeline is the sidecar's decision path as main wires it: normaliser →
// CRM (in-process cache, Redis, HTTP source on the stub) → router.
type Pipeline struct {
	Numbers *callerid.Normalizer
	Redis   redis.UniversalClient
	CRM     *crm.CRM
	Router  *router.Router
}

// PipelineConfig is what the bench varies in the sidecar's configuration.
type PipelineConfig struct {
	CRMURL     string        // source URL template ({e164})
	CRMTimeout time.Duration // crm.timeout
	RedisAddr  string        // host:port, several comma-separated = a cluster; "" = in-process cache only
	KeyPrefix  string        // cache.key_prefix; "" = callpop's own
	Budget     time.Duration // call.budget
	Logger     *slog.Logger
	Allow      []string // router.fastagi.allow; nil = its default (loopback)
}

// with returns cfg with call.budget and crm.timeout (0 = the default) set.
func (cfg PipelineConfig) with(budget, crmTimeout time.Duration) PipelineConfig {
	cfg.Budget, cfg.CRMTimeout = budget, crmTimeout
	return cfg
}

// NewPipeline builds the pipeline from each package's defaults plus cfg.
func NewPipeline(cfg PipelineConfig) (*Pipeline, error) {
	log := cfg.Logger
	ncfg := callerid.DefaultConfig()
	if err := ncfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench: numbers config: %w", err)
	}
	numbers, err := callerid.New(ncfg, log)
	if err != nil {
		return nil, fmt.Errorf("bench: numbers: %w", err)
	}
	ccfg := crm.DefaultConfig()
	if cfg.CRMTimeout > 0 {
		ccfg.Timeout = cfg.CRMTimeout
	}
	ccfg.Breaker.Failures = 0 // the bench overloads the stub on purpose; no breaker flapping
	ccfg.Sources = []crm.SourceConfig{{Name: "bench", Kind: "http", URL: cfg.CRMURL}}
	if err := ccfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench: crm config: %w", err)
	}
	cache := crm.DefaultCacheConfig()
	cache.KeySecret = "callpop-bench-key-secret" // the bench's own keys, under its run's prefix
	cache.Redis = redisConfig(cfg.RedisAddr)
	if cfg.KeyPrefix != "" {
		cache.KeyPrefix = cfg.KeyPrefix
	}
	if err := cache.Validate(); err != nil {
		return nil, fmt.Errorf("bench: cache config: %w", err)
	}
	p := &Pipeline{Numbers: numbers}
	if p.Redis, err = crm.OpenRedis(cache.Redis, log); err != nil {
		return nil, fmt.Errorf("bench: redis: %w", err)
	}
	if p.CRM, err = crm.New(ccfg, cache, p.Redis, log); err != nil {
		p.Close()
		return nil, fmt.Errorf("bench: crm: %w", err)
	}
	rcfg := router.DefaultConfig()
	if cfg.Allow != nil {
		rcfg.FastAGI.Allow = cfg.Allow
	}
	if err := rcfg.Validate(); err != nil {
		p.Close()
		return nil, fmt.Errorf("bench: router config: %w", err)
	}
	if p.Router, err = router.New(rcfg, router.Deps{Numbers: numbers, CRM: p.CRM, Redis: p.Redis, Budget: cfg.Budget, Logger: log}); err != nil {
		p.Close()
		return nil, fmt.Errorf("bench: router: %w", err)
	}
	return p, nil
}

// Close releases the CRM and the Redis client.
func (p *Pipeline) Close() {
	if p.CRM != nil {
		_ = p.CRM.Close()
	}
	if p.Redis != nil {
		_ = p.Redis.Close()
	}
}

// verdict is what the bench learns of one decision.
type verdict struct {
	match  call.Match
	cached bool
}

// recorder wraps a Decider and remembers each call's verdict by call id, so
// the bench can split latencies warm/cold exactly as the cache answered.
type recorder struct {
	dec call.Decider
	log *slog.Logger // for a decider's panic (adapters.DecideAsync)
	m   sync.Map     // call id → verdict
}

func (r *recorder) Decide(ctx context.Context, c call.Call) call.Decision {
	d := r.dec.Decide(ctx, c)
	r.m.Store(c.ID, verdict{match: d.Match, cached: d.Cached})
	return d
}

// DecideAsync records the verdict before handing the decision on, as Decide
// does before returning it: once, and a panic below becomes Match=error
// (adapters.DecideAsync), so a call is recorded as the adapter sees it.
func (r *recorder) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	adapters.DecideAsync(ctx, r.dec, c, r.log, func(d call.Decision) {
		r.m.Store(c.ID, verdict{match: d.Match, cached: d.Cached})
		done(d)
	})
}

// take returns and forgets the verdict of call id.
func (r *recorder) take(id string) (verdict, bool) {
	v, ok := r.m.LoadAndDelete(id)
	if !ok {
		return verdict{}, false
	}
	return v.(verdict), true
}
