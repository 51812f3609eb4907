package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // router.timezone must work in minimal containers without zoneinfo

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/internal/loglimit"
	"github.com/callpop/callpop/internal/netallow"
)

// Deps is what main hands the router.
type Deps struct {
	Numbers *callerid.Normalizer
	CRM     *crm.CRM
	Redis   redis.UniversalClient // may be nil (no shared block-list set)
	Budget  time.Duration         // call.budget, used when a request's ctx has no deadline (HTTP, AGI, CLI)
	Logger  *slog.Logger
}

// Router makes routing decisions and serves the dialplan endpoints. It is
// safe for concurrent use; Reload swaps its rules atomically.
type Router struct {
	deps  Deps
	log   *slog.Logger
	state atomic.Pointer[state]
	block *blockList

	// ruleClock is the wall clock the rules read (time, hour, weekday…);
	// tests set it. Deadlines, budgets and elapsed times never read it:
	// they come from the real monotonic clock (the call's Received).
	ruleClock func() time.Time

	crmWarn   loglimit.Limiter // CRM failures are logged at most once a second
	redisWarn loglimit.Limiter // so are shared block-list failures
	msetWarn  loglimit.Limiter // so is an Asterisk that refuses FastAGI's EXEC MSet
	aniWarn   loglimit.Limiter // and a FastAGI script's ani= refused

	prepared *lru.Cache[*call.Customer, *preparedCustomer] // by the CRM's shared record

	endpoint atomic.Pointer[call.Decider]  // what /v1/route, /v1/lookup and FastAGI decide with; nil = the router
	follower atomic.Pointer[call.Follower] // told of FastAGI and /v1/route calls that carry a call id; nil = nobody
}

// SetEndpointDecider makes /v1/route, /v1/lookup and FastAGI decide through
// d — the wiring passes the popper's softphone decoration around this router,
// so a dialplan asking directly gets the same caller name and info URL as a
// channel the adapter enriched. Call it before serving.
func (r *Router) SetEndpointDecider(d call.Decider) {
	r.endpoint.Store(&d)
}

// endpointDecide decides for the HTTP and FastAGI endpoints.
func (r *Router) endpointDecide(ctx context.Context, c call.Call) call.Decision {
	if d := r.endpoint.Load(); d != nil && *d != nil {
		return (*d).Decide(ctx, c)
	}
	return r.Decide(ctx, c)
}

// preparedCustomer is a CRM record made ready for a decision once: cleaned,
// and the rules' views of it. The CRM's records are shared and read-only, so
// repeat callers reuse it; nothing here is written after it is built.
type preparedCustomer struct {
	cust   *call.Customer
	env    CustomerEnv
	record map[string]any
}

// preparedSize bounds the prepared records kept: the repeat callers of the
// moment, not the whole cache.
const preparedSize = 1024

// prepare returns c cleaned with its rule views, from the memo when c was
// seen before.
func (r *Router) prepare(c *call.Customer) *preparedCustomer {
	if p, ok := r.prepared.Get(c); ok {
		return p
	}
	p := &preparedCustomer{cust: sanitizeCustomer(c)}
	p.env, p.record = customerEnv(p.cust)
	r.prepared.Add(c, p)
	return p
}

var envPool = sync.Pool{New: func() any { return new(Env) }}

// state is one compiled configuration; never mutated after it is stored.
type state struct {
	cfg      Config
	loc      *time.Location
	rules    []*compiledRule
	sets     map[string][]*compiledRule
	profiles []*profile
	def      *profile // no profile matched

	fastagiAllow netallow.List
	vipTiers     map[string]bool
	extraVars    map[string]bool // names rules may set as CALLPOP_<NAME>
	readsGeo     bool            // a rule reads geo: look it up (the geocoding data is loaded on first use)
}

type profile struct {
	Profile
	exact    map[string]bool // digits
	prefixes []string        // digits
	rules    []*compiledRule
}

