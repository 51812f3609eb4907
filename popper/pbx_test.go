package popper

import (
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

// A call passed from one PBX to another over a trunk, carrying its call id:
// the second PBX's enrichment of its channel keeps the first decision and
// names the channel as the call's, so legs known only by that channel (and
// its hang-up) belong to the call; each pop carries the PBX of the agent's
// leg.
func TestCorrelateCallAcrossPBXs(t *testing.T) {
	var pops []Pop
	c := newCorrelator(Config{}.withDefaults(), func(p Pop) { pops = append(pops, p) })
	now := time.Now()
	d := hitDecision()
	d.CallID = "ast-a/100.1"
	c.Enriched(call.Enriched{CallID: d.CallID, Call: call.Call{ID: "ast-a/100.1"}, Decision: d, PBX: "ast-a"}, now)
	leg := func(pbx, caller, leg, endpoint string, st call.LegState) {
		c.Leg(call.LegEvent{CallerChannel: caller, Leg: leg, Endpoint: endpoint, State: st, PBX: pbx}, now)
	}
	leg("ast-a", "ast-a/100.1", "ast-a/100.2", "PJSIP/1002-00000001", call.LegRinging)
	leg("ast-a", "ast-a/100.1", "ast-a/100.2", "PJSIP/1002-00000001", call.LegAnswered)
	leg("ast-a", "ast-a/100.1", "ast-a/100.2", "PJSIP/1002-00000001", call.LegEnded)

	// fs-b's channel arrives before its enrichment is reported: parked, then
	// replayed under the call once the channel is known to be the call's.
	other := hitDecision()
	other.Customer = &call.Customer{ID: "OTHER", Name: "Not this one"}
	leg("fs-b", "fs-b/uuid-1", "fs-b/uuid-2", "sofia/agents/2001@127.0.0.1", call.LegRinging)
	c.Enriched(call.Enriched{CallID: "ast-a/100.1", Call: call.Call{ID: "fs-b/uuid-1"}, Decision: other, PBX: "fs-b"}, now)
	leg("fs-b", "fs-b/uuid-1", "fs-b/uuid-2", "sofia/agents/2001@127.0.0.1", call.LegAnswered)
	c.End(call.CallEnd{CallerChannel: "fs-b/uuid-1"}, now)

	var got []string
	for _, p := range pops {
		got = append(got, p.Agent+"@"+p.PBX+"="+p.State)
		if p.CallID != "ast-a/100.1" || p.Customer == nil || p.Customer.ID != "CRM-4711" {
			t.Fatalf("pop %+v: not the first decision's call", p)
		}
	}
	want := []string{"1002@ast-a=ringing", "1002@ast-a=answered", "1002@ast-a=ended", "2001@fs-b=ringing", "2001@fs-b=answered", "2001@fs-b=ended"}
	if len(got) != len(want) {
		t.Fatalf("pops %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pops %v, want %v", got, want)
		}
	}
	if c.Len() != 1 {
		t.Fatalf("%d calls tracked, want 1", c.Len())
	}
}

// Two PBXs reusing one channel id: namespaced, they are two calls, each
// with its own decision and its own agents.
func TestCorrelateSameChannelOnTwoPBXs(t *testing.T) {
	var pops []Pop
	c := newCorrelator(Config{}.withDefaults(), func(p Pop) { pops = append(pops, p) })
	now := time.Now()
	for _, pbx := range []string{"ast-a", "ast-b"} {
		d := hitDecision()
		d.CallID = pbx + "/1712345.67"
		d.Customer = &call.Customer{ID: "C-" + pbx, Name: "x"}
		c.Enriched(call.Enriched{CallID: d.CallID, Call: call.Call{ID: pbx + "/1712345.67"}, Decision: d, PBX: pbx}, now)
	}
	c.Leg(call.LegEvent{CallerChannel: "ast-b/1712345.67", Leg: "ast-b/1712345.68", Endpoint: "PJSIP/1003-00000001", State: call.LegRinging, PBX: "ast-b"}, now)
	c.Leg(call.LegEvent{CallerChannel: "ast-a/1712345.67", Leg: "ast-a/1712345.68", Endpoint: "PJSIP/1002-00000001", State: call.LegRinging, PBX: "ast-a"}, now)
	if len(pops) != 2 || pops[0].Agent != "1003" || pops[0].Customer.ID != "C-ast-b" || pops[0].PBX != "ast-b" ||
		pops[1].Agent != "1002" || pops[1].Customer.ID != "C-ast-a" || pops[1].PBX != "ast-a" {
		t.Fatalf("pops %+v", pops)
	}
}
