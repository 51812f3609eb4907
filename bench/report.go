package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Targets are issue 7's goals on a 2-core machine.
var Targets = struct {
	CallsPerSecond, WarmP99Ms, OverheadRatio, BurstRequests, RSSMiB, ReadyMs float64
}{3000, 2, 1.3, 1, 64, 1000}

// WriteJSON writes the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error { return writeJSON(w, r) }

// writeJSON writes a report as one indented JSON object.
func writeJSON(w io.Writer, report any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(report); err != nil {
		return fmt.Errorf("bench: json: %w", err)
	}
	return nil
}

// WriteTable writes the human-readable report: its heading, the figures
// against their targets, the latency table, the ramp steps and the rest.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	r.tableHeading(p)
	p("")
	p("figure\tvalue\ttarget")
	r.tableThroughput(p)
	r.tableTargets(p)
	p("")
	r.tableLatencies(p)
	p("")
	r.tablePBXes(p)
	r.tableOverheads(p)
	r.tableSteps(p)
	r.tableTail(p)
	return tw.Flush()
}

// linef prints one line of a report (in a table, tabs separate the columns).
type linef func(format string, a ...any)

func (r *Report) tableHeading(p linef) {
	mode := fmt.Sprintf("fixed %d calls/s", r.Rate)
	if r.Rate == 0 {
		mode = "ramp to saturation"
	}
	p("callpop bench\t--pbx %s, %s, %.0fs, budget %.0f ms, %d customers, CRM %.0f ms", r.PBX, mode, r.DurationS, r.BudgetMs, r.Population, r.CRMLatencyMs)
	p("machine\t%d × %s, %s %s", r.Machine.NProc, r.Machine.CPU, r.Machine.GoVersion, r.Machine.OS)
}

// tableThroughput prints the calls/s figures: a ramp's saturation and break
// (and the bare client's), or what a fixed rate achieved.
func (r *Report) tableThroughput(p linef) {
	p("calls/s sustained, 0 budget misses\t%.0f\t≥ %.0f %s", r.CallsPerSecond, Targets.CallsPerSecond, verdictMark(r.CallsPerSecond >= Targets.CallsPerSecond))
	if r.Rate != 0 {
		p("calls/s completed at --rate %d\t%.0f\t(saturation: --rate 0)", r.Rate, r.AchievedCPS)
		return
	}
	p("saturation (most calls/s released within budget, any step)\t%.0f\t", r.SaturationCPS)
	if r.BreakRate > 0 {
		p("ramp broke at (first step with misses or < 95%% achieved)\t%d calls/s\t", r.BreakRate)
	} else {
		p("ramp broke at\tnot within --duration\t")
	}
	switch {
	case len(r.BareSteps) == 0:
	case r.BareBreakRate > 0:
		p("bare client: clean up to / broke at\t%.0f / %d calls/s\t", r.BareCleanCPS, r.BareBreakRate)
	default:
		p("bare client: clean up to\t%.0f calls/s (no break within --bare-duration)\t", r.BareCleanCPS)
	}
}

// tableTargets prints the other figures with a target, and the in-flight
// phase's.
func (r *Report) tableTargets(p linef) {
	p("calls offered / completed / budget misses / lost\t%d / %d / %d / %d\t", r.CallsOffered, r.CallsCompleted, r.BudgetMisses, r.Lost)
	p("warm p99 (cache hit)\t%.3f ms\t≤ %.0f ms %s", r.Warm.P99, Targets.WarmP99Ms, verdictMark(r.Warm.Count > 0 && r.Warm.P99 <= Targets.WarmP99Ms))
	if r.OverheadRatio > 0 {
		p("overhead ratio (warm p50 / bare p50)\t%.2f\t≤ %.1f %s", r.OverheadRatio, Targets.OverheadRatio, verdictMark(r.OverheadRatio <= Targets.OverheadRatio))
		p("overhead ratio p99 (warm p99 / bare p99)\t%.2f\t", r.OverheadRatioP99)
	} else {
		p("overhead ratio (warm p50 / bare p50)\tnot measured (no bare-client or no warm calls)\t≤ %.1f", Targets.OverheadRatio)
	}
	// Met only when every burst number cost exactly one request: none means
	// its calls never reached the look-up.
	p("CRM requests per burst number\t%.2f (max %d; %d × %d calls, %d budget misses)\t= %.0f %s", r.CRMRequestsPerBurstNumber, r.Burst.RequestsMax,
		r.Burst.Numbers, r.Burst.CallsPerNumber, r.Burst.Misses, Targets.BurstRequests,
		verdictMark(r.Burst.Numbers > 0 && r.Burst.RequestsMax == 1 && r.CRMRequestsPerBurstNumber == 1))
	if r.InFlight.Calls > 0 {
		limit := ""
		if r.InFlight.MemLimit != "" {
			limit = " (sidecar GOMEMLIMIT=" + r.InFlight.MemLimit + ")"
		}
		p("peak RSS, %d calls in flight%s\t%.1f MiB\t≤ %.0f MiB %s", r.InFlight.Calls, limit, r.PeakRSSMiB, Targets.RSSMiB, verdictMark(r.PeakRSSMiB > 0 && r.PeakRSSMiB <= Targets.RSSMiB))
	} else {
		p("peak RSS with calls in flight\tnot measured (--inflight 0)\t≤ %.0f MiB", Targets.RSSMiB)
	}
	p("calls held in flight (reached / asked; all released in)\t%d / %d (%.1f s)\t", r.InFlight.Reached, r.InFlight.Calls, r.InFlight.DrainS)
	p("goroutines, %d calls in flight (idle)\t%d (%d)\t", r.InFlight.Calls, r.InFlight.Goroutines, r.InFlight.GoroutinesIdle)
	p("RSS, Go heap, goroutine stacks in flight\t%.1f, %.1f, %.1f MiB\t", r.InFlight.RSSMiB, r.InFlight.HeapMiB, r.InFlight.StackMiB)
	p("ready after start\t%.1f ms\t≤ %.0f ms %s", r.ReadyMs, Targets.ReadyMs, verdictMark(r.ReadyMs <= Targets.ReadyMs))
}

