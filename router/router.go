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

	contactPops atomic.Pointer[ContactPops] // pops a contact to its agent (POST /v1/contacts); nil = nobody
}

// SetEndpointDecider makes /v1/route, /v1/lookup and FastAGI decide through
// d — the wiring passes the popper's softphone decoration around this router,
// so a dialplan asking directly gets the same caller name and info URL as a
// channel the adapter enriched. Call it before serving.
func (r *Router) SetEndpointDecider(d call.Decider) {
	r.endpoint.Store(&d)
}

// endpointDecide decides for the HTTP and FastAGI endpoints, by the call's
// answer deadline (answerBy) unless ctx has an earlier one.
func (r *Router) endpointDecide(ctx context.Context, c call.Call) call.Decision {
	ctx, cancel := context.WithDeadline(ctx, r.answerBy(c))
	defer cancel()
	if d := r.endpoint.Load(); d != nil && *d != nil {
		return (*d).Decide(ctx, c)
	}
	return r.Decide(ctx, c)
}

// answerBy is when a dialplan's call must have callpop's answer in hand:
// received (real monotonic clock; now when unset) plus call.budget, less
// router.answer_reserve for the answer's way back to the PBX.
func (r *Router) answerBy(c call.Call) time.Time {
	start := c.Received
	if start.IsZero() {
		start = time.Now()
	}
	return start.Add(r.deps.Budget - r.state.Load().cfg.AnswerReserve)
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
	dnis     callerid.DNISMatcher // profiles[i].DNIS, matched to an index of profiles
	def      *profile             // no profile matched

	fastagiAllow netallow.List
	vipTiers     map[string]bool
	extraVars    map[string]bool // names rules may set as CALLPOP_<NAME>
	readsGeo     bool            // a rule reads geo: look it up (the geocoding data is loaded on first use)
}

type profile struct {
	Profile
	rules []*compiledRule
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
	lists := make([][]string, len(cfg.Profiles))
	for i, p := range cfg.Profiles {
		lists[i] = p.DNIS
		cp := &profile{Profile: p, rules: st.rules}
		if p.RuleSet != "" {
			cp.rules = st.sets[strings.ToLower(p.RuleSet)]
		}
		st.profiles = append(st.profiles, cp)
	}
	st.dnis = callerid.NewDNISMatcher(lists)
	return st, nil
}

// profileFor picks the profile named by the call, else the one whose DNIS
// matches (callerid.DNISMatcher, as numbers.profiles: an exact entry of any
// profile before a prefix, the longest prefix before a shorter one, the
// earlier profile on a tie), else the default.
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
	if i := st.dnis.Match(c.DNIS); i >= 0 {
		return st.profiles[i]
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
// and never panics. It is DecideAsync, waited for.
func (r *Router) Decide(ctx context.Context, c call.Call) call.Decision {
	return r.decideWait(ctx, c, nil)
}

// decideWait is Decide with an optional rule trace (Explain): the
// asynchronous core, waited for. The waiting goroutine holds only this
// frame; the call's state is in the core's held struct.
func (r *Router) decideWait(ctx context.Context, c call.Call, trace *[]RuleTrace) call.Decision {
	w := decisionWaits.Get().(*decisionWait)
	defer decisionWaits.Put(w)
	r.decideAsync(ctx, c, trace, w.done)
	return <-w.ch
}

// decisionWait is what a blocking Decide waits on; pooled, so a repeat
// caller's wait allocates nothing. The core calls its done exactly once, and
// decideWait reads that before the wait goes back to the pool.
type decisionWait struct {
	ch   chan call.Decision
	done func(call.Decision)
}

var decisionWaits = sync.Pool{New: func() any {
	w := &decisionWait{ch: make(chan call.Decision, 1)}
	w.done = func(d call.Decision) { w.ch <- d }
	return w
}}

// identify is the decision up to the look-up: the profile, the caller's
// number and the decision's first fields. lookup is false when there is no
// number to look up (anonymous, invalid: p.d.Match is set). deadline is the
// call's: ctx's, else p.start plus the budget.
func (r *Router) identify(ctx context.Context, p *pending) (deadline time.Time, lookup bool) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = p.start.Add(r.deps.Budget)
	}
	p.st = r.state.Load()
	p.prof = p.st.profileFor(&p.c)
	p.region = p.prof.Region
	if p.region == "" {
		p.region = r.deps.Numbers.RegionFor(p.c.DNIS)
	}
	pick := r.deps.Numbers.Pick(p.c.CLI, p.c.ANI, p.c.Privacy, p.region)
	p.number = pick.Number
	p.d = call.Decision{CallID: p.c.ID, Profile: p.prof.Name, Privacy: pick.Privacy || p.c.Privacy}
	if pick.Status == call.MatchAnonymous && slices.Contains(call.ContactChannels, p.c.Channel) {
		// A chat or a mail without a number did not withhold one.
		p.d.Privacy = p.c.Privacy
	}
	if p.c.Email != "" {
		// An address that is not one is not looked up (the endpoints refuse
		// it with a 400 before it gets here).
		p.email, _ = crm.NormalizeEmail(p.c.Email)
	}
	switch pick.Status {
	case call.MatchAnonymous:
		p.d.Match = call.MatchAnonymous
	case call.MatchInvalid:
		p.d.Match = call.MatchInvalid
		if pick.Err != nil {
			p.d.Err = call.CleanValue(pick.Err.Error())
		}
	default:
		p.d.E164, p.d.Source = pick.Number.E164, pick.Source
		lookup = true
	}
	return deadline, lookup
}

