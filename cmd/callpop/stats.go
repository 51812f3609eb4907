package main

import (
	"context"
	"net/http"

	"github.com/callpop/callpop/internal/apiauth"
	"github.com/callpop/callpop/stats"
)

// statsRoutes adds the live stats to mux: the page /stats and its assets,
// GET /v1/stats and the stream GET /v1/stats/stream (scope stats, or a
// supervisor's panel token).
func statsRoutes(mux *http.ServeMux, p *pipeline, rd *readiness, streams context.Context) {
	if p.stats == nil {
		return
	}
	h := p.stats.Handler(stats.Access{
		Require:    func(h http.Handler) http.Handler { return p.auth.Require(apiauth.ScopeStats, h) },
		Supervisor: p.popper.Supervisor,
	}, func() stats.PBX { return pbxState(p.cfg.PBX.Kind, rd) })
	mux.Handle("GET /stats", h)
	mux.Handle("GET /stats/", h)
	mux.Handle("GET /v1/stats", h)
	mux.Handle("GET /v1/stats/stream", longLived(h, streams))
}

// pbxState is the PBX connection as /readyz's "pbx" check sees it; kind
// is pbx.kind ("simulated" for the demo's simulators, which run without one).
func pbxState(kind string, rd *readiness) stats.PBX {
	rd.mu.Lock()
	checks := append([]readyCheck(nil), rd.checks...)
	rd.mu.Unlock()
	for _, c := range checks {
		if c.name != "pbx" {
			continue
		}
		if kind == "" || kind == PBXNone {
			kind = "simulated"
		}
		out := stats.PBX{Kind: kind}
		out.Connected, out.Reason = c.ready()
		return out
	}
	if kind == "" || kind == PBXNone {
		return stats.PBX{Kind: "none"}
	}
	return stats.PBX{Kind: kind, Reason: "not started"}
}
