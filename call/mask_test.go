package call

import (
	"strings"
	"testing"
)

func TestMaskEmail(t *testing.T) {
	tests := []struct{ in, want string }{
		{"jane@example.com", "j***@example.com"},
		{"Jane.Doe+vip@Mail.Example.org", "J***@Mail.Example.org"},
		{"é@example.fr", "é***@example.fr"},
		{"", ""},
		{"no-at-sign", "***"},
		{"@example.com", "***"},
	}
	for _, tt := range tests {
		if got := MaskEmail(tt.in); got != tt.want {
			t.Errorf("MaskEmail(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := MaskEmail("j\n${x}@exa\r\nmple.com${y}"); strings.ContainsAny(got, "\r\n${}") {
		t.Errorf("MaskEmail leaks %q", got)
	}
	SetMasking(false)
	defer SetMasking(true)
	if got := MaskEmail("jane@example.com"); got != "jane@example.com" {
		t.Errorf("unmasked = %q", got)
	}
}