// New builds a Router from a config section and its dependencies.
func New(cfg Config, deps Deps) (*Router, error) {
	if deps.Numbers == nil {
		return nil, errors.New("router: Deps.Numbers is required")
	}
	if deps.CRM == nil {
		return nil, errors.New("router: Deps.CRM is required")
	}
	if deps.Budget <= 0 {
		deps.Budget = 300 * time.Millisecond
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	r := &Router{deps: deps, log: deps.Logger.With("component", "router"), ruleClock: time.Now}
	r.prepared, _ = lru.New[*call.Customer, *preparedCustomer](preparedSize)
	st, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	r.block = newBlockList(r.log, deps.Numbers)
	if err := r.block.configure(cfg.Flags.BlockListFile, cfg.Flags.BlockListReload); err != nil {
		return nil, err
	}
	if cfg.Flags.BlockListRedisKey != "" && deps.Redis == nil {
		r.log.Warn("router.flags.block_list_redis_key is set but no Redis is configured; the shared block list is not used")
	}
	r.state.Store(st)
	// Load the phone-number metadata now rather than on the first call's budget.
	_, _ = deps.Numbers.Parse("+14155550123", "US")
	return r, nil
}

// Reload validates and compiles cfg and swaps it in atomically, only if valid.
// On error the old rules keep serving.
func (r *Router) Reload(cfg Config) error {
	st, err := compile(cfg)
	if err == nil {
		err = r.block.configure(cfg.Flags.BlockListFile, cfg.Flags.BlockListReload)
	}
	if err != nil {
		reloads.WithLabelValues("error").Inc()
		r.log.Error("rules reload rejected; keeping the previous rules", "err", err)
		return err
	}
	r.state.Store(st)
	reloads.WithLabelValues("ok").Inc()
	r.log.Info("rules reloaded", "rules", len(st.rules), "rule_sets", len(st.sets), "profiles", len(st.profiles))
	return nil
}

func compile(cfg Config) (*state, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	loc, _ := loadLocation(cfg.Timezone)
	st := &state{cfg: cfg, loc: loc, sets: map[string][]*compiledRule{}, vipTiers: map[string]bool{}}
	var err error
	if st.fastagiAllow, err = netallow.Parse("router.fastagi.allow", cfg.FastAGI.Allow); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if st.rules, err = compileRules("router.rules", cfg.Rules, cfg.Timezone); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	for name, rules := range cfg.RuleSets {
		if st.sets[strings.ToLower(name)], err = compileRules("router.rule_sets."+name, rules, cfg.Timezone); err != nil {
			return nil, fmt.Errorf("router: %w", err)
		}
	}
	st.extraVars = map[string]bool{}
	for _, rs := range append([][]*compiledRule{st.rules}, slices.Collect(maps.Values(st.sets))...) {
		for _, cr := range rs {
			for _, nv := range cr.vars {
				st.extraVars[nv.name] = true
			}
		}
	}
	st.readsGeo = rulesRead(st.rules, "geo")
	for _, rs := range st.sets {
		st.readsGeo = st.readsGeo || rulesRead(rs, "geo")
	}
	st.def = &profile{Profile: Profile{Name: "default"}, rules: st.rules}
	for _, t := range cfg.Flags.VIPTiers {
		st.vipTiers[strings.ToLower(strings.TrimSpace(t))] = true
	}
	for _, p := range cfg.Profiles {
		cp := &profile{Profile: p, exact: map[string]bool{}, rules: st.rules}
		if p.RuleSet != "" {
			cp.rules = st.sets[strings.ToLower(p.RuleSet)]
		}
		for _, d := range p.DNIS {
			if pre, ok := strings.CutSuffix(d, "*"); ok {
				cp.prefixes = append(cp.prefixes, dnisDigits(pre))
			} else {
				cp.exact[dnisDigits(d)] = true
			}
		}
		st.profiles = append(st.profiles, cp)
	}
	return st, nil
}

// profileFor picks the profile named by the call, else the one whose DNIS
// matches, else the default.
func (st *state) profileFor(c *call.Call) *profile {
	if c.Profile != "" {
		for _, p := range st.profiles {
			if p.Name == c.Profile {
				return p
			}
		}
		if c.Profile == st.def.Name {
			return st.def
		}
	}
	if d := dnisDigits(c.DNIS); d != "" {
		for _, p := range st.profiles {
			if p.exact[d] {
				return p
			}
		}
		for _, p := range st.profiles {
			for _, pre := range p.prefixes {
				if strings.HasPrefix(d, pre) {
					return p
				}
			}
		}
	}
	return st.def
}

// hasProfile reports whether name is a configured profile (or "default").
func (st *state) hasProfile(name string) bool {
	if name == st.def.Name {
		return true
	}
	for _, p := range st.profiles {
		if p.Name == name {
			return true
		}
	}
	return false
}

// Decide runs the pipeline for one call: normalise → look up → rules. It
// returns by ctx's deadline (Deps.Budget from c.Received when ctx has none)
// and never panics.
func (r *Router) Decide(ctx context.Context, c call.Call) call.Decision {
	var d call.Decision
	r.decide(ctx, &c, &d, nil)
	return d
}

// decide is Decide with an optional rule trace. It is split so that a call
// held on a slow CRM waits in small frames (decide → lookup): the rules'
// and outputs' locals (conclude) are not on its stack while it waits, and a
// held goroutine's stack can shrink to the minimum. DecideAsync runs the
// same parts (begin, the look-up, conclude, end) without the goroutine.
func (r *Router) decide(ctx context.Context, c *call.Call, d *call.Decision, trace *[]RuleTrace) {
	start := c.Received
	if start.IsZero() {
		start = time.Now()
	}
	defer func() { r.end(c, d, start, recover()) }()

	st, prof, region, number, deadline, lookup := r.begin(ctx, c, d, start)
	var cust *call.Customer
	blocked := false
	if lookup {
		cust, blocked = r.lookup(ctx, c, d, st, prof, &number, deadline)
	}
	r.conclude(ctx, c, d, st, prof, &number, region, cust, blocked, trace)
}

// begin is decide up to the look-up: the profile, the caller's number and
// the decision's first fields. lookup is false when there is no number to
// look up (anonymous, invalid: d.Match is set).
func (r *Router) begin(ctx context.Context, c *call.Call, d *call.Decision, start time.Time) (
	st *state, prof *profile, region string, number callerid.Number, deadline time.Time, lookup bool) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = start.Add(r.deps.Budget)
	}
	st = r.state.Load()
	prof = st.profileFor(c)
	region = prof.Region
	if region == "" {
		region = r.deps.Numbers.RegionFor(c.DNIS)
	}
	pick := r.deps.Numbers.Pick(c.CLI, c.ANI, c.Privacy, region)
	*d = call.Decision{CallID: c.ID, Profile: prof.Name, Privacy: pick.Privacy || c.Privacy}
	switch pick.Status {
	case call.MatchAnonymous:
		d.Match = call.MatchAnonymous
	case call.MatchInvalid:
		d.Match = call.MatchInvalid
		if pick.Err != nil {
			d.Err = call.CleanValue(pick.Err.Error())
		}
	default:
		d.E164, d.Source = pick.Number.E164, pick.Source
		lookup = true
	}
	return st, prof, region, pick.Number, deadline, lookup
}

