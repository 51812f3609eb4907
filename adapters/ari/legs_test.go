package ari

import (
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

// A followed call whose hang-up never arrives is forgotten after leg_ttl,
// reported ended, and its channel subscription is removed.
func TestFollowExpiresAndUnsubscribes(t *testing.T) {
	sim := newSim(t, arisim.Options{Linger: -1})
	h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchHit}}, testBudget, nil)
	id := sim.OfferCall(arisim.CallSpec{CLI: "+14155550123"})
	waitSettled(t, sim, []string{id}, 3*time.Second)
	waitFor(t, 3*time.Second, "followed", func() bool { return h.a.follow.following(id) })
	if !sim.Subscribed(sim.App(), id) {
		t.Fatal("not subscribed")
	}
	h.a.follow.mu.Lock()
	h.a.follow.now = func() time.Time { return time.Now().Add(5 * time.Hour) }
	h.a.follow.mu.Unlock()
	h.a.follow.sweep()
	if h.a.follow.following(id) {
		t.Error("still followed after the ttl")
	}
	_, _, ended := h.sink.snapshot()
	if len(ended) != 1 || ended[0].CallID != id {
		t.Errorf("ended %+v", ended)
	}
	if sim.Subscribed(sim.App(), id) {
		t.Error("subscription left behind")
	}
}

// The follow map is bounded: past max_follow new calls are still enriched
// and continued, just not followed.
func TestFollowBounded(t *testing.T) {
	sim := newSim(t, arisim.Options{Linger: -1})
	h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchMiss}}, testBudget, func(c *Config) { c.MaxFollow = 2 })
	var ids []string
	for i := 0; i < 4; i++ {
		ids = append(ids, sim.OfferCall(arisim.CallSpec{CLI: "+14155550123"}))
	}
	waitSettled(t, sim, ids, 3*time.Second)
	for _, id := range ids {
		if r, _ := sim.Record(id); r.Continued.IsZero() {
			t.Errorf("%s not continued", id)
		}
	}
	if n := h.a.Following(); n != 2 {
		t.Errorf("following %d, want 2", n)
	}
}

// A followed caller who hangs up while the socket is down is reported ended
// after the reconnect (its ChannelDestroyed was lost with the socket).
func TestFollowPrunedAfterReconnect(t *testing.T) {
	sim := newSim(t, arisim.Options{Linger: -1})
	h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchHit}}, testBudget, nil)
	id := sim.OfferCall(arisim.CallSpec{CLI: "+14155550123"})
	waitSettled(t, sim, []string{id}, 3*time.Second)
	waitFor(t, 3*time.Second, "followed", func() bool { return h.a.follow.following(id) })
	sim.DropSockets()
	sim.Hangup(id) // nobody hears it
	waitFor(t, 5*time.Second, "ended after reconnect", func() bool { _, _, e := h.sink.snapshot(); return len(e) == 1 })
	if h.a.follow.following(id) {
		t.Error("still followed")
	}
}
