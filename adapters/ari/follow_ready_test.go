package ari

import (
	"fmt"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: ready never closed", what)
	}
}

// FollowReady's channel closes only once Asterisk has answered the
// subscription, so a Dial issued the moment it closes is seen ringing:
// arisim, like Asterisk, sends a channel's events to an app only after the
// subscription is in place.
func TestFollowReadyAfterSubscription(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchHit}}, testBudget, func(c *Config) { c.RequestTimeout = time.Minute })
	id := sim.NewDialplanChannel(arisim.CallSpec{CLI: "0201234567", Agents: []string{"PJSIP/1001"}, Answer: 0,
		RingFor: 20 * time.Millisecond, TalkFor: 20 * time.Millisecond})
	release := sim.HoldSubscriptions()
	defer release()
	ready := h.a.FollowReady(dialplanCall(id))
	waitFor(t, 5*time.Second, "subscription held", func() bool { return sim.HeldSubscriptions() == 1 })
	if closed(ready) || sim.Subscribed(sim.App(), id) {
		t.Fatal("ready before Asterisk answered the subscription")
	}
	release()
	waitClosed(t, ready, "subscription released")
	if !sim.Subscribed(sim.App(), id) {
		t.Fatal("ready, but the app is not subscribed to the channel")
	}
	sim.RunAgents(id) // the Dial, at once
	waitFor(t, 5*time.Second, "call ended", func() bool { _, _, ended := h.sink.snapshot(); return len(ended) == 1 })
	_, legs, _ := h.sink.snapshot()
	if len(legs) == 0 || legs[0].State != call.LegRinging || legs[0].CallID != id {
		t.Fatalf("first leg event %+v, want the agent ringing", legs)
	}
}

// Whatever becomes of the call, FollowReady's channel closes: following
// off, an id that is not a channel's, a channel followed already, a caller
// gone before the subscription (422), the adapter stopping with requests
// held (they end at request_timeout) and queued, and after it stopped.
func TestFollowReadyAlwaysCloses(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchHit}}, testBudget, nil)

	waitClosed(t, h.a.FollowReady(dialplanCall("a/b?eventSource=x")), "invalid id")

	gone := sim.NewDialplanChannel(arisim.CallSpec{CLI: "0201234567"})
	sim.Hangup(gone)
	waitClosed(t, h.a.FollowReady(dialplanCall(gone)), "channel gone")

	id := sim.NewDialplanChannel(arisim.CallSpec{CLI: "0201234567"})
	waitClosed(t, h.a.FollowReady(dialplanCall(id)), "subscribed")
	waitClosed(t, h.a.FollowReady(dialplanCall(id)), "followed already")

	off := start(t, newSim(t, arisim.Options{}), &fixedDecider{}, testBudget, func(c *Config) { c.FollowLegs = false })
	waitClosed(t, off.a.FollowReady(dialplanCall(off.sim.NewDialplanChannel(arisim.CallSpec{CLI: "0201234567"}))), "follow_legs off")

	release := sim.HoldSubscriptions()
	defer release()
	var ready []<-chan struct{}
	for range followWorkers + 3 { // some in flight, some queued
		ready = append(ready, h.a.FollowReady(dialplanCall(sim.NewDialplanChannel(arisim.CallSpec{CLI: "0201234567"}))))
	}
	waitFor(t, 5*time.Second, "requests held", func() bool { return sim.HeldSubscriptions() > 0 })
	h.stop()
	for i, r := range ready {
		waitClosed(t, r, fmt.Sprintf("adapter stopped, call %d", i))
	}
	waitClosed(t, h.a.FollowReady(dialplanCall(sim.NewDialplanChannel(arisim.CallSpec{CLI: "0201234567"}))), "adapter stopped")
}
