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
	// --version prints what `callpop version` prints (cobra handles the flag).
	root.Version = versionString()
	root.SetVersionTemplate("{{.Version}}\n")
	root.Flags().Bool("version", false, "print the version (as callpop version does)")
	root.SetFlagErrorFunc(withUsage)
	for _, f := range subcommands {
		root.AddCommand(f())
	}
	argsWithUsage(root)
	return root
}

// argsWithUsage makes the argument errors of cmd and its subcommands carry
// the usage line.
func argsWithUsage(cmd *cobra.Command) {
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error { return withUsage(c, args(c, a)) }
	}
	for _, c := range cmd.Commands() {
		argsWithUsage(c)
	}
}

// withUsage adds the command's usage line to an error in its arguments or
// flags, so a mistyped command line says what it should have been.
func withUsage(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w\nUsage: %s\nRun '%s --help' for more.", err, cmd.UseLine(), cmd.CommandPath())
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "callpop:", err)
		os.Exit(1)
	}
}
