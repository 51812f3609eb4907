package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/callpop/callpop/router"
)

func init() { register(newCheckConfigCmd) }

func newCheckConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config",
		Short: "Validate the configuration: print each rule's compile status, then OK or every problem",
		Long: `Load the configuration (--config, default ./callpop.yaml, with CALLPOP_* environment
overrides) and check it whole: unknown keys, bad values (naming the environment variable
when one set it) and rules that do not compile are all reported, one a line, naming the
key. Exits non-zero on any problem. An empty crm.sources is a warning: lookup and demo
use the embedded sample, but run refuses it unless crm.sample is true. So is
callbacks.enabled without cache.redis, which run refuses.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			lc, err := configFromCmd(cmd)
			if !lc.Read {
				return err // a file named but unreadable: nothing was checked
			}
			src := lc.Path
			if src == "" {
				src = "embedded defaults (no " + defaultConfigPath + ")"
			}
			fmt.Fprintf(out, "config: %s\n", src)
			for _, w := range lc.Warnings {
				fmt.Fprintf(out, "warning: %s\n", w)
			}
			if lc.Decoded {
				// check-config does not know the command the file is for:
				// what would stop run is a warning here.
				sample, runErr := lc.runCRM()
				if runErr != nil {
					sample = runErr.Error()
				}
				if sample != "" {
					fmt.Fprintf(out, "warning: %s\n", sample)
				}
				if lc.Callbacks.Enabled && len(lc.Cache.Redis.Addrs) == 0 {
					fmt.Fprintf(out, "warning: %s\n", errCallbacksNoRedis)
				}
				for _, st := range router.CompileReport(lc.Router) {
					status := "ok"
					if st.Err != "" {
						status = "error: " + st.Err
					}
					fmt.Fprintf(out, "rule %s %q: %s\n", st.Key, st.Name, status)
				}
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(out, "OK")
			return nil
		},
	}
}
