package ari

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/loglimit"
)

// Adapter connects callpop to one Asterisk over ARI. It owns the event
// WebSocket (with pings), a supervisor that reconnects with backoff and
// jitter and then reconciles waiting channels, and each call's work (a
// goroutine per call, except while an AsyncDecider holds it).
type Adapter struct {
	cfg    Config
	deps   adapters.Deps
	log    *slog.Logger
	rest   *restClient
	wsURL  string
	auth   string
	follow *followState
	m      *metrics // this PBX's series (pbx label)

	dialplan dialplanFollow // calls decided outside Stasis whose channels are followed (follow.go)

	// multi says this connection's Asterisk serves /channels/{id}/variables
	// (asked once per connection, never guessed from a call's 404).
	multi atomic.Bool

	inflight  sync.Map     // channel id → *callRun: calls being handled
	origins   sync.Map     // channel id → *originWait: callbacks waiting for their outcome
	enriching atomic.Int64 // calls being enriched (bounded by max_calls)

	mu       sync.Mutex
	ready    bool
	reason   string
	replaced atomic.Bool

	refusedWarn loglimit.Limiter // refused sessions: a line per refusedLogEvery, with the count since

	calls   sync.WaitGroup // calls being handled (and their variable reads): Run waits for them
	running atomic.Bool

	// recheck asks the connected session for a prompt reconcile: a continue
	// failed (Asterisk overloaded, connections refused), so a channel may be
	// left in Stasis; the next interval would be too late for its caller.
	recheck chan struct{}
}

var _ adapters.Adapter = (*Adapter)(nil)

// New checks cfg and builds an adapter; Run connects it.
func New(cfg Config, deps adapters.Deps) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("adapters/ari: %w", err)
	}
	if deps.Decider == nil {
		return nil, errors.New("adapters/ari: no decider")
	}
	deps = deps.WithDefaults()
	if deps.Budget <= cfg.ApplyReserve+watchdogLead {
		return nil, fmt.Errorf("adapters/ari: pbx.asterisk.apply_reserve: must be below call.budget (%v) less %v", deps.Budget, watchdogLead)
	}
	pass, err := cfg.password()
	if err != nil {
		return nil, fmt.Errorf("adapters/ari: %w", err)
	}
	u, _ := url.Parse(strings.TrimRight(cfg.URL, "/"))
	ws := *u
	if ws.Scheme == "https" {
		ws.Scheme = "wss"
	} else {
		ws.Scheme = "ws"
	}
	ws.Path += "/ari/events"
	ws.RawQuery = url.Values{"app": {cfg.App}, "subscribeAll": {"false"}}.Encode()
	log := deps.Logger.With("component", "adapters/ari", "app", cfg.App)
	m := newMetrics(deps.PBX)
	a := &Adapter{recheck: make(chan struct{}, 1), m: m,
		cfg: cfg, deps: deps, log: log, refusedWarn: loglimit.Limiter{Every: refusedLogEvery},
		rest:   newRESTClient(cfg.URL, cfg.Username, pass, cfg.MaxConnections),
		wsURL:  ws.String(),
		follow: newFollowState(cfg.MaxFollow, cfg.LegTTL, deps.Sink, log, m),
		reason: "not connected yet",
	}
	a.rest.finish = cfg.RequestTimeout
	a.rest.refused = a.sessionRefused
	a.follow.expired = func(chanID string) {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.RequestTimeout)
		defer cancel()
		if err := a.rest.unsubscribe(ctx, cfg.App, chanID); err != nil && !errors.Is(err, ErrGone) {
			a.log.Debug("unsubscribe of an expired call failed", "chan", chanID, "err", err)
		}
	}
	if cfg.Username != "" || pass != "" {
		a.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Username+":"+pass))
	}
	return a, nil
}

// Ready reports whether the event socket is up and reconciled.
func (a *Adapter) Ready() (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready, a.reason
}

