package ari

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

// dialplanCall is what the router hands on for a FastAGI session of channel id.
func dialplanCall(id string) call.Enriched {
	return call.Enriched{CallID: id, Call: call.Call{ID: id, PBX: "agi"}, Decision: call.Decision{CallID: id, Match: call.MatchHit}}
}

// A call decided over FastAGI never enters Stasis: Follow subscribes the
// app to its channel, and its Dial to an agent, the answer and the hang-up
// reach the sink as for an enriched call. Asterisk drops the subscription
// with the channel.
func TestFollowDialplanCall(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchHit}}, testBudget, nil)
	id := sim.NewDialplanChannel(arisim.CallSpec{CLI: "0201234567", Agents: []string{"PJSIP/1001", "PJSIP/1002"}, Answer: 1,
		RingFor: 50 * time.Millisecond, TalkFor: 50 * time.Millisecond})
	h.a.Follow(dialplanCall(id))
	waitFor(t, 5*time.Second, "subscribed", func() bool { return sim.Subscribed(sim.App(), id) })
	sim.RunAgents(id)
	waitFor(t, 5*time.Second, "call ended", func() bool { _, _, ended := h.sink.snapshot(); return len(ended) == 1 })
	enriched, legs, ended := h.sink.snapshot()
	if len(enriched) != 0 {
		t.Fatalf("the adapter registered the call itself: %+v (the wiring does, with the decision)", enriched)
	}
	got := map[string][]call.LegState{}
	for _, l := range legs {
		if l.CallID != id || l.CallerChannel != id {
			t.Fatalf("leg of another call: %+v", l)
		}
		ep := l.Endpoint[:len("PJSIP/100x")]
		got[ep] = append(got[ep], l.State)
	}
	want := map[string][]call.LegState{
		"PJSIP/1001": {call.LegRinging, call.LegStopped},
		"PJSIP/1002": {call.LegRinging, call.LegAnswered, call.LegEnded},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("legs %v, want %v", got, want)
	}
	if ended[0].CallID != id {
		t.Fatalf("ended %+v", ended[0])
	}
	waitFor(t, 5*time.Second, "forgotten", func() bool { return h.a.Following() == 0 })
}

// A caller who hung up before the subscription went out is ended at once
// (Asterisk answers 422); without follow_legs nothing is subscribed; a call
// followed already (it went through Stasis) is not subscribed again.
func TestFollowDialplanEdges(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchHit}}, testBudget, nil)
	id := sim.NewDialplanChannel(arisim.CallSpec{CLI: "0201234567"})
	sim.Hangup(id)
	gone := counter(testM.dialplanFollow.WithLabelValues("gone"))
	h.a.Follow(dialplanCall(id))
	waitFor(t, 5*time.Second, "ended", func() bool { _, _, ended := h.sink.snapshot(); return len(ended) == 1 })
	if d := counter(testM.dialplanFollow.WithLabelValues("gone")) - gone; d != 1 || h.a.Following() != 0 {
		t.Fatalf("gone counted %v, following %d", d, h.a.Following())
	}

	bad := counter(testM.dialplanFollow.WithLabelValues("invalid"))
	h.a.Follow(dialplanCall("a/b?eventSource=x"))
	if counter(testM.dialplanFollow.WithLabelValues("invalid")) != bad+1 || h.a.Following() != 0 {
		t.Fatal("a channel id that is not a token was followed")
	}

	off := start(t, newSim(t, arisim.Options{}), &fixedDecider{}, testBudget, func(c *Config) { c.FollowLegs = false })
	id = off.sim.NewDialplanChannel(arisim.CallSpec{CLI: "0201234567"})
	disabled := counter(testM.dialplanFollow.WithLabelValues("disabled"))
	off.a.Follow(dialplanCall(id))
	if off.a.Following() != 0 || counter(testM.dialplanFollow.WithLabelValues("disabled")) != disabled+1 {
		t.Fatal("followed with follow_legs off")
	}
}

// A flood of dialplan calls never holds more than followWorkers
// subscription requests (and goroutines) at once, nor queues more than
// followQueue; the rest are counted as busy and not followed. Once
// Asterisk answers, every call taken is subscribed.
func TestFollowDialplanFlood(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchHit}}, testBudget, func(c *Config) { c.RequestTimeout = time.Minute })
	const n = 3000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = sim.NewDialplanChannel(arisim.CallSpec{CLI: "0201234567"})
	}
	release := sim.HoldSubscriptions()
	defer release()
	busy := counter(testM.dialplanFollow.WithLabelValues("busy"))
	subscribed := counter(testM.dialplanFollow.WithLabelValues("subscribed"))
	before := runtime.NumGoroutine()
	for _, id := range ids {
		h.a.Follow(dialplanCall(id))
	}
	waitFor(t, 10*time.Second, "the workers' requests held", func() bool { return sim.HeldSubscriptions() == followWorkers })
	refused := int(counter(testM.dialplanFollow.WithLabelValues("busy")) - busy)
	taken := n - refused
	if taken < followQueue || taken > followQueue+followWorkers {
		t.Fatalf("%d calls taken of %d, want between %d and %d", taken, n, followQueue, followQueue+followWorkers)
	}
	if h.a.Following() != taken {
		t.Fatalf("following %d, taken %d", h.a.Following(), taken)
	}
	// Each held request costs a worker, a client and a server connection's
	// goroutines: a few per request, never one per call.
	if grown := runtime.NumGoroutine() - before; grown > 8*followWorkers {
		t.Fatalf("%d goroutines more for %d calls", grown, n)
	}
	if got := sim.HeldSubscriptions(); got != followWorkers {
		t.Fatalf("%d subscriptions in flight, cap %d", got, followWorkers)
	}
	release()
	waitFor(t, 30*time.Second, "all taken calls subscribed", func() bool {
		return int(counter(testM.dialplanFollow.WithLabelValues("subscribed"))-subscribed) == taken
	})
	n2 := 0
	for _, id := range ids {
		if sim.Subscribed(sim.App(), id) {
			n2++
		}
	}
	if n2 != taken {
		t.Fatalf("%d channels subscribed, %d taken", n2, taken)
	}
}
