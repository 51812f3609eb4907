package callerid

import "strings"

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

// DNISPatterns is a configured list of dialled numbers (numbers.profiles[].dnis,
// router.profiles[].dnis): each compared by its digits; one ending in '*'
// matches every number that begins with its digits.
type DNISPatterns struct {
	exact    map[string]bool
	prefixes []string
}

// NewDNISPatterns reads a configured list (validated: every entry has digits).
func NewDNISPatterns(list []string) DNISPatterns {
	p := DNISPatterns{exact: map[string]bool{}}
	for _, d := range list {
		if pre, ok := strings.CutSuffix(d, "*"); ok {
			p.prefixes = append(p.prefixes, Digits(pre))
		} else {
			p.exact[Digits(d)] = true
		}
	}
	return p
}

// MatchExact reports whether digits (a DNIS's Digits) is one of the exact entries.
func (p DNISPatterns) MatchExact(digits string) bool { return p.exact[digits] }

// MatchPrefix reports whether digits begins with one of the '*' entries.
func (p DNISPatterns) MatchPrefix(digits string) bool {
	for _, pre := range p.prefixes {
		if strings.HasPrefix(digits, pre) {
			return true
		}
	}
	return false
}

// ValidDNIS reports whether a configured entry is usable: it has digits.
func ValidDNIS(entry string) bool { return Digits(strings.TrimSuffix(entry, "*")) != "" }
