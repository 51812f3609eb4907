package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/callpop/callpop/popper"
)

func init() { register(newTokenCmd) }

// newTokenCmd issues an agent token for the panel and the pop stream.
func newTokenCmd() *cobra.Command {
	var agent string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token --agent <id> [--ttl 12h]",
		Short: "Print a signed token that lets one agent open their pops (panel and stream)",
		Long: `Print a token signed with popper.token_secret (or the file popper.token_secret_file,
or the environment variable CALLPOP_POPPER_TOKEN_SECRET) that lets the agent open
/agent?token=... and /v1/agents/<id>/pops until it expires. Only the token is printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if agent == "" {
				return errors.New("token: --agent is required")
			}
			lc, err := configFromCmd(cmd)
			if err != nil {
				return err
			}
			cfg := lc.Popper
			if max := cfg.MaxTokenTTL; max > 0 && ttl > max {
				return fmt.Errorf("token: --ttl %v is above popper.max_token_ttl (%v)", ttl, max)
			}
			secret, err := cfg.ResolveTokenSecret()
			if err != nil {
				return fmt.Errorf("token: %w", err)
			}
			if secret == nil {
				return errors.New("token: no secret: set popper.token_secret_file or CALLPOP_POPPER_TOKEN_SECRET")
			}
			tok, err := popper.IssueToken(secret, agent, ttl, time.Now())
			if err != nil {
				return fmt.Errorf("token: %w", err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	cmd.Flags().StringVar(&agent, "agent", "", "agent id (as the popper maps endpoints: 1001 for PJSIP/1001, user/1001, ...)")
	cmd.Flags().DurationVar(&ttl, "ttl", 12*time.Hour, "how long the token is valid")
	return cmd
}
