package esl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/esl/eslwire"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/fsvars"
	"github.com/callpop/callpop/internal/loglimit"
	"github.com/callpop/callpop/internal/netallow"
)

var _ adapters.Adapter = (*Adapter)(nil)

// Adapter connects callpop to FreeSWITCH. It satisfies adapters.Adapter.
type Adapter struct {
	cfg      Config
	deps     adapters.Deps
	log      *slog.Logger
	password string
	legs     *legTracker
	m        *metrics // this PBX's series (pbx label)
	slots    chan struct{}
	dropWarn loglimit.Limiter // rule variables left out of uuid_setvar_multi

	mu        sync.Mutex
	cur       *conn         // the event connection, nil while down
	curReady  chan struct{} // closed when cur becomes non-nil
	ln        net.Listener
	lnReady   chan struct{}
	inflight  map[string]struct{}  // inbound calls being handled
	recent    map[string]time.Time // inbound calls released lately (reconcile must not redo them)
	unsure    map[string]time.Time // transfers sent whose outcome was lost with the connection
	lastPrune time.Time
	origs     map[string]*origWait // callbacks being originated, by channel id (originate.go)
	origJobs  map[string]*origWait // the same, by Job-UUID

	listening atomic.Bool
	connected atomic.Bool
	origN     atomic.Int32 // len(origs): events skip the lock while no callback is being placed
}

// New checks cfg and returns an adapter; Run starts it.
func New(cfg Config, deps adapters.Deps) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	deps = deps.WithDefaults()
	if cfg.ApplyReserve >= deps.Budget {
		return nil, fmt.Errorf("pbx.freeswitch.apply_reserve: must be below call.budget (%v)", deps.Budget)
	}
	a := &Adapter{
		cfg: cfg, deps: deps, m: newMetrics(deps.PBX),
		log:      deps.Logger.With("component", "adapters/esl", "mode", cfg.Mode),
		slots:    make(chan struct{}, cfg.MaxCalls),
		curReady: make(chan struct{}),
		lnReady:  make(chan struct{}),
		inflight: map[string]struct{}{},
		recent:   map[string]time.Time{},
		unsure:   map[string]time.Time{},
	}
	a.legs = newLegTracker(deps.Sink, a.log, a.m)
	if cfg.needsSocket() {
		pw, err := cfg.password()
		if err != nil {
			return nil, fmt.Errorf("adapters/esl: %w", err)
		}
		a.password = pw
	}
	return a, nil
}

// Run serves until ctx ends. It returns an error only for a listener that
// cannot work (address in use); FreeSWITCH being down is not one.
func (a *Adapter) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	if a.cfg.Mode == "outbound" {
		inner, err := net.Listen("tcp", a.cfg.Listen)
		if err != nil {
			return fmt.Errorf("adapters/esl: listen %s: %w", a.cfg.Listen, err)
		}
		allow, _ := netallow.Parse("pbx.freeswitch.allow", a.cfg.Allow) // checked by Validate
		ln := netallow.Wrap(inner, func() netallow.List { return allow }, "freeswitch_outbound", a.log)
		a.mu.Lock()
		a.ln = ln
		close(a.lnReady)
		a.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.serveOutbound(ctx, ln); err != nil {
				errc <- err
			}
		}()
	}
	if a.cfg.needsSocket() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.supervise(ctx)
		}()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		cancel()
		wg.Wait()
		return err
	}
	wg.Wait()
	return nil
}

// Addr is the outbound listener's address once Run has started it ("" before).
func (a *Adapter) Addr() string {
	select {
	case <-a.lnReady:
		return a.ln.Addr().String()
	default:
		return ""
	}
}

// Ready reports whether calls can be handled.
func (a *Adapter) Ready() (bool, string) {
	if a.cfg.Mode == "outbound" && !a.listening.Load() {
		return false, "outbound listener not started"
	}
	if a.cfg.Mode == "inbound" && !a.connected.Load() {
		return false, "event socket " + a.cfg.Address + " not connected"
	}
	return true, ""
}

// ---- outbound mode -------------------------------------------------------

