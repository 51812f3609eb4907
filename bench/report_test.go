package bench

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// goldenReports are reports that take every branch of WriteTable and WritePlot.
func goldenReports() map[string]*Report {
	m := Machine{NProc: 2, CPU: "Test CPU", GoVersion: "go1.x", OS: "linux/amd64"}
	lat := func(base float64) Latency {
		return Latency{Count: int(base * 100), P50: base, P90: base * 2, P99: base * 3, P999: base * 4, Max: base * 5}
	}
	dist := func(n int, step time.Duration) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(i+1) * step
		}
		return d
	}
	steps := []Step{{Rate: 100, Achieved: 99.5, Goodput: 99.5, P99: 1.25, Clean: true}, {Rate: 200, Achieved: 150, Goodput: 140, Misses: 12, P99: 310.5}}
	fixed := &Report{
		PBX: "asterisk", Machine: m, Rate: 100, DurationS: 10, BudgetMs: 300, Population: 1000, CRMLatencyMs: 20,
		CallsOffered: 1000, CallsCompleted: 998, CallsPerSecond: 99.8, AchievedCPS: 99.8, BudgetMisses: 1, Lost: 1,
		Matches: map[string]int{"hit": 500, "miss": 300, "anonymous": 100, "invalid": 50, "timeout": 1, "undecided": 2},
		Warm:    lat(0.5), Cold: lat(21), NoLookup: lat(0.3), All: lat(2), Bare: lat(0.4),
		OverheadRatio: 1.25, OverheadRatioP99: 1.5, OverheadRatioAll: 5, OverheadBasis: "the same rate, <same> calls",
		BareRate: 100, RequestsPerCall: 3.5, BareRequestsPerCall: 3,
		CRMRequests: 400, CRMRequestsPerBurstNumber: 1, Burst: BurstReport{Numbers: 10, CallsPerNumber: 50, RequestsMean: 1, RequestsMax: 1, P99: 30},
		PeakRSSMiB: 50.5, InFlight: InFlightReport{Calls: 10000, Reached: 10000, Goroutines: 40, GoroutinesIdle: 30, RSSMiB: 48.1, HeapMiB: 20.2, StackMiB: 1.5, MemLimit: "48MiB", Process: "the sidecar child", DrainS: 1.5},
		ReadyMs: 12.5, Notes: []string{"first note", "second & <note>"},
		dists: map[string][]time.Duration{"bare": dist(1000, 400*time.Microsecond), "warm": dist(500, 500*time.Microsecond), "cold": dist(3, 21*time.Millisecond), "no_lookup": nil},
	}
	rampBroke := &Report{
		PBX: "freeswitch-inbound", Machine: m, Rate: 0, DurationS: 30, BudgetMs: 300, Population: 1000, CRMLatencyMs: 20,
		CallsOffered: 5000, CallsCompleted: 4990, CallsPerSecond: 100, SaturationCPS: 140, BreakRate: 200,
		Warm: lat(0.6), Cold: lat(22), All: lat(3), Bare: lat(0.5), BareRate: 100,
		OverheadRatio: 1.2, OverheadRatioP99: 1.1, OverheadRatioAll: 6, OverheadAtCleanRate: 1.3, OverheadAtCleanRateP99: 1.4,
		BareSteps: steps, BareCleanCPS: 100, BareBreakRate: 200, Steps: steps,
		InFlight: InFlightReport{Calls: 100, Process: "whole bench process"}, PeakRSSMiB: 70, ReadyMs: 2000,
	}
	rampClean := &Report{
		PBX: "freeswitch-outbound", Machine: m, Rate: 0, DurationS: 5, BudgetMs: 2, Steps: steps[:1],
		BareSteps: steps[:1], BareCleanCPS: 100, Burst: BurstReport{Numbers: 2, RequestsMax: 2}, CRMRequestsPerBurstNumber: 1.5,
		InFlight: InFlightReport{Process: "whole bench process"},
	}
	rampNoBare := &Report{PBX: "asterisk", Machine: m, Rate: 0, BreakRate: 300, Steps: steps}
	return map[string]*Report{"fixed": fixed, "ramp-broke": rampBroke, "ramp-clean": rampClean, "ramp-no-bare": rampNoBare}
}

// TestReportGolden: the table and the plot of fixed reports are byte for
// byte what testdata/report.golden holds (go test -run TestReportGolden -update rewrites it).
func TestReportGolden(t *testing.T) {
	reps := goldenReports()
	var out bytes.Buffer
	for _, name := range []string{"fixed", "ramp-broke", "ramp-clean", "ramp-no-bare"} {
		fmt.Fprintf(&out, "=== table %s\n", name)
		if err := reps[name].WriteTable(&out); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "=== plot %s\n", name)
		if err := reps[name].WritePlot(&out); err != nil {
			t.Fatal(err)
		}
	}
	golden := filepath.Join("testdata", "report.golden")
	if *updateGolden {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("report output differs from %s:\n%s", golden, out.String())
	}
}

// A report of several simulators (--pbx a,b) adds a block with each one's
// figures after the latency table; the rest of the table is unchanged.
func TestReportPBXes(t *testing.T) {
	one := goldenReports()["fixed"]
	both := goldenReports()["fixed"]
	both.PBX = "asterisk,freeswitch-outbound"
	both.PBXes = []PBXReport{
		{Name: "asterisk", CallsOffered: 500, CallsCompleted: 499, BudgetMisses: 1, Lost: 1, All: Latency{P50: 2, P99: 6}, Warm: Latency{P99: 1.5}},
		{Name: "freeswitch-outbound", CallsOffered: 500, CallsCompleted: 499, All: Latency{P50: 1.75, P99: 5.5}, Warm: Latency{P99: 1.25}},
	}
	var a, b bytes.Buffer
	if err := one.WriteTable(&a); err != nil {
		t.Fatal(err)
	}
	if err := both.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"each PBX (the figures above are all of them)  offered  completed  budget misses  lost  all p50  all p99  warm p99\n",
		"asterisk                                      500      499        1              1     2.000    6.000    1.500\n",
		"freeswitch-outbound                           500      499        0              0     1.750    5.500    1.250\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	// without the block (and with the one heading's --pbx), the single-PBX table
	var rest []string
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, "each PBX") || strings.HasPrefix(l, "asterisk ") || strings.HasPrefix(l, "freeswitch-outbound ") {
			continue
		}
		rest = append(rest, l)
	}
	stripped := strings.Replace(strings.Join(rest, "\n"), "--pbx asterisk,freeswitch-outbound", "--pbx asterisk", 1)
	stripped = strings.Replace(stripped, "\n\n\n", "\n\n", 1) // the block's own blank line
	if stripped != a.String() {
		t.Errorf("the rest of the table changed:\n%s\nwant\n%s", stripped, a.String())
	}
}