// end finishes d: a panic p (recovered from any part) becomes an error
// decision; then its elapsed time and the decision metrics.
func (r *Router) end(c *call.Call, d *call.Decision, start time.Time, p any) {
	if p != nil {
		r.log.Error("decide panicked", "call", *c, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		*d = call.Decision{CallID: c.ID, Match: call.MatchError, Err: "internal error"}
		st := r.state.Load()
		r.applyPriority(st, d, st.cfg.Priority.Default)
	}
	d.Elapsed = time.Since(start)
	countDecision(d.Match)
	decideSeconds.Observe(d.Elapsed.Seconds())
}

// lookup asks the CRM (and the shared block list) for d.E164 within the
// deadline, less a sliver left for the rules; it sets d.Match and d.Cached.
func (r *Router) lookup(ctx context.Context, c *call.Call, d *call.Decision, st *state, prof *profile,
	n *callerid.Number, deadline time.Time) (cust *call.Customer, blocked bool) {
	blocked = r.block.contains(d.E164)
	q := lookupQuery(n, prof)
	if r.localFirst(st) {
		// A repeat caller: answered in-process, no context or timer to build.
		if res, ok := r.deps.CRM.LookupLocal(q); ok {
			return r.settle(c, d, res, nil, false), blocked
		}
	}
	lctx, cancel := lookupContext(ctx, deadline)
	defer cancel()
	redisBlocked := r.redisBlocked(lctx, st.cfg.Flags.BlockListRedisKey, d.E164)
	res, err := r.deps.CRM.Lookup(lctx, q)
	timedOut := err != nil && errors.Is(lctx.Err(), context.DeadlineExceeded)
	if b, ok := redisBlocked(); ok && b {
		blocked = true
	}
	return r.settle(c, d, res, err, timedOut), blocked
}

func lookupQuery(n *callerid.Number, prof *profile) crm.Query {
	return crm.Query{
		E164: n.E164, National: n.National,
		Digits: n.Digits, Sources: prof.Sources,
	}
}

// localFirst reports whether the in-process tier may answer alone: not when
// the shared block list must be asked too.
func (r *Router) localFirst(st *state) bool {
	return st.cfg.Flags.BlockListRedisKey == "" || r.deps.Redis == nil
}

// lookupContext is the look-up's share of the deadline: the rules, which
// run after it, keep a sliver.
func lookupContext(ctx context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, lookupDeadline(deadline))
}