func (a *Adapter) serveOutbound(ctx context.Context, ln net.Listener) error {
	a.listening.Store(true)
	defer a.listening.Store(false)
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("adapters/esl: accept: %w", err)
		}
		select {
		case a.slots <- struct{}{}:
		default:
			// overloaded: let the dialplan go on at once. A bare close would
			// leave the call parked for good (see resumeCommand).
			a.m.calls.WithLabelValues("outbound", "overload").Inc()
			_ = nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = nc.Write([]byte(resumeCommand + "\n\n"))
			_ = nc.Close()
			continue
		}
		accepted := time.Now()
		wg.Add(1)
		// The call's slot and its count in wg are given back once, by
		// whoever ends the call: this goroutine, or the continuation that
		// takes over when the decision comes (outboundCall hands off).
		var once sync.Once
		release := func() {
			once.Do(func() {
				<-a.slots
				wg.Done()
			})
		}
		go func() {
			handedOff := false
			defer func() {
				if !handedOff { // else the continuation releases, when the call ends
					release()
				}
			}()
			defer a.recoverPanic()
			handedOff = a.outboundCall(ctx, nc, accepted, release)
		}()
	}
}

func (a *Adapter) recoverPanic() {
	if r := recover(); r != nil {
		a.m.panics.Inc()
		a.log.Error("panic in call handler", "panic", fmt.Sprint(r))
	}
}

// frameHeaders decodes header values of a connect reply.
type frameHeaders struct{ eslwire.Headers }

func (h frameHeaders) Get(name string) string { return eslwire.Decode(h.Headers.Get(name)) }

// outboundCall runs one socket session: connect + resume → decide →
// uuid_setvar_multi (synchronous: +OK means stored) → exit. A watchdog closes
// the socket at the budget's end whatever happens, which (resume sent) also
// lets the dialplan go on.
//
// The budget counts from the accepted connection: the call has been waiting in
// the socket app since then (the connect reply follows within ~0.1 ms).
//
// It reports whether it handed the call off: the continuation then owns the
// call's slot and gives it back when the call ends, so max_calls counts the
// calls waiting for their decision too.
func (a *Adapter) outboundCall(ctx context.Context, nc net.Conn, accepted time.Time, release func()) (handedOff bool) {
	cn := newConn(nc, a.log, a.m)
	cn.start(nil)
	hard := time.AfterFunc(time.Until(accepted.Add(a.deps.Budget)), cn.Close)
	defer func() {
		if !handedOff {
			hard.Stop()
			cn.Close()
		}
	}()
	cctx, cancel := context.WithDeadline(ctx, accepted.Add(a.deps.Budget))
	f, err := cn.connect(cctx)
	cancel()
	if err != nil {
		a.m.calls.WithLabelValues("outbound", "error").Inc()
		a.log.Warn("connect failed", "err", err)
		return
	}
	received := accepted
	c := callFrom(frameHeaders{f.Headers}, received)
	if !validUUID(c.ID) {
		a.m.calls.WithLabelValues("outbound", "error").Inc()
		a.log.Warn("connect reply without a usable Unique-ID")
		xctx, cancel := context.WithTimeout(ctx, a.deps.Budget)
		defer cancel()
		_, _ = cn.command(xctx, "exit", nil, nil)
		return
	}
	if dir := (frameHeaders{f.Headers}).Get("Call-Direction"); dir != "" && dir != "inbound" {
		// the socket app ran on a leg callpop did not receive (an originated or
		// agent leg): nothing to enrich, let it go on at once
		xctx, cancel := context.WithDeadline(ctx, received.Add(a.deps.Budget))
		defer cancel()
		_, _ = cn.command(xctx, "exit", nil, nil)
		a.m.calls.WithLabelValues("outbound", "skipped").Inc()
		return
	}
	// The connect reply (every channel variable) is not needed while the
	// call waits for its decision: keep only what apply reads.
	chanVar := keepChanVars(frameHeaders{f.Headers}.Get)
	f = nil
	// From here the call needs no goroutine of its own while the decision
	// is pending (the socket's reader stays): the continuation owns the
	// socket, the watchdog and the slot.
	handedOff = true
	a.decideThen(ctx, c, received.Add(a.deps.Budget-a.cfg.ApplyReserve), func(d call.Decision) {
		defer release()
		defer cn.Close()
		defer hard.Stop()
		defer a.recoverPanic()
		a.setVarsAndExit(ctx, cn, c, d, chanVar, received)
	})
	return true
}

