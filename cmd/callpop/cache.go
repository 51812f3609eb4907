package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// forgetTimeout bounds `cache forget` (it is not on a call's path).
const forgetTimeout = 5 * time.Second

func init() { register(newCacheCmd) }

func newCacheCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Manage the look-up cache",
	}
	var dnis string
	forget := &cobra.Command{
		Use:   "forget NUMBER",
		Short: "Drop a number from the cache (in this process's tier and Redis), so the next call asks the CRM",
		Long: `Drop a number from the cache, so the next call asks the CRM again. NUMBER is
normalised like a caller's number (national numbers in numbers.default_region, or the
region of --dnis's profile). With Redis configured the entry is gone for every callpop
instance sharing it; running instances also keep a short-lived in-process copy
(cache.local_ttl): use DELETE /v1/cache/{number} on each of them to drop that at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := configFromCmd(cmd)
			if err != nil {
				return err
			}
			log := newLogger(lc.Log, cmd.ErrOrStderr())
			p, err := newPipeline(lc.Config, log, pipelineOptions{})
			if err != nil {
				return err
			}
			defer p.Close()
			n, err := p.numbers.Parse(args[0], p.numbers.RegionFor(dnis))
			if err != nil {
				return fmt.Errorf("cache forget: %q: %w", args[0], err)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, cancel := context.WithTimeout(ctx, forgetTimeout)
			defer cancel()
			if err := p.crm.Forget(ctx, n.E164); err != nil {
				return fmt.Errorf("cache forget %s: %w", n.E164, err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "forgot %s\n", n.E164)
			return err
		},
	}
	forget.Flags().StringVar(&dnis, "dnis", "", "the dialled number whose profile's region reads NUMBER")
	cmd.AddCommand(forget)
	return cmd
}