// lookupDeadline is the deadline less the rules' sliver.
func lookupDeadline(deadline time.Time) time.Time {
	reserve := min(2*time.Millisecond, time.Until(deadline)/10)
	return deadline.Add(-reserve)
}

// settle sets d.Match and d.Cached from the CRM's answer and returns the
// customer found.
func (r *Router) settle(c *call.Call, d *call.Decision, res crm.Result, err error, timedOut bool) (cust *call.Customer) {
	switch {
	case err == nil && res.Customer != nil:
		d.Match, d.Cached, cust = call.MatchHit, res.Cached, res.Customer
	case err == nil:
		d.Match, d.Cached = call.MatchMiss, res.Cached
	case timedOut:
		d.Match = call.MatchTimeout
	default:
		d.Match = call.MatchError
		d.Err = call.CleanValue(err.Error())
		if n, ok := r.crmWarn.Allow(); ok {
			r.log.Warn("crm look-up failed", "call", *c, "err", err, "suppressed", n)
		}
	}
	return cust
}

// conclude runs the built-in flags and the rules over what the look-up
// found and fills the rest of d; with trace non-nil it records the rules.
func (r *Router) conclude(ctx context.Context, c *call.Call, d *call.Decision, st *state, prof *profile,
	number *callerid.Number, region string, cust *call.Customer, blocked bool, trace *[]RuleTrace) {
	var prep *preparedCustomer
	if cust != nil {
		// Rules, flags and outputs all see the cleaned record.
		prep = r.prepare(cust)
		cust = prep.cust
		d.Customer = cust
	}

	// Built-in flags, then the rules (which see them). Each is added once.
	var flags []string
	if cust != nil && st.vipTiers[strings.ToLower(cust.Tier)] {
		flags = append(flags, "vip")
	}
	if blocked {
		flags = append(flags, "fraud_suspect")
	}
	if cust != nil && regionMismatch(cust, st.cfg.Flags.RegionField, *number) {
		flags = append(flags, "region_mismatch")
	}
	if cust != nil && !blocked && r.aniVerified(c, d, cust, region) {
		flags = append(flags, "ani_verified")
	}

	env := envPool.Get().(*Env)
	defer func() { *env = Env{}; envPool.Put(env) }()
	*env = Env{
		Match: string(d.Match), E164: d.E164, Source: string(d.Source),
		DNIS: c.DNIS, Profile: prof.Name, Flags: flags, ANI: c.ANI, CLI: c.CLI, CLIName: c.CLIName,
		Privacy: d.Privacy, Cached: d.Cached,
	}
	if d.E164 != "" {
		env.CountryCode, env.Region, env.NumberType = number.CountryCode, number.Region, number.Type
		if st.readsGeo {
			env.Geo = r.deps.Numbers.Geo(*number)
		}
	}
	if prep != nil {
		env.Customer, env.Record = prep.env, prep.record
	} else {
		env.Customer, env.Record = customerEnv(nil)
	}
	env.setTime(r.ruleClock().In(st.loc))

	base := st.cfg.Priority.Default
	if cust != nil {
		if p, ok := st.cfg.TierPriority[strings.ToLower(cust.Tier)]; ok {
			base = p
		} else if p, ok := st.cfg.TierPriority[cust.Tier]; ok {
			base = p
		}
	}
	o := evalRules(prof.rules, env, trace != nil, r.logRuleError)
	if o.prioritySet {
		base = o.priority
	}
	r.applyPriority(st, d, base)
	d.Queue, d.Skill = call.CleanValue(o.queue), call.CleanValue(o.skill)
	d.Language = call.CleanValue(o.language)
	if d.Language == "" && d.Customer != nil {
		d.Language = d.Customer.Language
	}
	d.Flags = env.Flags
	d.Rules = o.matched
	if len(o.vars) > 0 {
		d.Extra = make(map[string]string, len(o.vars))
		for k, v := range o.vars {
			d.Extra[k] = call.CleanValue(v)
		}
	}
	switch {
	case d.Customer != nil:
		d.PopURL = d.Customer.URL
	case d.Match == call.MatchMiss && !d.Privacy:
		tpl := prof.NewCustomerURL
		if tpl == "" {
			tpl = st.cfg.NewCustomerURL
		}
		if tpl != "" {
			d.PopURL = call.CleanURL(strings.ReplaceAll(tpl, "{e164}", url.QueryEscape(d.E164)))
		}
	}
	if trace != nil {
		*trace = o.trace
	}
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.Debug("decided", "call", *c, "match", d.Match, "priority", d.Priority, "queue", d.Queue, "rules", d.Rules)
	}
}

