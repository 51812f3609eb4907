package esl

import (
	"context"
	"net"

	"github.com/callpop/callpop/internal/netallow"
)

// ServeOutboundListener serves the socket app's connections on ln, a
// listener the caller made (callpop bench counts what crosses it), its peers
// checked against pbx.freeswitch.allow as Run's are, until ctx ends.
func (a *Adapter) ServeOutboundListener(ctx context.Context, ln net.Listener) error {
	allow, _ := netallow.Parse("pbx.freeswitch.allow", a.cfg.Allow) // checked by Validate
	return a.serveOutbound(ctx, netallow.Wrap(ln, func() netallow.List { return allow }, "freeswitch_outbound", a.log))
}