// tableLatencies prints each class of call's latency quantiles.
func (r *Report) tableLatencies(p linef) {
	p("latency event → released (ms)\tcount\tp50\tp90\tp99\tp99.9\tmax")
	for _, row := range []struct {
		name string
		l    Latency
	}{{"warm (cache hit)", r.Warm}, {"cold (CRM)", r.Cold}, {"no look-up (anonymous, invalid)", r.NoLookup}, {"all calls", r.All}, {fmt.Sprintf("bare client, %d calls/s", r.BareRate), r.Bare}} {
		p("%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f", row.name, row.l.Count, row.l.P50, row.l.P90, row.l.P99, row.l.P999, row.l.Max)
	}
}

// tablePBXes prints each simulator's share of the load when there are
// several (--pbx a,b); nothing with one.
func (r *Report) tablePBXes(p linef) {
	if len(r.PBXes) == 0 {
		return
	}
	p("each PBX (the figures above are all of them)	offered	completed	budget misses	lost	all p50	all p99	warm p99")
	for _, x := range r.PBXes {
		p("%s	%d	%d	%d	%d	%.3f	%.3f	%.3f", x.Name, x.CallsOffered, x.CallsCompleted, x.BudgetMisses, x.Lost, x.All.P50, x.All.P99, x.Warm.P99)
	}
	p("")
}

// tableOverheads prints the overhead ratios without a target and the PBX
// requests per call.
func (r *Report) tableOverheads(p linef) {
	if r.OverheadBasis != "" {
		p("overhead ratios compare\t%s", r.OverheadBasis)
	}
	p("overhead ratio, all calls (p50 / bare p50; cold CRM waits included)\t%.2f", r.OverheadRatioAll)
	if r.OverheadAtCleanRate > 0 {
		p("overhead ratio at %d calls/s, callpop's highest clean step (p50; p99)\t%.2f; %.2f", r.BareRate, r.OverheadAtCleanRate, r.OverheadAtCleanRateP99)
	}
	if r.RequestsPerCall > 0 || r.BareRequestsPerCall > 0 {
		// callpop's average covers every kind of caller (a miss sets fewer
		// variables); the bare client always sets a known caller's.
		p("PBX requests per call: callpop, all callers / bare client, as for known callers\t%.2f / %.2f", r.RequestsPerCall, r.BareRequestsPerCall)
	}
}

// tableSteps prints the ramp's steps, callpop's and the bare client's.
func (r *Report) tableSteps(p linef) {
	for _, st := range []struct {
		who   string
		steps []Step
	}{{"ramp step", r.Steps}, {"bare client ramp step", r.BareSteps}} {
		if len(st.steps) == 0 {
			continue
		}
		p("")
		p("%s (calls/s)\tachieved\twithin budget\tmisses\tp99 ms\tclean", st.who)
		for _, s := range st.steps {
			p("%d\t%.0f\t%.0f\t%d\t%.3f\t%v", s.Rate, s.Achieved, s.Goodput, s.Misses, s.P99, s.Clean)
		}
	}
}