// logRuleError logs a rule's first run-time error (per load); the rest are
// counted in callpop_router_rule_errors_total.
func (r *Router) logRuleError(rule, key string, err error) {
	r.log.Warn("rule failed at run time; skipped (further errors of this rule are only counted)",
		"rule", rule, "key", key, "err", firstLine(err.Error()))
}

// applyPriority clamps p and fills the scaled priority fields.
func (r *Router) applyPriority(st *state, d *call.Decision, p int) {
	pc := st.cfg.Priority
	p = max(pc.Min, min(pc.Max, p))
	d.Priority = p
	d.QueuePrio = p * pc.QueuePrioScale
	d.BaseScore = p * pc.CCBaseScoreScale
}

// redisBlocked starts the shared block-list check; the returned function
// waits for it until ctx ends (ok=false when it did not answer in time).
func (r *Router) redisBlocked(ctx context.Context, key, e164 string) func() (bool, bool) {
	if key == "" || r.deps.Redis == nil {
		return func() (bool, bool) { return false, false }
	}
	ch := make(chan [2]bool, 1)
	r.checkBlocked(ctx, key, e164, func(b, ok bool) { ch <- [2]bool{b, ok} })
	return func() (bool, bool) {
		v := <-ch
		return v[0], v[1]
	}
}

