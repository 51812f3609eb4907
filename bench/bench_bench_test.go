package bench

import (
	"context"
	"log/slog"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
)

// benchSetup starts redis-server and the CRM stub and builds the pipeline.
func benchSetup(b *testing.B, budget time.Duration) (*Pipeline, *CRMStub) {
	b.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		b.Skip("redis-server not on PATH")
	}
	rs, err := StartRedis()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rs.Close)
	stub, err := StartCRMStub(1000, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stub.Close() })
	p, err := NewPipeline(PipelineConfig{CRMURL: stub.SourceURL(), RedisAddr: rs.Addr, Budget: budget, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p, stub
}

// BenchmarkDecideWarm is one full pipeline pass (normalise → look up → rules →
// variables) for a repeat caller: the in-process cache answers.
func BenchmarkDecideWarm(b *testing.B) {
	p, _ := benchSetup(b, 300*time.Millisecond)
	c := call.Call{ID: "bench-1", PBX: "bench", CLI: "(212) 234-0001", DNIS: dnis}
	ctx := context.Background()
	c.Received = time.Now()
	if d := p.Router.Decide(ctx, c); d.Match != call.MatchHit {
		b.Fatalf("warm-up: match %s (%s)", d.Match, d.Err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Received = time.Now()
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		d := p.Router.Decide(cctx, c)
		_ = d.Vars()
		cancel()
		if !d.Cached {
			b.Fatal("not served from the cache")
		}
	}
}

// BenchmarkDecideCold is one full pipeline pass for a number never seen: the
// HTTP CRM stub answers at once, the result is written to both cache tiers.
func BenchmarkDecideCold(b *testing.B) {
	p, _ := benchSetup(b, 300*time.Millisecond)
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		c := call.Call{ID: "bench-cold", PBX: "bench", CLI: unknownNumber(i % 6_000_000), DNIS: dnis, Received: time.Now()}
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		d := p.Router.Decide(cctx, c)
		cancel()
		if d.Match != call.MatchMiss {
			b.Fatalf("match %s (%s)", d.Match, d.Err)
		}
	}
}

// benchCalls runs one warm call at a time through a simulator and callpop's
// adapter; ns/op is the bench's wall time per call, e2e-µs/call the
// simulator's own event → released time (the figure that matters).
func benchCalls(b *testing.B, pbx string, bare bool) {
	p, _ := benchSetup(b, 300*time.Millisecond)
	log := slog.New(slog.DiscardHandler)
	t, err := newTarget(pbx, bare, targetConfig{log: log, ariChannelVars: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); t.Close() }()
	if err := t.Start(ctx, adapters.Deps{Decider: p.Router, Logger: log, Budget: 300 * time.Millisecond}); err != nil {
		b.Fatal(err)
	}
	if err := waitReady(ctx, t, 10*time.Second); err != nil {
		b.Fatal(err)
	}
	caller := Caller{Kind: KindKnown, CLI: CustomerNumber(1), E164: CustomerNumber(1)}
	if _, err := t.Offer(ctx, caller, dnis); err != nil { // warm the cache
		b.Fatal(err)
	}
	var lat []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		o, err := t.Offer(ctx, caller, dnis)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, o.Released.Sub(o.Sent))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(quantile(lat, 0.5))/1e3, "e2e-p50-µs")
}

func BenchmarkCallAsterisk(b *testing.B)               { benchCalls(b, PBXAsterisk, false) }
func BenchmarkCallAsteriskBare(b *testing.B)           { benchCalls(b, PBXAsterisk, true) }
func BenchmarkCallFreeSWITCHOutbound(b *testing.B)     { benchCalls(b, PBXFreeSWITCHOutbound, false) }
func BenchmarkCallFreeSWITCHOutboundBare(b *testing.B) { benchCalls(b, PBXFreeSWITCHOutbound, true) }
func BenchmarkCallFreeSWITCHInbound(b *testing.B)      { benchCalls(b, PBXFreeSWITCHInbound, false) }
func BenchmarkCallFreeSWITCHInboundBare(b *testing.B)  { benchCalls(b, PBXFreeSWITCHInbound, true) }