func (a *Adapter) setReady(ok bool, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ready, a.reason = ok, reason
	// under the lock: the gauge is never behind Ready, nor left by a
	// concurrent setReady at the other value
	if ok {
		a.m.connected.Set(1)
	} else {
		a.m.connected.Set(0)
	}
}

// Run connects, reconnects and handles calls until ctx ends; then it waits
// for calls in flight (each is continued within its budget).
func (a *Adapter) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("adapters/ari: Run called twice")
	}
	defer a.rest.close()
	defer a.startFollowing(ctx)()
	var sweep sync.WaitGroup
	sweep.Add(1)
	go func() { defer sweep.Done(); a.follow.runSweeper(ctx) }()
	defer sweep.Wait()
	defer a.calls.Wait()

	bo := backoff{min: a.cfg.ReconnectMin, max: a.cfg.ReconnectMax}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if a.replaced.Load() {
			<-ctx.Done() // another connection owns the app: do not fight it
			break
		}
		if attempt > 0 {
			a.m.reconnects.Inc()
		}
		connected, err := a.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if a.replaced.Load() {
			continue
		}
		if connected {
			bo.reset()
		}
		// Idle keep-alive connections may be as dead as the socket was.
		a.rest.close()
		a.setReady(false, fmt.Sprintf("ARI disconnected: %v", err))
		d := bo.next()
		a.log.Warn("ARI event socket lost; reconnecting", "err", err, "in", d)
		if !sleepCtx(ctx, d) {
			break
		}
	}
	a.setReady(false, "stopped")
	return nil
}

// backoff yields reconnect delays: from min, doubling to max, each
// jittered over its upper half so replicas do not reconnect in step.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	d := jitter(b.cur)
	b.cur = min(b.cur*2, b.max)
	return d
}

func (b *backoff) reset() { b.cur = 0 }

// jitter spreads d over [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// session runs one WebSocket connection: dial, reconcile, read until it
// fails. connected says whether the dial succeeded.
func (a *Adapter) session(ctx context.Context) (connected bool, err error) {
	c, err := a.dial(ctx)
	if err != nil {
		a.setReady(false, err.Error())
		return false, err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	defer c.CloseNow()
	a.probeMulti(ctx)

	var wg sync.WaitGroup
	defer wg.Wait()
	errc := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- a.read(sctx, c) }()
	go func() { defer wg.Done(); errc <- a.ping(sctx, c) }()

	// The socket is up, so new StasisStarts arrive; now take over anything
	// left waiting while we were away, then report ready.
	a.reconcileOnConnect(sctx)
	if !a.replaced.Load() {
		a.setReady(true, "")
	}
	wg.Add(1)
	go func() { defer wg.Done(); a.reconcileLoop(sctx) }()
	err = <-errc
	stop()
	c.CloseNow()
	return true, err
}

// dial opens the event WebSocket.
func (a *Adapter) dial(ctx context.Context) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	h := http.Header{}
	if a.auth != "" {
		h.Set("Authorization", a.auth)
	}
	c, resp, err := websocket.Dial(dctx, a.wsURL, &websocket.DialOptions{HTTPHeader: h, HTTPClient: a.rest.ctl})
	if err != nil {
		if resp == nil && closedUnanswered(err) && ctx.Err() == nil {
			a.sessionRefused(http.MethodGet, "/events", err)
		}
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return nil, fmt.Errorf("adapters/ari: connect: 401 (check pbx.asterisk.username/password): %w", err)
		}
		return nil, fmt.Errorf("adapters/ari: connect: %w", err)
	}
	c.SetReadLimit(4 << 20)
	return c, nil
}

