package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/ari"
	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

func init() {
	targetFactories[PBXAsterisk] = func(m mode, tc targetConfig) Target {
		return &ariTarget{bare: m == modeBare, external: m == modeExternal, tc: tc}
	}
}

const (
	benchARIUser = "callpop"
	benchARIPass = "bench"
	benchARIApp  = "callpop"
)

// ariChannelVarNames is the bench's ari.conf channelvars (--ari-channelvars):
// the caller variables the adapter would otherwise GET per call.
var ariChannelVarNames = []string{"CALLPOP_CALL_ID", "CALLERID(ani)", "CALLERID(num-pres)"}

// ariTarget is the ARI simulator with callpop's ARI adapter, or with a bare
// ARI client doing the adapter's round trips (the caller-variable GETs unless
// channelvars carry them, the same variable sets and channel subscription on
// the same connection limits, continue) with no look-up.
type ariTarget struct {
	bare     bool
	external bool
	tc       targetConfig
	sim      *arisim.Server
	ad       *ari.Adapter
	cl       *bareARI
	w        *releaseWaiter
}

func (t *ariTarget) Start(ctx context.Context, deps adapters.Deps) error {
	t.w = newReleaseWaiter()
	opts := arisim.Options{Username: benchARIUser, Password: benchARIPass, App: benchARIApp, OnContinue: t.w.release}
	if t.tc.ariChannelVars {
		opts.ChannelVars = ariChannelVarNames
	}
	sim, err := arisim.New(opts)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	t.sim = sim
	switch {
	case t.external:
		return nil
	case t.bare:
		t.cl = &bareARI{base: sim.URL(), user: benchARIUser, pass: benchARIPass, app: benchARIApp, log: t.tc.log}
		for _, d := range t.tc.decisions() {
			t.cl.vars = append(t.cl.vars, bareVars(d))
		}
		return t.cl.start(ctx)
	}
	t.ad, err = startARIAdapter(ctx, sim.URL(), t.tc.maxCalls, deps, t.tc.log)
	return err
}

// startARIAdapter runs callpop's ARI adapter against the simulator at url
// until ctx ends; maxCalls > 0 replaces pbx.asterisk.max_calls.
func startARIAdapter(ctx context.Context, url string, maxCalls int, deps adapters.Deps, log *slog.Logger) (*ari.Adapter, error) {
	cfg := ari.DefaultConfig()
	cfg.URL, cfg.Username, cfg.Password, cfg.App = url, benchARIUser, benchARIPass, benchARIApp
	if maxCalls > 0 {
		cfg.MaxCalls = maxCalls
	}
	return runARIAdapter(ctx, cfg, deps, log)
}

// runARIAdapter runs callpop's ARI adapter with cfg until ctx ends.
func runARIAdapter(ctx context.Context, cfg ari.Config, deps adapters.Deps, log *slog.Logger) (*ari.Adapter, error) {
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
	id := t.sim.OfferCall(spec)
	done := t.w.expect(id)
	select {
	case <-done:
	case <-ctx.Done():
		t.w.forget(id)
		t.sim.Hangup(id)
		return Outcome{CallID: id}, ctx.Err()
	}
	t.w.forget(id)
	r, _ := t.sim.Record(id) // once per call, for the offer time
	t.sim.Hangup(id)         // the call ends; the simulator forgets the channel
	if r.Continued.IsZero() {
		return Outcome{CallID: id}, fmt.Errorf("bench: channel %s not continued (failed %v, hung up %v)", id, r.Failed, r.HungUp)
	}
	return Outcome{CallID: id, Sent: r.Offered, Released: r.Continued}, nil
}

