package popper

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

func hitDecision() call.Decision {
	return call.Decision{
		Match: call.MatchHit, E164: "+31201234567", Source: call.SourceCLI, Priority: 5, Queue: "sales",
		Customer: &call.Customer{ID: "CRM-4711", Name: "Jan de Vries", Tier: "gold", Language: "nl"},
		Flags:    []string{"vip", "ani_verified"},
	}
}

// run replays steps and returns, per agent, the states popped in order.
func run(t *testing.T, cfg Config, steps []step) (map[string][]string, []Pop) {
	t.Helper()
	var pops []Pop
	c := newCorrelator(cfg.withDefaults(), func(p Pop) { pops = append(pops, p) })
	now := time.Now()
	for _, s := range steps {
		s.apply(c, now)
	}
	got := map[string][]string{}
	for _, p := range pops {
		got[p.Agent] = append(got[p.Agent], p.State)
	}
	return got, pops
}

func format(m map[string][]string) string {
	var b strings.Builder
	for _, a := range sortedAgents(m) {
		fmt.Fprintf(&b, "%s=%s ", a, strings.Join(m[a], ","))
	}
	return strings.TrimSpace(b.String())
}

// The expected pops per agent for each recorded scenario. "r,a,e" reads
// ringing, answered, ended; "ret" is retracted.
func expand3(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		out = append(out, map[string]string{"r": StateRinging, "a": StateAnswered, "ret": StateRetracted, "e": StateEnded}[x])
	}
	return out
}

func TestCorrelateAsteriskRecordings(t *testing.T) {
	tests := []struct {
		name, file string
		want       map[string]string
	}{
		{"single ring, answer, caller hangs up", "callpop-dial-answer-caller-hangup.watch-channel-subscription.events.jsonl",
			map[string]string{"1002": "r,a,e"}},
		{"queue ring-all, 1002 answers, double CANCELs", "callpop-queue-ringall.watch-channel-subscription.events.jsonl",
			map[string]string{"1001": "r,ret", "1002": "r,a,e", "1003": "r,ret"}},
		{"queue linear hunt, 1001 NOANSWER then 1002", "callpop-queue-linear-hunt.watch-channel-subscription.events.jsonl",
			map[string]string{"1001": "r,ret", "1002": "r,a,e"}},
		{"queue rrmemory", "callpop-queue-rrmemory.watch-channel-subscription.events.jsonl",
			map[string]string{"1001": "r,ret", "1002": "r,a,e"}},
		{"caller hangs up while three ring", "callpop-caller-hangup-while-ringing.watch-channel-subscription.events.jsonl",
			map[string]string{"1001": "r,ret", "1002": "r,ret", "1003": "r,ret"}},
		{"redirect transfer 1002 to 1003 (no transfer event)", "callpop-transfer-cli-redirect.watch-channel-subscription.events.jsonl",
			map[string]string{"1002": "r,a,e", "1003": "r,a,e"}},
		{"blind transfer by feature code", "callpop-transfer-blind-dtmf.watch-channel-subscription.events.jsonl",
			map[string]string{"1002": "r,a,e", "1003": "r,a,e"}},
		{"attended transfer (new Dial's caller is not the enriched channel)", "callpop-transfer-attended-dtmf.subscribeAll.events.jsonl",
			map[string]string{"1002": "r,a,e", "1003": "r,a,e"}},
		{"queue then attended transfer", "callpop-queue-attended-transfer.subscribeAll.events.jsonl",
			map[string]string{"1001": "r,ret", "1002": "r,a,e", "1003": "r,a,e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := ariSteps(t, "testdata/asterisk/"+tt.file, hitDecision())
			want := map[string][]string{}
			for a, s := range tt.want {
				want[a] = expand3(s)
			}
			got, pops := run(t, Config{}, steps)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("pops = %s\nwant  %s", format(got), format(want))
			}
			checkPops(t, pops)
			// Out of order: the adapter's reports may arrive late relative to
			// each other; swapping neighbours of different legs must not
			// change who is popped or retracted.
			got2, _ := run(t, Config{}, swapNeighbours(steps))
			if !reflect.DeepEqual(final(got2), final(want)) {
				t.Errorf("out of order: final states %v, want %v", final(got2), final(want))
			}
		})
	}
}

