package popper

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/loglimit"
)

// Deps is what main hands the popper.
type Deps struct {
	Redis  redis.UniversalClient // nil: pops stay in this instance (in-process hub)
	Logger *slog.Logger          // nil: slog.Default()
}

// Popper correlates the adapters' reports into pops and delivers them to
// the agents' streams, the webhooks and (through Redis) the other instances.
// It satisfies call.LegSink; its methods never block.
type Popper struct {
	cfg    Config
	log    *slog.Logger
	secret []byte
	rdb    redis.UniversalClient

	in    chan report
	hub   *hub
	hooks []*webhook
	// actions by name, the slots bounding those under way, and the agents'
	// picks among candidates.
	actions     map[string]*action
	actionSlots chan struct{}
	choices     choices
	pubQ        chan envelope
	corr        *correlator
	contacts    contacts // offered contacts kept in this instance (POST /v1/contacts)

	groups *groupSubs
	mode   atomic.Pointer[redisFeatures] // nil until detected
	// forcePlain makes the popper use PUBLISH/SUBSCRIBE even on Redis ≥ 7
	// (tests and the benchmark's baseline).
	forcePlain bool
	stats      popStats
	// Redis failures repeat per pop and per group: a line a second each.
	publishWarn, subscribeWarn loglimit.Limiter

	runMu   sync.Mutex
	running bool
	ready   atomic.Bool
}

// popStats counts this instance's traffic through Redis (the Prometheus
// counters add up every Popper of the process).
type popStats struct {
	published atomic.Int64 // pops this instance published
	delivered atomic.Int64 // pops received for an agent with a stream here
	notOurs   atomic.Int64 // pops received for an agent with no stream here
}

// report is one adapter report waiting for the correlator.
type report struct {
	enriched *call.Enriched
	leg      *call.LegEvent
	end      *call.CallEnd
	received time.Time
}

// envelope carries a pop between instances.
type envelope struct {
	Pop      Pop   `json:"pop"`
	Received int64 `json:"received"` // unix ns of the adapter's report, for the delivery histogram
}

var _ call.LegSink = (*Popper)(nil)

// New checks cfg and builds a popper; Run starts it.
func New(cfg Config, deps Deps) (*Popper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "popper")
	secret, err := cfg.ResolveTokenSecret()
	if err != nil {
		return nil, err
	}
	if secret == nil {
		log.Warn("no popper.token_secret: agent panel and streams are disabled")
	}
	p := &Popper{
		cfg:    cfg,
		log:    log,
		secret: secret,
		rdb:    deps.Redis,
		in:     make(chan report, cfg.Queue),
		hub:    newHub(cfg.Recent),
	}
	for i, w := range cfg.Webhooks {
		h, err := newWebhook(i, w, log)
		if err != nil {
			return nil, err
		}
		p.hooks = append(p.hooks, h)
	}
	p.actions = make(map[string]*action, len(cfg.Actions))
	p.actionSlots = make(chan struct{}, maxActionsInFlight)
	for i, a := range cfg.Actions {
		act, err := newAction(i, a, cfg.ActionHosts)
		if err != nil {
			return nil, err
		}
		p.actions[a.Name] = act
	}
	if p.rdb != nil {
		p.pubQ = make(chan envelope, cfg.Queue)
	}
	p.groups = newGroupSubs(p)
	p.corr = newCorrelator(cfg, nil)
	return p, nil
}

// CallEnriched reports an enriched call; it never blocks.
func (p *Popper) CallEnriched(e call.Enriched) {
	eventsTotal.WithLabelValues("enriched").Inc()
	p.offer(report{enriched: &e, received: time.Now()})
}

// AgentLeg reports a step of an agent leg; it never blocks.
func (p *Popper) AgentLeg(e call.LegEvent) {
	eventsTotal.WithLabelValues("leg").Inc()
	p.offer(report{leg: &e, received: time.Now()})
}

// CallEnded reports the caller gone; it never blocks.
func (p *Popper) CallEnded(e call.CallEnd) {
	eventsTotal.WithLabelValues("end").Inc()
	p.offer(report{end: &e, received: time.Now()})
}

func (p *Popper) offer(r report) {
	select {
	case p.in <- r:
	default:
		eventsDroppedTotal.Inc()
	}
}

// Run owns the correlator, the webhook workers and the Redis Pub/Sub
// goroutines until ctx ends; all of them have ended when it returns.
func (p *Popper) Run(ctx context.Context) error {
	p.runMu.Lock()
	if p.running {
		p.runMu.Unlock()
		return fmt.Errorf("popper: already running")
	}
	p.running = true
	p.runMu.Unlock()
	defer func() {
		p.runMu.Lock()
		p.running = false
		p.runMu.Unlock()
	}()

	var wg sync.WaitGroup
	for _, h := range p.hooks {
		wg.Go(func() { h.run(ctx) })
	}
	if p.rdb != nil {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := p.redisMode(dctx); err != nil && ctx.Err() == nil {
			p.log.Warn("could not ask Redis for its version yet; asking again with the first pop or stream", "err", err)
		}
		cancel()
		wg.Go(func() { p.groups.run(ctx) })
		wg.Go(func() { p.publish(ctx) })
	}
	p.ready.Store(true)
	defer p.ready.Store(false)
	p.correlate(ctx)
	wg.Wait()
	return nil
}

// Ready reports whether Run is delivering pops (group subscriptions are
// made with the streams that need them).
func (p *Popper) Ready() (bool, string) {
	if !p.ready.Load() {
		return false, "popper not running"
	}
	return true, ""
}

