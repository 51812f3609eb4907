package router

import (
	"fmt"
	"sync"
	"testing"

	"github.com/callpop/callpop/call"
)

// follows records what the router hands its follower.
type follows struct {
	mu  sync.Mutex
	got []call.Enriched
}

func (f *follows) Follow(e call.Enriched) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, e)
}

func (f *follows) take() []call.Enriched {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.got
	f.got = nil
	return out
}

// A FastAGI session and a /v1/route request that carry the call's id hand
// the decided call to the follower (for pops), once, with the decision the
// dialplan got; without an id, with one that is not a token, and on
// /v1/lookup nothing is registered.
func TestDialplanCallsFollowed(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	f := &follows{}
	te.router.SetFollower(f)
	addr := startAGI(t, te.router)
	srv := startHTTP(t, te.router)

	env := defaultAGIEnv("route", "0201234567", "Jan de Vries", "0800123456")
	(&asterisk{env: env, ani: "0201234567"}).run(t, addr)
	got := f.take()
	if len(got) != 1 {
		t.Fatalf("FastAGI with agi_uniqueid: %d calls followed, want 1", len(got))
	}
	e := got[0]
	if e.CallID != "1763780000.42" || e.Call.ID != "1763780000.42" || e.Call.PBX != "agi" || e.Decision.Match != call.MatchHit || e.Decision.Customer == nil || e.Decision.E164 != "+31201234567" {
		t.Fatalf("FastAGI followed %+v", e)
	}

	delete(env, "agi_uniqueid")
	(&asterisk{env: env, ani: "0201234567"}).run(t, addr)
	env["agi_uniqueid"] = "1763780000.42; rm -rf"
	(&asterisk{env: env, ani: "0201234567"}).run(t, addr)
	if got := f.take(); len(got) != 0 {
		t.Fatalf("FastAGI without a usable agi_uniqueid followed %+v", got)
	}

	const uuid = "6f1c2c5e-8d0a-4b7e-9a51-3f0d2b7c9e11"
	if code, body, _ := get(t, srv, "/v1/route?number=%2B14155550123&call_id="+uuid+"&field=match"); code != 200 || body != "hit" {
		t.Fatalf("/v1/route: %d %q", code, body)
	}
	got = f.take()
	if len(got) != 1 || got[0].CallID != uuid || got[0].Call.ID != uuid || got[0].Call.PBX != "http" || got[0].Decision.Match != call.MatchHit {
		t.Fatalf("/v1/route with call_id followed %+v", got)
	}
	for _, q := range []string{
		"/v1/route?number=%2B14155550123",
		"/v1/route?number=%2B14155550123&call_id=",
		"/v1/route?number=%2B14155550123&call_id=a%20b",
		"/v1/route?number=%2B14155550123&call_id=" + uuid + "&dnis=x&profile=no-such-profile", // refused: 400
		"/v1/lookup?number=%2B14155550123&call_id=" + uuid,
	} {
		get(t, srv, q)
		if got := f.take(); len(got) != 0 {
			t.Fatalf("%s followed %+v", q, got)
		}
	}
}

// A follower that panics costs the pop, not the dialplan's answer.
func TestDialplanFollowerPanics(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	te.router.SetFollower(call.FollowFunc(func(call.Enriched) { panic("follower bug") }))
	srv := startHTTP(t, te.router)
	if code, body, _ := get(t, srv, "/v1/route?number=%2B14155550123&call_id=abc&field=match"); code != 200 || body != "hit" {
		t.Fatalf("/v1/route: %d %q", code, body)
	}
	s := (&asterisk{env: defaultAGIEnv("route", "0201234567", "x", "0800123456"), ani: "0201234567"}).run(t, startAGI(t, te.router))
	if len(s.vars) == 0 {
		t.Fatalf("FastAGI session set nothing: %q", s.commands)
	}
}

// neverReady follows calls whose following never takes hold: its channels
// never close.
type neverReady struct{ follows }

func (n *neverReady) FollowReady(e call.Enriched) <-chan struct{} {
	n.Follow(e)
	return make(chan struct{})
}

// A ReadyFollower that never becomes ready holds the dialplan no longer
// than the call's budget: the FastAGI session sets the whole decision and
// ends, /v1/route answers it.
func TestDialplanFollowWaitBounded(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	f := &neverReady{}
	te.router.SetFollower(f)
	addr := startAGI(t, te.router)
	srv := startHTTP(t, te.router)

	c := call.Call{ID: "1763780000.42", CLI: "0201234567", ANI: "0201234567", DNIS: "0800123456"}
	want := expectedVars(t, te.router, c)
	s := (&asterisk{env: defaultAGIEnv("route", "0201234567", "Jan de Vries", "0800123456"), ani: "0201234567"}).run(t, addr)
	if s.closedBy != "server" || fmt.Sprint(s.vars) != fmt.Sprint(want) {
		t.Fatalf("FastAGI: closed by %q\n got  %q\n want %q", s.closedBy, s.vars, want)
	}
	if code, body, _ := get(t, srv, "/v1/route?number=%2B31201234567&call_id=abc&field=match,queue"); code != 200 || body != "match=hit&queue=vip" {
		t.Fatalf("/v1/route: %d %q", code, body)
	}
	if got := f.take(); len(got) != 2 {
		t.Fatalf("%d calls followed, want 2", len(got))
	}
}