// stamp ends p.d: a panic x (recovered from any step) becomes an error
// decision; then its elapsed time and the decision metrics (once a call).
func (r *Router) stamp(p *pending, x any) {
	if x != nil {
		r.log.Error("decide panicked", "call", p.c, "panic", fmt.Sprint(x), "stack", string(debug.Stack()))
		p.d = call.Decision{CallID: p.c.ID, Match: call.MatchError, Err: "internal error"}
		st := r.state.Load()
		r.applyPriority(st, &p.d, st.cfg.Priority.Default)
	}
	p.d.Elapsed = time.Since(p.start)
	countDecision(p.d.Match)
	countChannel(call.ChannelOf(p.c))
	decideSeconds.Observe(p.d.Elapsed.Seconds())
}

func lookupQuery(n *callerid.Number, prof *profile) crm.Query {
	return crm.Query{
		E164: n.E164, National: n.National,
		Digits: n.Digits, Sources: prof.Sources,
	}
}

// wantEmail reports whether p is to be looked up by its e-mail address
// now: it has a valid one, and no number to look up (anonymous, invalid)
// or its number missed. A look-up by e-mail happens once.
func wantEmail(p *pending, numberLooked bool) bool {
	if p.email == "" || p.byEmail {
		return false
	}
	return !numberLooked || p.d.Match == call.MatchMiss
}

// emailQuery starts p's look-up by e-mail: the profile's sources (those of
// them that can look up by e-mail).
func emailQuery(p *pending) crm.Query {
	p.byEmail = true
	return crm.Query{Email: p.email, Sources: p.prof.Sources}
}

// takeEmailAnswer is takeAnswer for the look-up by e-mail: a customer found
// makes the source email; so does any outcome of a contact without a number.
func (r *Router) takeEmailAnswer(p *pending, res crm.Result, err error, timedOut bool) {
	p.d.Err = "" // an invalid number's reason no longer says why the match is what it is
	r.takeAnswer(p, res, err, timedOut)
	if p.d.Match != call.MatchMiss || p.d.E164 == "" {
		p.d.Source = call.SourceEmail
	}
}

// localFirst reports whether the in-process tier may answer alone: not when
// the shared block list must be asked too.
func (r *Router) localFirst(st *state) bool {
	return st.cfg.Flags.BlockListRedisKey == "" || r.deps.Redis == nil
}

// lookupDeadline is the look-up's share of the deadline: the rules, which
// run after it, keep a sliver.
func lookupDeadline(deadline time.Time) time.Time {
	reserve := min(2*time.Millisecond, time.Until(deadline)/10)
	return deadline.Add(-reserve)
}

// takeAnswer sets p.d.Match and p.d.Cached, and p.cust, from the CRM's answer.
func (r *Router) takeAnswer(p *pending, res crm.Result, err error, timedOut bool) {
	switch {
	case err == nil && len(res.Candidates) > 1:
		p.d.Match, p.d.Cached, p.cands = call.MatchMultiple, res.Cached, res.Candidates
		p.cust = bestCandidate(p.st, res.Candidates)
	case err == nil && res.Customer != nil:
		p.d.Match, p.d.Cached, p.cust = call.MatchHit, res.Cached, res.Customer
	case err == nil:
		p.d.Match, p.d.Cached = call.MatchMiss, res.Cached
	case timedOut:
		p.d.Match = call.MatchTimeout
	default:
		p.d.Match = call.MatchError
		p.d.Err = call.CleanValue(err.Error())
		if n, ok := r.crmWarn.Allow(); ok {
			r.log.Warn("crm look-up failed", "call", p.c, "err", err, "suppressed", n)
		}
	}
}

