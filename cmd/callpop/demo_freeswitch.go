package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

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
	ctx, d, err := newDemo(ctx, o, out, errOut, eslAgentEndpoint)
	if err != nil {
		return err
	}
	defer d.close()
	events, adapter, err := d.freeswitchSim(d.adapterDeps())
	if err != nil {
		return err
	}
	defer events.Close()
	d.start(adapter.Run)
	defer d.stop()
	if !d.waitFor(ctx, func() bool { return adapter.Addr() != "" }) {
		return d.shutdown(nil)
	}
	if err := d.startCallbacks(PBXFreeSWITCH, adapter); err != nil {
		return err
	}
	base, panel, err := d.serveAPI(adapter.Ready)
	if err != nil {
		return err
	}
	if base != "" {
		fmt.Fprintf(out, "callpop demo: simulated FreeSWITCH (socket app → %s, event socket %s), API at %s\n", adapter.Addr(), events.Addr(), base)
		fmt.Fprintf(out, "  agent 1002's panel: %s\n", panel)
		fmt.Fprintf(out, "  live stats (1002 is a supervisor; open the panel first): %s/stats\n", base)
		printTryLines(out, base, true)
	} else {
		fmt.Fprintf(out, "callpop demo: simulated FreeSWITCH (socket app → %s)\n", adapter.Addr())
	}
	sc := &demoSocketCalls{d: d, sim: eslsim.NewOutbound(adapter.Addr(), eslsim.Options{}), events: events}
	return d.offerAndPrint(ctx, sc.offer, sc.summary)
}

// demoSocketCallers are the simulated FreeSWITCH's callers, offered in turn.
var demoSocketCallers = []eslsim.Caller{
	{Number: demoKnown[0], Name: "Known"}, {Number: "+14155550100", Name: "Unknown"}, {Number: "anonymous", Name: "Anonymous"},
	{Number: demoKnown[1], Name: "Withheld", HideNumber: true}, {Number: demoKnown[2]},
	{Number: "+49 (0)201/123-45 67#*%x;ext=9", Name: "Junk ${system(id)}"}, {Number: demoKnown[3]}, {Number: demoKnown[4]},
}

// demoSocketCalls offers calls through the dialplan's socket app and keeps
// how long each was held until its exit.
type demoSocketCalls struct {
	d      *demo
	rate   float64 // calls a second; 0 = --rate
	sim    *eslsim.Outbound
	events *eslsim.Inbound
	calls  sync.WaitGroup
	mu     sync.Mutex
	held   []time.Duration
	late   int
	stuck  int
}

// offer offers --rate calls a second until ctx ends, each on a goroutine of
// its own that rings the agents after the call when --agents is set.
func (sc *demoSocketCalls) offer(ctx context.Context) {
	rate := sc.rate
	if rate <= 0 {
		rate = sc.d.o.Rate
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			sc.calls.Add(1)
			go sc.call(demoSocketCallers[i%len(demoSocketCallers)], i)
		}
	}
}

// call is one call of c, the nth offered.
func (sc *demoSocketCalls) call(c eslsim.Caller, n int) {
	defer sc.calls.Done()
	parts := sc.d.parts
	cctx, cancel := context.WithTimeout(parts, 5*time.Second)
	defer cancel()
	res, err := sc.sim.Call(cctx, c)
	sc.mu.Lock()
	if err != nil {
		sc.stuck++
	} else {
		held := res.Released.Sub(res.Offered)
		sc.held = append(sc.held, held)
		if held > sc.d.cfg.Call.Budget {
			sc.late++
		}
	}
	sc.mu.Unlock()
	if err == nil && sc.d.o.Agents {
		sc.events.RingAgents(parts, res.UUID, eslsim.Ring{Agents: []string{"1001", "1002", "1003"}, Answer: n % 3,
			RingFor: 1500 * time.Millisecond, TalkFor: 3 * time.Second})
	}
}

// summary waits for the calls and reports how long they were held.
func (sc *demoSocketCalls) summary() {
	sc.calls.Wait()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	p50, p99 := demoQuantiles(sc.held)
	fmt.Fprintf(sc.d.out, "summary: %d calls released by exit (p50 %v, p99 %v connect→exit; %d over the %v budget), %d stuck\n",
		len(sc.held), p50, p99, sc.late, sc.d.cfg.Call.Budget, sc.stuck)
}
