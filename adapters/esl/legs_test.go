package esl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/esl/eslwire"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/call"
)

type legsIndex struct {
	Captures map[string]struct {
		ALeg string `json:"a_leg_uuid"`
		Legs map[string]struct {
			Role          string   `json:"role"`
			Agent         string   `json:"agent"`
			CCAgent       string   `json:"cc_agent"`
			CallID        string   `json:"callpop_call_id"`
			OtherAtCreate string   `json:"other_leg_at_create"`
			Progress      *float64 `json:"t_first_progress"`
			Answer        *float64 `json:"t_answer"`
			Cause         string   `json:"hangup_cause"`
		} `json:"legs"`
	} `json:"captures"`
}

// recordedEvents reads the recorded event frames of a capture (testdata/agents,
// the frames of a recorded capture that the tracker subscribes to).
func recordedEvents(t testing.TB, name string) [][]byte {
	t.Helper()
	r := eslwire.NewReader(bytes.NewReader(readTestdata(t, "agents", name+".s2c.txt")))
	var out [][]byte
	for {
		f, err := r.ReadFrame()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f.Body)
	}
}

// checkLegs compares what the sink got with the legs index generated from the recordings.
func checkLegs(t *testing.T, name string, sink *recSink) {
	t.Helper()
	for _, p := range legProblems(t, name, sink) {
		t.Error(p)
	}
}

func legProblems(t *testing.T, name string, sink *recSink) (problems []string) {
	t.Helper()
	var idx legsIndex
	if err := json.Unmarshal(readTestdata(t, "agents", "legs-index.json"), &idx); err != nil {
		t.Fatal(err)
	}
	errorf := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	c := idx.Captures[name]
	sink.mu.Lock()
	defer sink.mu.Unlock()
	byLeg := map[string][]call.LegEvent{}
	for _, e := range sink.legs {
		byLeg[e.Leg] = append(byLeg[e.Leg], e)
		if e.CallerChannel != c.ALeg || e.CallID != c.ALeg {
			errorf("%s: leg %s reported for caller %s / call %s, want %s", name, e.Leg, e.CallerChannel, e.CallID, c.ALeg)
		}
	}
	for id, l := range c.Legs {
		got := byLeg[id]
		delete(byLeg, id)
		if l.Role != "agent" {
			if len(got) > 0 {
				errorf("%s: %s leg %s reported: %+v", name, l.Role, id, got)
			}
			continue
		}
		var want []call.LegState
		linked := l.CallID != "" || l.CCAgent != "" || l.OtherAtCreate == c.ALeg
		if l.Progress != nil && linked {
			want = append(want, call.LegRinging)
		}
		final := call.LegStopped
		if l.Answer != nil {
			want = append(want, call.LegAnswered)
			final = call.LegEnded
		}
		want = append(want, final)
		var states []call.LegState
		for _, e := range got {
			states = append(states, e.State)
			if e.Endpoint != "user/"+l.Agent {
				errorf("%s: leg %s endpoint %q, want user/%s", name, id, e.Endpoint, l.Agent)
			}
		}
		if !equalStates(states, want) {
			errorf("%s: leg %s (agent %s) states %v, want %v", name, id, l.Agent, states, want)
		}
		if len(got) > 0 && got[len(got)-1].Cause != l.Cause {
			errorf("%s: leg %s cause %q, want %q", name, id, got[len(got)-1].Cause, l.Cause)
		}
	}
	for id, evs := range byLeg {
		errorf("%s: events for a leg not in the index %s: %+v", name, id, evs)
	}
	if len(sink.ended) != 1 || sink.ended[0].CallerChannel != c.ALeg {
		errorf("%s: CallEnded = %+v, want one for %s", name, sink.ended, c.ALeg)
	}
	return problems
}