// stock ari.conf: no channelvars, so the adapter knows only the caller
// channel of each Dial. Correlation must not need CALLPOP_CALL_ID then.
func TestCorrelateWithoutCallID(t *testing.T) {
	steps := ariSteps(t, "testdata/asterisk/callpop-queue-ringall.watch-channel-subscription.events.jsonl", hitDecision())
	for _, s := range steps {
		if s.leg != nil {
			s.leg.CallID = ""
		}
		if s.end != nil {
			s.end.CallID = ""
		}
	}
	got, _ := run(t, Config{}, steps)
	if want := "1001=ringing,retracted 1002=ringing,answered,ended 1003=ringing,retracted"; format(got) != want {
		t.Fatalf("pops = %s, want %s", format(got), want)
	}
}

func TestCorrelateFreeSWITCHRecordings(t *testing.T) {
	tests := []struct {
		name, file string
		want       map[string]string
	}{
		{"bridge ring-all, 1002 answers, LOSE_RACE", "ringall-1002-answers",
			map[string]string{"1001": "r,ret", "1002": "r,a,e", "1003": "r,ret"}},
		{"hunt, 1001 ALLOTTED_TIMEOUT then 1002", "hunt-1001-timeout-1002-answers",
			map[string]string{"1001": "r,ret", "1002": "r,a,e"}},
		{"caller hangs up while ringing", "ringall-caller-hangs-up-while-ringing",
			map[string]string{"1001": "r,e", "1002": "r,e", "1003": "r,e"}},
		{"blind transfer uuid_transfer", "transfer-blind-uuid_transfer-1002-to-1003",
			map[string]string{"1002": "r,a,e", "1003": "r,a,e"}},
		{"attended uuid_bridge: consult leg linked only by the caller's CHANNEL_BRIDGE", "transfer-attended-uuid_bridge-1002-to-1003",
			map[string]string{"1002": "r,a,e", "1003": "a,e"}},
		{"mod_callcenter ring-all", "callcenter-ringall-1002-answers",
			map[string]string{"1001": "r,ret", "1002": "r,a,e", "1003": "r,ret"}},
		{"mod_callcenter longest-idle, 1001 no answer, 1003 answers", "callcenter-lia-1001-noanswer-1003-answers",
			map[string]string{"1001": "r,ret", "1003": "r,a,e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := eslSteps(t, "testdata/freeswitch/"+tt.file+".s2c.txt.gz", hitDecision())
			want := map[string][]string{}
			for a, s := range tt.want {
				want[a] = expand3(s)
			}
			got, pops := run(t, Config{}, steps)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("pops = %s\nwant  %s", format(got), format(want))
			}
			checkPops(t, pops)
		})
	}
}

// checkPops: every pop carries the call's data, ids increase, and no agent
// gets a state twice in a row.
func checkPops(t *testing.T, pops []Pop) {
	t.Helper()
	last := map[string]string{}
	prevID := ""
	for _, p := range pops {
		if p.Match != call.MatchHit || p.Customer == nil || p.Customer.Name != "Jan de Vries" || p.Number != "+31201234567" || p.CallID == "" || p.At.IsZero() {
			t.Errorf("pop lacks the call's data: %+v", p)
		}
		if len(p.ID) < len(prevID) || (len(p.ID) == len(prevID) && p.ID <= prevID) {
			t.Errorf("ids not increasing: %s after %s", p.ID, prevID)
		}
		prevID = p.ID
		if last[p.Agent] == p.State {
			t.Errorf("agent %s got %s twice", p.Agent, p.State)
		}
		last[p.Agent] = p.State
	}
}

func final(m map[string][]string) map[string]string {
	out := map[string]string{}
	for a, s := range m {
		out[a] = s[len(s)-1]
	}
	return out
}

// swapNeighbours swaps adjacent leg reports of different legs, keeping the
// order within one leg (as the PBXes do).
func swapNeighbours(in []step) []step {
	out := append([]step(nil), in...)
	for i := 1; i+1 < len(out); i += 2 {
		a, b := out[i], out[i+1]
		if a.leg != nil && b.leg != nil && a.leg.Leg != b.leg.Leg {
			out[i], out[i+1] = b, a
		}
	}
	return out
}

func leg(callID, legID, ep string, st call.LegState) step {
	return step{leg: &call.LegEvent{CallID: callID, Leg: legID, Endpoint: ep, State: st}}
}

func enriched(id string, d call.Decision) step {
	d.CallID = id
	return step{enriched: &call.Enriched{CallID: id, Call: call.Call{ID: id}, Decision: d}}
}

