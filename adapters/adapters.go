// Package adapters declares the contract between callpop and a PBX: what an
// adapter is given (a Decider, a LegSink, a logger, the call budget) and what
// it gives back (a Run loop that owns its connections, and readiness).
// Each PBX is its own package below this one.
package adapters

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/call"
)

// Adapter connects callpop to one PBX.
type Adapter interface {
	// Run owns the adapter's connections and goroutines until ctx ends. It
	// returns nil on a clean stop; a PBX that is down is not an error (the
	// adapter reconnects), a config that cannot work is.
	Run(ctx context.Context) error
	// Ready reports whether the adapter is connected and receiving calls;
	// the reason says why not.
	Ready() (bool, string)
}

// Deps is what main hands an adapter.
type Deps struct {
	Decider call.Decider
	Sink    call.LegSink  // nil means call.NopSink
	Logger  *slog.Logger  // nil means slog.Default()
	Budget  time.Duration // the call's deadline budget, from the moment its event is read
	// PBX names the PBX in the adapter's metrics (their pbx label): a pbxes
	// entry's name. Empty means the adapter's kind ("asterisk",
	// "freeswitch"), the name of the single pbx section.
	PBX string
}

// WithDefaults fills the zero fields of d.
func (d Deps) WithDefaults() Deps {
	if d.Sink == nil {
		d.Sink = call.NopSink{}
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Budget <= 0 {
		d.Budget = 300 * time.Millisecond
	}
	return d
}

// Decide runs the decider for c under ctx (which carries the call's deadline)
// and never panics: a panic in the pipeline becomes Match=error, so the
// adapter always has something to apply before it lets the call go on.
func Decide(ctx context.Context, dec call.Decider, c call.Call, log *slog.Logger) (d call.Decision) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("decider panicked", "component", "adapters", "call", c, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			d = call.Decision{Match: call.MatchError, Err: "internal error"}
		}
	}()
	return dec.Decide(ctx, c)
}

// DecideAsync asks dec for c's decision without holding a goroutine while
// the decider waits, when dec is a call.AsyncDecider; any other decider runs
// on a goroutine of its own (through Decide). done is called exactly once: a
// decider that calls it again is ignored, and a panic in the synchronous part
// of DecideAsync (or in the goroutine a plain decider runs on) becomes
// Match=error, logged, like Decide. done may run before DecideAsync returns.
// Deadlines are the decider's contract: the adapter keeps its own watchdog.
func DecideAsync(ctx context.Context, dec call.Decider, c call.Call, log *slog.Logger, done func(call.Decision)) {
	ad, ok := dec.(call.AsyncDecider)
	if !ok {
		go func() { done(Decide(ctx, dec, c, log)) }()
		return
	}
	var once atomic.Bool
	handOnce := func(d call.Decision) { // the first decision goes on; a second is dropped
		if once.CompareAndSwap(false, true) {
			done(d)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			log.Error("decider panicked", "component", "adapters", "call", c, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			handOnce(call.Decision{Match: call.MatchError, Err: "internal error"})
		}
	}()
	ad.DecideAsync(ctx, c, handOnce)
}