// decideThen asks for c's decision without holding a goroutine while it is
// pending, and runs then on a goroutine of its own with the first of the
// decision and a timeout decision at deadline (a decider that ignores its
// context does not hold the call).
func (a *Adapter) decideThen(ctx context.Context, c call.Call, deadline time.Time, then func(call.Decision)) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	var once atomic.Bool
	handOnce := func(d call.Decision) { // the first decision goes on; a second is dropped
		if !once.CompareAndSwap(false, true) {
			return
		}
		cancel()
		if d.CallID == "" {
			d.CallID = c.ID
		}
		go then(d) // ends with the call
	}
	timeout := time.AfterFunc(time.Until(deadline), func() { handOnce(call.Decision{Match: call.MatchTimeout}) })
	adapters.DecideAsync(dctx, a.deps.Decider, c, a.log, func(d call.Decision) {
		timeout.Stop()
		handOnce(d)
	})
}

// setVarsAndExit sets an outbound call's variables from its decision
// (synchronous api: +OK means stored) and ends the socket session with exit.
func (a *Adapter) setVarsAndExit(ctx context.Context, cn *conn, c call.Call, d call.Decision, chanVar func(string) string, received time.Time) {
	actx, cancel := context.WithDeadline(ctx, received.Add(a.deps.Budget))
	defer cancel()
	outcome := a.applyAndReport(actx, cn.api, c, d, chanVar)
	if _, err := cn.command(actx, "exit", nil, nil); err != nil && outcome == "released" {
		outcome = "late"
	}
	a.m.calls.WithLabelValues("outbound", outcome).Inc()
	a.m.callSeconds.WithLabelValues("outbound").Observe(time.Since(received).Seconds())
}

// applyAndReport sets the call's variables with run (api or bgapi); once they
// are stored it follows the call's agent legs and reports the call enriched.
// It returns the call's outcome so far: released, or what went wrong.
func (a *Adapter) applyAndReport(ctx context.Context, run func(context.Context, string) (string, error), c call.Call, d call.Decision, chanVar func(string) string) (outcome string) {
	if err := a.apply(ctx, run, c, d, chanVar); err != nil {
		a.log.Info("variables not set", "call", c, "err", err)
		return classify(err)
	}
	a.legs.enriched(c.ID, d.CallID)
	a.deps.Sink.CallEnriched(call.Enriched{CallID: d.CallID, Call: c, Decision: d})
	return "released"
}

func classify(err error) string {
	switch {
	case errors.Is(err, errDead):
		return "dead"
	case errors.Is(err, context.DeadlineExceeded):
		return "late"
	}
	return "error"
}

var errDead = errors.New("adapters/esl: no such channel (caller hung up)")

// apply sets the call's variables with run (api or bgapi).
func (a *Adapter) apply(ctx context.Context, run func(context.Context, string) (string, error), c call.Call, d call.Decision, chanVar func(string) string) error {
	vars, dropped := fsvars.FitExtras(variables(c, d, func(n string) string { return chanVar("variable_" + n) }), fsvars.SetvarMultiMax)
	if dropped > 0 {
		a.m.varsDropped.Add(float64(dropped))
		if n, ok := a.dropWarn.Allow(); ok {
			a.log.Warn("rules set more variables than one uuid_setvar_multi takes; the last extra ones are left out",
				"dropped", dropped, "max", fsvars.SetvarMultiMax, "suppressed", n)
		}
	}
	out, err := run(ctx, setvarMulti(c.ID, vars))
	if err != nil {
		return fmt.Errorf("adapters/esl: uuid_setvar_multi: %w", err)
	}
	if err := replyErr(out); err != nil {
		return err
	}
	if ci, ok := fsvars.CallInfo(d); ok {
		// its `;purpose=info` would split uuid_setvar_multi
		out, err := run(ctx, "uuid_setvar "+c.ID+" "+ci.Name+" "+ci.Value)
		if err != nil {
			return fmt.Errorf("adapters/esl: uuid_setvar %s: %w", ci.Name, err)
		}
		return replyErr(out)
	}
	return nil
}

func replyErr(out string) error {
	if strings.HasPrefix(out, "+OK") {
		return nil
	}
	if strings.Contains(out, "No such channel") {
		return errDead
	}
	return fmt.Errorf("adapters/esl: %s", call.CleanValue(out))
}

func validUUID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-') {
			return false
		}
	}
	return true
}

