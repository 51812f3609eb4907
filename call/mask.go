package call

import (
	"strings"
	"unicode/utf8"
)

// MaskNumber hides the middle of a phone number for logs: "+14155550123" →
// "+1415***0123". Short or odd values are masked whole.
func MaskNumber(s string) string {
	if s == "" {
		return ""
	}
	if len(s) < 8 || !utf8.ValidString(s) {
		return "***"
	}
	return CleanToken(s[:5]) + "***" + CleanToken(s[len(s)-4:])
}

// MaskName keeps the first letter of each word: "Jane Doe" → "J*** D***".
func MaskName(s string) string {
	if s == "" {
		return ""
	}
	words := strings.Fields(s)
	for i, w := range words {
		r, _ := utf8.DecodeRuneInString(w)
		words[i] = CleanValue(string(r)) + "***"
	}
	return strings.Join(words, " ")
}
