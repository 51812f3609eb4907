package call

import (
	"strings"
	"sync/atomic"
	"unicode/utf8"
)

// unmasked is set when masking is turned off (log.mask_personal_data: false).
var unmasked atomic.Bool

// SetMasking turns the masking of MaskNumber and MaskName on (the default)
// or off, for debugging on a test system. Values stay sanitised either way.
func SetMasking(on bool) { unmasked.Store(!on) }

// MaskNumber hides the middle of a phone number for logs: "+14155550123" →
// "+1415***0123". Short or odd values are masked whole.
func MaskNumber(s string) string {
	if s == "" {
		return ""
	}
	if unmasked.Load() {
		return CleanValue(s)
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
	if unmasked.Load() {
		return CleanValue(s)
	}
	words := strings.Fields(s)
	for i, w := range words {
		r, _ := utf8.DecodeRuneInString(w)
		words[i] = CleanValue(string(r)) + "***"
	}
	return strings.Join(words, " ")
}

// MaskEmail keeps the local part's first letter and the domain: "jane@example.com"
// → "j***@example.com". A value without an @ is masked whole.
func MaskEmail(s string) string {
	if s == "" {
		return ""
	}
	if unmasked.Load() {
		return CleanValue(s)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || !utf8.ValidString(s) {
		return "***"
	}
	r, _ := utf8.DecodeRuneInString(s)
	return CleanValue(string(r)) + "***@" + CleanToken(s[at+1:])
}