// ---- event connection (inbound mode, agent legs) ------------------------

// sweepInterval is how often inbound mode looks for calls still parked in
// park_context (besides after every connect).
var sweepInterval = 15 * time.Second

// legMaxAge bounds how long a caller or agent leg whose hang-up was never seen is tracked.
const legMaxAge = 12 * time.Hour

// supervise keeps one event connection up: dial with backoff and jitter,
// authenticate, subscribe, reconcile parked calls, then watch it.
func (a *Adapter) supervise(ctx context.Context) {
	backoff := a.cfg.ReconnectMin
	for ctx.Err() == nil {
		cn, err := a.dial(ctx)
		if err != nil {
			var wait time.Duration
			wait, backoff = nextBackoff(backoff, a.cfg.ReconnectMax, rand.Int64N)
			a.log.Warn("event socket unavailable", "address", a.cfg.Address, "err", err, "retry_in", wait)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = a.cfg.ReconnectMin
		a.m.reconnects.Inc()
		a.setConn(cn)
		a.connected.Store(true)
		a.log.Info("event socket connected", "address", a.cfg.Address)
		var wg sync.WaitGroup
		if a.cfg.Mode == "inbound" {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer a.recoverPanic()
				a.reconcile(ctx, cn)
			}()
		}
		a.watch(ctx, cn)
		a.connected.Store(false)
		a.setConn(nil)
		cn.Close()
		wg.Wait()
		if ctx.Err() == nil {
			a.log.Warn("event socket lost; reconnecting", "err", cn.Err())
		}
	}
}

// nextBackoff returns how long to wait before the next dial — a random point
// in [cur/2, cur] (so instances that lost FreeSWITCH together do not redial
// together) — and the next cur, doubled up to max.
func nextBackoff(cur, max time.Duration, randN func(int64) int64) (wait, next time.Duration) {
	wait = cur/2 + time.Duration(randN(int64(cur/2)+1))
	return wait, min(cur*2, max)
}

// watch returns when cn ends, ctx ends, or a reply is overdue (the connection
// is then replaced, so no later reply can be mismatched).
func (a *Adapter) watch(ctx context.Context, cn *conn) {
	tick := time.NewTicker(min(a.cfg.CommandTimeout/4, 250*time.Millisecond))
	defer tick.Stop()
	sweep := time.NewTicker(sweepInterval)
	defer sweep.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var sweeping atomic.Bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-cn.done:
			return
		case <-sweep.C:
			// a call whose transfer failed on a live connection is retried here
			if a.cfg.Mode == "inbound" && sweeping.CompareAndSwap(false, true) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer sweeping.Store(false)
					defer a.recoverPanic()
					a.reconcile(ctx, cn)
				}()
			}
		case <-tick.C:
			if cn.oldestPending() > a.cfg.CommandTimeout {
				a.log.Warn("reply overdue; replacing the connection", "timeout", a.cfg.CommandTimeout)
				return
			}
			a.pruneRecent()
		}
	}
}

func (a *Adapter) dial(ctx context.Context) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, a.cfg.CommandTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", a.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("adapters/esl: dial: %w", err)
	}
	cn := newConn(nc, a.log, a.m)
	cn.start(func(ev *eslwire.Event) { a.onEvent(ctx, ev) })
	if err := cn.auth(dctx, a.password); err != nil {
		cn.Close()
		return nil, err
	}
	names := append([]string{}, legEvents...)
	if a.cfg.Mode == "inbound" {
		names = append(names, "CHANNEL_PARK")
	}
	names = append(names, "BACKGROUND_JOB")
	f, err := cn.command(dctx, "event plain "+strings.Join(names, " "), nil, nil)
	if err != nil {
		cn.Close()
		return nil, fmt.Errorf("adapters/esl: subscribe: %w", err)
	}
	if t := f.ReplyText(); !strings.HasPrefix(t, "+OK") {
		cn.Close()
		return nil, fmt.Errorf("adapters/esl: subscribe: %s", call.CleanValue(t))
	}
	return cn, nil
}

func (a *Adapter) setConn(cn *conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cur = cn
	if cn != nil {
		close(a.curReady)
	} else {
		a.curReady = make(chan struct{})
	}
}