func equalStates(a, b []call.LegState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var agentCaptures = []string{
	"ringall-1002-answers", "ringall-caller-hangs-up-while-ringing", "hunt-1001-timeout-1002-answers",
	"callcenter-ringall-1002-answers", "callcenter-ringall-without-cc_export_vars", "callcenter-ringall-caller-hangs-up-while-ringing",
	"callcenter-lia-1001-noanswer-1003-answers", "callcenter-lia-no-answer-rotation",
	"transfer-blind-uuid_transfer-1002-to-1003", "transfer-blind-sip-refer-1002-to-1003", "transfer-attended-uuid_bridge-1002-to-1003",
}

// Every recorded agent scenario, fed to the tracker in recorded order.
func TestAgentLegsReplay(t *testing.T) {
	var idx legsIndex
	if err := json.Unmarshal(readTestdata(t, "agents", "legs-index.json"), &idx); err != nil {
		t.Fatal(err)
	}
	for _, name := range agentCaptures {
		t.Run(name, func(t *testing.T) {
			sink := &recSink{}
			tr := newLegTracker(sink, quietLog(), testM)
			a := idx.Captures[name].ALeg
			if name == "callcenter-ringall-without-cc_export_vars" {
				tr.enriched(a, a) // no callpop_call_id reaches these legs: callpop knows the caller it enriched
			}
			for _, body := range recordedEvents(t, name) {
				ev, err := eslwire.ParseEvent(body)
				if err != nil {
					t.Fatal(err)
				}
				tr.observe(ev)
			}
			checkLegs(t, name, sink)
		})
	}
}

// The same through the wire: outbound mode with its event connection, the
// simulator sending the recorded frames.
func TestAgentLegsOverEventSocket(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	cfg := outboundConfig()
	cfg.Events = true
	cfg.Address = sim.Addr()
	cfg.Password = testPassword
	sink := &recSink{}
	a := startAdapter(t, cfg, adapters.Deps{Decider: call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision { return call.Decision{} }), Sink: sink})
	waitFor(t, 5*time.Second, "event connection", func() bool { return a.connected.Load() })
	const name = "callcenter-ringall-1002-answers"
	for _, body := range recordedEvents(t, name) {
		sim.EmitRaw(body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && len(legProblems(t, name, sink)) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	checkLegs(t, name, sink)
}

// The simulator's generated agent legs (used by the demo and the bench) give
// the same life as the recordings: ringing for every agent, answered and ended
// for the winner, stopped (LOSE_RACE) for the others, then the call's end.
func TestAgentLegsFromSimulator(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	cfg := outboundConfig()
	cfg.Events, cfg.Address, cfg.Password = true, sim.Addr(), testPassword
	sink := &recSink{}
	a := startAdapter(t, cfg, adapters.Deps{Decider: call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision { return call.Decision{} }), Sink: sink})
	waitFor(t, 5*time.Second, "event connection", func() bool { return a.connected.Load() })
	for _, queue := range []string{"", "support@default"} {
		t.Run("queue="+queue, func(t *testing.T) {
			sink.mu.Lock()
			sink.legs, sink.ended = nil, nil
			sink.mu.Unlock()
			checkSimulatedRing(t, a, sim, sink, queue)
		})
	}
}

func checkSimulatedRing(t *testing.T, a *Adapter, sim *eslsim.Inbound, sink *recSink, queue string) {
	caller := eslsim.NewUUID()
	a.legs.enriched(caller, caller)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sim.RingAgents(ctx, caller, eslsim.Ring{Agents: []string{"1001", "1002", "1003"}, Answer: 1, RingFor: 20 * time.Millisecond, TalkFor: 20 * time.Millisecond, Queue: queue})
	waitFor(t, 5*time.Second, "call and legs ended", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.ended) == 1 && len(sink.legs) == 7
	})
	sink.mu.Lock()
	defer sink.mu.Unlock()
	count := map[string]int{}
	for _, e := range sink.legs {
		count[e.Endpoint+" "+string(e.State)]++
		if e.CallerChannel != caller {
			t.Errorf("caller %s", e.CallerChannel)
		}
	}
	want := map[string]int{
		"user/1001 ringing": 1, "user/1002 ringing": 1, "user/1003 ringing": 1,
		"user/1002 answered": 1, "user/1002 ended": 1, "user/1001 stopped": 1, "user/1003 stopped": 1,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%s: %d, want %d (all: %v)", k, count[k], n, count)
		}
	}
}

func TestLegTrackerPrune(t *testing.T) {
	tr := newLegTracker(&recSink{}, quietLog(), testM)
	tr.enriched("old-caller", "old-caller")
	tr.prune(time.Hour)
	if len(tr.callers) != 1 {
		t.Fatal("a fresh caller was pruned")
	}
	tr.prune(-time.Second)
	if len(tr.callers) != 0 || len(tr.seen) != 0 {
		t.Fatalf("stale caller kept: %v", tr.callers)
	}
}
