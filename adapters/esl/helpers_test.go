package esl

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/esl/eslwire"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callerid"
)

const testPassword = "s3cret-test-pw"

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// numbersDecider is a decider on the real caller-ID normaliser with a fixed
// customer table: enough for match, source and variables without a CRM.
func numbersDecider(t testing.TB, customers map[string]call.Customer) call.Decider {
	t.Helper()
	cfg := callerid.DefaultConfig()
	cfg.DefaultRegion = "DE"
	n, err := callerid.New(cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	// warm the metadata so the first call is not slower than the budget under -race
	n.Pick("+14155550123", "", false, "DE")
	n.Pick("0201234567", "", false, "DE")
	return call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		r := n.Pick(c.CLI, c.ANI, c.Privacy, n.RegionFor(c.DNIS))
		d := call.Decision{CallID: c.ID, Source: r.Source, Privacy: r.Privacy}
		if r.Status != "" {
			d.Match = r.Status
			return d
		}
		d.E164 = r.Number.E164
		if cu, ok := customers[d.E164]; ok {
			cu := cu
			d.Match, d.Customer, d.BaseScore, d.Priority = call.MatchHit, &cu, 1000, 9
		} else {
			d.Match, d.BaseScore = call.MatchMiss, 10
		}
		return d
	})
}

// recSink records what the adapter reports.
type recSink struct {
	mu       sync.Mutex
	enriched []call.Enriched
	legs     []call.LegEvent
	ended    []call.CallEnd
}

func (s *recSink) CallEnriched(e call.Enriched) {
	s.mu.Lock()
	s.enriched = append(s.enriched, e)
	s.mu.Unlock()
}
func (s *recSink) AgentLeg(e call.LegEvent) { s.mu.Lock(); s.legs = append(s.legs, e); s.mu.Unlock() }
func (s *recSink) CallEnded(e call.CallEnd) { s.mu.Lock(); s.ended = append(s.ended, e); s.mu.Unlock() }

func (s *recSink) calls() map[string]call.Enriched {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]call.Enriched{}
	for _, e := range s.enriched {
		m[e.Call.ID] = e
	}
	return m
}

// startAdapter runs an adapter until the test ends.
func startAdapter(t testing.TB, cfg Config, deps adapters.Deps) *Adapter {
	t.Helper()
	if deps.Logger == nil {
		deps.Logger = quietLog()
	}
	a, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return a
}

func outboundConfig() Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Events = false
	return cfg
}

func inboundConfig(addr string) Config {
	cfg := DefaultConfig()
	cfg.Mode = "inbound"
	cfg.Address = addr
	cfg.Password = testPassword
	cfg.ReconnectMin = 20 * time.Millisecond
	cfg.ReconnectMax = 200 * time.Millisecond
	return cfg
}

// waitFor polls cond for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func waitAddr(t testing.TB, a *Adapter) string {
	t.Helper()
	var addr string
	waitFor(t, 5*time.Second, "outbound listener", func() bool { addr = a.Addr(); return addr != "" })
	return addr
}

func readTestdata(t testing.TB, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type eslwireHeader struct{ n, v string }

type headerList []eslwireHeader

func (l headerList) h() []eslwire.Header {
	out := make([]eslwire.Header, len(l))
	for i, x := range l {
		out[i] = eslwire.Header{Name: x.n, Value: x.v}
	}
	return out
}

func callFromCaller() call.Call {
	return call.Call{ID: "38b14921-459d-4e90-91da-545ca21dba88", PBX: "freeswitch", CLI: "0201234567", Received: time.Now()}
}

// roomyBudget is the budget of tests that check what is set, not when: a
// loaded 2-core box under -race must not turn them into timeouts.
const roomyBudget = 3 * time.Second

// testM is the series of adapters built without a PBX name
// (pbx="freeswitch"), as the tests of this package build them.
var testM = newMetrics("")