// current waits for a live event connection or ctx.
func (a *Adapter) current(ctx context.Context) (*conn, error) {
	for {
		a.mu.Lock()
		cn, ready := a.cur, a.curReady
		a.mu.Unlock()
		if cn != nil && cn.Err() == nil {
			return cn, nil
		}
		if cn != nil {
			// dead but not yet replaced; poll briefly
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ready:
		}
	}
}

// bgapi runs a command on the current event connection, as bgapi with our
// Job-UUID: the result is matched by id, and a slow command does not hold
// up the others.
func (a *Adapter) bgapi(ctx context.Context, cmd string) (string, error) {
	cn, err := a.current(ctx)
	if err != nil {
		return "", err
	}
	return cn.bgapi(ctx, cmd)
}

// onEvent runs on the read goroutine, in arrival order; it must not block.
func (a *Adapter) onEvent(ctx context.Context, ev *eslwire.Event) {
	defer a.recoverPanic()
	received := time.Now()
	a.legs.observe(ev)
	a.originateEvent(ev)
	if a.cfg.Mode != "inbound" || ev.Name() != "CHANNEL_PARK" {
		return
	}
	if ev.Get("Call-Direction") != "inbound" || ev.Get("Caller-Context") != a.cfg.ParkContext {
		return
	}
	a.startParked(ctx, callFrom(ev, received), ev.Get)
}

// startParked handles one parked call once (park event and reconcile may both see it).
func (a *Adapter) startParked(ctx context.Context, c call.Call, chanVar func(string) string) {
	if !validUUID(c.ID) {
		return
	}
	a.mu.Lock()
	_, busy := a.inflight[c.ID]
	_, done := a.recent[c.ID]
	if busy || done {
		a.mu.Unlock()
		return
	}
	// The call may wait a while (a slow CRM): keep copies of what it needs
	// (the in-flight key included), not the parked event its strings would
	// otherwise pin.
	c.ID, c.CLI, c.CLIName, c.ANI, c.DNIS, c.Profile = strings.Clone(c.ID), strings.Clone(c.CLI), strings.Clone(c.CLIName),
		strings.Clone(c.ANI), strings.Clone(c.DNIS), strings.Clone(c.Profile)
	chanVar = keepChanVars(chanVar)
	a.inflight[c.ID] = struct{}{}
	a.mu.Unlock()
	leave := func() {
		a.mu.Lock()
		delete(a.inflight, c.ID)
		a.mu.Unlock()
	}
	select {
	case a.slots <- struct{}{}:
	default:
		go func() { // ends with the transfer
			defer a.recoverPanic()
			defer leave()
			a.m.calls.WithLabelValues("inbound", "overload").Inc()
			a.transfer(ctx, c)
		}()
		return
	}
	// While the decision is pending the parked call holds no goroutine. The
	// decider's synchronous part (normalising, the in-process cache, often
	// the whole decision) runs on a short-lived goroutine, not on the event
	// connection's reader, which every other call's events wait on.
	go a.decideThen(ctx, c, c.Received.Add(a.deps.Budget-a.cfg.ApplyReserve), func(d call.Decision) {
		defer a.recoverPanic()
		defer leave()
		defer func() { <-a.slots }()
		a.inboundCall(ctx, c, d, chanVar)
	})
}

// inboundCall: (decision) → bgapi uuid_setvar_multi → bgapi uuid_transfer.
// The transfer is sent whatever happened before it.
func (a *Adapter) inboundCall(ctx context.Context, c call.Call, d call.Decision, chanVar func(string) string) {
	actx, cancel := context.WithDeadline(ctx, c.Received.Add(a.deps.Budget))
	outcome := a.applyAndReport(actx, a.bgapi, c, d, chanVar)
	cancel()
	if outcome != "dead" {
		if terr := a.transfer(ctx, c); terr != nil {
			outcome = classify(terr)
		}
	}
	if outcome == "released" && time.Since(c.Received) > a.deps.Budget {
		outcome = "late"
	}
	a.m.calls.WithLabelValues("inbound", outcome).Inc()
	a.m.callSeconds.WithLabelValues("inbound").Observe(time.Since(c.Received).Seconds())
}

