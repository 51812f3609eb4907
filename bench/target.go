package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
)

// Outcome is what the simulator recorded of one offered call.
type Outcome struct {
	CallID   string    // the PBX id callpop saw (Call.ID)
	Sent     time.Time // the event was written to callpop
	LastVar  time.Time // the last variable was acknowledged (zero when unknown)
	Released time.Time // continue / exit / transfer reached the simulator
	PBX      string    // which simulator of several (--pbx a,b); "" with one
}

// Target is one PBX set-up the bench drives: a simulator and, on it, either
// callpop's adapter or a bare protocol client that does the same round trips
// with no look-up.
type Target interface {
	// Start starts the simulator and the client; the client's goroutines end with ctx.
	Start(ctx context.Context, deps adapters.Deps) error
	// Ready reports whether calls can be offered.
	Ready() bool
	// Offer offers one call and returns when the client let it go on, or ctx ended.
	Offer(ctx context.Context, c Caller, dnis string) (Outcome, error)
	// Close stops the simulator.
	Close() error
}

// PBX names accepted by --pbx.
const (
	PBXAsterisk           = "asterisk"
	PBXFreeSWITCHOutbound = "freeswitch-outbound"
	PBXFreeSWITCHInbound  = "freeswitch-inbound"
	PBXDirect             = "direct" // no PBX: Decide called in-process (the pipeline alone)
)

// mode says what runs on a target's simulator.
type mode int

const (
	modeCallpop  mode = iota // callpop's adapter, in this process
	modeBare                 // the bare protocol client
	modeExternal             // nothing: a sidecar child process connects (see sidecar.go)
)

// targetConfig is what every target of one run shares.
type targetConfig struct {
	log *slog.Logger
	// ariChannelVars configures the ARI simulator with ari.conf channelvars
	// (ariChannelVarNames): StasisStart then carries the caller variables.
	ariChannelVars bool
	// maxCalls is the adapter's max_calls; 0 = its default.
	maxCalls int
	// bareDecisions are what the bare client sets, one call after the other
	// (none: bareDecision()): Run takes known callers' decisions, one per
	// CRM stub tier, from its pipeline.
	bareDecisions []call.Decision
}

func (tc targetConfig) decisions() []call.Decision {
	if len(tc.bareDecisions) > 0 {
		return tc.bareDecisions
	}
	return []call.Decision{bareDecision()}
}

func (o *Options) targetConfig(log *slog.Logger) targetConfig {
	return targetConfig{log: log, ariChannelVars: o.ARIChannelVars}
}

// targetFactories builds a Target per --pbx name. Each PBX file adds itself in init.
var targetFactories = map[string]func(m mode, tc targetConfig) Target{
	PBXDirect: func(m mode, _ targetConfig) Target { return &directTarget{bare: m == modeBare} },
}

// simOnly is a Target whose simulator serves an external sidecar.
type simOnly interface {
	// Endpoint is what the sidecar connects to ("" when the simulator dials the sidecar).
	Endpoint() string
	// Attach points a dialling simulator at the sidecar's listener.
	Attach(addr string)
}

// PBXNames lists the --pbx values this build supports.
func PBXNames() []string {
	out := make([]string, 0, len(targetFactories))
	for k := range targetFactories {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func newTarget(name string, bare bool, tc targetConfig) (Target, error) {
	m := modeCallpop
	if bare {
		m = modeBare
	}
	return newTargetMode(name, m, tc)
}

func newTargetMode(name string, m mode, tc targetConfig) (Target, error) {
	if strings.Contains(name, ",") {
		return newMultiTarget(name, m, tc)
	}
	f, ok := targetFactories[name]
	if !ok {
		return nil, fmt.Errorf("bench: --pbx %q: not one of %v", name, PBXNames())
	}
	return f(m, tc), nil
}

// directTarget calls the Decider in-process, the way an adapter does
// (adapters.Decide under the budget), with no protocol at all. Its bare
// variant returns at once, so it has no meaningful overhead ratio.
type directTarget struct {
	bare bool
	deps adapters.Deps
	seq  atomic.Int64
}

func (t *directTarget) Start(_ context.Context, deps adapters.Deps) error {
	t.deps = deps.WithDefaults()
	return nil
}

func (t *directTarget) Ready() bool { return true }

func (t *directTarget) Offer(ctx context.Context, c Caller, dnis string) (Outcome, error) {
	id := "direct-" + strconv.FormatInt(t.seq.Add(1), 10)
	now := time.Now()
	o := Outcome{CallID: id, Sent: now}
	if !t.bare {
		cctx, cancel := context.WithDeadline(ctx, now.Add(t.deps.Budget))
		d := adapters.Decide(cctx, t.deps.Decider, call.Call{ID: id, PBX: "bench", CLI: c.CLI, DNIS: dnis, Received: now}, t.deps.Logger)
		cancel()
		_ = d.Vars()
	}
	o.Released = time.Now()
	o.LastVar = o.Released
	return o, nil
}

func (t *directTarget) Close() error { return nil }