func end(id string) step { return step{end: &call.CallEnd{CallID: id}} }

func TestCorrelateEdgeCases(t *testing.T) {
	d := hitDecision()
	t0 := time.Now()
	tests := []struct {
		name  string
		cfg   Config
		steps []step
		want  string
	}{
		{"answered before ringing", Config{}, []step{
			enriched("c1", d), leg("c1", "l1", "PJSIP/1001-00000001", call.LegAnswered), leg("c1", "l1", "PJSIP/1001-00000001", call.LegRinging), end("c1"),
		}, "1001=answered,ended"},
		{"legs before the enrichment wait for it", Config{}, []step{
			leg("c1", "l1", "PJSIP/1001-00000001", call.LegRinging), leg("c1", "l2", "PJSIP/1002-00000002", call.LegRinging), enriched("c1", d),
			leg("c1", "l2", "PJSIP/1002-00000002", call.LegAnswered), end("c1"),
		}, "1001=ringing,retracted 1002=ringing,answered,ended"},
		{"legs known by caller channel only, before an enrichment with another call id", Config{}, []step{
			{leg: &call.LegEvent{CallerChannel: "chan-1", Leg: "l1", Endpoint: "user/1001", State: call.LegRinging}},
			{leg: &call.LegEvent{CallID: "c1", CallerChannel: "chan-1", Leg: "l2", Endpoint: "user/1002", State: call.LegRinging}},
			{enriched: &call.Enriched{CallID: "c1", Call: call.Call{ID: "chan-1"}, Decision: d}},
			{leg: &call.LegEvent{CallerChannel: "chan-1", Leg: "l2", Endpoint: "user/1002", State: call.LegAnswered}},
		}, "1001=ringing,retracted 1002=ringing,answered"},
		{"a ring from before the answer, reported late, does not pop", Config{}, []step{
			enriched("c1", d),
			{leg: &call.LegEvent{CallID: "c1", Leg: "l1", Endpoint: "user/1001", State: call.LegRinging, At: t0}},
			{leg: &call.LegEvent{CallID: "c1", Leg: "l1", Endpoint: "user/1001", State: call.LegAnswered, At: t0.Add(2 * time.Second)}},
			{leg: &call.LegEvent{CallID: "c1", Leg: "l2", Endpoint: "user/1002", State: call.LegRinging, At: t0.Add(time.Millisecond)}},
			{leg: &call.LegEvent{CallID: "c1", Leg: "l2", Endpoint: "user/1002", State: call.LegStopped, At: t0.Add(2 * time.Second)}},
			{leg: &call.LegEvent{CallID: "c1", Leg: "l3", Endpoint: "user/1003", State: call.LegRinging, At: t0.Add(5 * time.Second)}},
		}, "1001=ringing,answered 1003=ringing"},
		{"end before the enrichment", Config{}, []step{
			end("c1"), enriched("c1", d), leg("c1", "l1", "PJSIP/1001-00000001", call.LegRinging),
		}, ""},
		{"CANCEL repeated and late RINGING after CANCEL", Config{}, []step{
			enriched("c1", d), leg("c1", "l1", "PJSIP/1001-00000001", call.LegRinging), leg("c1", "l1", "PJSIP/1001-00000001", call.LegStopped),
			leg("c1", "l1", "PJSIP/1001-00000001", call.LegStopped), leg("c1", "l1", "PJSIP/1001-00000001", call.LegRinging),
		}, "1001=ringing,retracted"},
		{"rung again later (hunt rotation) pops again", Config{}, []step{
			enriched("c1", d), leg("c1", "l1", "user/1001", call.LegRinging), leg("c1", "l1", "user/1001", call.LegStopped),
			leg("c1", "l3", "user/1001", call.LegRinging), leg("c1", "l3", "user/1001", call.LegAnswered),
		}, "1001=ringing,retracted,ringing,answered"},
		{"pop on answer: ringing agents never see it", Config{PopOn: "answer"}, []step{
			enriched("c1", d), leg("c1", "l1", "PJSIP/1001-00000001", call.LegRinging), leg("c1", "l2", "PJSIP/1002-00000002", call.LegRinging),
			leg("c1", "l2", "PJSIP/1002-00000002", call.LegAnswered), leg("c1", "l1", "PJSIP/1001-00000001", call.LegStopped), end("c1"),
		}, "1002=answered,ended"},
		{"unknown calls are ignored", Config{}, []step{
			leg("other", "l1", "PJSIP/1001-00000001", call.LegRinging),
		}, ""},
		{"mapping: endpoints to agent ids, unmapped ignored", Config{Unmapped: "ignore", Agents: []AgentConfig{
			{Agent: "alice", Endpoints: []string{"PJSIP/7001"}}, {Agent: "bob", Endpoints: []string{"sofia/agents/7002@*"}},
		}}, []step{
			enriched("c1", d), leg("c1", "l1", "PJSIP/7001-0000000a", call.LegRinging), leg("c1", "l2", "sofia/agents/7002@10.0.0.2:5060", call.LegRinging),
			leg("c1", "l3", "PJSIP/9999-0000000b", call.LegRinging), leg("c1", "l2", "", call.LegAnswered),
		}, "alice=ringing,retracted bob=ringing,answered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := run(t, tt.cfg, tt.steps)
			if format(got) != tt.want {
				t.Fatalf("pops = %q, want %q", format(got), tt.want)
			}
		})
	}
}

