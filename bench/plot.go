package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"time"
)

// plotSeries are drawn in this order and colour.
var plotSeries = []struct{ key, label, colour string }{
	{"bare", "bare client (no look-up)", "#7f7f7f"},
	{"warm", "callpop, warm (cache hit)", "#1f77b4"},
	{"cold", "callpop, cold (CRM)", "#d62728"},
	{"no_lookup", "callpop, anonymous / invalid", "#2ca02c"},
}

// The plot's size and margins, in pixels; pw × ph is the plotting area.
const (
	plotWidth, plotHeight                    = 900, 520
	plotLeft, plotRight, plotTop, plotBottom = 80, 30, 50, 150
	plotPW, plotPH                           = plotWidth - plotLeft - plotRight, plotHeight - plotTop - plotBottom
)

// WritePlot draws the latency distribution as an SVG: one cumulative curve per
// class of call on a logarithmic latency axis, with the budget marked.
func (r *Report) WritePlot(w io.Writer) error {
	ax := r.plotAxes()
	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`, plotWidth, plotHeight, plotWidth, plotHeight)
	p(`<rect width="100%%" height="100%%" fill="white"/>`)
	p(`<text x="%d" y="28" font-size="16" font-weight="bold">callpop bench --pbx %s: latency event → released (cumulative share of calls)</text>`, plotLeft, xmlEscape(r.PBX))
	ax.drawGrid(p)
	ax.drawBudget(p, r.BudgetMs)
	r.drawCurves(p, ax)
	p(`</svg>`)
	return b.Flush()
}

// plotAxes spans the latency axis over whole decades, 10^dmin to 10^dmax ms.
type plotAxes struct{ dmin, dmax float64 }

// plotAxes covers every curve and the budget.
func (r *Report) plotAxes() plotAxes {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range plotSeries {
		d := r.dists[s.key]
		if len(d) == 0 {
			continue
		}
		lo = math.Min(lo, float64(d[0])/1e6)
		hi = math.Max(hi, float64(d[len(d)-1])/1e6)
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0.01, 1
	}
	hi = math.Max(hi, r.BudgetMs)
	dmin := math.Floor(math.Log10(math.Max(lo, 0.001)))
	dmax := math.Ceil(math.Log10(math.Max(hi, 0.01)))
	if dmax <= dmin {
		dmax = dmin + 1
	}
	return plotAxes{dmin: dmin, dmax: dmax}
}

// x is the abscissa of a latency in ms (log scale).
func (a plotAxes) x(msv float64) float64 {
	v := math.Log10(math.Max(msv, math.Pow(10, a.dmin)))
	return plotLeft + (v-a.dmin)/(a.dmax-a.dmin)*plotPW
}

// y is the ordinate of a share of calls q (0 to 1).
func (a plotAxes) y(q float64) float64 { return plotTop + (1-q)*plotPH }

// drawGrid draws the decade and share grid lines, the frame and the axis labels.
func (a plotAxes) drawGrid(p linef) {
	for dec := a.dmin; dec <= a.dmax; dec++ {
		for m := 1.0; m < 10; m++ {
			v := m * math.Pow(10, dec)
			if dec == a.dmax && m > 1 {
				break
			}
			xx := a.x(v)
			stroke, sw := "#eeeeee", 1
			if m == 1 {
				stroke = "#cccccc"
				p(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, xx, plotTop+plotPH+18, fmtMs(v))
			}
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="%d"/>`, xx, plotTop, xx, plotTop+plotPH, stroke, sw)
		}
	}
	for _, q := range []float64{0, 0.25, 0.5, 0.75, 0.9, 0.99} {
		p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#dddddd"/>`, plotLeft, a.y(q), plotLeft+plotPW, a.y(q))
		p(`<text x="%d" y="%.1f" text-anchor="end">%g%%</text>`, plotLeft-6, a.y(q)+4, q*100)
	}
	p(`<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>`, plotLeft, plotTop, plotPW, plotPH)
	p(`<text x="%d" y="%d" text-anchor="middle">latency, ms (log scale)</text>`, plotLeft+plotPW/2, plotTop+plotPH+38)
	p(`<text transform="translate(18 %d) rotate(-90)" text-anchor="middle">share of calls released within</text>`, plotTop+plotPH/2)
}

// drawBudget marks the budget with a dashed line.
func (a plotAxes) drawBudget(p linef, budgetMs float64) {
	bx := a.x(budgetMs)
	p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ff7f0e" stroke-dasharray="6 4" stroke-width="2"/>`, bx, plotTop, bx, plotTop+plotPH)
	p(`<text x="%.1f" y="%d" text-anchor="end" fill="#ff7f0e">budget %s ms</text>`, bx-4, plotTop+14, fmtMs(budgetMs))
}

// drawCurves draws each class's cumulative curve and its legend line.
func (r *Report) drawCurves(p linef, a plotAxes) {
	legendY := plotTop + plotPH + 60
	const lx = plotLeft
	for _, s := range plotSeries {
		d := r.dists[s.key]
		if len(d) == 0 {
			continue
		}
		p(`<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.colour, cdfPoints(d, a.x, a.y))
		p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`, lx, legendY, lx+24, legendY, s.colour)
		label := fmt.Sprintf("%s: n=%d, p50 %s, p99 %s ms", s.label, len(d), fmtMs(float64(quantile(d, 0.5))/1e6), fmtMs(float64(quantile(d, 0.99))/1e6))
		p(`<text x="%d" y="%d">%s</text>`, lx+30, legendY+4, xmlEscape(label))
		legendY += 20
	}
}

// cdfPoints samples a sorted distribution at up to ~400 points.
func cdfPoints(d []time.Duration, x func(float64) float64, y func(float64) float64) string {
	n := len(d)
	stepN := max(1, n/400)
	out := make([]byte, 0, 16*min(n, 420))
	out = fmt.Appendf(out, "%.1f,%.1f ", x(float64(d[0])/1e6), y(0))
	for i := 0; i < n; i += stepN {
		out = fmt.Appendf(out, "%.1f,%.1f ", x(float64(d[i])/1e6), y(float64(i+1)/float64(n)))
	}
	out = fmt.Appendf(out, "%.1f,%.1f", x(float64(d[n-1])/1e6), y(1))
	return string(out)
}

func fmtMs(v float64) string {
	switch {
	case v >= 10:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.1f", v)
	case v >= 0.1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func xmlEscape(s string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '<':
			out = append(out, "&lt;"...)
		case '>':
			out = append(out, "&gt;"...)
		case '&':
			out = append(out, "&amp;"...)
		case '"':
			out = append(out, "&quot;"...)
		default:
			out = append(out, s[i])
		}
	}
	return string(out)
}
