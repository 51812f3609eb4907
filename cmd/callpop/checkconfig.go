package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { register(newCheckConfigCmd) }

func newCheckConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config",
		Short: "Load and validate the configuration; print OK or every problem, naming the key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			lc, err := configFromCmd(cmd)
			src := lc.Path
			if src == "" {
				src = "embedded defaults (no " + defaultConfigPath + ")"
			}
			fmt.Fprintf(out, "config: %s\n", src)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, "OK")
			return nil
		},
	}
}