func TestDefaultAgent(t *testing.T) {
	tests := []struct{ endpoint, want string }{
		{"PJSIP/1001-00000005", "1001"},
		{"Local/1001@agents-000048d7;1", "1001"},
		{"Local/1002@agents-atxfer-000048ed;1", "1002"},
		{"sofia/agents/1001@127.0.0.1:5072", "1001"},
		{"user/1001", "1001"},
		{"1001@default", "1001"},
		{"SIP/alice-0000001f", "alice"},
		{"", ""},
		{"PJSIP/$(evil)-00000001", "evil"},
	}
	for _, tt := range tests {
		if got := DefaultAgent(tt.endpoint); got != tt.want {
			t.Errorf("DefaultAgent(%q) = %q, want %q", tt.endpoint, got, tt.want)
		}
	}
}

func TestCorrelatePrivacyAndLinks(t *testing.T) {
	cfg := Config{Links: []LinkConfig{
		{Name: "crm", Label: "Open record", URL: "https://crm.example/c/{customer_id}?call={call_id}", When: "hit"},
		{Name: "new_customer", Label: "New customer", URL: "https://crm.example/new?phone={e164}", When: "miss"},
		{Name: "kb", Label: "KB", URL: "https://kb.example/search?q={topics}", When: "hit"},
	}}
	d := hitDecision()
	d.Privacy = true
	d.Customer.Extra = map[string]any{"open_tickets": []any{map[string]any{"id": "T-1", "subject": "Router broken"}}, "mobile": "+31 201234567"}
	_, pops := run(t, cfg, []step{enriched("c1", d), leg("c1", "l1", "user/1001", call.LegRinging)})
	if len(pops) != 1 {
		t.Fatalf("pops = %d", len(pops))
	}
	p := pops[0]
	if p.Number != "" || !p.Privacy {
		t.Errorf("privacy: number %q shown", p.Number)
	}
	if _, ok := p.Customer.Extra["mobile"]; ok {
		t.Errorf("privacy: extra field holding the number kept")
	}
	wantLinks := []Link{
		{Name: "crm", Label: "Open record", URL: "https://crm.example/c/CRM-4711?call=c1"},
		{Name: "kb", Label: "KB", URL: "https://kb.example/search?q=Router+broken"},
	}
	if !reflect.DeepEqual(p.Links, wantLinks) {
		t.Errorf("links = %+v\nwant %+v", p.Links, wantLinks)
	}
	miss := call.Decision{Match: call.MatchMiss, E164: "+31201234567"}
	_, pops = run(t, cfg, []step{enriched("c2", miss), leg("c2", "l1", "user/1001", call.LegRinging)})
	if want := []Link{{Name: "new_customer", Label: "New customer", URL: "https://crm.example/new?phone=%2B31201234567"}}; !reflect.DeepEqual(pops[0].Links, want) {
		t.Errorf("miss links = %+v", pops[0].Links)
	}
}