// probeMulti asks what this Asterisk serves, which decides how a call's
// variables go out; a restarted (maybe upgraded) Asterisk is asked again.
func (a *Adapter) probeMulti(ctx context.Context) {
	pctx, pcancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	multi, perr := a.rest.multiVars(pctx)
	pcancel()
	a.multi.Store(multi)
	switch {
	case perr != nil:
		a.log.Warn("could not tell whether Asterisk sets several variables per request; setting one per request, CALLPOP_MATCH last", "err", perr)
	case multi:
		a.log.Info("Asterisk sets a call's variables in one request (POST /channels/{id}/variables)")
	default:
		a.log.Info("Asterisk before 20.20/22.10/23.4: one request per variable, CALLPOP_MATCH last")
	}
}

// reconcileOnConnect takes over the channels left waiting in the app, a few
// tries; a connection it cannot reconcile is used anyway.
func (a *Adapter) reconcileOnConnect(ctx context.Context) {
	for try := 0; ; try++ {
		n, err := a.reconcile(ctx)
		if err == nil {
			a.log.Info("ARI connected", "reconciled", n)
			return
		}
		if try == 2 || !sleepCtx(ctx, 50*time.Millisecond) {
			a.log.Warn("reconcile failed; connected anyway", "err", err)
			return
		}
	}
}

// reconcileLoop is a safety net until ctx ends: a channel whose StasisStart
// never reached us (an undecodable event, a bug) is still continued within
// reconcile_interval, and one whose continue failed is looked for again
// within moments (askRecheck), backing off while rechecks keep failing.
func (a *Adapter) reconcileLoop(ctx context.Context) {
	var tick <-chan time.Time
	if a.cfg.ReconcileInterval > 0 {
		t := time.NewTicker(a.cfg.ReconcileInterval)
		defer t.Stop()
		tick = t.C
	}
	delay := recheckDelay
	for {
		rechecking := false
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-a.recheck:
			// Give the failed call's goroutine time to finish, and the
			// PBX a breath.
			rechecking = true
			if !sleepCtx(ctx, delay) {
				return
			}
		}
		n, err := a.reconcile(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			a.log.Warn("reconcile failed", "err", err, "after_failed_continue", rechecking)
		case n > 0:
			a.log.Warn("reconcile found channels nobody handled", "count", n, "after_failed_continue", rechecking)
		}
		if rechecking && err != nil {
			delay = min(2*delay, recheckMaxDelay)
			a.askRecheck()
		} else {
			delay = recheckDelay
		}
	}
}

func (a *Adapter) read(ctx context.Context, c *websocket.Conn) error {
	for {
		typ, raw, err := c.Read(ctx)
		if err != nil {
			return fmt.Errorf("adapters/ari: read: %w", err)
		}
		if typ != websocket.MessageText {
			continue
		}
		a.dispatch(raw, time.Now())
		if a.replaced.Load() {
			c.Close(websocket.StatusNormalClosure, "application replaced")
			return errors.New("adapters/ari: application replaced")
		}
	}
}

// ping notices a half-open socket: a pong later than ping_timeout drops it.
func (a *Adapter) ping(ctx context.Context, c *websocket.Conn) error {
	t := time.NewTicker(a.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, a.cfg.PingTimeout)
		err := c.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.CloseNow()
			return fmt.Errorf("adapters/ari: ping: %w", err)
		}
	}
}

// replacedBy handles ApplicationReplaced: another connection took the app
// name (two instances share pbx.asterisk.app). This one stops receiving calls
// and does not reconnect (that would steal the app back and forth).
func (a *Adapter) replacedBy() {
	if a.replaced.Swap(true) {
		return
	}
	a.m.replaced.Inc()
	reason := fmt.Sprintf("ARI application %q replaced by another connection: each callpop instance needs its own pbx.asterisk.app", a.cfg.App)
	a.setReady(false, reason)
	a.log.Error("ARI APPLICATION REPLACED: this instance no longer receives calls", "reason", reason)
}

// recheckDelay is the pause before a reconcile asked for by a failed
// continue; it doubles up to recheckMaxDelay while those reconciles fail.
const (
	recheckDelay    = 100 * time.Millisecond
	recheckMaxDelay = 2 * time.Second
)