// correlate is the single goroutine that owns the correlator.
func (p *Popper) correlate(ctx context.Context) {
	var received time.Time
	p.corr.emit = func(pop Pop) { p.dispatch(pop, received) }
	sweep := time.NewTicker(30 * time.Second)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-sweep.C:
			p.corr.Sweep(now)
			p.hub.Sweep(now)
			p.contacts.Sweep(now)
		case r := <-p.in:
			received = r.received
			p.apply(r)
		}
	}
}

// apply feeds one report to the correlator; a panic is logged, not fatal.
func (p *Popper) apply(r report) {
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("correlator panicked", "panic", fmt.Sprint(v))
		}
	}()
	now := time.Now()
	switch {
	case r.enriched != nil:
		p.corr.Enriched(*r.enriched, now)
	case r.leg != nil:
		p.corr.Leg(*r.leg, now)
	case r.end != nil:
		p.corr.End(*r.end, now)
	}
}

// dispatch sends one pop to the webhooks and to the agents (through Redis
// when configured, so every instance's streams get it).
func (p *Popper) dispatch(pop Pop, received time.Time) {
	popsTotal.WithLabelValues(pop.State).Inc()
	for _, h := range p.hooks {
		h.Offer(pop)
	}
	if p.pubQ != nil {
		select {
		case p.pubQ <- envelope{Pop: pop, Received: received.UnixNano()}:
			return
		default:
			pubsubErrorsTotal.WithLabelValues("queue_full").Inc()
		}
	}
	p.deliverLocal(pop, received)
}

// deliverLocal hands pop to this instance's streams; it reports whether
// the agent has one here.
func (p *Popper) deliverLocal(pop Pop, received time.Time) bool {
	ours := p.hub.Deliver(pop)
	if ours && !received.IsZero() {
		deliverSeconds.Observe(time.Since(received).Seconds())
	}
	return ours
}

// publish sends pops to the other instances (and this one) over Redis. A
// pop whose publish fails is delivered here at once and published again,
// in order within its group, when Redis takes it (at most popper.queue wait).
func (p *Popper) publish(ctx context.Context) {
	pending := make(map[int][]envelope)
	waiting := 0
	retry := time.NewTicker(250 * time.Millisecond)
	defer retry.Stop()
	hold := func(g int, env envelope) {
		if waiting >= p.cfg.Queue {
			pubsubErrorsTotal.WithLabelValues("retry_full").Inc()
			return
		}
		pending[g] = append(pending[g], env)
		waiting++
	}
	for {
		select {
		case <-ctx.Done():
			return
		case env := <-p.pubQ:
			g := agentGroup(env.Pop.Agent, p.cfg.ChannelGroups)
			if len(pending[g]) > 0 {
				p.deliverLocal(env.Pop, time.Unix(0, env.Received))
				hold(g, env)
				continue
			}
			if err := p.publishOne(ctx, g, env); err != nil {
				pubsubErrorsTotal.WithLabelValues("publish").Inc()
				p.publishWarn.Warn(p.log, "publish failed; delivering locally, publishing again later", "group", g, "err", err)
				p.deliverLocal(env.Pop, time.Unix(0, env.Received))
				hold(g, env)
			}
		case <-retry.C:
			failed := 0
			for g, q := range pending {
				for len(q) > 0 && failed < 4 {
					if err := p.publishOne(ctx, g, q[0]); err != nil {
						failed++
						break
					}
					q = q[1:]
					waiting--
				}
				if len(q) == 0 {
					delete(pending, g)
				} else {
					pending[g] = q
				}
			}
		}
	}
}

// publishOne appends env to its group's log and publishes it, in one script.
func (p *Popper) publishOne(ctx context.Context, g int, env envelope) error {
	b, err := json.Marshal(env)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	mode, err := p.redisMode(pctx)
	if err != nil {
		return err
	}
	op, minid := "p", "0"
	if mode.sharded {
		op = "s"
	}
	if mode.minID {
		minid = "1"
	}
	ttl := max(p.cfg.CallTTL.Milliseconds(), 1)
	err = publishScript.Run(pctx, p.rdb, []string{groupLogKey(p.cfg.Channel, g)},
		groupChannel(p.cfg.Channel, g), b, ttl, groupLogMax, op, minid).Err()
	if err == nil {
		p.stats.published.Add(1)
		popsPublishedTotal.Inc()
	}
	return err
}

// redisFeatures is what the Redis in use can do, detected once.
type redisFeatures struct {
	version string
	sharded bool // SPUBLISH/SSUBSCRIBE (Redis ≥ 7)
	minID   bool // XTRIM MINID (Redis ≥ 6.2)
}

// redisMode detects (once it succeeds) whether Redis has sharded Pub/Sub;
// every instance talking to the same Redis decides the same way.
func (p *Popper) redisMode(ctx context.Context) (redisFeatures, error) {
	if f := p.mode.Load(); f != nil {
		return *f, nil
	}
	info, err := p.rdb.Info(ctx, "server").Result()
	if err != nil {
		return redisFeatures{}, err
	}
	f := redisFeatures{version: "unknown"}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			f.version = v
			var major, minor int
			_, _ = fmt.Sscanf(v, "%d.%d", &major, &minor)
			f.sharded = major >= 7
			f.minID = major > 6 || (major == 6 && minor >= 2)
		}
	}
	if p.forcePlain {
		f.sharded = false
	}
	if !p.mode.CompareAndSwap(nil, &f) {
		return *p.mode.Load(), nil
	}
	if f.sharded {
		p.log.Info("pops use sharded Pub/Sub (SPUBLISH/SSUBSCRIBE), one channel per agent group",
			"redis_version", f.version, "channel_groups", p.cfg.ChannelGroups)
	} else {
		p.log.Info("Redis has no sharded Pub/Sub: pops use PUBLISH/SUBSCRIBE, one channel per agent group",
			"redis_version", f.version, "channel_groups", p.cfg.ChannelGroups)
	}
	return f, nil
}
