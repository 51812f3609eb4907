package ari

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

func benchLines(b *testing.B, name string) [][]byte {
	raw, err := os.ReadFile(filepath.Join(recordings, name))
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	for _, l := range bytes.Split(raw, []byte("\n")) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// BenchmarkDecodeStasisStart decodes one recorded StasisStart.
func BenchmarkDecodeStasisStart(b *testing.B) {
	line := benchLines(b, "a-national.events.jsonl")[0]
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := decodeEvent(line); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeMix decodes every line of a recorded queue call (Dial,
// ChannelVarset, DeviceStateChanged, ...), most of them skipped after the
// type is read.
func BenchmarkDecodeMix(b *testing.B) {
	lines := benchLines(b, "callpop-queue-ringall.self-channel-subscription.events.jsonl")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, err := decodeEvent(lines[i%len(lines)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDispatchLegs runs recorded Dial/hangup events through the leg
// tracker of a followed call.
func BenchmarkDispatchLegs(b *testing.B) {
	lines := benchLines(b, "callpop-queue-ringall.self-channel-subscription.events.jsonl")
	a := &Adapter{cfg: DefaultConfig(), log: discard(), m: testM, follow: newFollowState(1000, time.Hour, call.NopSink{}, discard(), testM)}
	b.ReportAllocs()
	for b.Loop() {
		a.follow.add("1795312348.37306", "1795312348.37306")
		for _, l := range lines {
			if !bytes.Contains(l, []byte(`"StasisStart"`)) {
				a.dispatch(l, time.Now())
			}
		}
	}
}

// BenchmarkHeldCalls holds 10,000 calls in the adapter at once, their
// look-ups stalled, and reports what one held call costs: goroutines, stack
// and heap bytes, the simulator's own share (its channel records, measured
// with a plain socket reader) taken out. With ari.conf channelvars and an
// AsyncDecider (the router) the call holds no goroutine: its state, the
// decision's context and the watchdog's timer ("channelvars"). Without
// channelvars the call's goroutine reads the variables first, then hands the
// call over the same way ("GET": the read's answer besides). A plain Decider
// that blocks keeps a goroutine per call ("-plain").
func BenchmarkHeldCalls(b *testing.B) {
	cv := []string{"CALLPOP_CALL_ID", "CALLERID(ani)", "CALLERID(num-pres)"}
	b.Run("channelvars", func(b *testing.B) { benchHeld(b, cv, true) })
	b.Run("channelvars-plain", func(b *testing.B) { benchHeld(b, cv, false) })
	b.Run("GET", func(b *testing.B) { benchHeld(b, nil, true) })
	b.Run("GET-plain", func(b *testing.B) { benchHeld(b, nil, false) })
}

func benchHeld(b *testing.B, channelVars []string, async bool) {
	const n = 10000
	simHeap := simHeapPerChannel(b, n, channelVars)
	for b.Loop() {
		sim := newSim(b, arisim.Options{ChannelVars: channelVars, EventBuf: 4 * n})
		release := make(chan struct{})
		var entered atomic.Int64
		var dec call.Decider = call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
			entered.Add(1)
			select {
			case <-ctx.Done():
			case <-release:
			}
			return call.Decision{Match: call.MatchMiss}
		})
		var held *heldDecider
		if async {
			held = &heldDecider{d: call.Decision{Match: call.MatchMiss}}
			dec = held
		}
		entered0 := func() int64 {
			if held != nil {
				return held.entered.Load()
			}
			return entered.Load()
		}
		h := start(b, sim, dec, 5*time.Minute, func(c *Config) { c.MaxCalls = n + 100; c.MaxConnections = 129 })
		g0, heap0, stack0 := goroutinesAndHeap()
		for i := range n {
			sim.OfferCall(arisim.CallSpec{CLI: fmt.Sprintf("+3120%07d", i)})
		}
		waitFor(b, time.Minute, "all calls in the decider", func() bool {
			return entered0() == n && int(h.a.enriching.Load()) == n
		})
		g1, heap1, stack1 := goroutinesAndHeap()
		b.ReportMetric(float64(g1-g0)/n, "goroutines/held_call")
		b.ReportMetric(float64(stack1-stack0)/n, "stack_B/held_call")
		b.ReportMetric(float64(heap1-heap0)/n-simHeap, "heap_B/held_call")
		b.ReportMetric(simHeap, "sim_heap_B/channel")
		// Not 10,000 enrichments to wait for: with the simulator gone each
		// call fails its requests at once and ends.
		sim.Close()
		close(release)
		if held != nil {
			held.release()
		}
		h.stop()
	}
}

// simHeapPerChannel is the heap one waiting channel costs the simulator
// (channel, record, queued event), with a plain reader on the socket.
func simHeapPerChannel(b *testing.B, n int, channelVars []string) float64 {
	sim := newSim(b, arisim.Options{ChannelVars: channelVars, EventBuf: 4 * n})
	defer sim.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := strings.Replace(sim.URL(), "http", "ws", 1) + "/ari/events?app=" + sim.App() + "&api_key=" + testUser + ":" + testPass
	c, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	var read atomic.Int64
	go func() {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
			read.Add(1)
		}
	}()
	waitFor(b, 5*time.Second, "socket registered", func() bool { return sim.Connected(sim.App()) })
	_, heap0, _ := goroutinesAndHeap()
	for i := range n {
		sim.OfferCall(arisim.CallSpec{CLI: fmt.Sprintf("+3120%07d", i)})
	}
	waitFor(b, time.Minute, "events read", func() bool { return read.Load() == int64(n) })
	_, heap1, _ := goroutinesAndHeap()
	return float64(heap1-heap0) / float64(n)
}

func goroutinesAndHeap() (goroutines int, heap, stack int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), int64(ms.HeapAlloc), int64(ms.StackInuse)
}

// BenchmarkApplyDecision measures putting a known caller's decision on a
// channel held in Stasis at the simulator over real HTTP: one POST
// /channels/{id}/variables, or one request per variable (an older Asterisk,
// applyWorkers at a time, CALLPOP_MATCH last). It reports p50/p99 per
// decision: the figure apply_reserve must cover. Run it on a loaded machine
// to size apply_reserve: go test ./adapters/ari -run XXX -bench ApplyDecision
func BenchmarkApplyDecision(b *testing.B) {
	for _, tt := range []struct {
		name    string
		version string
	}{{"post", ""}, {"single", "22.9.0"}} {
		b.Run(tt.name, func(b *testing.B) {
			sim := newSim(b, arisim.Options{Version: tt.version})
			release := make(chan struct{})
			hold := call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
				select { // the channel stays in Stasis until the benchmark ends
				case <-release:
				case <-ctx.Done():
				}
				return knownCaller
			})
			h := start(b, sim, hold, 5*time.Minute, nil)
			defer close(release)
			id := sim.OfferCall(arisim.CallSpec{CLI: "+14155550123"})
			r := &callRun{a: h.a, ch: stasisChannel{ID: id}, deadline: time.Now().Add(time.Hour)}
			vars := channelVars(id, knownCaller)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				r.setDecision(ctx, cancel, id, vars)
				cancel()
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
			if v := sim.Vars(id); v["CALLPOP_MATCH"] != "hit" {
				b.Fatalf("decision not applied: %v", v)
			}
		})
	}
}
