package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/callpop/callpop/adapters/esl"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
)

// simFreeSWITCHMode is the Event Socket mode of a simulated FreeSWITCH named
// without one: `demo --pbx freeswitch` runs it, `bench --pbx freeswitch`
// measures it.
const simFreeSWITCHMode = "outbound"

// runDemoFreeSWITCH is `callpop demo --pbx freeswitch`: the ESL simulator in
// outbound mode (the dialplan's socket app connects to callpop for each call),
// plus a simulated event socket for agent-leg pops, the real pipeline and the
// ESL adapter.
func runDemoFreeSWITCH(ctx context.Context, o demoOptions, out, errOut io.Writer) error {
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	log := newLogger(LogConfig{Level: "warn", Format: "text", MaskPersonalData: true}, errOut)
	cfg, p, err := newDemoPipeline(log, func(ag string) string { return "user/" + ag })
	if err != nil {
		return err
	}
	defer p.Close()

	eslPass := randomHex(12)
	events, err := eslsim.NewInbound(eslsim.Options{Password: eslPass})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer events.Close()
	fcfg := cfg.PBX.FreeSWITCH
	fcfg.Mode, fcfg.Listen, fcfg.Events, fcfg.Address, fcfg.Password = simFreeSWITCHMode, "127.0.0.1:0", true, events.Addr(), eslPass
	lines := make(chan string, 256)
	deps := p.adapterDeps()
	deps.Sink = &demoSink{next: deps.Sink, lines: lines}
	adapter, err := esl.New(fcfg, deps)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	partsCtx, stopParts := context.WithCancel(context.Background())
	defer stopParts()
	wg.Go(func() { _ = p.popper.Run(partsCtx) })
	wg.Go(func() { _ = adapter.Run(partsCtx) })

	var srv *http.Server
	for adapter.Addr() == "" {
		select {
		case <-ctx.Done():
			return shutdownDemo(srv, stopParts, nil)
		case <-time.After(10 * time.Millisecond):
		}
	}
	sim := eslsim.NewOutbound(adapter.Addr(), eslsim.Options{})
	if o.Listen != "" {
		var base, panel string
		if srv, base, panel, err = serveDemoAPI(o.Listen, cfg, p, adapter.Ready, partsCtx, &wg, log); err != nil {
			return err
		}
		fmt.Fprintf(out, "callpop demo: simulated FreeSWITCH (socket app → %s, event socket %s), API at %s\n", adapter.Addr(), events.Addr(), base)
		fmt.Fprintf(out, "  agent 1002's panel: %s\n", panel)
	} else {
		fmt.Fprintf(out, "callpop demo: simulated FreeSWITCH (socket app → %s)\n", adapter.Addr())
	}
	fmt.Fprintf(out, "%-8s  %-9s  %-9s  %-5s  %-4s  %-10s  %-14s  %s\n", "time", "caller", "match", "src", "prio", "queue", "number", "elapsed")

	callers := []eslsim.Caller{
		{Number: demoKnown[0], Name: "Known"}, {Number: "+14155550100", Name: "Unknown"}, {Number: "anonymous", Name: "Anonymous"},
		{Number: demoKnown[1], Name: "Withheld", HideNumber: true}, {Number: demoKnown[2]},
		{Number: "+49 (0)201/123-45 67#*%x;ext=9", Name: "Junk ${system(id)}"}, {Number: demoKnown[3]}, {Number: demoKnown[4]},
	}
	var mu sync.Mutex
	var held []time.Duration
	var late, stuck int
	var calls sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
		case l := <-lines:
			fmt.Fprintln(out, l)
			i--
			continue
		case <-tick.C:
			calls.Add(1)
			go func(c eslsim.Caller, n int) {
				defer calls.Done()
				cctx, cancel := context.WithTimeout(partsCtx, 5*time.Second)
				defer cancel()
				res, err := sim.Call(cctx, c)
				mu.Lock()
				switch {
				case err != nil:
					stuck++
				default:
					d := res.Released.Sub(res.Offered)
					held = append(held, d)
					if d > cfg.Call.Budget {
						late++
					}
				}
				mu.Unlock()
				if err == nil && o.Agents {
					events.RingAgents(partsCtx, res.UUID, eslsim.Ring{Agents: []string{"1001", "1002", "1003"}, Answer: n % 3,
						RingFor: 1500 * time.Millisecond, TalkFor: 3 * time.Second})
				}
			}(callers[i%len(callers)], i)
			continue
		}
		break
	}
	time.Sleep(cfg.Call.Budget + 50*time.Millisecond)
	for drained := false; !drained; {
		select {
		case l := <-lines:
			fmt.Fprintln(out, l)
		default:
			drained = true
		}
	}
	return shutdownDemo(srv, stopParts, func() {
		calls.Wait()
		mu.Lock()
		defer mu.Unlock()
		slices.Sort(held)
		pct := func(p float64) time.Duration {
			if len(held) == 0 {
				return 0
			}
			return held[min(len(held)-1, int(p*float64(len(held))))]
		}
		fmt.Fprintf(out, "summary: %d calls released by exit (p50 %v, p99 %v connect→exit; %d over the %v budget), %d stuck\n",
			len(held), pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), late, cfg.Call.Budget, stuck)
	})
}
