package esl

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
)

// loadFigures are what the closing note reports for one mode.
type loadFigures struct {
	mu        sync.Mutex
	toVars    []time.Duration // event written → variables stored
	toRelease []time.Duration // event written → exit / uuid_transfer executed
	toResume  []time.Duration // outbound: event written → dialplan resumes (FreeSWITCH's 20 ms wake-up model)
	late      int             // released after the budget
	novars    int             // released without variables (watchdog)
}

func (f *loadFigures) add(ch eslsim.Channel, event time.Time, budget time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(ch.Sets) > 0 {
		f.toVars = append(f.toVars, ch.Sets[len(ch.Sets)-1].At.Sub(event))
	}
	held := ch.Released.Sub(event)
	f.toRelease = append(f.toRelease, held)
	if held > budget {
		f.late++
	}
	if ch.Vars["callpop_match"] == "" {
		f.novars++
	}
}

func (f *loadFigures) report(b *testing.B, elapsed time.Duration, n int) {
	b.ReportMetric(float64(n)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(percentile(f.toVars, .5).Microseconds())/1000, "ms-vars-p50")
	b.ReportMetric(float64(percentile(f.toVars, .99).Microseconds())/1000, "ms-vars-p99")
	b.ReportMetric(float64(percentile(f.toRelease, .5).Microseconds())/1000, "ms-release-p50")
	b.ReportMetric(float64(percentile(f.toRelease, .99).Microseconds())/1000, "ms-release-p99")
	if len(f.toResume) > 0 {
		b.ReportMetric(float64(percentile(f.toResume, .5).Microseconds())/1000, "ms-resume-p50")
		b.ReportMetric(float64(percentile(f.toResume, .99).Microseconds())/1000, "ms-resume-p99")
	}
	b.ReportMetric(float64(f.late), "late")
	b.ReportMetric(float64(f.novars), "without-vars")
}

// BenchmarkOutbound: the socket app for every call, 1 and 16 at a time,
// through the real caller-ID normaliser; every call must be released within
// the budget (late counts those that were not; without-vars those the
// watchdog released before the variables were stored).
func BenchmarkOutbound(b *testing.B) {
	for _, w := range []int{1, 16} {
		b.Run(fmt.Sprintf("concurrent=%d", w), func(b *testing.B) { benchOutbound(b, w) })
	}
}

func benchOutbound(b *testing.B, benchWorkers int) {
	const budget = 300 * time.Millisecond
	a := startAdapter(b, outboundConfig(), adapters.Deps{Decider: numbersDecider(b, customers), Budget: budget})
	sim := eslsim.NewOutbound(waitAddr(b, a), eslsim.Options{})
	var figs loadFigures
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < benchWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				res, err := sim.Call(ctx, eslsim.Caller{Number: "0201234567", Name: "Erika Mustermann"})
				cancel()
				if err != nil {
					b.Error(err)
					continue
				}
				figs.add(res.Channel, res.Offered, budget)
				figs.mu.Lock()
				figs.toResume = append(figs.toResume, res.Resume.Sub(res.Offered))
				figs.mu.Unlock()
			}
		}()
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	figs.report(b, time.Since(start), b.N)
}

// BenchmarkInbound: calls parked and taken over the event socket, 1 and 16
// parked at a time; each is set and transferred.
func BenchmarkInbound(b *testing.B) {
	for _, w := range []int{1, 16} {
		b.Run(fmt.Sprintf("concurrent=%d", w), func(b *testing.B) { benchInbound(b, w) })
	}
}

func benchInbound(b *testing.B, benchWorkers int) {
	const budget = 300 * time.Millisecond
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword})
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	a := startAdapter(b, inboundConfig(sim.Addr()), adapters.Deps{Decider: numbersDecider(b, customers), Budget: budget})
	waitFor(b, 5*time.Second, "ready", func() bool { ok, _ := a.Ready(); return ok })
	var figs loadFigures
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < benchWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				id := sim.OfferCall(eslsim.Caller{Number: "0201234567", Name: "Erika Mustermann"})
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := sim.WaitReleased(ctx, id)
				cancel()
				if err != nil {
					b.Error(err)
					continue
				}
				ch, _ := sim.Channel(id)
				figs.add(ch, ch.Created, budget)
			}
		}()
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	figs.report(b, time.Since(start), b.N)
}

// BenchmarkVariables is the per-call cost of building the uuid_setvar_multi line.
func BenchmarkVariables(b *testing.B) {
	d := hostileDecider("Jürgen ${x} Groß").Decide(context.Background(), callFromCaller())
	c := callFromCaller()
	b.ReportAllocs()
	for b.Loop() {
		_ = setvarMulti(c.ID, variables(c, d, func(string) string { return "" }))
	}
}
