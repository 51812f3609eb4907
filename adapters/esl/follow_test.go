package esl

import (
	"context"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/call"
)

// A call decided over /v1/route (call_id=${uuid}) that hangs up before any
// agent leg is created is ended on the event connection, as an enriched
// call is; one never registered is not.
func TestFollowRouteCallEnds(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	cfg := DefaultConfig()
	cfg.Listen, cfg.Address, cfg.Password = "127.0.0.1:0", sim.Addr(), testPassword
	sink := &recSink{}
	a := startAdapter(t, cfg, adapters.Deps{Decider: call.DeciderFunc(func(_ context.Context, _ call.Call) call.Decision { return call.Decision{} }), Sink: sink})
	waitFor(t, 5*time.Second, "event connection", func() bool { return a.connected.Load() })

	followed := sim.OfferCall(eslsim.Caller{Number: "+14155550123", DNIS: "1000"})
	other := sim.OfferCall(eslsim.Caller{Number: "+14155550123", DNIS: "1000"})
	a.Follow(call.Enriched{CallID: followed, Call: call.Call{ID: followed, PBX: "http"}})
	sim.Hangup(other)
	sim.Hangup(followed)
	waitFor(t, 5*time.Second, "call ended", func() bool { sink.mu.Lock(); defer sink.mu.Unlock(); return len(sink.ended) > 0 })
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.ended) != 1 || sink.ended[0].CallID != followed || sink.ended[0].CallerChannel != followed {
		t.Fatalf("ended %+v, want only %s", sink.ended, followed)
	}
}
