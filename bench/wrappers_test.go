package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
)

// heldDecider is an AsyncDecider that holds every call until release.
type heldDecider struct {
	mu   sync.Mutex
	held []func()
}

func (h *heldDecider) Decide(ctx context.Context, c call.Call) call.Decision {
	return call.Decision{CallID: c.ID, Match: call.MatchHit, Cached: true}
}

func (h *heldDecider) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = append(h.held, func() { done(call.Decision{CallID: c.ID, Match: call.MatchMiss}) })
}

func (h *heldDecider) release() {
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// TestWrappersAsync: entryCounter counts an async call from entry to done,
// and recorder has its verdict by the time done runs.
func TestWrappersAsync(t *testing.T) {
	inner := &heldDecider{}
	rec := &recorder{dec: inner, log: slog.Default()}
	ec := &entryCounter{dec: rec, log: slog.Default()}
	var _ call.AsyncDecider = ec
	var _ call.AsyncDecider = rec
	const n = 10
	var dones sync.WaitGroup
	dones.Add(n)
	for i := range n {
		id := fmt.Sprint("c", i)
		adapters.DecideAsync(context.Background(), ec, call.Call{ID: id}, slog.Default(), func(d call.Decision) {
			defer dones.Done()
			if v, ok := rec.take(id); !ok || v.match != call.MatchMiss || v.cached {
				t.Errorf("%s: verdict %+v %v at done", id, v, ok)
			}
		})
	}
	if got := ec.in.Load(); got != n {
		t.Fatalf("%d calls counted inside, want %d", got, n)
	}
	inner.release()
	dones.Wait()
	if got := ec.in.Load(); got != 0 {
		t.Fatalf("%d calls counted inside after done, want 0", got)
	}
}

// twiceDecider answers every call twice, then panics.
type twiceDecider struct{ heldDecider }

func (*twiceDecider) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	done(call.Decision{CallID: c.ID, Match: call.MatchHit})
	done(call.Decision{CallID: c.ID, Match: call.MatchMiss})
	panic("after done")
}

// TestWrappersCountOnce: a decider that calls back twice and then panics
// still leaves each call counted out once, with its first decision recorded.
func TestWrappersCountOnce(t *testing.T) {
	rec := &recorder{dec: &twiceDecider{}, log: slog.Default()}
	ec := &entryCounter{dec: rec, log: slog.Default()}
	var got []call.Match
	adapters.DecideAsync(context.Background(), ec, call.Call{ID: "c"}, slog.Default(), func(d call.Decision) { got = append(got, d.Match) })
	if n := ec.in.Load(); n != 0 {
		t.Fatalf("%d calls counted inside after done, want 0", n)
	}
	if v, ok := rec.take("c"); !ok || v.match != call.MatchHit {
		t.Fatalf("verdict %+v %v, want the first (hit)", v, ok)
	}
	if len(got) != 1 || got[0] != call.MatchHit {
		t.Fatalf("done got %v, want [hit]", got)
	}
}
