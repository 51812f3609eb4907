package esl

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/esl/eslwire"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/call"
)

var customers = map[string]call.Customer{
	"+49201234567": {ID: "C-4711", Name: "Erika Mustermann", Tier: "vip", Language: "de", URL: "https://crm.example/c/4711"},
	"+14155550123": {ID: "C-0123", Name: "John Doe", Tier: "gold"},
}

// scenarios are the recorded calls (testdata/park, FreeSWITCH 1.10.12's
// CHANNEL_PARK events) and what callpop must make of them.
var scenarios = []struct {
	name    string
	cli     string // what the adapter must read (decoded)
	ani     string
	privacy bool
	match   call.Match
	source  call.Source
	e164    string
	custID  string
}{
	{"a-national", "0201234567", "0201234567", false, call.MatchHit, call.SourceCLI, "+49201234567", "C-4711"},
	{"b-e164", "+14155550123", "+14155550123", false, call.MatchHit, call.SourceCLI, "+14155550123", "C-0123"},
	{"c1-anonymous", "anonymous", "anonymous", false, call.MatchAnonymous, call.SourceNone, "", ""},
	{"c2-privacy", "0201234567", "0201234567", true, call.MatchHit, call.SourceCLI, "+49201234567", "C-4711"},
	{"c3-zeros", "0000000000", "0000000000", false, call.MatchAnonymous, call.SourceNone, "", ""},
	{"d-ani", "0201234567", "0309876543", false, call.MatchHit, call.SourceCLI, "+49201234567", "C-4711"},
	{"e1-junk", `+49 (0)201/123-45 67#*%x;ext=9 "q" <y>`, `+49 (0)201/123-45 67#*%x;ext=9 "q" <y>`, false, "", "", "", ""},
	{"e2-long", "", "", false, call.MatchInvalid, call.SourceNone, "", ""},
	{"e3-percent", "0201234567", "0201234567", false, call.MatchHit, call.SourceCLI, "+49201234567", "C-4711"},
	{"s1-sip-national", "0201234567", "0201234567", false, call.MatchHit, call.SourceCLI, "+49201234567", "C-4711"},
	{"s2-sip-privacy", "0201234567", "0201234567", true, call.MatchHit, call.SourceCLI, "+49201234567", "C-4711"},
	{"s3-sip-anonymous", "anonymous", "anonymous", false, call.MatchAnonymous, call.SourceNone, "", ""},
	{"s4-sip-e164", "+14155550123", "+14155550123", false, call.MatchHit, call.SourceCLI, "+14155550123", "C-0123"},
}

// checkScenario checks what the decider saw and what the channel carries.
func checkScenario(t *testing.T, i int, got call.Enriched, vars map[string]string) {
	t.Helper()
	sc := scenarios[i]
	c, d := got.Call, got.Decision
	if sc.cli != "" && (c.CLI != sc.cli || c.ANI != sc.ani) {
		t.Errorf("cli/ani = %q/%q, want %q/%q", c.CLI, c.ANI, sc.cli, sc.ani)
	}
	if c.Privacy != sc.privacy {
		t.Errorf("privacy = %v, want %v", c.Privacy, sc.privacy)
	}
	if sc.match != "" && (d.Match != sc.match || d.Source != sc.source || d.E164 != sc.e164) {
		t.Errorf("decision = %s/%s/%s, want %s/%s/%s", d.Match, d.Source, d.E164, sc.match, sc.source, sc.e164)
	}
	want := map[string]string{
		"callpop_match":       string(d.Match),
		"callpop_e164":        d.E164,
		"callpop_source":      string(d.Source),
		"callpop_customer_id": sc.custID,
		"callpop_call_id":     c.ID,
		"cc_base_score":       map[bool]string{true: "1000", false: "10"}[d.Match == call.MatchHit],
	}
	if d.Match != call.MatchHit && d.Match != call.MatchMiss {
		want["cc_base_score"] = "0"
	}
	for k, v := range want {
		if vars[k] != v {
			t.Errorf("%s = %q, want %q", k, vars[k], v)
		}
	}
	if !strings.HasSuffix(vars["export_vars"], "callpop_call_id") {
		t.Errorf("export_vars = %q, want it to end with callpop_call_id", vars["export_vars"])
	}
	for k, v := range vars {
		if strings.HasPrefix(k, "callpop_") && (strings.ContainsAny(v, "${}\\'\"\n\r") || v != strings.TrimSpace(v)) {
			t.Errorf("%s = %q is not in the safe form", k, v)
		}
	}
}

func TestReplayOutbound(t *testing.T) {
	sink := &recSink{}
	a := startAdapter(t, outboundConfig(), adapters.Deps{Decider: numbersDecider(t, customers), Sink: sink, Budget: roomyBudget})
	sim := eslsim.NewOutbound(waitAddr(t, a), eslsim.Options{})
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			body := readTestdata(t, "park", sc.name+".txt")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			res, err := sim.CallRecorded(ctx, body)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Exit {
				t.Fatalf("released by %q, want exit", res.ReleasedBy)
			}
			got, ok := sink.calls()[res.UUID]
			if !ok {
				t.Fatal("call not reported as enriched")
			}
			checkScenario(t, i, got, res.Vars)
			if len(res.Expansions) != 0 {
				t.Errorf("expansions: %q", res.Expansions)
			}
		})
	}
}

func TestReplayInbound(t *testing.T) {
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			body := readTestdata(t, "park", sc.name+".txt")
			hs, _, _ := eslwire.ParseHeaderBlock(body)
			sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword})
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Close()
			sink := &recSink{}
			cfg := inboundConfig(sim.Addr())
			cfg.ParkContext = eslwire.Decode(hs.Get("Caller-Context"))
			cfg.TransferTo = TransferConfig{Extension: "3000", Dialplan: "XML", Context: "agents"}
			a := startAdapter(t, cfg, adapters.Deps{Decider: numbersDecider(t, customers), Sink: sink, Budget: roomyBudget})
			waitFor(t, 5*time.Second, "ready", func() bool { ok, _ := a.Ready(); return ok })
			id, err := sim.OfferRecorded(body)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := sim.WaitReleased(ctx, id); err != nil {
				t.Fatal(err)
			}
			ch, _ := sim.Channel(id)
			if ch.ReleasedBy != "transfer" || ch.TransferTo != "3000 XML agents" {
				t.Fatalf("released by %q to %q", ch.ReleasedBy, ch.TransferTo)
			}
			waitFor(t, time.Second, "enriched", func() bool { _, ok := sink.calls()[id]; return ok })
			checkScenario(t, i, sink.calls()[id], ch.Vars)
		})
	}
}

// A socket app on a leg that is not an inbound call (an originated leg) is let
// go at once, without a decision.
func TestOutboundSkipsOutboundLegs(t *testing.T) {
	decided := make(chan struct{}, 1)
	a := startAdapter(t, outboundConfig(), adapters.Deps{Decider: call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		decided <- struct{}{}
		return call.Decision{}
	})})
	sim := eslsim.NewOutbound(waitAddr(t, a), eslsim.Options{})
	body := strings.Replace(string(readTestdata(t, "park", "a-national.txt")), "Call-Direction: inbound", "Call-Direction: outbound", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := sim.CallRecorded(ctx, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Exit || len(res.Sets) != 0 {
		t.Fatalf("exit=%v sets=%v", res.Exit, res.Sets)
	}
	select {
	case <-decided:
		t.Fatal("an outbound leg was decided")
	default:
	}
}
