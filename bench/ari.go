package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/ari"
	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

func init() {
	targetFactories[PBXAsterisk] = func(m mode, log *slog.Logger) Target {
		return &ariTarget{bare: m == modeBare, external: m == modeExternal, log: log}
	}
}

const (
	benchARIUser = "callpop"
	benchARIPass = "bench"
	benchARIApp  = "callpop"
)

// ariTarget is the ARI simulator with callpop's ARI adapter, or with a bare
// ARI client doing the adapter's round trips (2 variable reads, the same
// variable sets and channel subscription, continue) with no look-up.
type ariTarget struct {
	bare     bool
	external bool
	log      *slog.Logger
	sim      *arisim.Server
	ad       *ari.Adapter
	cl       *bareARI
	w        *releaseWaiter
}

func (t *ariTarget) Start(ctx context.Context, deps adapters.Deps) error {
	sim, err := arisim.New(arisim.Options{Username: benchARIUser, Password: benchARIPass, App: benchARIApp})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	t.sim = sim
	t.w = newReleaseWaiter(func(id string) (time.Time, bool) {
		at, ok := sim.Continued(id)
		return at, ok
	})
	go t.w.run(ctx) // ends with ctx
	switch {
	case t.external:
		return nil
	case t.bare:
		t.cl = &bareARI{base: sim.URL(), log: t.log}
		return t.cl.start(ctx)
	}
	t.ad, err = startARIAdapter(ctx, sim.URL(), deps, t.log)
	return err
}

// startARIAdapter runs callpop's ARI adapter against the simulator at url until ctx ends.
func startARIAdapter(ctx context.Context, url string, deps adapters.Deps, log *slog.Logger) (*ari.Adapter, error) {
	cfg := ari.DefaultConfig()
	cfg.URL, cfg.Username, cfg.Password, cfg.App = url, benchARIUser, benchARIPass, benchARIApp
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench: ari config: %w", err)
	}
	ad, err := ari.New(cfg, deps)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	go func() { // ends with ctx
		if err := ad.Run(ctx); err != nil {
			log.Error("ari adapter stopped", "component", "bench", "err", err)
		}
	}()
	return ad, nil
}

// Endpoint is the simulator's URL (pbx.asterisk.url).
func (t *ariTarget) Endpoint() string { return t.sim.URL() }

// Attach does nothing: the sidecar dials the simulator.
func (t *ariTarget) Attach(string) {}

func (t *ariTarget) Ready() bool {
	if t.bare || t.external {
		return t.sim.Connected(benchARIApp)
	}
	ok, _ := t.ad.Ready()
	return ok
}

func (t *ariTarget) Offer(ctx context.Context, c Caller, dnis string) (Outcome, error) {
	spec := arisim.CallSpec{CLI: c.CLI, DNIS: dnis, Kind: c.Kind.String()}
	if c.Kind == KindAnonymous {
		spec.NumPres = "prohib"
	}
	done := make(chan struct{})
	var id string
	t.w.expect(func() string { id = t.sim.OfferCall(spec); return id }, done)
	select {
	case <-done:
	case <-ctx.Done():
		t.w.forget(id)
		t.sim.Hangup(id)
		return Outcome{CallID: id}, ctx.Err()
	}
	r, _ := t.sim.Record(id)
	t.sim.Hangup(id) // the call ends; the simulator forgets the channel
	if r.Continued.IsZero() {
		return Outcome{CallID: id}, fmt.Errorf("bench: channel %s not continued (failed %v, hung up %v)", id, r.Failed, r.HungUp)
	}
	return Outcome{CallID: id, Sent: r.Offered, Released: r.Continued}, nil
}

func (t *ariTarget) Close() error {
	if t.cl != nil {
		t.cl.close()
	}
	if t.sim != nil {
		return t.sim.Close()
	}
	return nil
}

// releaseWaiter finds out when offered channels were let go. The simulator
// records the time itself, so polling here delays only the bench's
// bookkeeping, never the measured latency.
type releaseWaiter struct {
	check   func(id string) (time.Time, bool)
	mu      sync.Mutex
	pending map[string]chan struct{}
}

func newReleaseWaiter(check func(string) (time.Time, bool)) *releaseWaiter {
	return &releaseWaiter{check: check, pending: map[string]chan struct{}{}}
}

// expect registers the id offer returns; done closes when it is released.
func (w *releaseWaiter) expect(offer func() string, done chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending[offer()] = done
}