// applyRules runs the built-in flags and the rules over what the look-up
// found and fills the rest of p.d; with p.trace set it records the rules.
func (r *Router) applyRules(ctx context.Context, p *pending) {
	var prep *preparedCustomer
	raw := p.cust
	if p.cust != nil {
		// Rules, flags and outputs all see the cleaned record.
		prep = r.prepare(p.cust)
		p.cust = prep.cust
		p.d.Customer = p.cust
	}
	if len(p.cands) > 1 && prep != nil {
		p.d.Candidates = candidates(raw, prep.cust, p.cands, r.prepare)
	}
	env := envPool.Get().(*Env)
	defer func() { *env = Env{}; envPool.Put(env) }()
	r.fillEnv(env, p, prep)
	o := evalRules(p.prof.rules, env, p.trace != nil, r.logRuleError)
	r.setOutputs(p, o, env.Flags)
	if p.trace != nil {
		*p.trace = o.trace
	}
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.Debug("decided", "call", p.c, "match", p.d.Match, "priority", p.d.Priority, "queue", p.d.Queue, "rules", p.d.Rules)
	}
}

// builtinFlags are the flags callpop sets before the rules run (which see
// them), each once.
func (r *Router) builtinFlags(p *pending) []string {
	var flags []string
	cust := p.cust
	if cust != nil && p.st.vipTiers[strings.ToLower(cust.Tier)] {
		flags = append(flags, "vip")
	}
	if p.blocked {
		flags = append(flags, "fraud_suspect")
	}
	if cust != nil && regionMismatch(cust, p.st.cfg.Flags.RegionField, p.number) {
		flags = append(flags, "region_mismatch")
	}
	if cust != nil && !p.blocked && r.aniVerified(&p.c, &p.d, cust, p.region) {
		flags = append(flags, "ani_verified")
	}
	return flags
}

// fillEnv sets what the rules see of p (prep: its prepared customer, nil on
// no hit). The time fields read ruleClock, in router.timezone.
func (r *Router) fillEnv(env *Env, p *pending, prep *preparedCustomer) {
	d := &p.d
	*env = Env{
		Match: string(d.Match), E164: d.E164, Source: string(d.Source),
		DNIS: p.c.DNIS, Profile: p.prof.Name, Flags: r.builtinFlags(p), ANI: p.c.ANI, CLI: p.c.CLI, CLIName: p.c.CLIName,
		Privacy: d.Privacy, Cached: d.Cached, Channel: call.ChannelOf(p.c),
	}
	if d.E164 != "" {
		env.CountryCode, env.Region, env.NumberType = p.number.CountryCode, p.number.Region, p.number.Type
		if p.st.readsGeo {
			env.Geo = r.deps.Numbers.Geo(p.number)
		}
	}
	if len(d.Candidates) > 0 {
		env.Candidates = make([]CandidateEnv, len(d.Candidates))
		for i, c := range d.Candidates {
			env.Candidates[i] = CandidateEnv(c)
		}
	}
	if prep != nil {
		env.Customer, env.Record = prep.env, prep.record
	} else {
		env.Customer, env.Record = customerEnv(nil)
	}
	env.setTime(r.ruleClock().In(p.st.loc))
}

// setOutputs fills p.d from the rules' outcome o and the flags they ended with.
func (r *Router) setOutputs(p *pending, o outcome, flags []string) {
	d := &p.d
	base := tierPriority(p.st, p.cust)
	if o.prioritySet {
		base = o.priority
	}
	r.applyPriority(p.st, d, base)
	d.Queue, d.Skill = call.CleanValue(o.queue), call.CleanValue(o.skill)
	d.Language = call.CleanValue(o.language)
	if d.Language == "" && d.Customer != nil {
		d.Language = d.Customer.Language
	}
	d.Flags = flags
	d.Rules = o.matched
	if len(o.vars) > 0 {
		d.Extra = make(map[string]string, len(o.vars))
		for k, v := range o.vars {
			d.Extra[k] = call.CleanValue(v)
		}
	}
	d.PopURL = popURL(p)
}

