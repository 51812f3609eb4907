package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/router"
)

func init() { register(newLookupCmd) }

func newLookupCmd() *cobra.Command {
	var (
		dnis, ani      string
		email, channel string
		privacy        bool
		explain        bool
		timeout        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "lookup [--dnis D] [--ani A] [--email E] [--channel C] NUMBER",
		Short: "Run one caller through the pipeline and print the decision as JSON",
		Long: `Run one caller through the whole pipeline (normalise, look up in the cache and CRM
sources, apply the rules) as a call would, and print the decision as JSON: match, e164,
source, customer, vars (the CALLPOP_* variables), cached, elapsed_ms, the rules that
matched and, with --explain, every rule evaluated.

With --email it is a contact as POST /v1/contacts decides one: looked up by the number,
else (no usable number, or a miss) by the e-mail address; NUMBER may then be "".
--channel is what the rules see as channel (voice, chat, email, sms, social, callback).`,
		Example: `  callpop lookup 0201234567 --dnis 31208000000
  callpop lookup --ani +14155550123 anonymous
  callpop lookup --channel chat --email anna@example.com ""`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkLookupContact(email, channel); err != nil {
				return err
			}
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
				Email:    email,
				Received: time.Now(),
			}
			if channel != call.ChannelVoice {
				c.Channel = channel
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
	f.StringVar(&email, "email", "", "the contact's e-mail address, looked up when the number gives no customer")
	f.StringVar(&channel, "channel", call.ChannelVoice, "the channel the rules see: voice, "+strings.Join(call.ContactChannels, ", ")+" or callback")
	f.BoolVar(&privacy, "privacy", false, "the caller asked for privacy (presentation restricted)")
	f.BoolVar(&explain, "explain", true, "show every rule evaluated and why it matched or not")
	f.DurationVar(&timeout, "timeout", 0, "deadline for the decision (default: call.budget)")
	addVerboseFlag(cmd)
	return cmd
}

// checkLookupContact refuses an e-mail address or a channel a contact could
// not have, with the flag's name.
func checkLookupContact(email, channel string) error {
	if email != "" {
		if _, err := crm.NormalizeEmail(email); err != nil {
			return errors.New("--email: not an e-mail address (local@domain, nothing else)")
		}
	}
	if channel != call.ChannelVoice && channel != call.ChannelCallback && !slices.Contains(call.ContactChannels, channel) {
		return fmt.Errorf("--channel: %q is not one of voice, %s, callback", call.CleanValueN(channel, 32), strings.Join(call.ContactChannels, ", "))
	}
	return nil
}