// tableTail prints the matches seen, the CRM requests and the notes.
func (r *Report) tableTail(p linef) {
	if len(r.Matches) > 0 {
		var parts []string
		for _, k := range []string{"hit", "miss", "anonymous", "invalid", "timeout", "error", "undecided"} {
			if n := r.Matches[k]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", k, n))
			}
		}
		p("")
		p("matches\t%s", strings.Join(parts, ", "))
	}
	p("CRM requests\t%d", r.CRMRequests)
	p("memory figures cover\t%s", r.InFlight.Process)
	for _, n := range r.Notes {
		p("note\t%s", n)
	}
}

func verdictMark(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// WriteJSON writes the report as one JSON object.
func (r *RealReport) WriteJSON(w io.Writer) error { return writeJSON(w, r) }

// WriteTable writes each way's two sides and their ratio.
func (r *RealReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	p("callpop bench\t%s at %s, %d calls/s, %.0fs per way, budget %.0f ms", r.Kind, r.PBX, r.Rate, r.DurationS, r.BudgetMs)
	p("machine\t%d × %s, %s %s", r.Machine.NProc, r.Machine.CPU, r.Machine.GoVersion, r.Machine.OS)
	p("PBX CPU\t%s", r.CPU)
	if r.CRMDelayMs > 0 {
		p("CRM\tanswers %.0f ms late (--crm-delay; the bare HTTP servers too), %s cache, callpop's crm.timeout %.0f ms", r.CRMDelayMs, r.Cache, r.CRMTimeoutMs)
	} else {
		p("CRM\tanswers at once, %s cache", r.Cache)
	}
	cpu := func(v float64) string {
		if v == 0 {
			return "not measured"
		}
		return fmt.Sprintf("%.3f ms", v)
	}
	ratio := func(wr WayReport, k string) string { // none when the bare side's figure is 0
		if v, ok := wr.Ratio[k]; ok {
			return fmt.Sprintf("%.2f", v)
		}
		return "—"
	}
	for _, wr := range r.Ways {
		p("")
		p("way %s\tcallpop\tbare client\tratio", wr.Way)
		p("calls offered / completed\t%d / %d\t%d / %d\t", wr.Callpop.Offered, wr.Callpop.Completed, wr.Bare.Offered, wr.Bare.Completed)
		p("clean calls/s\t%.1f\t%.1f\t%s", wr.Callpop.CleanCPS, wr.Bare.CleanCPS, ratio(wr, "clean_calls_per_second"))
		p("step p50\t%.3f ms\t%.3f ms\t%s", wr.Callpop.StepP50, wr.Bare.StepP50, ratio(wr, "step_p50"))
		p("step p99\t%.3f ms\t%.3f ms\t%s", wr.Callpop.StepP99, wr.Bare.StepP99, ratio(wr, "step_p99"))
		p("step mean\t%.3f ms\t%.3f ms\t%s", wr.Callpop.StepMean, wr.Bare.StepMean, ratio(wr, "step_mean"))
		p("step max\t%.3f ms\t%.3f ms\t", wr.Callpop.StepMax, wr.Bare.StepMax)
		p("over the budget\t%d (%.1f %%)\t%d (%.1f %%)\t", wr.Callpop.OverBudget, 100*wr.Callpop.OverBudgetShare, wr.Bare.OverBudget, 100*wr.Bare.OverBudgetShare)
		p("matches seen\t%s\t%s\t", matchList(wr.Callpop.Matches), matchList(wr.Bare.Matches))
		if wr.Callpop.AfterTimeout != nil || wr.Bare.AfterTimeout != nil {
			p("next call after a timeout\t%s\t%s\t", afterList(wr.Callpop.AfterTimeout), afterList(wr.Bare.AfterTimeout))
		}
		p("PBX CPU per call\t%s\t%s\t%s", cpu(wr.Callpop.CPUPerCallMs), cpu(wr.Bare.CPUPerCallMs), ratio(wr, "pbx_cpu_per_call"))
		p("requests per call\t%.2f\t%.2f\t%s", wr.Callpop.RequestsPerCall, wr.Bare.RequestsPerCall, ratio(wr, "requests_per_call"))
		for _, n := range wr.Notes {
			p("note\t%s", n)
		}
	}
	return tw.Flush()
}

// matchList prints match counts, the most frequent first.
func matchList(m map[string]int64) string {
	if len(m) == 0 {
		return "—"
	}
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func afterList(a *AfterTimeout) string {
	if a == nil || a.Calls == 0 {
		return "none"
	}
	return fmt.Sprintf("%d of %d hit", a.Hits, a.Calls)
}
