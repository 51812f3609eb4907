package popper

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/ari"
	"github.com/callpop/callpop/adapters/esl"
	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/call"
)

// End to end over real sockets: the ARI simulator rings three agents of a
// queue, the real ARI adapter follows the legs and reports them to the
// popper, and each agent's SSE stream shows exactly its own pops.
func TestEndToEndARI(t *testing.T) {
	sim, err := arisim.New(arisim.Options{Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	in := startInstance(t, Config{}, Deps{})
	agents := []string{"1001", "1002", "1003"}
	streams := map[string]*stream{}
	for _, a := range agents {
		streams[a] = openStream(t, in.srv.URL, a, token(t, a), nil)
	}

	cfg := ari.DefaultConfig()
	cfg.URL, cfg.Username, cfg.Password, cfg.App = sim.URL(), "u", "p", sim.App()
	dec := call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		d := hitDecision()
		d.CallID = c.ID
		return d
	})
	a, err := ari.New(cfg, adapters.Deps{Decider: in.p.Decorate(dec), Sink: in.p, Budget: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { ok, _ := a.Ready(); return ok })

	id := sim.OfferCall(arisim.CallSpec{CLI: "0201234567", CLIName: "Jan de Vries",
		Agents: []string{"PJSIP/1001", "PJSIP/1002", "PJSIP/1003"}, Answer: 1,
		RingFor: 100 * time.Millisecond, TalkFor: 100 * time.Millisecond})
	want := map[string][]string{
		"1001": {StateRinging, StateRetracted},
		"1002": {StateRinging, StateAnswered, StateEnded},
		"1003": {StateRinging, StateRetracted},
	}
	for _, agent := range agents {
		for _, st := range want[agent] {
			m := streams[agent].next(t, 10*time.Second)
			var p Pop
			if err := json.Unmarshal([]byte(m.Data), &p); err != nil {
				t.Fatal(err)
			}
			if p.Agent != agent || p.State != st || p.CallID != id || p.Customer == nil || p.Customer.Name != "Jan de Vries" {
				t.Fatalf("agent %s: got %s, want state %s of call %s", agent, m.Data, st, id)
			}
		}
	}
	for _, agent := range agents {
		select {
		case m := <-streams[agent].C:
			if m.Event == "pop" {
				t.Fatalf("agent %s: extra pop %s", agent, m.Data)
			}
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// The same with FreeSWITCH: the ESL simulator sends the recorded events of
// a mod_callcenter ring-all to the real ESL adapter (inbound event socket),
// which reports the legs to the popper.
func TestEndToEndESL(t *testing.T) {
	const pass = "s3cret-esl"
	sim, err := eslsim.NewInbound(eslsim.Options{Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	in := startInstance(t, Config{}, Deps{})
	agents := []string{"1001", "1002", "1003"}
	streams := map[string]*stream{}
	for _, a := range agents {
		streams[a] = openStream(t, in.srv.URL, a, token(t, a), nil)
	}
	cfg := esl.DefaultConfig()
	cfg.Mode, cfg.Address, cfg.Password = "inbound", sim.Addr(), pass
	a, err := esl.New(cfg, adapters.Deps{Decider: call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision { return hitDecision() }),
		Sink: in.p, Budget: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { ok, _ := a.Ready(); return ok })

	evs, bodies := eslFrames(t, "testdata/freeswitch/callcenter-ringall-1002-answers.s2c.txt.gz")
	caller := ""
	for _, ev := range evs {
		if u := ev["Unique-ID"]; u != "" && ev["variable_callpop_call_id"] == u {
			caller = u
			break
		}
	}
	// The recorded call was enriched by the dialplan of the recording; tell
	// the popper what callpop would have decided for it.
	d := hitDecision()
	d.CallID = caller
	in.p.CallEnriched(call.Enriched{CallID: caller, Call: call.Call{ID: caller, PBX: "freeswitch"}, Decision: d})
	for _, b := range bodies {
		sim.EmitRaw(b)
	}
	want := map[string][]string{
		"1001": {StateRinging, StateRetracted},
		"1002": {StateRinging, StateAnswered, StateEnded},
		"1003": {StateRinging, StateRetracted},
	}
	for _, agent := range agents {
		for _, st := range want[agent] {
			m := streams[agent].next(t, 10*time.Second)
			var p Pop
			if err := json.Unmarshal([]byte(m.Data), &p); err != nil {
				t.Fatal(err)
			}
			if p.Agent != agent || p.State != st || p.CallID != caller {
				t.Fatalf("agent %s: got %s, want state %s of call %s", agent, m.Data, st, caller)
			}
		}
	}
}
