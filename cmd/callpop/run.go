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
		Long: `Run the sidecar: the HTTP listener (/v1/lookup, /v1/route, /v1/cache, /agent,
/v1/agents/{agent}/pops, /healthz, /readyz, /metrics), FastAGI when router.fastagi.listen
is set, the PBX adapter pbx.kind names, and the popper.

SIGTERM drains: /readyz turns 503 and work in flight gets up to call.drain_timeout.
SIGINT stops at once. Changes to the config file reload the routing rules.`,
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

	cfg := lc.Config
	mlog := log.With("component", "main")
	if lc.Path == "" {
		mlog.Info("no config file; running on the embedded defaults", "looked_for", defaultConfigPath)
	}
	for _, w := range lc.Warnings {
		mlog.Warn(w) // before a refusal: a misspelt CALLPOP_CRM_SAMPLE is one
	}
	switch sample, err := lc.runCRM(); {
	case err != nil:
		return withFile(lc.Path, err)
	case sample != "":
		mlog.Warn(sample)
	}
	mlog.Info("starting", "version", versionString(), "config", lc.Path, "pbx", cfg.PBX.Kind, "budget", cfg.Call.Budget.String())
	buildInfo.WithLabelValues(version, revision(), goVersion()).Set(1)

	p, err := newPipeline(cfg, log, pipelineOptions{Popper: true})
	if err != nil {
		return err
	}
	defer p.Close()
	adapter, err := p.adapter()
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	rd := &readiness{}
	if adapter != nil {
		rd.add("pbx", adapter.Ready)
	}
	streams, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	srv := newHTTPServer(newHandler(p, rd, streams), log)
	mlog.Info("http listening", "addr", ln.Addr().String(), "tls", cfg.TLS.Enabled(), "api_keys", len(cfg.API.Keys))
	for _, w := range exposureWarnings(cfg) {
		mlog.Warn(w)
	}

	parts := []sidecarPart{
		{"popper", p.popper.Run},
		{"fastagi", p.router.ServeFastAGI},
	}
	if adapter != nil {
		parts = append(parts, sidecarPart{"pbx " + cfg.PBX.Kind, adapter.Run})
	}
	if lc.Path != "" {
		w := &configWatcher{path: lc.Path, current: cfg, pipeline: p, level: level, log: mlog}
		parts = append(parts, sidecarPart{"config watch", w.run})
	}

	// The parts do not inherit ctx: its end starts a drain, and the parts
	// stop in the drain's order.
	partsCtx, stopParts := context.WithCancel(context.Background())
	defer stopParts()
	var wg sync.WaitGroup
	failed := make(chan error, len(parts)+1)
	for _, part := range parts {
		wg.Go(func() {
			err := part.run(partsCtx)
			if err != nil && partsCtx.Err() == nil {
				failed <- fmt.Errorf("%s: %w", part.name, err)
			}
		})
	}
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if err := serve(srv, ln, cfg.TLS, log); err != nil && !errors.Is(err, http.ErrServerClosed) {
			failed <- fmt.Errorf("http: %w", err)
		}
	}()

	var runErr error
	drain := true
	select {
	case <-ctx.Done():
		mlog.Info("stopping: context ended; draining", "drain_timeout", cfg.Call.DrainTimeout.String())
	case s := <-sigs:
		drain = s == syscall.SIGTERM
		if drain {
			mlog.Info("SIGTERM: draining", "drain_timeout", cfg.Call.DrainTimeout.String())
		} else {
			mlog.Info("SIGINT: stopping")
		}
	case runErr = <-failed:
		drain = false
		mlog.Error("stopping: a part failed", "err", runErr)
	}

	// Stop taking new work: /readyz turns 503 and pop streams end (agents'
	// panels reconnect to another instance). The parts' contexts end: the
	// adapter stops taking calls and lets those in flight go on before its
	// Run returns. The HTTP listener keeps answering meanwhile (probes,
	// dialplan look-ups), then closes and waits for requests in flight.
	rd.draining.Store(true)
	timeout := stopTimeout
	if drain {
		timeout = max(cfg.Call.DrainTimeout, stopTimeout)
	}
	deadline, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		// SIGINT while draining stops at once. (A second SIGTERM is common:
		// timeout(1) and some supervisors signal the process and its group.)
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGINT {
					mlog.Warn("SIGINT while draining: stopping now")
					cancel()
					return
				}
			case <-deadline.Done():
				return
			}
		}
	}()
	endStreams()
	stopParts()
	partsDone := make(chan struct{})
	go func() { wg.Wait(); close(partsDone) }()
	select {
	case <-partsDone:
	case <-deadline.Done():
	}
	shutdownErr := srv.Shutdown(deadline)
	select {
	case <-partsDone:
	default:
		mlog.Warn("stop timeout: leaving with work in flight", "timeout", timeout.String())
	}
	if shutdownErr != nil {
		_ = srv.Close()
	}
	<-httpDone
	mlog.Info("stopped")
	return runErr
}
