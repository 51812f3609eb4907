package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/ari"
	"github.com/callpop/callpop/adapters/esl"
	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/popper"
)

func init() { register(newDemoCmd) }

// demoOptions are the flags of `callpop demo`.
type demoOptions struct {
	PBX      string
	Duration time.Duration
	Rate     float64
	Listen   string
	Agents   bool
}

func newDemoCmd() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run callpop against a simulated PBX with the sample CRM and watch calls being enriched",
		Long: `Run callpop in one process against a simulated PBX (the ARI simulator for Asterisk),
with the embedded defaults: the sample CSV CRM, the in-process cache and the default rules.
A few calls a second arrive (known, unknown, anonymous, ANI-only, junk caller IDs); each
prints one line: match, priority, queue and the time from the PBX event to the decision.
The agent panel and the HTTP API are served on --listen. Ctrl-C stops it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.PBX, "pbx", PBXAsterisk, "simulated PBX: asterisk, freeswitch, or both side by side (asterisk,freeswitch)")
	cmd.Flags().DurationVar(&o.Duration, "duration", 0, "stop after this long (0 = until Ctrl-C)")
	cmd.Flags().Float64Var(&o.Rate, "rate", 3, "calls per second")
	cmd.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:8080", "HTTP listener for the API and the agent panel (\"\" = none)")
	cmd.Flags().BoolVar(&o.Agents, "agents", true, "simulate agents ringing and answering after each call, for the panel")
	return cmd
}

// demoKnown are sample CRM customers' numbers (crm/sample/customers.csv).
var demoKnown = []string{"+31201234567", "+14155550123", "+442079460018", "+33142685300", "+4930901820"}

// runDemo runs the simulator, the pipeline and the adapter until ctx ends
// or the duration passes, printing a line per call to out.
func runDemo(ctx context.Context, o demoOptions, out, errOut io.Writer) error {
	kinds, err := demoPBXs(o.PBX)
	if err != nil {
		return err
	}
	if o.Rate <= 0 || math.IsInf(o.Rate, 0) || math.IsNaN(o.Rate) {
		return errors.New("demo: --rate must be positive")
	}
	if len(kinds) > 1 {
		fmt.Fprintf(out, "callpop demo: starting callpop with the sample CRM, the in-process cache and the default rules, "+
			"and a simulated Asterisk (ARI) beside a simulated FreeSWITCH (Event Socket), offering %g calls a second between them\n", o.Rate)
		return runDemoBoth(ctx, o, out, errOut)
	}
	o.PBX = kinds[0]
	pbxName := map[string]string{PBXAsterisk: "Asterisk (ARI)", PBXFreeSWITCH: "FreeSWITCH (Event Socket)"}[o.PBX]
	fmt.Fprintf(out, "callpop demo: starting callpop with the sample CRM, the in-process cache and the default rules, "+
		"and a simulated %s offering %g calls a second\n", pbxName, o.Rate)
	if o.PBX == PBXFreeSWITCH {
		return runDemoFreeSWITCH(ctx, o, out, errOut)
	}
	ctx, d, err := newDemo(ctx, o, out, errOut, ariAgentEndpoint)
	if err != nil {
		return err
	}
	defer d.close()
	sim, adapter, err := d.asteriskSim(d.adapterDeps())
	if err != nil {
		return err
	}
	defer sim.Close()
	d.start(adapter.Run)
	defer d.stop()
	if err := d.startCallbacks(PBXAsterisk, adapter); err != nil {
		return err
	}
	base, panel, err := d.serveAPI(adapter.Ready)
	if err != nil {
		return err
	}
	if base != "" {
		fmt.Fprintf(out, "callpop demo: simulated Asterisk at %s, API at %s\n", sim.URL(), base)
		fmt.Fprintf(out, "  agent 1002's panel: %s\n", panel)
		fmt.Fprintf(out, "  live stats (1002 is a supervisor; open the panel first): %s/stats\n", base)
		printTryLines(out, base, true)
	} else {
		fmt.Fprintf(out, "callpop demo: simulated Asterisk at %s\n", sim.URL())
	}
	fmt.Fprintln(out, "callpop demo: connecting to the simulated Asterisk…")
	if !d.waitFor(ctx, func() bool { ok, _ := adapter.Ready(); return ok }) {
		return d.shutdown(nil)
	}
	mix := demoMix(o.Agents)
	return d.offerAndPrint(ctx, func(ctx context.Context) { sim.Generate(ctx, o.Rate, 0, mix) },
		func() { printDemoSummary(out, sim, d.cfg.Call.Budget) })
}

// demoContact is the chat the demo suggests posting to /v1/contacts: a
// known customer, popped to agent 1002 (the panel URL the demo prints).
const demoContact = `{"channel":"chat","from":{"phone":"+31201234567","name":"Anna"},"subject":"Where is my December delivery?","agent":"1002"}`

// demoMix is the simulated Asterisk's mix of callers, each rung to agents
// 1001–1003 in turn when agents is set.
func demoMix(agents bool) []arisim.CallSpec {
	mix := arisim.Mix(demoKnown, "+14155550100")
	if agents {
		for i := range mix {
			mix[i].Agents = []string{"PJSIP/1001", "PJSIP/1002", "PJSIP/1003"}
			mix[i].Answer = i % 3
			mix[i].RingFor = 1500 * time.Millisecond
			mix[i].TalkFor = 3 * time.Second
		}
	}
	return mix
}

// demo is what the demos on both simulated PBXs share: the options, the
// pipeline, the lines printed per call, the parts that run, the HTTP server.
type demo struct {
	o         demoOptions
	out       io.Writer
	log       *slog.Logger
	cfg       Config
	p         *pipeline
	lines     chan string
	endRun    context.CancelFunc // ends --duration's context
	wg        sync.WaitGroup
	parts     context.Context // the popper's, the adapter's and the agents' streams
	stopParts context.CancelFunc
	srv       *http.Server // nil without --listen
}

// ariAgentEndpoint and eslAgentEndpoint are the endpoints of agents
// 1001–1003 on the simulated Asterisk and FreeSWITCH.
func ariAgentEndpoint(ag string) string { return "PJSIP/" + ag + "-*" }
func eslAgentEndpoint(ag string) string { return "user/" + ag }

// newDemo builds the demo's pipeline (agents' endpoints named by endpoint,
// one or more per agent) and returns ctx ended after --duration; close
// releases both.
func newDemo(ctx context.Context, o demoOptions, out, errOut io.Writer, endpoint ...func(agent string) string) (context.Context, *demo, error) {
	d := &demo{o: o, out: out, lines: make(chan string, 256), endRun: func() {}}
	if o.Duration > 0 {
		ctx, d.endRun = context.WithTimeout(ctx, o.Duration)
	}
	d.log = newLogger(LogConfig{Level: "warn", Format: "text", MaskPersonalData: true}, errOut)
	var err error
	if d.cfg, d.p, err = newDemoPipeline(d.log, endpoint...); err != nil {
		d.endRun()
		return ctx, nil, err
	}
	return ctx, d, nil
}

// close releases the pipeline and --duration's context.
func (d *demo) close() {
	d.p.Close()
	d.endRun()
}

// adapterDeps are the pipeline's, with a sink that prints a line per call.
func (d *demo) adapterDeps() adapters.Deps {
	deps := d.p.adapterDeps()
	deps.Sink = &demoSink{next: deps.Sink, lines: d.lines}
	return deps
}

// start runs the popper and the adapter until stop.
func (d *demo) start(adapter func(context.Context) error) {
	d.parts, d.stopParts = context.WithCancel(context.Background())
	d.wg.Go(func() { _ = d.p.popper.Run(d.parts) })
	d.wg.Go(func() { _ = adapter(d.parts) })
}

// stop ends what start and serveAPI run, and waits for it.
func (d *demo) stop() {
	d.stopParts()
	d.wg.Wait()
}

// serveAPI serves the HTTP API and the agent panel on --listen, if given;
// it returns the base URL and agent 1002's panel URL ("" without --listen).
func (d *demo) serveAPI(ready func() (bool, string)) (base, panel string, err error) {
	return d.serveAPIChecks(func(rd *readiness) { rd.add("pbx", ready) })
}

// serveAPIChecks is serveAPI with /readyz's checks added by checks.
func (d *demo) serveAPIChecks(checks func(rd *readiness)) (base, panel string, err error) {
	if d.o.Listen == "" {
		return "", "", nil
	}
	d.srv, base, panel, err = serveDemoAPI(d.o.Listen, d.cfg, d.p, checks, d.parts, &d.wg, d.log)
	return base, panel, err
}

// waitFor polls cond until it holds (true) or ctx ends (false).
func (d *demo) waitFor(ctx context.Context, cond func() bool) bool {
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

// offerAndPrint prints the column heading, then offers calls (offer runs
// until ctx ends) and prints their lines; it lets the calls in flight end
// (each within its budget), prints what is left and shuts down with summary.
func (d *demo) offerAndPrint(ctx context.Context, offer func(context.Context), summary func()) error {
	fmt.Fprintf(d.out, "%-8s  %-9s  %-9s  %-5s  %-4s  %-10s  %-14s  %s\n", "time", "caller", "match", "src", "prio", "queue", "number", "elapsed")
	offered := make(chan struct{})
	go func() { // ends with ctx
		defer close(offered)
		offer(ctx)
	}()
	for {
		select {
		case l := <-d.lines:
			fmt.Fprintln(d.out, l)
			continue
		case <-ctx.Done():
		}
		break
	}
	<-offered
	time.Sleep(d.cfg.Call.Budget + 50*time.Millisecond)
	for {
		select {
		case l := <-d.lines:
			fmt.Fprintln(d.out, l)
			continue
		default:
		}
		break
	}
	return d.shutdown(summary)
}

// shutdown stops the parts and the HTTP server, then prints the summary.
func (d *demo) shutdown(summary func()) error {
	d.stopParts()
	if d.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = d.srv.Shutdown(ctx)
	}
	if summary != nil {
		summary()
	}
	return nil
}

// printDemoSummary reports the simulator's view: calls, continues, and the
// time from StasisStart to continue.
func printDemoSummary(out io.Writer, sim *arisim.Server, budget time.Duration) {
	var held []time.Duration
	var failed, hungUp, waiting, late int
	for _, r := range sim.Records() {
		switch {
		case r.Failed:
			failed++
		case r.HungUp:
			hungUp++
		case r.Continued.IsZero():
			waiting++
		default:
			d := r.Continued.Sub(r.Offered)
			held = append(held, d)
			if d > budget {
				late++
			}
		}
	}
	p50, p99 := demoQuantiles(held)
	fmt.Fprintf(out, "summary: %d calls continued (p50 %v, p99 %v StasisStart→continue; %d over the %v budget), %d failed over, %d hung up, %d still waiting\n",
		len(held), p50, p99, late, budget, failed, hungUp, waiting)
}

// demoQuantiles sorts held and returns its p50 and p99, to 10 µs (0 when empty).
func demoQuantiles(held []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(held)
	pct := func(p float64) time.Duration {
		if len(held) == 0 {
			return 0
		}
		return held[min(len(held)-1, int(p*float64(len(held))))].Round(10 * time.Microsecond)
	}
	return pct(0.50), pct(0.99)
}

// demoSink prints a line per enriched call and forwards everything.
type demoSink struct {
	next  call.LegSink
	lines chan string
}

func (s *demoSink) CallEnriched(e call.Enriched) {
	d := e.Decision
	number := call.MaskNumber(d.E164)
	if number == "" {
		number = "-"
	}
	queue := d.Queue
	if queue == "" {
		queue = "-"
	}
	src := string(d.Source)
	if src == "" {
		src = "-"
	}
	line := fmt.Sprintf("%-8s  %-9s  %-9s  %-5s  %-4d  %-10s  %-14s  %v",
		time.Now().Format("15:04:05"), demoKind(e.Call), d.Match, src, d.Priority, call.CleanValueN(queue, 10),
		number, time.Since(e.Call.Received).Round(10*time.Microsecond))
	select {
	case s.lines <- line:
	default: // never block a call on the terminal
	}
	s.next.CallEnriched(e)
}

func (s *demoSink) AgentLeg(e call.LegEvent) { s.next.AgentLeg(e) }
func (s *demoSink) CallEnded(e call.CallEnd) { s.next.CallEnded(e) }

// demoKind names the kind of caller ID the simulator offered.
func demoKind(c call.Call) string {
	switch {
	case c.CLI == "" && c.ANI != "":
		return "ani-only"
	case c.CLI == "anonymous" || (c.CLI == "" && c.ANI == ""):
		return "anonymous"
	case slices.Contains(demoKnown, c.CLI):
		return "known"
	case len(c.CLI) > 16:
		return "junk"
	}
	return "unknown"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newDemoPipeline is the demo's pipeline: embedded defaults, a fresh token
// secret, and agents 1001–1003 on the endpoints endpoint names.
func newDemoPipeline(log *slog.Logger, endpoints ...func(agent string) string) (Config, *pipeline, error) {
	cfg := DefaultConfig()
	cfg.Popper.TokenSecret = randomHex(16)
	cfg.Popper.Supervisors = []string{"1002"} // the panel URL printed also opens /stats
	for _, ag := range []string{"1001", "1002", "1003"} {
		ac := popper.AgentConfig{Agent: ag}
		for _, endpoint := range endpoints {
			ac.Endpoints = append(ac.Endpoints, endpoint(ag))
		}
		cfg.Popper.Agents = append(cfg.Popper.Agents, ac)
	}
	p, err := newPipeline(cfg, log, pipelineOptions{Popper: true})
	if err != nil {
		return cfg, nil, fmt.Errorf("demo: %w", err)
	}
	return cfg, p, nil
}

// serveDemoAPI serves the HTTP API and the agent panel on listen until the
// server is shut down; it returns the base URL and agent 1002's panel URL.
func serveDemoAPI(listen string, cfg Config, p *pipeline, checks func(rd *readiness), streams context.Context, wg *sync.WaitGroup, log *slog.Logger) (*http.Server, string, string, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, "", "", fmt.Errorf("demo: --listen: %w", err)
	}
	tok, err := popper.IssueToken([]byte(cfg.Popper.TokenSecret), "1002", 8*time.Hour, time.Now())
	if err != nil {
		ln.Close()
		return nil, "", "", fmt.Errorf("demo: %w", err)
	}
	rd := &readiness{}
	checks(rd)
	srv := newHTTPServer(newHandler(p, rd, streams), log)
	wg.Go(func() { _ = srv.Serve(ln) })
	base := "http://" + ln.Addr().String()
	return srv, base, base + "/agent?token=" + tok, nil
}

// asteriskSim starts the ARI simulator with a random password and an ARI
// adapter on it with deps; the caller closes the simulator.
func (d *demo) asteriskSim(deps adapters.Deps) (*arisim.Server, *ari.Adapter, error) {
	pass := randomHex(12)
	sim, err := arisim.New(arisim.Options{Username: "callpop", Password: pass, App: "callpop", Logger: d.log})
	if err != nil {
		return nil, nil, fmt.Errorf("demo: %w", err)
	}
	acfg := d.cfg.PBX.Asterisk
	acfg.URL, acfg.Username, acfg.Password, acfg.App = sim.URL(), "callpop", pass, "callpop"
	adapter, err := ari.New(acfg, deps)
	if err != nil {
		sim.Close()
		return nil, nil, fmt.Errorf("demo: %w", err)
	}
	return sim, adapter, nil
}

// freeswitchSim starts the simulated event socket (agent legs) with a
// random password and an ESL adapter in the demo's mode pointed at it, with
// deps; the caller closes the event socket.
func (d *demo) freeswitchSim(deps adapters.Deps) (*eslsim.Inbound, *esl.Adapter, error) {
	pass := randomHex(12)
	events, err := eslsim.NewInbound(eslsim.Options{Password: pass})
	if err != nil {
		return nil, nil, fmt.Errorf("demo: %w", err)
	}
	fcfg := d.cfg.PBX.FreeSWITCH
	fcfg.Mode, fcfg.Listen, fcfg.Events, fcfg.Address, fcfg.Password = simFreeSWITCHMode, "127.0.0.1:0", true, events.Addr(), pass
	adapter, err := esl.New(fcfg, deps)
	if err != nil {
		events.Close()
		return nil, nil, fmt.Errorf("demo: %w", err)
	}
	return events, adapter, nil
}

// printTryLines are the demo's lines to paste: a look-up, a chat contact
// for agent 1002 and its end, and (callbacks: the demo dials them) a web
// callback.
func printTryLines(out io.Writer, base string, callbacks bool) {
	fmt.Fprintf(out, "  try: curl '%s/v1/lookup?number=%%2B31201234567'\n", base)
	fmt.Fprintf(out, "  a chat for agent 1002: curl -X POST %s/v1/contacts -H 'Content-Type: application/json' -d '%s'\n", base, demoContact)
	fmt.Fprintf(out, "  (end it: curl -X POST %s/v1/contacts/<id>/end)\n", base)
	if callbacks {
		printCallbackTry(out, base)
	}
}
