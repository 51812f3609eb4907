// Command callpop is the sidecar: it wires configuration, adapters, the router
// and the popper, and handles signals. The work lives in the packages.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// subcommands are added by the files that define them (init → register), so
// each subcommand lives in its own file.
var subcommands []func() *cobra.Command

func register(f func() *cobra.Command) { subcommands = append(subcommands, f) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "callpop",
		Short:         "Caller lookup, routing and screen pops beside Asterisk or FreeSWITCH",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", "./callpop.yaml", "configuration file (YAML)")
	for _, f := range subcommands {
		root.AddCommand(f())
	}
	return root
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "callpop:", err)
		os.Exit(1)
	}
}
