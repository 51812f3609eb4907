package popper

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/call"
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
	pubQ  chan envelope
	corr  *correlator

	runMu   sync.Mutex
	running bool
	ready   atomic.Bool
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
	if p.rdb != nil {
		p.pubQ = make(chan envelope, cfg.Queue)
	}
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
		ready := make(chan struct{})
		wg.Go(func() { p.subscribe(ctx, ready) })
		wg.Go(func() { p.publish(ctx) })
		select {
		case <-ready:
		case <-ctx.Done():
		}
	}
	p.ready.Store(true)
	defer p.ready.Store(false)
	p.correlate(ctx)
	wg.Wait()
	return nil
}

// Ready reports whether Run is delivering pops (with Redis: subscribed).
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

func (p *Popper) deliverLocal(pop Pop, received time.Time) {
	p.hub.Deliver(pop)
	if !received.IsZero() {
		deliverSeconds.Observe(time.Since(received).Seconds())
	}
}

// publish sends pops to the other instances (and this one) over Redis.
func (p *Popper) publish(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case env := <-p.pubQ:
			b, err := json.Marshal(env)
			if err == nil {
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				err = p.rdb.Publish(pctx, p.cfg.Channel, b).Err()
				cancel()
			}
			if err != nil {
				pubsubErrorsTotal.WithLabelValues("publish").Inc()
				p.log.Warn("publish failed; delivering locally", "err", err)
				p.deliverLocal(env.Pop, time.Unix(0, env.Received))
			}
		}
	}
}

// subscribe delivers the pops every instance publishes to this instance's streams.
func (p *Popper) subscribe(ctx context.Context, ready chan<- struct{}) {
	ps := p.rdb.Subscribe(ctx, p.cfg.Channel)
	defer ps.Close()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := ps.Receive(rctx); err != nil && ctx.Err() == nil {
		pubsubErrorsTotal.WithLabelValues("subscribe").Inc()
		p.log.Warn("redis subscribe not confirmed; go-redis keeps retrying", "channel", p.cfg.Channel, "err", err)
	}
	cancel()
	close(ready)
	ch := ps.Channel(redis.WithChannelSize(1024))
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			var env envelope
			if err := json.Unmarshal([]byte(m.Payload), &env); err != nil || env.Pop.Agent == "" {
				pubsubErrorsTotal.WithLabelValues("decode").Inc()
				continue
			}
			var recv time.Time
			if env.Received > 0 {
				recv = time.Unix(0, env.Received)
			}
			p.deliverLocal(env.Pop, recv)
		}
	}
}