// Stats is the simulator's request count, for requests per call.
func (t *ariTarget) requests() (requests, offered int64) {
	st := t.sim.Stats()
	return st.Requests, st.Offered
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

// releaseWaiter wakes the Offer of each channel the simulator continued
// (arisim's OnContinue hook): no polling. The continue may come before Offer
// registers the id, so whichever side comes first makes the entry.
type releaseWaiter struct {
	mu      sync.Mutex
	pending map[string]chan struct{}
}

func newReleaseWaiter() *releaseWaiter {
	return &releaseWaiter{pending: map[string]chan struct{}{}}
}

// entry returns id's channel, made if missing. Caller holds w.mu.
func (w *releaseWaiter) entry(id string) chan struct{} {
	ch, ok := w.pending[id]
	if !ok {
		ch = make(chan struct{})
		w.pending[id] = ch
	}
	return ch
}

// expect returns a channel closed when id is continued.
func (w *releaseWaiter) expect(id string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.entry(id)
}

// release is arisim's OnContinue.
func (w *releaseWaiter) release(id string, _ time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := w.entry(id)
	select {
	case <-ch: // reported twice: already released
	default:
		close(ch)
	}
}

// forget drops id's entry once its Offer is done with it.
func (w *releaseWaiter) forget(id string) {
	w.mu.Lock()
	delete(w.pending, id)
	w.mu.Unlock()
}

// bareDecision is a typical known caller's decision, for when the run has
// none of its own (Run takes one from its pipeline: see targetConfig.bareDecision).
func bareDecision() call.Decision {
	return call.Decision{Match: call.MatchHit, E164: "+12122340001", Source: call.SourceCLI,
		Customer: &call.Customer{ID: "C1", Name: "Customer 1", Tier: "gold", Language: "en", URL: "https://crm.example/customers/C1"},
		Priority: 5, PopURL: "https://crm.example/customers/C1"}
}

// bareVars are the variables the bare client sets, as the ARI adapter sets
// them for d on a channel's first trip: the CALLPOP_* contract, QUEUE_PRIO,
// the call id, CALLERID(name) and CALLPOP_INFO_URL when given; an empty
// value needs no request there, so it gets none.
func bareVars(d call.Decision) []call.Var {
	vars := append(d.Vars(), call.Var{Name: "QUEUE_PRIO", Value: strconv.Itoa(max(d.QueuePrio, 0))},
		call.Var{Name: "__CALLPOP_CALL_ID", Value: "1.1"})
	if n := call.CleanValue(d.CallerName); n != "" {
		vars = append(vars, call.Var{Name: "CALLERID(name)", Value: n})
	}
	if d.InfoURL != "" {
		vars = append(vars, call.Var{Name: "CALLPOP_INFO_URL", Value: call.CleanURL(d.InfoURL)})
	}
	return slices.DeleteFunc(vars, func(v call.Var) bool { return v.Value == "" })
}

// bareARI is an ARI client that does the adapter's per-call round trips and
// nothing else, the way the adapter does them on an Asterisk with
// /channels/{id}/variables (as the simulator is): the same two keep-alive
// pools (per-call requests; continue) with the adapter's connection limit,
// one GET of both caller variables (none when channelvars carry them), then
// the subscription and one POST of every variable concurrently, then continue.
type bareARI struct {
	base    string
	user    string
	pass    string
	app     string // its Stasis application
	log     *slog.Logger
	sent    atomic.Int64 // REST requests
	hc, ctl *http.Client
	vars    [][]call.Var // per call in turn
	seq     atomic.Int64
	conn    *websocket.Conn
	wg      sync.WaitGroup
}

// bareTransport is adapters/ari's REST transport with maxConns connections.
func bareTransport(maxConns int) *http.Transport {
	return &http.Transport{Proxy: nil,
		DialContext:  (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns: maxConns, MaxIdleConnsPerHost: maxConns, MaxConnsPerHost: maxConns,
		IdleConnTimeout: 90 * time.Second}
}

func (b *bareARI) start(ctx context.Context) error {
	perCall, control := ari.PoolSizes(ari.DefaultConfig().MaxConnections)
	b.hc = &http.Client{Transport: bareTransport(perCall)}
	b.ctl = &http.Client{Transport: bareTransport(control)}
	c, err := dialARIEvents(ctx, b.base, b.user, b.pass, b.app, b.ctl)
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

// bareEvent is the part of an ARI event the bare client reads.
type bareEvent struct {
	Type    string `json:"type"`
	Channel struct {
		ID          string            `json:"id"`
		ChannelVars map[string]string `json:"channelvars"`
	} `json:"channel"`
}

func (b *bareARI) read(ctx context.Context) {
	for {
		_, raw, err := b.conn.Read(ctx)
		if err != nil {
			return
		}
		var ev bareEvent
		if json.Unmarshal(raw, &ev) != nil || ev.Type != "StasisStart" {
			continue
		}
		_, hasANI := ev.Channel.ChannelVars["CALLERID(ani)"]
		_, hasPres := ev.Channel.ChannelVars["CALLERID(num-pres)"]
		go b.handle(ev.Channel.ID, !(hasANI && hasPres)) // one per call, like the adapter; ends with its requests
	}
}

func (b *bareARI) handle(id string, getVars bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	path := "/ari/channels/" + url.PathEscape(id)
	if getVars {
		b.do(ctx, b.hc, http.MethodGet, path+"/variables", url.Values{"variables": {"CALLERID(ani),CALLERID(num-pres)"}}, nil)
	}
	vars := b.vars[int(b.seq.Add(1))%len(b.vars)]
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	body, _ := json.Marshal(map[string]any{"variables": m})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.do(ctx, b.hc, http.MethodPost, "/ari/applications/"+url.PathEscape(b.app)+"/subscription", url.Values{"eventSource": {"channel:" + id}}, nil)
	}()
	b.do(ctx, b.hc, http.MethodPost, path+"/variables", nil, body)
	wg.Wait()
	b.do(ctx, b.ctl, http.MethodPost, path+"/continue", nil, nil)
}

func (b *bareARI) do(ctx context.Context, hc *http.Client, method, path string, q url.Values, body []byte) {
	u := b.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return
	}
	req.SetBasicAuth(b.user, b.pass)
	b.sent.Add(1)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			b.log.Debug("bare ARI request failed", "component", "bench", "err", err)
		}
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// dialARIEvents opens app's event WebSocket, the credentials in a Basic
// Authorization header (never in the URL, where logs and proxies keep it).
func dialARIEvents(ctx context.Context, base, user, pass, app string, hc *http.Client) (*websocket.Conn, error) {
	u := strings.Replace(base, "http", "ws", 1) + "/ari/events?" + url.Values{"app": {app}, "subscribeAll": {"false"}}.Encode()
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: h})
	return c, err
}

func (b *bareARI) close() {
	if b.conn != nil {
		b.conn.CloseNow()
	}
	b.wg.Wait()
	for _, hc := range []*http.Client{b.hc, b.ctl} {
		if hc != nil {
			hc.CloseIdleConnections()
		}
	}
}
