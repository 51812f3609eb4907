package popper

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
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

	dec := call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		d := hitDecision()
		d.CallID = c.ID
		return d
	})
	startARI(t, sim, in.p.Decorate(dec), in.p)

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
	startESL(t, sim, pass, call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision { return hitDecision() }), in.p)

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

// adapter is what startAdapter runs: the ARI or the ESL adapter.
type adapter interface {
	Run(ctx context.Context) error
	Ready() (bool, string)
}

// startAdapter runs a until the test ends, once it is ready.
func startAdapter(t *testing.T, a adapter, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, func() bool { ok, _ := a.Ready(); return ok })
}

func adapterDeps(dec call.Decider, sink call.LegSink) adapters.Deps {
	return adapters.Deps{Decider: dec, Sink: sink, Budget: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
}

// startARI runs the real ARI adapter against sim (user u, password p).
func startARI(t *testing.T, sim *arisim.Server, dec call.Decider, sink call.LegSink) {
	t.Helper()
	cfg := ari.DefaultConfig()
	cfg.URL, cfg.Username, cfg.Password, cfg.App = sim.URL(), "u", "p", sim.App()
	a, err := ari.New(cfg, adapterDeps(dec, sink))
	startAdapter(t, a, err)
}

// startESL runs the real ESL adapter on sim's inbound event socket.
func startESL(t *testing.T, sim *eslsim.Inbound, pass string, dec call.Decider, sink call.LegSink) {
	t.Helper()
	cfg := esl.DefaultConfig()
	cfg.Mode, cfg.Address, cfg.Password = "inbound", sim.Addr(), pass
	a, err := esl.New(cfg, adapterDeps(dec, sink))
	startAdapter(t, a, err)
}

// The pop carries the router's flags and the CRM's tier through both
// adapters and in the replay: with router.flags.vip_tiers [vip], a gold
// customer is tier "gold" without the vip flag, a vip customer has it.
func TestEndToEndRouterFlags(t *testing.T) {
	const pass = "s3cret-esl"
	asim, err := arisim.New(arisim.Options{Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer asim.Close()
	esim, err := eslsim.NewInbound(eslsim.Options{Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer esim.Close()
	in := startInstance(t, Config{}, Deps{})
	s := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	r := testRouter(t, []string{"vip"})
	startARI(t, asim, r, in.p)
	startESL(t, esim, pass, r, in.p)

	want := map[string]string{} // call id → tier and vip flag
	pops := 0
	check := func(p Pop) {
		t.Helper()
		got := "no customer"
		if p.Customer != nil {
			got = fmt.Sprintf("tier %s, vip %v", p.Customer.Tier, slices.Contains(p.Flags, "vip"))
		}
		if got != want[p.CallID] {
			t.Errorf("pop %s %s of %s: %s, want %s (flags %v)", p.ID, p.State, p.CallID, got, want[p.CallID], p.Flags)
		}
	}
	// next reads the agent's pops up to the end of the call id.
	next := func(s *stream, id string) {
		t.Helper()
		for {
			var p Pop
			if err := json.Unmarshal([]byte(s.next(t, 10*time.Second).Data), &p); err != nil {
				t.Fatal(err)
			}
			check(p)
			pops++
			if p.CallID == id && p.State == StateEnded {
				return
			}
		}
	}
	customers := map[string]string{"+14155550123": "tier gold, vip false", "+31201234567": "tier vip, vip true"}
	for _, cli := range []string{"+14155550123", "+31201234567"} {
		id := asim.OfferCall(arisim.CallSpec{CLI: cli, Agents: []string{"PJSIP/1001"}, Answer: 0,
			RingFor: 50 * time.Millisecond, TalkFor: 50 * time.Millisecond})
		want[id] = customers[cli]
		next(s, id)

		uuid := esim.OfferCall(eslsim.Caller{Number: cli})
		want[uuid] = customers[cli]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := esim.WaitReleased(ctx, uuid); err != nil { // enriched, then transferred
			t.Fatalf("ESL call %s not released: %v", uuid, err)
		}
		esim.RingAgents(ctx, uuid, eslsim.Ring{Agents: []string{"1001"}, Answer: 0, RingFor: 50 * time.Millisecond, TalkFor: 50 * time.Millisecond})
		cancel()
		next(s, uuid)
	}
	// A fresh page gets today's pops again, flags and tier unchanged.
	live := pops
	s2 := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	for range live {
		var p Pop
		if err := json.Unmarshal([]byte(s2.next(t, 10*time.Second).Data), &p); err != nil {
			t.Fatal(err)
		}
		check(p)
	}
}
