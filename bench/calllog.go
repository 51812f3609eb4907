package bench

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// callLog keeps what each completed call of one side reported: the step's
// maximum, the match values the dialplan saw and, for --crm-delay's
// after-timeout figure, each call's number, start and match.
type callLog struct {
	mu      sync.Mutex
	max     time.Duration
	matches map[string]int64
	keep    bool // keep calls (with --crm-delay)
	names   bool // the value is a caller ID name (cidlookup): any name counts as "name"
	calls   []loggedCall
}

type loggedCall struct {
	number string
	t0     time.Time
	match  string
}

// maxLoggedCalls bounds the calls kept for the after-timeout figure (a run
// is bounded by --rate × --duration, 18 M at most: far more than needed).
const maxLoggedCalls = 200_000

// maxMatchValues bounds the distinct match values counted; the rest are "(other)".
const maxMatchValues = 16

func (l *callLog) add(number string, s stamps) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.max = max(l.max, s.t1.Sub(s.t0))
	if l.matches == nil {
		l.matches = map[string]int64{}
	}
	m := matchKey(s.match, l.names)
	if _, ok := l.matches[m]; !ok && len(l.matches) >= maxMatchValues {
		m = "(other)"
	}
	l.matches[m]++
	if l.keep && len(l.calls) < maxLoggedCalls {
		l.calls = append(l.calls, loggedCall{number: number, t0: s.t0, match: m})
	}
}

// matchKey is how a reported value is counted: callpop_match values as
// they are, a caller ID name (mod_cidlookup's answer) as "name", and
// mod_cidlookup's UNKNOWN/UNAVAILABLE as they are; the value came from the
// PBX, so it is kept short and printable.
func matchKey(v string, name bool) string {
	switch v = strings.TrimSpace(v); {
	case v == "":
		return "(empty)"
	case strings.EqualFold(v, "UNKNOWN"), strings.EqualFold(v, "UNAVAILABLE"):
		return strings.ToUpper(v)
	case !name && isMatchWord(v):
		return v
	}
	return "name"
}

// isMatchWord reports whether v looks like a callpop_match value: a short
// lower-case word (hit, miss, timeout, anonymous, …).
func isMatchWord(v string) bool {
	if len(v) > 24 {
		return false
	}
	for _, r := range v {
		if (r < 'a' || r > 'z') && r != '_' && r != '-' {
			return false
		}
	}
	return true
}

// afterTimeout finds, for each number, the next call after one that saw
// "timeout" (mod_cidlookup: UNKNOWN, the bench's callers all being
// customers) once the slow CRM has answered it (a start at least wait
// after that call's start), and counts those calls and their hits ("hit",
// or a name from mod_cidlookup). A later timeout of the same number starts
// the wait again.
func afterTimeout(calls []loggedCall, wait time.Duration) *AfterTimeout {
	calls = slices.Clone(calls)
	slices.SortStableFunc(calls, func(a, b loggedCall) int { return a.t0.Compare(b.t0) })
	timedOut := map[string]time.Time{} // number → start of its last call that timed out
	var at AfterTimeout
	for _, c := range calls {
		if t, ok := timedOut[c.number]; ok && c.t0.Sub(t) >= wait {
			delete(timedOut, c.number)
			at.Calls++
			if c.match == "hit" || c.match == "name" {
				at.Hits++
			}
		}
		if c.match == "timeout" || c.match == "UNKNOWN" {
			timedOut[c.number] = c.t0
		}
	}
	return &at
}