func (w *releaseWaiter) forget(id string) {
	w.mu.Lock()
	delete(w.pending, id)
	w.mu.Unlock()
}

func (w *releaseWaiter) run(ctx context.Context) {
	var ids []string
	for {
		// Sweep every 2 ms, and never spend more than a quarter of the time
		// sweeping: the simulator's lock is shared with the call path.
		start := time.Now()
		ids = ids[:0]
		w.mu.Lock()
		for id := range w.pending {
			ids = append(ids, id)
		}
		w.mu.Unlock()
		for _, id := range ids {
			if _, ok := w.check(id); ok {
				w.mu.Lock()
				if ch, ok := w.pending[id]; ok {
					close(ch)
					delete(w.pending, id)
				}
				w.mu.Unlock()
			}
		}
		t := time.NewTimer(max(2*time.Millisecond, 3*time.Since(start)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// bareVars are the variables the bare client sets: what the adapter sets for
// a typical known caller (the CALLPOP_* contract, QUEUE_PRIO, the call id).
func bareVars() []call.Var {
	d := call.Decision{Match: call.MatchHit, E164: "+12122340001", Source: call.SourceCLI,
		Customer: &call.Customer{ID: "C1", Name: "Customer 1", Tier: "gold", Language: "en", URL: "https://crm.example/customers/C1"},
		Priority: 5, Queue: "support", Skill: "general", Flags: []string{"vip"}, PopURL: "https://crm.example/customers/C1"}
	return append(d.Vars(), call.Var{Name: "QUEUE_PRIO", Value: "5"}, call.Var{Name: "__CALLPOP_CALL_ID", Value: "1.1"})
}

// bareARI is an ARI client that does the adapter's per-call round trips and nothing else.
type bareARI struct {
	base string
	log  *slog.Logger
	hc   *http.Client
	vars []call.Var
	conn *websocket.Conn
	wg   sync.WaitGroup
}

func (b *bareARI) start(ctx context.Context) error {
	b.vars = bareVars()
	b.hc = &http.Client{Transport: &http.Transport{Proxy: nil,
		DialContext:  (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}}
	u := strings.Replace(b.base, "http", "ws", 1) + "/ari/events?" + url.Values{"app": {benchARIApp}, "api_key": {benchARIUser + ":" + benchARIPass}}.Encode()
	c, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		return fmt.Errorf("bench: bare ARI: %w", err)
	}
	c.SetReadLimit(1 << 20)
	b.conn = c
	b.wg.Add(1)
	go func() { // ends when the socket closes (ctx end or close)
		defer b.wg.Done()
		b.read(ctx)
	}()
	return nil
}

func (b *bareARI) read(ctx context.Context) {
	for {
		_, raw, err := b.conn.Read(ctx)
		if err != nil {
			return
		}
		var ev struct {
			Type    string `json:"type"`
			Channel struct {
				ID string `json:"id"`
			} `json:"channel"`
		}
		if json.Unmarshal(raw, &ev) != nil || ev.Type != "StasisStart" {
			continue
		}
		go b.handle(ev.Channel.ID) // one per call, like the adapter; ends with its requests
	}
}

func (b *bareARI) handle(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	path := "/ari/channels/" + url.PathEscape(id)
	var wg sync.WaitGroup
	for _, v := range []string{"CALLERID(ani)", "CALLERID(num-pres)"} {
		wg.Add(1)
		go func() { defer wg.Done(); b.do(ctx, http.MethodGet, path+"/variable", url.Values{"variable": {v}}) }()
	}
	wg.Wait()
	for _, v := range b.vars {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.do(ctx, http.MethodPost, path+"/variable", url.Values{"variable": {v.Name}, "value": {v.Value}})
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.do(ctx, http.MethodPost, "/ari/applications/"+benchARIApp+"/subscription", url.Values{"eventSource": {"channel:" + id}})
	}()
	wg.Wait()
	b.do(ctx, http.MethodPost, path+"/continue", nil)
}

func (b *bareARI) do(ctx context.Context, method, path string, q url.Values) {
	u := b.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return
	}
	req.SetBasicAuth(benchARIUser, benchARIPass)
	resp, err := b.hc.Do(req)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			b.log.Debug("bare ARI request failed", "component", "bench", "err", err)
		}
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func (b *bareARI) close() {
	if b.conn != nil {
		b.conn.CloseNow()
	}
	b.wg.Wait()
	if b.hc != nil {
		b.hc.CloseIdleConnections()
	}
}
