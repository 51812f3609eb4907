package stats

import (
	"context"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/callpop/callpop/call"
)

// RecentCalls is how many calls the page lists.
const RecentCalls = 20

// Row is one of the last calls: never the whole number.
type Row struct {
	At       time.Time `json:"at"`
	Number   string    `json:"number"`  // masked; "withheld" when the caller asked for privacy; a contact without one: its e-mail address, masked
	Channel  string    `json:"channel"` // voice, chat, email, sms, social, callback
	Match    string    `json:"match"`
	Queue    string    `json:"queue,omitempty"`
	Priority int       `json:"priority"`
	MS       float64   `json:"ms"` // from the call's arrival to its decision
}

// recent is a ring of the last RecentCalls rows.
type recent struct {
	mu   sync.Mutex
	rows [RecentCalls]Row
	n    int // rows written in all
}

func (r *recent) add(row Row) {
	r.mu.Lock()
	r.rows[r.n%RecentCalls] = row
	r.n++
	r.mu.Unlock()
}

// list returns the rows, newest first.
func (r *recent) list() []Row {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := min(r.n, RecentCalls)
	out := make([]Row, 0, k)
	for i := 1; i <= k; i++ {
		out = append(out, r.rows[(r.n-i)%RecentCalls])
	}
	return out
}

// Decorate lists each decision d makes among the last calls; the decision
// itself passes unchanged. An AsyncDecider stays one.
func (s *Stats) Decorate(d call.Decider) call.Decider {
	r := recorder{s: s, d: d}
	if _, ok := d.(call.AsyncDecider); ok {
		return asyncRecorder{r}
	}
	return r
}

type recorder struct {
	s *Stats
	d call.Decider
}

func (r recorder) Decide(ctx context.Context, c call.Call) call.Decision {
	start := time.Now()
	dec := r.d.Decide(ctx, c)
	r.s.record(c, dec, start)
	return dec
}

type asyncRecorder struct{ recorder }

func (r asyncRecorder) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	start := time.Now()
	r.d.(call.AsyncDecider).DecideAsync(ctx, c, func(dec call.Decision) {
		r.s.record(c, dec, start)
		done(dec)
	})
}

// record adds a call to the list; it never blocks for long and never panics
// into the decider's done.
func (s *Stats) record(c call.Call, dec call.Decision, start time.Time) {
	defer func() { _ = recover() }()
	el := dec.Elapsed
	if el <= 0 {
		from := start
		if !c.Received.IsZero() && c.Received.Before(start) {
			from = c.Received
		}
		el = time.Since(from)
	}
	number := dec.E164
	if number == "" {
		number = c.CLI
	}
	row := Row{At: time.Now(), Number: Mask(number), Channel: call.CleanToken(call.ChannelOf(c)), Match: call.CleanToken(string(dec.Match)),
		Queue: call.CleanValue(dec.Queue), Priority: dec.Priority, MS: float64(el.Microseconds()) / 1000}
	if number == "" && c.Email != "" {
		row.Number = MaskEmail(c.Email)
	}
	if dec.Privacy || c.Privacy {
		row.Number = "withheld"
	}
	if len(row.Queue) > 64 {
		row.Queue = row.Queue[:64]
	}
	s.calls.add(row)
}

// Mask hides the middle of a number whatever log.mask_personal_data says:
// at least a third of it (and at least 3 characters), at most the first 5
// and the last 4 shown: "+14155550123" → "+141***0123". Numbers of fewer
// than 6 characters are hidden whole.
func Mask(s string) string {
	s = call.CleanToken(s)
	n := len(s)
	if n == 0 {
		return ""
	}
	if n < 6 {
		return "***"
	}
	hidden := max(3, (n+2)/3)
	show := n - hidden
	tail := min(4, show/2)
	head := min(5, show-tail)
	return s[:head] + "***" + s[n-tail:]
}

// MaskEmail keeps an address's first character and its domain whatever
// log.mask_personal_data says: "jane@example.com" → "j***@example.com"; a
// value that is no address is hidden whole.
func MaskEmail(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || !utf8.ValidString(s) {
		return "***"
	}
	r, _ := utf8.DecodeRuneInString(s)
	first := call.CleanToken(string(r)) // "" when not a plain character
	domain := call.CleanToken(s[at+1:])
	if len(domain) > 64 {
		domain = domain[:64]
	}
	return first + "***@" + domain
}