// checkBlocked asks the shared block list whether e164 is on it and calls
// done exactly once: with the answer, or ok=false when ctx ends first (or
// Redis fails). done must not block.
func (r *Router) checkBlocked(ctx context.Context, key, e164 string, done func(blocked, ok bool)) {
	var claimed atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		if claimed.CompareAndSwap(false, true) {
			done(false, false)
		}
	})
	go func() { // ends when the Redis call returns; go-redis honours ctx
		ok, err := r.deps.Redis.SIsMember(ctx, key, e164).Result()
		if err != nil {
			blockListErrors.WithLabelValues("redis").Inc()
			if ctx.Err() == nil { // a deadline is the budget's doing, not Redis's: counted only
				if n, ok := r.redisWarn.Allow(); ok {
					r.log.Warn("block-list check in Redis failed", "err", err, "suppressed", n)
				}
			}
			ok = false
		}
		if claimed.CompareAndSwap(false, true) {
			stop()
			done(ok, true)
		}
	}()
}

// sanitizeCustomer copies a CRM record with every text field cleaned, so the
// decision (and everything built from it: JSON, AGI, text/plain) is safe.
func sanitizeCustomer(c *call.Customer) *call.Customer {
	out := &call.Customer{
		ID: call.CleanValue(c.ID), Name: call.CleanValue(c.Name), Tier: call.CleanValue(c.Tier),
		Language: call.CleanValue(c.Language), URL: call.CleanURL(c.URL),
	}
	for _, p := range c.Phones {
		out.Phones = append(out.Phones, call.CleanToken(p))
	}
	if len(c.Extra) > 0 {
		out.Extra = make(map[string]any, len(c.Extra))
		for k, v := range c.Extra {
			if s, ok := v.(string); ok {
				v = call.CleanValue(s)
			}
			out.Extra[call.CleanToken(k)] = v
		}
	}
	return out
}

// regionMismatch reports whether the number's country differs from the
// customer's usual one (field holding "NL" or a country code "31"/"+31").
func regionMismatch(c *call.Customer, field string, n callerid.Number) bool {
	if field == "" || n.E164 == "" {
		return false
	}
	v, ok := c.Extra[field]
	if !ok || v == nil {
		return false
	}
	var usual string
	if sv, ok := v.(string); ok {
		usual = strings.TrimSpace(sv)
	} else {
		usual = strings.TrimSpace(fmt.Sprint(v))
	}
	if usual == "" {
		return false
	}
	if isRegion(usual) {
		return n.Region != "" && !strings.EqualFold(usual, n.Region)
	}
	cc := strings.TrimPrefix(usual, "+")
	if cc != "" && dnisDigits(cc) == cc && n.CountryCode != 0 {
		return cc != strconv.Itoa(n.CountryCode)
	}
	return false
}

// aniVerified: see docs/dialplan-routing.md "ani_verified". The ANI parses to
// a valid number registered to the matched customer (one of its phones, or
// the number the CRM matched it by when the source lists none), the call is
// not presentation-restricted, and the CLI is empty or the same number. It is
// one factor of verification, never proof of identity.
func (r *Router) aniVerified(c *call.Call, d *call.Decision, cust *call.Customer, region string) bool {
	if d.Match != call.MatchHit || d.Privacy || strings.TrimSpace(c.ANI) == "" {
		return false
	}
	if r.deps.Numbers.Anonymous(c.ANI) {
		return false
	}
	ani, err := r.deps.Numbers.Parse(c.ANI, region)
	if err != nil {
		return false
	}
	if strings.TrimSpace(c.CLI) != "" {
		cli, err := r.deps.Numbers.Parse(c.CLI, region)
		if err != nil || cli.E164 != ani.E164 {
			return false
		}
	}
	if len(cust.Phones) == 0 {
		return ani.E164 == d.E164
	}
	for _, p := range cust.Phones {
		if p == ani.E164 {
			return true
		}
		if n, err := r.deps.Numbers.Parse(p, region); err == nil && n.E164 == ani.E164 {
			return true
		}
	}
	return false
}