func TestCorrelateBounded(t *testing.T) {
	var n int
	c := newCorrelator(Config{MaxCalls: 100}.withDefaults(), func(Pop) { n++ })
	now := time.Now()
	for i := range 1000 {
		id := fmt.Sprint("c", i)
		c.Enriched(call.Enriched{CallID: id, Call: call.Call{ID: id}, Decision: hitDecision()}, now)
		if i%2 == 0 {
			c.End(call.CallEnd{CallID: id}, now)
		}
	}
	if c.Len() > 100 {
		t.Fatalf("tracking %d calls, max 100", c.Len())
	}
	c.Sweep(now.Add(endedKeep + time.Second))
	for _, cs := range c.calls {
		if cs.ended {
			t.Fatal("ended call kept past its grace period")
		}
	}
	c.Sweep(now.Add(DefaultConfig().CallTTL + time.Second))
	if c.Len() != 0 || len(c.byChannel) != 0 {
		t.Fatalf("after TTL: %d calls, %d channels", c.Len(), len(c.byChannel))
	}
	for i := range 10000 {
		c.Leg(call.LegEvent{CallID: fmt.Sprint("x", i), Endpoint: "user/1", State: call.LegRinging}, now)
	}
	if len(c.pending) > pendingCalls {
		t.Fatalf("pending grew to %d", len(c.pending))
	}
	c.Sweep(now.Add(pendingKeep + time.Second))
	if len(c.pending) != 0 {
		t.Fatalf("pending not swept: %d", len(c.pending))
	}
}

// With no popper.links, the router's CALLPOP_POP_URL becomes the card's link.
func TestLinksFromPopURL(t *testing.T) {
	d := hitDecision()
	d.PopURL = "https://crm.example/c/CRM-4711"
	_, pops := run(t, Config{}, []step{enriched("c1", d), leg("c1", "l1", "user/1001", call.LegRinging)})
	if want := []Link{{Name: "crm", Label: "CRM record", URL: d.PopURL}}; !reflect.DeepEqual(pops[0].Links, want) {
		t.Errorf("hit links %+v", pops[0].Links)
	}
	miss := call.Decision{Match: call.MatchMiss, E164: "+31201234567", PopURL: "https://crm.example/new?phone=%2B31201234567"}
	_, pops = run(t, Config{}, []step{enriched("c2", miss), leg("c2", "l1", "user/1001", call.LegRinging)})
	if want := []Link{{Name: "new_customer", Label: "New customer", URL: miss.PopURL}}; !reflect.DeepEqual(pops[0].Links, want) {
		t.Errorf("miss links %+v", pops[0].Links)
	}
	miss.Privacy = true
	_, pops = run(t, Config{}, []step{enriched("c3", miss), leg("c3", "l1", "user/1001", call.LegRinging)})
	if len(pops[0].Links) != 0 {
		t.Errorf("privacy: link with the number kept: %+v", pops[0].Links)
	}
}

// The cells of legTable whose outcome is not obvious, pinned as the
// correlator has always handled them.
func TestCorrelateLegTable(t *testing.T) {
	d := hitDecision()
	tests := []struct {
		name  string
		steps []step
		want  string
	}{
		{"a stopped leg then reported answered answers", []step{
			enriched("c1", d), leg("c1", "l1", "user/1001", call.LegRinging), leg("c1", "l1", "user/1001", call.LegStopped),
			leg("c1", "l1", "user/1001", call.LegAnswered),
		}, "1001=ringing,retracted,answered"},
		{"an answered leg reported stopped has ended", []step{
			enriched("c1", d), leg("c1", "l1", "user/1001", call.LegAnswered), leg("c1", "l1", "user/1001", call.LegStopped),
			leg("c1", "l1", "user/1001", call.LegAnswered),
		}, "1001=answered,ended"},
		{"a stop of a leg never seen closes the agent's pop when no other leg of it is live", []step{
			enriched("c1", d), {leg: &call.LegEvent{CallID: "c1", Endpoint: "user/1001", State: call.LegRinging}},
			leg("c1", "l9", "user/1001", call.LegEnded),
		}, "1001=ringing,retracted"},
		{"a second leg of an answered agent neither pops nor closes", []step{
			enriched("c1", d), leg("c1", "l1", "user/1001", call.LegAnswered), leg("c1", "l2", "user/1001", call.LegRinging),
			leg("c1", "l2", "user/1001", call.LegStopped), end("c1"),
		}, "1001=answered,ended"},
		{"an event of an unknown state pops nothing but registers its leg", []step{
			enriched("c1", d), leg("c1", "l1", "user/1001", call.LegState("held")),
			{leg: &call.LegEvent{Leg: "l1", State: call.LegRinging}},
		}, "1001=ringing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := run(t, Config{}, tt.steps)
			if format(got) != tt.want {
				t.Fatalf("pops = %q, want %q", format(got), tt.want)
			}
		})
	}
}
