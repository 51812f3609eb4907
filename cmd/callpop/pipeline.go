package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/ari"
	"github.com/callpop/callpop/adapters/esl"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callbacks"
	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/internal/apiauth"
	"github.com/callpop/callpop/popper"
	"github.com/callpop/callpop/router"
	"github.com/callpop/callpop/stats"
)

// pipeline is callpop's decision path built from one Config, in the order a
// call goes through it: normalise (callerid) → look up (crm + cache) →
// decide (router) → pop (popper, which also decorates the decision).
// run, lookup, cache forget, demo and bench all build it here.
type pipeline struct {
	cfg     Config
	log     *slog.Logger
	redis   redis.UniversalClient // nil without cache.redis.addrs
	numbers *callerid.Normalizer
	crm     *crm.CRM
	router  *router.Router
	popper  *popper.Popper
	decider call.Decider  // router, decorated by popper
	auth    *apiauth.Auth // the HTTP API's keys; built with the popper (the serving commands)
	stats   *stats.Stats  // the live stats; built with the popper
	// callbacks takes web callback requests and dials them (newCallbacks);
	// nil with callbacks.enabled false.
	callbacks *callbacks.Service
}

// pipelineOptions say which optional parts to build.
type pipelineOptions struct {
	Popper bool // build the popper and the API's keys (run, demo); lookup and cache forget do without
}

// newPipeline builds the pipeline; Close releases what it opened.
func newPipeline(cfg Config, log *slog.Logger, opts pipelineOptions) (_ *pipeline, err error) {
	p := &pipeline{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if opts.Popper {
		if p.auth, err = apiauth.New(cfg.API, apiauth.Options{Logger: log, ClientScopes: cfg.TLS.ClientScopes}); err != nil {
			return nil, err
		}
	}
	if p.numbers, err = callerid.New(cfg.Numbers, log); err != nil {
		return nil, fmt.Errorf("numbers: %w", err)
	}
	// Load the numbering metadata now rather than on the first call.
	_, _ = p.numbers.Parse("+14155550123", "US")
	if p.redis, err = crm.OpenRedis(cfg.Cache.Redis, log); err != nil {
		return nil, fmt.Errorf("cache.redis: %w", err)
	}
	if cfg.CRM.Region == "" {
		// National numbers in CSV files follow the callers' default region.
		cfg.CRM.Region = cfg.Numbers.DefaultRegion
	}
	if p.crm, err = crm.New(cfg.CRM, cfg.Cache, p.redis, log); err != nil {
		return nil, fmt.Errorf("crm: %w", err)
	}
	p.router, err = router.New(cfg.Router, router.Deps{
		Numbers: p.numbers,
		CRM:     p.crm,
		Redis:   p.redis,
		Budget:  cfg.Call.Budget,
		Logger:  log,
	})
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	p.decider = p.router
	if opts.Popper {
		if p.popper, err = popper.New(cfg.Popper, popper.Deps{Redis: p.redis, Logger: log}); err != nil {
			return nil, fmt.Errorf("popper: %w", err)
		}
		p.decider = p.popper.Decorate(p.router)
		p.stats = stats.New(stats.Options{Logger: log})
		p.decider = p.stats.Decorate(p.decider) // the last calls on /stats
		// a dialplan asking /v1/route or FastAGI gets the same softphone
		// caller name and info URL as a channel the adapter enriched
		p.router.SetEndpointDecider(p.decider)
		p.router.SetContactPops(p.popper) // POST /v1/contacts with an agent pops the contact to it
	}
	return p, nil
}

// adapterDeps is what an adapter gets: the decorated decider, the popper as
// its sink, the logger and the budget.
func (p *pipeline) adapterDeps() adapters.Deps {
	return adapters.Deps{Decider: p.decider, Sink: p.sink(), Logger: p.log, Budget: p.cfg.Call.Budget}
}

// sink is where adapters report agent legs: the popper, or nowhere.
func (p *pipeline) sink() call.LegSink {
	if p.popper == nil {
		return call.NopSink{}
	}
	return p.popper
}

// pbxAdapter is one PBX's adapter, as the pipeline built it.
type pbxAdapter struct {
	entry   PBXEntry
	adapter adapters.Adapter
	scope   *pbxScope
}

// adapters builds an adapter for every PBX of pbx or pbxes (none with
// pbx.kind none). Each gets the same decider and popper through a scope of
// its own that names its calls after it; each runs, reconnects and
// reconciles on its own. Calls decided for the dialplan are followed by
// them (followDialplan).
func (p *pipeline) adapters() ([]pbxAdapter, error) {
	list, legacy := p.cfg.pbxList()
	var shared *decisionStore
	if len(list) > 1 {
		shared = newDecisionStore()
	}
	out := make([]pbxAdapter, 0, len(list))
	for i, e := range list {
		key := "pbx"
		if !legacy {
			key = fmt.Sprintf("pbxes[%d]", i)
		}
		log := p.log.With("pbx", e.Name)
		scope := &pbxScope{name: e.Name, namespaced: !legacy, decider: p.decider, sink: p.sink(), shared: shared, log: log}
		deps := adapters.Deps{Decider: scope, Sink: scope, Logger: log, Budget: p.cfg.Call.Budget, PBX: e.Name}
		var a adapters.Adapter
		var err error
		switch e.Kind {
		case PBXAsterisk:
			a, err = ari.New(e.Asterisk, deps)
			key += ".asterisk"
		case PBXFreeSWITCH:
			a, err = esl.New(e.FreeSWITCH, deps)
			key += ".freeswitch"
		default:
			return nil, fmt.Errorf("%s.kind: unknown %q", key, e.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		out = append(out, pbxAdapter{entry: e, adapter: a, scope: scope})
	}
	p.followDialplan(out)
	return out, nil
}

// followDialplan makes FastAGI sessions and /v1/route requests that carry
// the call's id register the call with the popper, as an adapter's call,
// and has the adapters follow its agent legs, so ring → pop works whichever
// way the call came in. Neither step blocks; the router holds the call's
// answer, within its budget, until the adapters' following has taken hold.
func (p *pipeline) followDialplan(list []pbxAdapter) {
	if p.popper == nil || len(list) == 0 {
		return // nothing to pop to (lookup, cache forget), or no adapter to follow with
	}
	sink := call.LegSink(p.popper)
	if len(list) == 1 {
		sink = list[0].scope // the pop names the one PBX
	}
	p.router.SetFollower(pbxFollower{sink: sink, adapters: list})
}

// Close releases the CRM sources and the Redis client.
func (p *pipeline) Close() error {
	var errs []error
	if p.stats != nil {
		p.stats.Close()
	}
	if p.crm != nil {
		errs = append(errs, p.crm.Close())
	}
	if p.redis != nil {
		errs = append(errs, p.redis.Close())
	}
	return errors.Join(errs...)
}
