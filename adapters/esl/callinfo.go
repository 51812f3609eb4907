package esl

import (
	"strings"
	"time"

	"github.com/callpop/callpop/call"
)

// headerGetter reads a decoded header of an event or connect reply.
type headerGetter interface {
	Get(name string) string
}

// callFrom builds the call from a channel's headers (CHANNEL_PARK, connect reply, uuid_dump).
// Caller ID is Caller-Caller-ID-Number/Name, ANI Caller-ANI, DNIS
// Caller-Destination-Number. Withheld numbers are still present:
// Caller-Privacy-Hide-Number: true or SIP "Privacy: id" say they must not be shown.
func callFrom(h headerGetter, received time.Time) call.Call {
	c := call.Call{
		ID:       h.Get("Unique-ID"),
		PBX:      "freeswitch",
		CLI:      h.Get("Caller-Caller-ID-Number"),
		CLIName:  h.Get("Caller-Caller-ID-Name"),
		ANI:      h.Get("Caller-ANI"),
		DNIS:     h.Get("Caller-Destination-Number"),
		Profile:  h.Get("variable_callpop_profile"),
		Received: received,
		// a trunk leg from another PBX: callpop_call_id, which the dialplan of
		// the trunk's context alone sets from the X-Callpop-Call-Id header
		// (never read from SIP directly: any peer could send the header)
		Inherited: h.Get("variable_callpop_call_id"),
	}
	if strings.EqualFold(h.Get("Caller-Privacy-Hide-Number"), "true") {
		c.Privacy = true
	}
	for _, p := range strings.Split(strings.ToLower(h.Get("variable_sip_Privacy")), ";") {
		if p = strings.TrimSpace(p); p == "id" || p == "user" || p == "header" {
			c.Privacy = true
		}
	}
	if c.ANI == "" {
		// a SIP trunk's network-asserted number, when FreeSWITCH did not copy it
		c.ANI = paiNumber(h.Get("variable_sip_P-Asserted-Identity"))
	}
	return c
}

// paiNumber extracts the user part of a P-Asserted-Identity value
// (`"Name" <sip:+31201234567@host>` or `<tel:+31201234567>`).
func paiNumber(v string) string {
	if v == "" {
		return ""
	}
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	v = strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(v, "sips:"), "sip:"), "tel:")
	if i := strings.IndexAny(v, "@;"); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}
