package esl

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/call"
)

// asyncDecider answers through DecideAsync only: after delay, or never when
// delay < 0 (a decider that ignores its deadline). It counts its calls.
type asyncDecider struct {
	delay time.Duration
	mu    sync.Mutex
	n     int
}

func (d *asyncDecider) Decide(ctx context.Context, c call.Call) call.Decision {
	panic("asyncDecider: Decide called; the adapter should use DecideAsync")
}

func (d *asyncDecider) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	d.mu.Lock()
	d.n++
	d.mu.Unlock()
	if d.delay < 0 {
		return // never answers
	}
	time.AfterFunc(d.delay, func() {
		done(call.Decision{Match: call.MatchHit, E164: "+31201234567", Priority: 7, QueuePrio: 7})
	})
}

// asyncCases: a decider answering in time, and one that never answers.
var asyncCases = []struct {
	name  string
	delay time.Duration
	match string // callpop_match when the variables were confirmed in time
}{{"answers", 20 * time.Millisecond, "hit"}, {"never answers", -1, "timeout"}}

// Inbound mode with an async decider: a parked call waits without a
// goroutine of its own and is released once, enriched when the answer comes
// in time and unenriched (by its deadline) when it never comes.
func TestInboundAsyncDecider(t *testing.T) {
	const budget = 200 * time.Millisecond
	for _, tc := range asyncCases {
		t.Run(tc.name, func(t *testing.T) {
			sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword})
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Close()
			dec := &asyncDecider{delay: tc.delay}
			a := startAdapter(t, inboundConfig(sim.Addr()), adapters.Deps{Decider: dec, Budget: budget})
			waitFor(t, 5*time.Second, "ready", func() bool { ok, _ := a.Ready(); return ok })
			var ids []string
			for i := 0; i < 20; i++ {
				ids = append(ids, sim.OfferCall(eslsim.Caller{Number: "0201234567"}))
			}
			matched := 0
			for _, id := range ids {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := sim.WaitReleased(ctx, id)
				cancel()
				if err != nil {
					t.Fatalf("%s: %v", id, err)
				}
				ch, _ := sim.Channel(id)
				switch got := ch.Vars["callpop_match"]; got {
				case tc.match:
					matched++
				case "": // released by its deadline before the variables were confirmed (a loaded -race box)
				default:
					t.Errorf("%s: callpop_match = %q, want %q", id, got, tc.match)
				}
			}
			if matched < len(ids)/2 {
				t.Errorf("only %d of %d calls carry callpop_match=%s", matched, len(ids), tc.match)
			}
			if st := sim.Stats(); st.Transfers != len(ids) {
				t.Errorf("transfers = %d, want %d (each call once)", st.Transfers, len(ids))
			}
			dec.mu.Lock()
			defer dec.mu.Unlock()
			if dec.n != len(ids) {
				t.Errorf("decider asked %d times for %d calls", dec.n, len(ids))
			}
		})
	}
}

// Outbound mode with an async decider: the socket session waits for the
// decision with no call goroutine, then sets the variables and exits; a
// decider that never answers still lets the call go on by its budget.
func TestOutboundAsyncDecider(t *testing.T) {
	const budget = 200 * time.Millisecond
	for _, tc := range asyncCases {
		t.Run(tc.name, func(t *testing.T) {
			dec := &asyncDecider{delay: tc.delay}
			a := startAdapter(t, outboundConfig(), adapters.Deps{Decider: dec, Budget: budget})
			sim := eslsim.NewOutbound(waitAddr(t, a), eslsim.Options{})
			var wg sync.WaitGroup
			var matched atomic.Int32
			errs := make(chan error, 20)
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					res, err := sim.Call(ctx, eslsim.Caller{Number: "0201234567"})
					if err != nil {
						errs <- err
						return
					}
					switch got := res.Vars["callpop_match"]; got {
					case tc.match:
						matched.Add(1)
					case "": // released by its deadline before the variables were confirmed
					default:
						errs <- fmt.Errorf("callpop_match = %q, want %q", got, tc.match)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if n := matched.Load(); n < 10 {
				t.Errorf("only %d of 20 calls carry callpop_match=%s", n, tc.match)
			}
			dec.mu.Lock()
			defer dec.mu.Unlock()
			if dec.n != 20 {
				t.Errorf("decider asked %d times for 20 calls", dec.n)
			}
		})
	}
}
