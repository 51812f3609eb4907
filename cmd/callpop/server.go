package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/callpop/callpop/internal/apiauth"
	"github.com/callpop/callpop/internal/netallow"
	"github.com/callpop/callpop/internal/tlsfiles"
	"github.com/callpop/callpop/router"
)

// HTTP server limits. Look-ups answer within call.budget; the agents' pop
// streams (SSE) lift the write deadline for themselves.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// writeTimeout bounds writing a response (a variable for tests).
var writeTimeout = 30 * time.Second

// readiness is what /readyz reports: every check must pass, and the process
// must not be draining.
type readiness struct {
	draining atomic.Bool
	mu       sync.Mutex
	checks   []readyCheck
}

type readyCheck struct {
	name  string
	ready func() (bool, string)
	pbx   string // a PBX's check: its name in "pbxes"
	// optional: a PBX with required: false; reported, never makes /readyz 503
	optional bool
}

// add registers a check; ready returns whether calls may come and why not.
func (r *readiness) add(name string, ready func() (bool, string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, readyCheck{name: name, ready: ready})
}

// addPBX registers a PBX's check: reported under "pbxes" by the PBX's
// name, and only a required PBX makes /readyz not ready.
func (r *readiness) addPBX(name, pbx string, required bool, ready func() (bool, string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, readyCheck{name: name, ready: ready, pbx: pbx, optional: !required})
}

// checkJSON is one check in the /readyz body.
type checkJSON struct {
	Name   string `json:"name"`
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// readyJSON is the /readyz body.
type readyJSON struct {
	Ready   bool        `json:"ready"`
	Reasons []string    `json:"reasons"`
	Checks  []checkJSON `json:"checks"`
	// Pbxes is each PBX's state by name: "ready", or why not ("reconnecting: …").
	Pbxes map[string]string `json:"pbxes,omitempty"`
}

func (r *readiness) status() readyJSON {
	r.mu.Lock()
	checks := append([]readyCheck(nil), r.checks...)
	r.mu.Unlock()
	out := readyJSON{Ready: true, Reasons: []string{}, Checks: []checkJSON{}}
	if r.draining.Load() {
		out.Ready = false
		out.Reasons = append(out.Reasons, "draining: shutting down")
	}
	for _, c := range checks {
		ok, why := c.ready()
		out.Checks = append(out.Checks, checkJSON{Name: c.name, Ready: ok, Reason: why})
		if c.pbx != "" {
			if out.Pbxes == nil {
				out.Pbxes = map[string]string{}
			}
			out.Pbxes[c.pbx] = cmp.Or(why, "not ready")
			if ok {
				out.Pbxes[c.pbx] = "ready"
			}
		}
		if !ok && !c.optional {
			out.Ready = false
			if why == "" {
				why = "not ready"
			}
			out.Reasons = append(out.Reasons, c.name+": "+why)
		}
	}
	return out
}

// newHandler builds the one HTTP mux: the router's endpoints, the popper's
// panel and streams (when built), probes and metrics. streams ends the pop
// streams when it is cancelled, so a shutdown does not wait for them.
func newHandler(p *pipeline, rd *readiness, streams context.Context) http.Handler {
	mux := http.NewServeMux()
	rh := p.router.Handler()
	// Every endpoint that returns or changes data needs its scope (or, with
	// no api.keys, a loopback client); probes and the panel's own token
	// scheme stay as they are.
	mux.Handle("/v1/lookup", p.router.Audited("lookup", p.auth.Require(apiauth.ScopeLookup, rh)))
	// a refused format=multiset request must not hand its error text to multiset
	mux.Handle("/v1/route", router.MultisetSafe(p.auth.Require(apiauth.ScopeRoute, rh)))
	mux.Handle("/v1/cache/", p.router.Audited("cache", p.auth.Require(apiauth.ScopeCache, rh)))
	mux.Handle("/v1/contacts", p.router.Audited("contacts", p.auth.Require(apiauth.ScopeContacts, rh)))
	mux.Handle("/v1/contacts/", p.router.Audited("contacts", p.auth.Require(apiauth.ScopeContacts, rh)))
	if p.callbacks != nil {
		// audited: which key asked callpop to dial (never the number)
		cb := p.router.Audited("callbacks", p.auth.Require(apiauth.ScopeCallbacks, p.callbacks.Handler()))
		mux.Handle("/v1/callbacks", cb)
		mux.Handle("/v1/callbacks/", cb)
	}
	if p.popper != nil {
		ph := p.popper.Handler()
		mux.Handle("GET /{$}", ph) // exactly "/": a redirect to the panel
		mux.Handle("/agent", ph)
		mux.Handle("/agent/", ph)
		mux.Handle("/v1/agents/", longLived(ph, streams))
		mux.Handle("/v1/pops/", ph) // the agent's choice and one-click actions, under the panel's token
		statsRoutes(mux, p, rd, streams)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(`{"alive":true}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := rd.status()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !st.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	var metrics http.Handler = promhttp.Handler()
	if !p.cfg.API.MetricsOpen {
		metrics = p.auth.Require(apiauth.ScopeMetrics, metrics)
	}
	mux.Handle("GET /metrics", metrics)
	return mux
}

// longLived serves streams: no server write deadline (the handler bounds
// each write itself), and the request ends when done is cancelled.
func longLived(h http.Handler, done context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(done, cancel)
		defer stop()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// newHTTPServer wraps h with callpop's timeouts; the server's own errors go
// to log.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn),
	}
}

// exposureWarnings are what start-up says of an HTTP listener reachable
// from other hosts: without api.keys its API answers loopback clients only;
// without TLS its keys and the customers' data cross the network in clear.
func exposureWarnings(cfg Config) []string {
	if !netallow.BeyondLoopback(cfg.Listen) {
		return nil
	}
	var out []string
	if len(cfg.API.Keys) == 0 && cfg.TLS.ClientCAFile == "" {
		refused := "/v1/route, /v1/lookup, DELETE /v1/cache, /v1/contacts, /v1/callbacks, /v1/stats (to all but supervisors' panel tokens)"
		if !cfg.API.MetricsOpen {
			refused += " and /metrics"
		}
		out = append(out, fmt.Sprintf("listen %s is reachable from other hosts but api.keys is empty: %s answer only loopback clients "+
			"(others get 401); configure api.keys (see docs/security.md)", cfg.Listen, refused))
	}
	if !cfg.TLS.Enabled() {
		out = append(out, fmt.Sprintf("listen %s is reachable from other hosts without TLS: API keys, agent tokens and customer data "+
			"cross the network in clear; set tls.cert_file and tls.key_file, or put a TLS proxy in front", cfg.Listen))
	}
	return out
}

// serve serves srv on ln, over TLS from tls.cert_file/key_file when set
// (re-read when the files change).
func serve(srv *http.Server, ln net.Listener, cfg tlsfiles.Config, log *slog.Logger) error {
	if !cfg.Enabled() {
		return srv.Serve(ln)
	}
	ts, err := tlsfiles.NewServer(cfg, log)
	if err != nil {
		return err
	}
	srv.TLSConfig = ts.TLSConfig()
	return srv.ServeTLS(ln, "", "")
}
