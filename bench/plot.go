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

// WritePlot draws the latency distribution as an SVG: one cumulative curve per
// class of call on a logarithmic latency axis, with the budget marked.
func (r *Report) WritePlot(w io.Writer) error {
	const (
		width, height          = 900, 520
		left, right, top, bott = 80, 30, 50, 150
		pw, ph                 = width - left - right, height - top - bott
	)
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
	x := func(msv float64) float64 {
		v := math.Log10(math.Max(msv, math.Pow(10, dmin)))
		return left + (v-dmin)/(dmax-dmin)*pw
	}
	y := func(q float64) float64 { return top + (1-q)*ph }

	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`, width, height, width, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>`)
	p(`<text x="%d" y="28" font-size="16" font-weight="bold">callpop bench --pbx %s: latency event → released (cumulative share of calls)</text>`, left, xmlEscape(r.PBX))
	// grid and axes
	for dec := dmin; dec <= dmax; dec++ {
		for m := 1.0; m < 10; m++ {
			v := m * math.Pow(10, dec)
			if dec == dmax && m > 1 {
				break
			}
			xx := x(v)
			stroke, sw := "#eeeeee", 1
			if m == 1 {
				stroke = "#cccccc"
				p(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, xx, top+ph+18, fmtMs(v))
			}
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="%d"/>`, xx, top, xx, top+ph, stroke, sw)
		}
	}
	for _, q := range []float64{0, 0.25, 0.5, 0.75, 0.9, 0.99} {
		p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#dddddd"/>`, left, y(q), left+pw, y(q))
		p(`<text x="%d" y="%.1f" text-anchor="end">%g%%</text>`, left-6, y(q)+4, q*100)
	}
	p(`<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>`, left, top, pw, ph)
	p(`<text x="%d" y="%d" text-anchor="middle">latency, ms (log scale)</text>`, left+pw/2, top+ph+38)
	p(`<text transform="translate(18 %d) rotate(-90)" text-anchor="middle">share of calls released within</text>`, top+ph/2)
	// budget
	bx := x(r.BudgetMs)
	p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ff7f0e" stroke-dasharray="6 4" stroke-width="2"/>`, bx, top, bx, top+ph)
	p(`<text x="%.1f" y="%d" text-anchor="end" fill="#ff7f0e">budget %s ms</text>`, bx-4, top+14, fmtMs(r.BudgetMs))
	// curves
	legendY := top + ph + 60
	const lx = left
	for _, s := range plotSeries {
		d := r.dists[s.key]
		if len(d) == 0 {
			continue
		}
		p(`<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.colour, cdfPoints(d, x, y))
		p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`, lx, legendY, lx+24, legendY, s.colour)
		label := fmt.Sprintf("%s: n=%d, p50 %s, p99 %s ms", s.label, len(d), fmtMs(float64(quantile(d, 0.5))/1e6), fmtMs(float64(quantile(d, 0.99))/1e6))
		p(`<text x="%d" y="%d">%s</text>`, lx+30, legendY+4, xmlEscape(label))
		legendY += 20
	}
	p(`</svg>`)
	return b.Flush()
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
