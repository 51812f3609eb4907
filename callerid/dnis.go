package callerid

import (
	"cmp"
	"slices"
	"strings"
)

// Digits keeps the ASCII digits of s: how dialled numbers (DNIS) and their
// configured patterns are compared. It copies nothing when s is all digits.
func Digits(s string) string {
	digits := true
	for i := 0; i < len(s) && digits; i++ {
		digits = s[i] >= '0' && s[i] <= '9'
	}
	if digits {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// DNISMatcher picks which of several configured lists of dialled numbers
// (numbers.profiles[].dnis, router.profiles[].dnis; one list per profile, in
// order) a dialled number belongs to. Entries are compared by their digits;
// one ending in '*' matches every number that begins with its digits. The
// rule, the same in both places:
//
//  1. an exact entry of any list wins over every prefix entry (a line's own
//     number, "+442079460018", beats its range, "+44207946*", wherever
//     each is listed);
//  2. else the longest matching prefix wins ("+4420*" over "+44*"), as in
//     a dial plan;
//  3. on a tie (the same entry in two lists) the earlier list wins.
type DNISMatcher struct {
	exact    map[string]int // digits → the first list with that exact entry
	prefixes []dnisPrefix   // longest first; the earlier list first on a tie
}

type dnisPrefix struct {
	digits string
	list   int
}

// NewDNISMatcher reads the configured lists (validated: every entry has digits).
func NewDNISMatcher(lists [][]string) DNISMatcher {
	m := DNISMatcher{exact: map[string]int{}}
	for i, list := range lists {
		for _, d := range list {
			if pre, ok := strings.CutSuffix(d, "*"); ok {
				m.prefixes = append(m.prefixes, dnisPrefix{digits: Digits(pre), list: i})
			} else if _, dup := m.exact[Digits(d)]; !dup {
				m.exact[Digits(d)] = i
			}
		}
	}
	slices.SortStableFunc(m.prefixes, func(a, b dnisPrefix) int {
		if c := cmp.Compare(len(b.digits), len(a.digits)); c != 0 {
			return c
		}
		return cmp.Compare(a.list, b.list)
	})
	return m
}

// Match returns the index of the list dnis belongs to (compared by its
// digits), or -1 when none.
func (m DNISMatcher) Match(dnis string) int {
	d := Digits(dnis)
	if d == "" {
		return -1
	}
	if i, ok := m.exact[d]; ok {
		return i
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(d, p.digits) {
			return p.list
		}
	}
	return -1
}

// ValidDNIS reports whether a configured entry is usable: it has digits.
func ValidDNIS(entry string) bool { return Digits(strings.TrimSuffix(entry, "*")) != "" }
