package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/callpop/callpop/adapters"
)

// Several simulators at once: --pbx asterisk,freeswitch-outbound runs each
// named simulator with its own adapter (or bare client) on the one pipeline,
// as callpop run does with pbxes, and offers the calls to them in turn. The
// report has the whole load's figures and each PBX's (Report.PBXes).

// pbxList splits a --pbx value into its simulators' names; one name is a
// list of one.
func pbxList(name string) []string { return strings.Split(name, ",") }

// checkPBX says whether name is one simulator or a list of distinct ones
// (direct, which has no PBX, only alone).
func checkPBX(name string) error {
	list := pbxList(name)
	if len(list) == 1 {
		if _, ok := targetFactories[name]; !ok {
			return fmt.Errorf("--pbx: %q is not one of %v", name, PBXNames())
		}
		return nil
	}
	for i, n := range list {
		if _, ok := targetFactories[n]; !ok || n == PBXDirect {
			return fmt.Errorf("--pbx: %q in %q is not one of %v (direct only alone)", n, name, slices.DeleteFunc(PBXNames(), func(s string) bool { return s == PBXDirect }))
		}
		if slices.Contains(list[:i], n) {
			return fmt.Errorf("--pbx: %q twice in %q", n, name)
		}
	}
	return nil
}

// multiTarget is several simulators driven as one: each call goes to the
// next one in turn, its Outcome naming which (Outcome.PBX).
type multiTarget struct {
	names []string
	ts    []Target
	next  atomic.Uint64
}

func newMultiTarget(name string, m mode, tc targetConfig) (Target, error) {
	if m == modeExternal {
		return nil, fmt.Errorf("bench: --pbx %s: a sidecar child runs one PBX", name)
	}
	mt := &multiTarget{names: pbxList(name)}
	for _, n := range mt.names {
		f, ok := targetFactories[n]
		if !ok || n == PBXDirect {
			return nil, fmt.Errorf("bench: --pbx %q: %q is not a simulator", name, n)
		}
		mt.ts = append(mt.ts, f(m, tc))
	}
	return mt, nil
}

// Start starts every simulator and its client on the same deps (the one
// pipeline); the PBX's name goes on its adapter's metrics.
func (mt *multiTarget) Start(ctx context.Context, deps adapters.Deps) error {
	for i, t := range mt.ts {
		d := deps
		d.PBX = mt.names[i]
		if err := t.Start(ctx, d); err != nil {
			return fmt.Errorf("%s: %w", mt.names[i], err)
		}
	}
	return nil
}

// Ready is true once every simulator is.
func (mt *multiTarget) Ready() bool {
	for _, t := range mt.ts {
		if !t.Ready() {
			return false
		}
	}
	return true
}

// Offer offers the call to the next simulator in turn.
func (mt *multiTarget) Offer(ctx context.Context, c Caller, dnis string) (Outcome, error) {
	i := int((mt.next.Add(1) - 1) % uint64(len(mt.ts)))
	o, err := mt.ts[i].Offer(ctx, c, dnis)
	o.PBX = mt.names[i]
	return o, err
}

// Close stops every simulator.
func (mt *multiTarget) Close() error {
	var errs []error
	for _, t := range mt.ts {
		errs = append(errs, t.Close())
	}
	return errors.Join(errs...)
}

// requests sums the simulators that count their requests.
func (mt *multiTarget) requests() (requests, offered int64) {
	for _, t := range mt.ts {
		if rc, ok := t.(requestCounter); ok {
			r, o := rc.requests()
			requests += r
			offered += o
		}
	}
	return requests, offered
}