// transfer releases a parked call to the configured destination. It is not
// bound by the budget: a call must never stay parked; if the connection is
// down, reconcile after the reconnect releases it.
func (a *Adapter) transfer(ctx context.Context, c call.Call) error {
	ext := a.cfg.TransferTo.Extension
	if ext == "" {
		ext = call.CleanToken(c.DNIS)
	}
	if ext == "" || !isToken(ext) {
		ext = "callpop_unknown"
	}
	tctx, cancel := context.WithTimeout(ctx, a.cfg.CommandTimeout)
	defer cancel()
	cn, err := a.current(tctx)
	if err != nil {
		return fmt.Errorf("adapters/esl: uuid_transfer: no event connection: %w", err)
	}
	a.mu.Lock()
	a.unsure[c.ID] = time.Now()
	a.mu.Unlock()
	out, err := cn.bgapi(tctx, "uuid_transfer "+c.ID+" "+ext+" "+a.cfg.TransferTo.Dialplan+" "+a.cfg.TransferTo.Context)
	if err == nil {
		err = replyErr(out)
	}
	a.mu.Lock()
	switch {
	case err == nil || errors.Is(err, errDead):
		delete(a.unsure, c.ID)
		a.recent[c.ID] = time.Now()
	case strings.HasPrefix(err.Error(), "adapters/esl: -ERR"):
		delete(a.unsure, c.ID) // FreeSWITCH refused it: nothing pending, retry at will
	}
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("adapters/esl: uuid_transfer: %w", err)
	}
	return nil
}

func (a *Adapter) pruneRecent() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if time.Since(a.lastPrune) > time.Minute {
		a.lastPrune = time.Now()
		go a.legs.prune(legMaxAge)
	}
	for id, t := range a.recent {
		if time.Since(t) > time.Minute {
			delete(a.recent, id)
		}
	}
	for id, t := range a.unsure {
		if time.Since(t) > time.Minute {
			delete(a.unsure, id)
		}
	}
}

// unsureWait is how long reconcile leaves a call alone whose transfer was
// sent but not confirmed (the connection went down meanwhile): FreeSWITCH may
// still run it, and a second transfer would run the dialplan twice.
var unsureWait = time.Second

// reconcile finds calls parked in park_context (show channels as json) and
// processes them: calls that arrived or were being handled while the
// connection was down. Calls with an unconfirmed transfer are looked at again
// after unsureWait.
func (a *Adapter) reconcile(ctx context.Context, cn *conn) {
	for round := 0; round < 3; round++ {
		waiting := a.reconcileOnce(ctx, cn)
		if waiting == 0 {
			return
		}
		t := time.NewTimer(unsureWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-cn.done:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// reconcileOnce processes the parked calls once and returns how many it left
// for later because their transfer is unconfirmed.
func (a *Adapter) reconcileOnce(ctx context.Context, cn *conn) (waiting int) {
	rctx, cancel := context.WithTimeout(ctx, a.cfg.CommandTimeout)
	out, err := cn.api(rctx, "show channels as json")
	cancel()
	if err != nil {
		a.log.Warn("reconcile: show channels failed", "err", err)
		return 0
	}
	var list struct {
		Rows []struct {
			UUID        string `json:"uuid"`
			Direction   string `json:"direction"`
			Application string `json:"application"`
			Context     string `json:"context"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &list); err != nil {
		a.log.Warn("reconcile: bad show channels reply", "err", err)
		return 0
	}
	for _, r := range list.Rows {
		if ctx.Err() != nil || cn.Err() != nil {
			return 0
		}
		if r.Direction != "inbound" || r.Application != "park" || r.Context != a.cfg.ParkContext || !validUUID(r.UUID) {
			continue
		}
		a.mu.Lock()
		_, busy := a.inflight[r.UUID]
		_, done := a.recent[r.UUID]
		sent, unsure := a.unsure[r.UUID]
		a.mu.Unlock()
		if busy || done {
			continue
		}
		if unsure && time.Since(sent) < unsureWait {
			waiting++
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, a.cfg.CommandTimeout)
		dump, err := cn.api(dctx, "uuid_dump "+r.UUID)
		cancel()
		if err != nil {
			return 0
		}
		if strings.HasPrefix(dump, "-ERR") {
			continue // hung up meanwhile
		}
		hs, _, _ := eslwire.ParseHeaderBlock([]byte(dump))
		h := frameHeaders{hs}
		a.m.reconciled.Inc()
		a.startParked(ctx, callFrom(h, time.Now()), h.Get)
	}
	return waiting
}