// tierPriority is the priority before the rules: router.tier_priority for
// the customer's tier, else router.priority.default.
func tierPriority(st *state, cust *call.Customer) int {
	if cust == nil {
		return st.cfg.Priority.Default
	}
	if p, ok := st.cfg.TierPriority[strings.ToLower(cust.Tier)]; ok {
		return p
	}
	if p, ok := st.cfg.TierPriority[cust.Tier]; ok {
		return p
	}
	return st.cfg.Priority.Default
}

// bestCandidate is the customer a multiple match decides for: the highest
// tier priority (router.tier_priority), then the most recent (recency),
// then the source's order.
func bestCandidate(st *state, cands []*call.Customer) *call.Customer {
	best, bestPrio, bestAt := cands[0], tierPriority(st, cands[0]), recency(cands[0])
	for _, c := range cands[1:] {
		prio, at := tierPriority(st, c), recency(c)
		if prio > bestPrio || (prio == bestPrio && at.After(bestAt)) {
			best, bestPrio, bestAt = c, prio, at
		}
	}
	return best
}

// recencyFields are the customer fields that date a record, besides its
// lists' items' "at".
var recencyFields = [...]string{"last_contact", "last_seen", "updated_at", "updated", "last_interaction"}

// recency is when a customer was last active, as far as the record says:
// the newest of recencyFields and of its list items' "at" (RFC 3339, or a
// date); zero when nothing dates it.
func recency(c *call.Customer) time.Time {
	var newest time.Time
	take := func(v any) {
		s, ok := v.(string)
		if !ok {
			return
		}
		for _, layout := range [...]string{time.RFC3339Nano, "2006-01-02 15:04:05", time.DateOnly} {
			if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
				if t.After(newest) {
					newest = t
				}
				return
			}
		}
	}
	for _, f := range recencyFields {
		take(c.Extra[f])
	}
	for _, items := range c.Lists {
		for _, it := range items {
			take(it["at"])
		}
	}
	return newest
}

// candidates lists a multiple match for the decision: the best (raw, as
// the CRM gave it; clean, cleaned) first, then the others in the source's
// order, each cleaned, at most call.MaxCandidates.
func candidates(raw, clean *call.Customer, cands []*call.Customer, prepare func(*call.Customer) *preparedCustomer) []call.Candidate {
	out := make([]call.Candidate, 0, min(len(cands), call.MaxCandidates))
	add := func(c *call.Customer) {
		if len(out) < call.MaxCandidates {
			out = append(out, call.Candidate{ID: c.ID, Name: c.Name, Tier: c.Tier, URL: c.URL})
		}
	}
	add(clean)
	for _, c := range cands {
		if c != raw {
			add(prepare(c).cust)
		}
	}
	return out
}

// popURL is the page an agent opens: the customer's, or for a caller the
// CRM does not know (and who did not ask for privacy) the profile's or the
// router's new-customer URL.
func popURL(p *pending) string {
	d := &p.d
	switch {
	case d.Customer != nil:
		return d.Customer.URL
	case d.Match == call.MatchMiss && !d.Privacy:
		tpl := p.prof.NewCustomerURL
		if tpl == "" {
			tpl = p.st.cfg.NewCustomerURL
		}
		if tpl != "" {
			return call.CleanURL(strings.NewReplacer("{e164}", url.QueryEscape(d.E164),
				"{network_name}", url.QueryEscape(call.NetworkName(p.c.CLIName))).Replace(tpl))
		}
	}
	return ""
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
	if len(c.Lists) > 0 {
		out.Lists = make(map[string][]map[string]any, len(c.Lists))
		for name, items := range c.Lists {
			clean := make([]map[string]any, len(items))
			for i, it := range items {
				ci := make(map[string]any, len(it))
				for k, v := range it {
					if s, ok := v.(string); ok {
						if k == "url" || strings.HasSuffix(k, "_url") {
							v = call.CleanURL(s)
						} else {
							v = call.CleanValue(s)
						}
					}
					ci[call.CleanToken(k)] = v
				}
				clean[i] = ci
			}
			out.Lists[call.CleanToken(name)] = clean
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
	if cc != "" && callerid.Digits(cc) == cc && n.CountryCode != 0 {
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
