package ari_test

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
)

// BenchmarkCallsThroughSimulator offers b.N calls at a fixed rate (open
// loop, like a trunk) through the simulator, the ARI adapter and the real
// pipeline (sample CSV CRM, warm in-process cache), and reports the rate
// achieved, StasisStart → continue percentiles as the simulator saw them,
// and budget misses (continues later than call.budget). The simulator runs
// in the same process, so its CPU counts against the adapter's.
func BenchmarkCallsThroughSimulator(b *testing.B) {
	for _, rate := range []float64{50, 100, 200, 300, 400, 600, 800} {
		b.Run(fmt.Sprintf("rate=%.0f", rate), func(b *testing.B) { benchRate(b, rate, nil) })
	}
	// ari.conf channelvars with the caller-ID functions: no GETs per call.
	cv := []string{"CALLPOP_CALL_ID", "CALLERID(ani)", "CALLERID(num-pres)"}
	for _, rate := range []float64{400, 800, 1600} {
		b.Run(fmt.Sprintf("channelvars/rate=%.0f", rate), func(b *testing.B) { benchRate(b, rate, cv) })
	}
}

func benchRate(b *testing.B, rate float64, channelVars []string) {
	const budget = 300 * time.Millisecond
	sim, err := arisim.New(arisim.Options{Username: "ariuser", Password: "ariS3cret", EventBuf: 1 << 20,
		ChannelVars: channelVars})
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	sk := &sink{}
	run(b, sim, pipeline(b, budget), budget, sk)
	mix := arisim.Mix([]string{"+31201234567", "+14155550123", "+442079460018"}, "+14155550100")
	for _, m := range mix { // warm the cache
		settle(b, sim, sim.OfferCall(m))
	}
	st0, cpu0 := sim.Stats(), cpuTime()
	b.ResetTimer()
	start := time.Now()
	ids := sim.Generate(context.Background(), rate, b.N, mix)
	offered := time.Since(start)
	var held []time.Duration
	misses := 0
	for _, id := range ids {
		r := settle(b, sim, id)
		if r.Continued.IsZero() {
			b.Fatalf("%s not continued", id)
		}
		d := r.Continued.Sub(r.Offered)
		held = append(held, d)
		if d > budget {
			misses++
		}
	}
	b.StopTimer()
	// Process CPU (user + system) per call: comparable on a busy machine
	// when no call missed its budget (a watchdog continue skips the sets).
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(len(ids)), "cpu_µs/call")
	st := sim.Stats()
	b.ReportMetric(float64(st.Requests-st0.Requests)/float64(len(ids)), "requests/call")
	b.ReportMetric(float64(st.Accepted-st0.Accepted), "dials") // after the warm-up: 0 when the keep-alive pool holds
	// The adapter's own share: from reading StasisStart to the continue.
	received := map[string]time.Time{}
	sk.mu.Lock()
	for _, e := range sk.e {
		received[e.CallID] = e.Call.Received
	}
	sk.mu.Unlock()
	var own []time.Duration
	for _, id := range ids {
		if r, _ := sim.Record(id); !received[id].IsZero() {
			own = append(own, r.Continued.Sub(received[id]))
		}
	}
	slices.Sort(own)
	if len(own) > 0 {
		b.ReportMetric(float64(own[min(len(own)-1, len(own)*99/100)].Microseconds())/1000, "read→continue_p99_ms")
	}
	slices.Sort(held)
	b.ReportMetric(float64(len(ids))/offered.Seconds(), "calls/s")
	b.ReportMetric(float64(held[len(held)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(held[min(len(held)-1, len(held)*99/100)].Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(misses), "budget_misses")
}

// cpuTime is the CPU time the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