// askRecheck asks for a prompt reconcile (coalesced; never blocks).
func (a *Adapter) askRecheck() {
	select {
	case a.recheck <- struct{}{}:
	default:
	}
}

// reconcile continues every channel waiting in our app that no goroutine
// handles: StasisStarts lost while disconnected, or left by a previous run.
func (a *Adapter) reconcile(ctx context.Context) (int, error) {
	rctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	listed := time.Now()
	list, err := a.rest.channels(rctx)
	if err != nil {
		return 0, err
	}
	byID := make(map[string]restChannel, len(list))
	alive := make(map[string]bool, len(list))
	var waiting []restChannel
	for _, ch := range list {
		byID[ch.ID] = ch
		alive[ch.ID] = true
		if ch.Dialplan.AppName == "Stasis" && stasisApp(ch.Dialplan.AppData) == a.cfg.App {
			waiting = append(waiting, ch)
		}
	}
	if n := a.follow.prune(alive, listed); n > 0 {
		a.log.Info("followed calls ended while disconnected", "count", n)
	}
	// Channels the app holds that GET /channels did not show as ours
	// (e.g. listed a moment before entering Stasis).
	if ids, err := a.rest.appChannels(rctx, a.cfg.App); err == nil {
		for _, id := range ids {
			ch, ok := byID[id]
			if a.follow.following(id) || (ok && ch.Dialplan.AppName != "Stasis") {
				continue
			}
			if ok && stasisApp(ch.Dialplan.AppData) == a.cfg.App {
				continue // already in waiting
			}
			if !ok {
				ch = restChannel{ID: id}
			}
			waiting = append(waiting, ch)
		}
	}
	n := 0
	now := time.Now()
	for _, ch := range waiting {
		sc := stasisChannel{ID: ch.ID, Name: ch.Name, CLI: ch.Caller.Number, CLIName: ch.Caller.Name,
			DNIS: ch.Dialplan.Exten, Args: stasisArgs(ch.Dialplan.AppData)}
		sc.callerVars(ch.ChannelVars)
		if a.startCall(sc, now, true) {
			n++
		}
	}
	a.m.reconciled.Add(float64(n))
	return n, nil
}

// stasisApp returns the app named in Stasis() app data "app,arg1,arg2".
func stasisApp(appData string) string {
	app, _, _ := strings.Cut(appData, ",")
	return strings.TrimSpace(app)
}

func stasisArgs(appData string) []string {
	parts := strings.Split(appData, ",")
	if len(parts) <= 1 {
		return nil
	}
	return parts[1:]
}

// sessionRefused reports a connection Asterisk closed unanswered: counted
// every time, logged at most once per refusedLogEvery with the count since.
func (a *Adapter) sessionRefused(method, path string, err error) {
	a.m.sessionsRefused.Inc()
	n, ok := a.refusedWarn.Allow()
	if !ok {
		return
	}
	perCall, control := PoolSizes(a.cfg.MaxConnections)
	a.log.Error("Asterisk refused HTTP sessions: it closed new connections without answering, as it does beyond http.conf sessionlimit (default 100); raise sessionlimit above pbx.asterisk.max_connections plus every other HTTP client of Asterisk, or lower max_connections",
		"refused", n+1, "request", method+" "+path, "max_connections", a.cfg.MaxConnections, "per_call_pool", perCall, "control_pool", control, "err", err)
}

// refusedLogEvery bounds the refused-session log lines.
const refusedLogEvery = 10 * time.Second

// Budget returns the call budget in use.
func (a *Adapter) Budget() time.Duration { return a.deps.Budget }

// Following reports how many enriched calls are being followed.
func (a *Adapter) Following() int { return a.follow.size() }

// sink returns the pop sink.
func (a *Adapter) sink() call.LegSink { return a.deps.Sink }
