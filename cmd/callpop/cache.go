package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
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
		Short: "Drop a number from the shared cache (Redis), so the next call asks the CRM",
		Long: `Drop a number from the shared cache (cache.redis), so the next call asks the CRM
again. NUMBER is normalised like a caller's number (national numbers in
numbers.default_region, or the region of --dnis's profile). The entry is gone for every
callpop instance sharing the Redis; running instances also keep a short-lived in-process
copy (cache.local_ttl): use DELETE /v1/cache/{number} on each of them to drop that at once.
Without cache.redis there is no shared cache: the command fails and says so.`,
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
			n, err := p.numbers.Parse(args[0], p.numbers.RegionFor(dnis))
			if err != nil {
				return fmt.Errorf("cache forget: %q: %w", args[0], err)
			}
			if p.redis == nil {
				// This fresh process's own cache is all it could clear.
				return fmt.Errorf("cache forget: no shared cache to clear: cache.redis is not configured, so each running callpop "+
					"caches in its own process, out of this command's reach; drop the number on each running instance "+
					"with DELETE /v1/cache/{number}:\n  curl -X DELETE '%s'", forgetURL(lc.Listen, n.E164))
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
	addVerboseFlag(forget)
	cmd.AddCommand(forget)
	return cmd
}

// forgetURL is the DELETE /v1/cache/{number} URL of an instance listening on
// listen (a wildcard host is reached on loopback).
func forgetURL(listen, e164 string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		host, port = "127.0.0.1", "8080"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	// "+" escaped, as a proxy may read a bare one as a space.
	return "http://" + net.JoinHostPort(host, port) + "/v1/cache/" + url.QueryEscape(e164)
}
