package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
)

// demoPBXs reads --pbx: asterisk, freeswitch, or both ("asterisk,freeswitch").
func demoPBXs(list string) ([]string, error) {
	var kinds []string
	for _, k := range strings.Split(list, ",") {
		k = strings.TrimSpace(k)
		if k != PBXAsterisk && k != PBXFreeSWITCH || slices.Contains(kinds, k) {
			return nil, fmt.Errorf("demo: --pbx %q is not supported (asterisk, freeswitch, or asterisk,freeswitch)", list)
		}
		kinds = append(kinds, k)
	}
	return kinds, nil
}

// runDemoBoth is `callpop demo --pbx asterisk,freeswitch`: both simulated
// PBXs side by side under one pipeline and one popper, as pbxes runs them:
// each adapter's calls named after its PBX ("asterisk/…", "freeswitch/…"),
// agents 1001–1003 with a phone on each, --rate shared between them.
func runDemoBoth(ctx context.Context, o demoOptions, out, errOut io.Writer) error {
	ctx, d, err := newDemo(ctx, o, out, errOut, ariAgentEndpoint, eslAgentEndpoint)
	if err != nil {
		return err
	}
	defer d.close()
	shared := newDecisionStore()
	deps := func(name string) adapters.Deps {
		base := d.adapterDeps()
		sc := &pbxScope{name: name, namespaced: true, decider: base.Decider, sink: base.Sink, shared: shared, log: d.log.With("pbx", name)}
		return adapters.Deps{Decider: sc, Sink: sc, Logger: sc.log, Budget: base.Budget, PBX: name}
	}

	sim, ast, err := d.asteriskSim(deps(PBXAsterisk))
	if err != nil {
		return err
	}
	defer sim.Close()
	events, fs, err := d.freeswitchSim(deps(PBXFreeSWITCH))
	if err != nil {
		return err
	}
	defer events.Close()

	d.start(func(ctx context.Context) error { // each adapter on its own
		var wg sync.WaitGroup
		wg.Go(func() { _ = ast.Run(ctx) })
		wg.Go(func() { _ = fs.Run(ctx) })
		wg.Wait()
		return nil
	})
	defer d.stop()
	fmt.Fprintln(out, "callpop demo: connecting to the simulated Asterisk and FreeSWITCH…")
	if !d.waitFor(ctx, func() bool { ok, _ := ast.Ready(); return ok && fs.Addr() != "" }) {
		return d.shutdown(nil)
	}
	base, panel, err := d.serveAPIChecks(func(rd *readiness) {
		rd.addPBX("pbx "+PBXAsterisk, PBXAsterisk, true, ast.Ready)
		rd.addPBX("pbx "+PBXFreeSWITCH, PBXFreeSWITCH, true, fs.Ready)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "callpop demo: simulated Asterisk at %s, simulated FreeSWITCH (socket app → %s, event socket %s)\n", sim.URL(), fs.Addr(), events.Addr())
	if base != "" {
		fmt.Fprintf(out, "  API at %s; agent 1002's panel (pops from both PBXs): %s\n", base, panel)
		printTryLines(out, base, false) // callbacks need callbacks.pbx to name the PBX that dials
	}
	sc := &demoSocketCalls{d: d, rate: o.Rate / 2, sim: eslsim.NewOutbound(fs.Addr(), eslsim.Options{}), events: events}
	mix := demoMix(o.Agents)
	offer := func(ctx context.Context) {
		var wg sync.WaitGroup
		wg.Go(func() { sim.Generate(ctx, o.Rate/2, 0, mix) })
		wg.Go(func() { sc.offer(ctx) })
		wg.Wait()
	}
	return d.offerAndPrint(ctx, offer, func() {
		fmt.Fprint(out, "asterisk ")
		printDemoSummary(out, sim, d.cfg.Call.Budget)
		fmt.Fprint(out, "freeswitch ")
		sc.summary()
	})
}
