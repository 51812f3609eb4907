package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/router"
)

func init() { register(newLookupCmd) }

func newLookupCmd() *cobra.Command {
	var (
		dnis, ani string
		privacy   bool
		explain   bool
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "lookup [--dnis D] [--ani A] NUMBER",
		Short: "Run one caller through the pipeline and print the decision as JSON",
		Long: `Run one caller through the whole pipeline (normalise, look up in the cache and CRM
sources, apply the rules) as a call would, and print the decision as JSON: match, e164,
source, customer, vars (the CALLPOP_* variables), cached, elapsed_ms, the rules that
matched and, with --explain, every rule evaluated.`,
		Example: `  callpop lookup 0201234567 --dnis 31208000000
  callpop lookup --ani +14155550123 anonymous`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := configFromCmd(cmd)
			if err != nil {
				return err
			}
			log := oneShotLogger(cmd, lc.Log)
			p, err := newPipeline(lc.Config, log, pipelineOptions{})
			if err != nil {
				return err
			}
			defer p.Close()
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			c := call.Call{
				ID:       "cli-" + time.Now().UTC().Format("20060102T150405.000"),
				PBX:      "cli",
				CLI:      args[0],
				ANI:      ani,
				DNIS:     dnis,
				Privacy:  privacy,
				Received: time.Now(),
			}
			var out any
			if explain {
				out = p.router.Explain(ctx, c)
			} else {
				out = router.DecisionJSON(p.router.Decide(ctx, c))
			}
			return router.EncodeJSON(cmd.OutOrStdout(), out, "  ")
		},
	}
	f := cmd.Flags()
	f.StringVar(&dnis, "dnis", "", "the dialled number (chooses the profile and region)")
	f.StringVar(&ani, "ani", "", "the ANI, used when NUMBER is withheld or invalid")
	f.BoolVar(&privacy, "privacy", false, "the caller asked for privacy (presentation restricted)")
	f.BoolVar(&explain, "explain", true, "show every rule evaluated and why it matched or not")
	f.DurationVar(&timeout, "timeout", 0, "deadline for the decision (default: call.budget)")
	addVerboseFlag(cmd)
	return cmd
}
