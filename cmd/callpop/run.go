package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// stopTimeout bounds how long a stop (SIGINT, a failed part) waits for the
// parts to end.
const stopTimeout = 2 * time.Second

func init() { register(newRunCmd) }

func newRunCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the sidecar: HTTP endpoints, FastAGI, the PBX adapter and the popper",
		Long: `Run the sidecar: the HTTP listener (/v1/lookup, /v1/route, /v1/cache, /v1/contacts,
/v1/callbacks, /agent, /v1/agents/{agent}/pops, /stats, /v1/stats, /healthz, /readyz,
/metrics), FastAGI when router.fastagi.listen is set, the PBX adapters (pbx or pbxes),
the popper, and the callbacks' scheduler when callbacks.enabled is set.

SIGTERM drains: /readyz turns 503 at once, calls are still taken for call.drain_delay
(so load balancers see the 503 first), then work in flight gets up to
call.drain_timeout. SIGINT stops at once. Changes to the config file reload the
routing rules. Under systemd (Type=notify) it reports READY=1, STOPPING=1 and,
with WatchdogSec, WATCHDOG=1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lc, err := configFromCmd(cmd)
			if err != nil {
				return err
			}
			log, level := newLoggerVar(lc.Log, cmd.ErrOrStderr())
			return runSidecar(cmd.Context(), lc, log, level)
		},
	}
}

// sidecarPart is one long-running part of the sidecar.
type sidecarPart struct {
	name string
	run  func(ctx context.Context) error
}

// runSidecar runs until ctx ends (a drain, like SIGTERM), a signal arrives,
// or a part fails.
func runSidecar(ctx context.Context, lc loadedConfig, log *slog.Logger, level *slog.LevelVar) error {
	// Signals first: one that arrives during start-up still drains or stops.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	s := newSidecar(lc, log, level, sigs)
	return s.run(ctx)
}

// sidecar is one run of `callpop run`: its start-up, its parts, and its
// stop, each a step of its own.
type sidecar struct {
	lc    loadedConfig
	cfg   Config
	log   *slog.Logger // the root logger, for the parts
	mlog  *slog.Logger // component=main
	level *slog.LevelVar
	sigs  <-chan os.Signal
	// after is time.After; a test ends call.drain_delay itself.
	after  func(time.Duration) <-chan time.Time
	notify *systemdNotifier

	p          *pipeline
	pbxes      []pbxAdapter // none with pbx.kind none
	rd         *readiness
	ln         net.Listener
	srv        *http.Server
	streams    context.Context // the agents' pop streams end with it
	endStreams context.CancelFunc
	stopParts  context.CancelFunc // ends the parts' context
	parts      sync.WaitGroup
	failed     chan error // a part or the HTTP server failed
	httpDone   chan struct{}
}

func newSidecar(lc loadedConfig, log *slog.Logger, level *slog.LevelVar, sigs <-chan os.Signal) *sidecar {
	mlog := log.With("component", "main")
	return &sidecar{
		lc: lc, cfg: lc.Config, log: log, mlog: mlog, level: level, sigs: sigs,
		after:  time.After,
		notify: newSystemdNotifier(mlog),
	}
}

// run is the whole life of the sidecar, step by step.
func (s *sidecar) run(ctx context.Context) error {
	if err := s.checkConfig(); err != nil {
		return err
	}
	if err := s.build(); err != nil {
		return err
	}
	defer s.p.Close()
	defer s.endStreams()
	if err := s.listen(); err != nil {
		return err
	}
	parts := s.partList()
	partsCtx, stopParts := context.WithCancel(context.Background())
	s.stopParts = stopParts
	defer stopParts()
	s.start(partsCtx, parts)
	s.notify.ready(s.rd)
	defer s.notify.close()

	st := s.waitForStop(ctx)
	if st.drain {
		st = s.drainDelay(st)
	}
	s.stop(st)
	s.mlog.Info("stopped")
	return st.err
}

// checkConfig logs what start-up makes of the configuration, and refuses a
// run on the embedded sample customers unless crm.sample asks for it.
func (s *sidecar) checkConfig() error {
	if s.lc.Path == "" {
		s.mlog.Info("no config file; running on the embedded defaults", "looked_for", defaultConfigPath)
	}
	for _, w := range s.lc.Warnings {
		s.mlog.Warn(w) // before a refusal: a misspelt CALLPOP_CRM_SAMPLE is one
	}
	switch sample, err := s.lc.runCRM(); {
	case err != nil:
		return withFile(s.lc.Path, err)
	case sample != "":
		s.mlog.Warn(sample)
	}
	s.mlog.Info("starting", "version", versionString(), "config", s.lc.Path, "pbx", s.pbxNames(), "budget", s.cfg.Call.Budget.String())
	buildInfo.WithLabelValues(version, revision(), goVersion()).Set(1)
	return nil
}

// build makes the pipeline (CRM, cache, router, popper) and the PBX
// adapter; the caller closes s.p.
func (s *sidecar) build() error {
	p, err := newPipeline(s.cfg, s.log, pipelineOptions{Popper: true})
	if err != nil {
		return err
	}
	list, err := p.adapters()
	if err != nil {
		_ = p.Close()
		return err
	}
	if _, err := p.newCallbacks(list, true); err != nil {
		_ = p.Close()
		return err
	}
	s.p, s.pbxes = p, list
	s.streams, s.endStreams = context.WithCancel(context.Background())
	s.rd = &readiness{}
	_, legacy := s.cfg.pbxList()
	for _, pa := range list {
		name := "pbx" // the single pbx section: the check as before pbxes
		if !legacy {
			name = "pbx " + pa.entry.Name
		}
		s.rd.addPBX(name, pa.entry.Name, pa.entry.IsRequired(), pa.adapter.Ready)
	}
	pbxReady.rd.Store(s.rd)
	return nil
}

// listen opens the HTTP listener and builds its server (not serving yet).
func (s *sidecar) listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.ln = ln
	s.srv = newHTTPServer(newHandler(s.p, s.rd, s.streams), s.log)
	s.mlog.Info("http listening", "addr", ln.Addr().String(), "tls", s.cfg.TLS.Enabled(), "api_keys", len(s.cfg.API.Keys))
	for _, w := range exposureWarnings(s.cfg) {
		s.mlog.Warn(w)
	}
	return nil
}

// partList is what runs beside the HTTP server: the popper, FastAGI, the
// PBX adapter, and the config file's watcher.
func (s *sidecar) partList() []sidecarPart {
	parts := []sidecarPart{
		{"popper", s.p.popper.Run},
		{"fastagi", s.p.router.ServeFastAGI},
	}
	for _, pa := range s.pbxes {
		parts = append(parts, sidecarPart{"pbx " + pa.entry.Name, pa.adapter.Run})
	}
	if s.p.callbacks != nil {
		parts = append(parts, sidecarPart{"callbacks", s.p.callbacks.Run})
	}
	if s.lc.Path != "" {
		w := &configWatcher{path: s.lc.Path, current: s.cfg, pipeline: s.p, level: s.level, log: s.mlog}
		parts = append(parts, sidecarPart{"config watch", w.run})
	}
	return parts
}

// start runs the parts and the HTTP server. The parts do not inherit run's
// ctx: its end starts a drain, and the parts stop in the drain's order.
func (s *sidecar) start(partsCtx context.Context, parts []sidecarPart) {
	s.failed = make(chan error, len(parts)+1)
	for _, part := range parts {
		s.parts.Go(func() {
			err := part.run(partsCtx)
			if err != nil && partsCtx.Err() == nil {
				s.failed <- fmt.Errorf("%s: %w", part.name, err)
			}
		})
	}
	s.httpDone = make(chan struct{})
	go func() {
		defer close(s.httpDone)
		if err := serve(s.srv, s.ln, s.cfg.TLS, s.log); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.failed <- fmt.Errorf("http: %w", err)
		}
	}()
}

// stopping is why and how the sidecar stops.
type stopping struct {
	drain bool  // SIGTERM or ctx: let work in flight finish
	err   error // a part failed: run returns it
}

// waitForStop waits for ctx to end, a signal, or a part to fail.
func (s *sidecar) waitForStop(ctx context.Context) stopping {
	timeout := s.cfg.Call.DrainTimeout.String()
	select {
	case <-ctx.Done():
		s.mlog.Info("stopping: context ended; draining", "drain_delay", s.cfg.Call.DrainDelay.String(), "drain_timeout", timeout)
		return stopping{drain: true}
	case sig := <-s.sigs:
		if sig == syscall.SIGTERM {
			s.mlog.Info("SIGTERM: draining", "drain_delay", s.cfg.Call.DrainDelay.String(), "drain_timeout", timeout)
			return stopping{drain: true}
		}
		s.mlog.Info("SIGINT: stopping")
		return stopping{}
	case err := <-s.failed:
		s.mlog.Error("stopping: a part failed", "err", err)
		return stopping{err: err}
	}
}

// drainDelay turns /readyz to 503 and goes on serving, calls included,
// for call.drain_delay, so load balancers and Kubernetes see the instance
// leave before it stops taking calls. SIGINT or a failed part cuts it short.
func (s *sidecar) drainDelay(st stopping) stopping {
	s.rd.draining.Store(true)
	s.notify.stopping()
	if s.cfg.Call.DrainDelay <= 0 {
		return st
	}
	s.mlog.Info("draining: /readyz answers 503; still taking calls", "drain_delay", s.cfg.Call.DrainDelay.String())
	over := s.after(s.cfg.Call.DrainDelay)
	for {
		select {
		case <-over:
			s.mlog.Info("drain delay over: no new calls; waiting for calls in flight")
			return st
		case sig := <-s.sigs:
			if sig == syscall.SIGINT {
				s.mlog.Warn("SIGINT while draining: stopping now")
				return stopping{}
			}
		case err := <-s.failed:
			s.mlog.Error("stopping: a part failed while draining", "err", err)
			return stopping{err: err}
		}
	}
}

// stop stops taking new work and waits for work in flight: up to
// call.drain_timeout on a drain, stopTimeout otherwise.
//
// Pop streams end (agents' panels reconnect to another instance). The
// parts' contexts end: the adapter stops taking calls and lets those in
// flight go on before its Run returns. The HTTP listener keeps answering
// meanwhile (probes, dialplan look-ups), then closes and waits for requests
// in flight.
func (s *sidecar) stop(st stopping) {
	s.rd.draining.Store(true)
	if !st.drain {
		s.notify.stopping()
	}
	timeout := stopTimeout
	if st.drain {
		timeout = max(s.cfg.Call.DrainTimeout, stopTimeout)
	}
	deadline, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go s.stopOnSIGINT(deadline, cancel)
	s.endStreams()
	s.stopParts()
	partsDone := make(chan struct{})
	go func() { s.parts.Wait(); close(partsDone) }()
	select {
	case <-partsDone:
	case <-deadline.Done():
	}
	shutdownErr := s.srv.Shutdown(deadline)
	select {
	case <-partsDone:
	default:
		s.mlog.Warn("stop timeout: leaving with work in flight", "timeout", timeout.String())
	}
	if shutdownErr != nil {
		_ = s.srv.Close()
	}
	<-s.httpDone
}

// stopOnSIGINT cuts the stop short (cancel) when SIGINT arrives before
// deadline ends. A second SIGTERM is ignored: timeout(1) and some
// supervisors signal the process and its group.
func (s *sidecar) stopOnSIGINT(deadline context.Context, cancel context.CancelFunc) {
	for {
		select {
		case sig := <-s.sigs:
			if sig == syscall.SIGINT {
				s.mlog.Warn("SIGINT while draining: stopping now")
				cancel()
				return
			}
		case <-deadline.Done():
			return
		}
	}
}

// pbxNames lists the PBXs configured, for the start-up line: "none", or
// the names (the kind for the single pbx section).
func (s *sidecar) pbxNames() string {
	list, _ := s.cfg.pbxList()
	if len(list) == 0 {
		return PBXNone
	}
	names := make([]string, len(list))
	for i, e := range list {
		names[i] = e.Name
	}
	return strings.Join(names, ",")
}
