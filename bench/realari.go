package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/ari"
	"github.com/callpop/callpop/call"
)

// realARI is an Asterisk reached over ARI: originates
// Local/<way>@callpop-bench (the ;1 half waits in RealARIReport, never
// answered) and hears each call's stamps as a StasisStart of RealARIReport
// whose args are the bench's id, ${UNIQUEID}, t0 and t1; it then hangs the
// call up.
type realARI struct {
	o    RealOptions
	log  *slog.Logger
	cl   *ari.Client
	hc   *http.Client
	conn *websocket.Conn
	wg   sync.WaitGroup
}

func newRealARI(o RealOptions, log *slog.Logger) *realARI {
	return &realARI{o: o, log: log, cl: ari.NewClient(o.ARIURL, o.ARIUser, o.ARIPassword, 16), hc: &http.Client{}}
}

func (r *realARI) host() string {
	u, _ := url.Parse(r.o.ARIURL)
	return u.Hostname()
}

func (r *realARI) port() int {
	u, _ := url.Parse(r.o.ARIURL)
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

func (r *realARI) process() string { return "asterisk" }

func (r *realARI) connect(ctx context.Context, w *reportWaiter) error {
	c, err := dialARIEvents(ctx, r.o.ARIURL, r.o.ARIUser, r.o.ARIPassword, RealARIReport, r.hc)
	if err != nil {
		return fmt.Errorf("bench: ARI events at %s: %w", r.o.ARIURL, err)
	}
	c.SetReadLimit(1 << 20)
	r.conn = c
	r.wg.Add(1)
	go func() { // ends when the socket closes (ctx end or close)
		defer r.wg.Done()
		for {
			_, raw, err := c.Read(ctx)
			if err != nil {
				return
			}
			var ev struct {
				Type    string   `json:"type"`
				Args    []string `json:"args"`
				Channel struct {
					ID string `json:"id"`
				} `json:"channel"`
			}
			if json.Unmarshal(raw, &ev) != nil || ev.Type != "StasisStart" {
				continue
			}
			r.wg.Add(1)
			go func() { // one per report: file it, hang the call up
				defer r.wg.Done()
				r.file(w, ev.Channel.ID, ev.Args)
			}()
		}
	}()
	return nil
}

// file hands a report's stamps on and hangs its channel up.
func (r *realARI) file(w *reportWaiter, chanID string, args []string) {
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := r.cl.Hangup(ctx, chanID); err != nil && !errors.Is(err, ari.ErrGone) {
			r.log.Warn("bench: hang-up of a reported call failed", "err", err)
		}
	}()
	s, id, err := parseReport(args)
	if err != nil {
		r.log.Warn("bench: a call reported no stamps: is the bench context as docs/performance.md has it?", "err", err)
		return
	}
	w.report(id, s)
}

// parseReport reads a report's fields: bench id, PBX call id, t0, t1.
func parseReport(f []string) (stamps, string, error) {
	if len(f) != 4 && len(f) != 5 {
		return stamps{}, "", fmt.Errorf("bench: report has %d fields, want 4 or 5 (id, uniqueid, t0, t1[, match])", len(f))
	}
	t0, err := parseStamp(f[2])
	if err != nil {
		return stamps{}, "", err
	}
	t1, err := parseStamp(f[3])
	if err != nil {
		return stamps{}, "", err
	}
	s := stamps{id: f[1], t0: t0, t1: t1}
	if len(f) == 5 {
		s.match = f[4]
	}
	return s, f[0], nil
}

func (r *realARI) liveChannels(ctx context.Context) (int, error) {
	names, err := r.cl.Channels(ctx)
	if err != nil {
		return 0, fmt.Errorf("bench: GET /channels: %w", err)
	}
	return len(names), nil
}

func (r *realARI) originate(ctx context.Context, way, cli string, vars map[string]string) error {
	_, err := r.cl.Originate(ctx, ari.Originate{Endpoint: "Local/" + way + "@" + BenchContext, App: RealARIReport, AppArgs: "sink",
		CallerID: cli, Timeout: 30, Variables: vars})
	return err
}

func (r *realARI) handler(way string, bare bool, o *RealOptions, p *Pipeline) (wayHandler, error) {
	switch {
	case way == WayARI && bare:
		d := p.Router.Decide(context.Background(), call.Call{ID: "bench-bare", PBX: "bench", CLI: CustomerNumber(0), DNIS: dnis, Received: time.Now()})
		return &ariBare{b: &bareARI{base: o.ARIURL, user: o.ARIUser, pass: o.ARIPassword, app: RealARIBareApp, log: r.log, vars: [][]call.Var{bareVars(d)}}}, nil
	case way == WayARI:
		return &ariCallpop{o: o, p: p, log: r.log}, nil
	case way == WayFastAGI:
		return &agiHandler{bare: bare, listen: o.Listen, p: p}, nil
	case way == WayHTTP:
		return &httpHandler{bare: bare, listen: o.Listen, p: p, varName: "CALLPOP_BENCH_URL", delay: o.CRMDelay, recordMatch: true}, nil
	}
	return nil, fmt.Errorf("no way %q into Asterisk", way)
}

func (r *realARI) close() {
	if r.conn != nil {
		r.conn.CloseNow()
	}
	r.wg.Wait()
	r.cl.Close()
}

// ariCallpop is callpop's ARI adapter on the real Asterisk, app RealARIApp.
type ariCallpop struct {
	o      *RealOptions
	p      *Pipeline
	log    *slog.Logger
	ad     *ari.Adapter
	cancel context.CancelFunc
}

func (h *ariCallpop) start(ctx context.Context) error {
	ctx, h.cancel = context.WithCancel(ctx)
	cfg := ari.DefaultConfig()
	cfg.URL, cfg.Username, cfg.Password, cfg.App = h.o.ARIURL, h.o.ARIUser, h.o.ARIPassword, RealARIApp
	var err error
	h.ad, err = runARIAdapter(ctx, cfg, adapters.Deps{Decider: h.p.Router, Logger: h.log, Budget: h.o.Budget}, h.log)
	return err
}

func (h *ariCallpop) ready() bool {
	ok, _ := h.ad.Ready()
	return ok
}

func (h *ariCallpop) vars(string) map[string]string {
	return map[string]string{"CALLPOP_BENCH_APP": RealARIApp}
}
func (h *ariCallpop) requests() int64 { return h.ad.Requests() }
func (h *ariCallpop) close() {
	if h.cancel != nil {
		h.cancel()
	}
}

// ariBare is the bare ARI client (one GET, one POST /variables, the
// subscription, continue) on app RealARIBareApp.
type ariBare struct{ b *bareARI }

func (h *ariBare) start(ctx context.Context) error { return h.b.start(ctx) }
func (h *ariBare) ready() bool                     { return h.b.conn != nil }
func (h *ariBare) vars(string) map[string]string {
	return map[string]string{"CALLPOP_BENCH_APP": RealARIBareApp}
}
func (h *ariBare) requests() int64 { return h.b.sent.Load() }
func (h *ariBare) close()          { h.b.close() }
