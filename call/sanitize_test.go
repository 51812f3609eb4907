package call

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestCleanValue(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "Jane Doe", "Jane Doe"},
		{"empty", "", ""},
		{"unicode kept", `Zoë Łukasz 李 O'Brien`, `Zoë Łukasz 李 O'Brien`},
		{"quotes dropped", `Zoë "Ünïcode"`, `Zoë Ünïcode`},
		{"freeswitch expansion", "${system(touch /tmp/x)}", "system(touch /tmp/x)"},
		{"asterisk function", "${SHELL(id)}", "SHELL(id)"},
		{"newline splits nothing", "a\nb\r\n\r\nc", "a b c"},
		{"esl double newline", "x\n\nsendmsg\n", "x sendmsg"},
		{"commas fold", "Doe, Jane", "Doe Jane"},
		{"semicolon folds", "a;b", "a b"},
		{"backslash and backtick", "a\\b`c", "abc"},
		{"nul and bell", "a\x00b\x07c", "abc"},
		{"invalid utf8", "a\xffb\xc3", "ab"},
		{"bidi override", "abc\u202edef", "abcdef"},
		{"zero width", "a\u200bb", "ab"},
		{"line separator folds", "a\u2028b", "a b"},
		{"leading/trailing space", "  Jane   Doe \t", "Jane Doe"},
		{"only junk", "${}\n\x00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CleanValue(tt.in); got != tt.want {
				t.Errorf("CleanValue(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCleanValueBounded(t *testing.T) {
	long := strings.Repeat("é", 500)
	got := CleanValue(long)
	if n := utf8.RuneCountInString(got); n != MaxValueLen {
		t.Fatalf("runes = %d, want %d", n, MaxValueLen)
	}
	if got := CleanValueN("a b c d", 3); got != "a b" {
		t.Fatalf("CleanValueN = %q", got)
	}
	if got := CleanValueN(strings.Repeat("ab ", 10), 4); utf8.RuneCountInString(got) > 4 || strings.HasSuffix(got, " ") {
		t.Fatalf("CleanValueN = %q: too long or trailing space", got)
	}
}

func TestCleanToken(t *testing.T) {
	if got := CleanToken("+1415 555-0123\n${x}"); got != "+1415555-0123x" {
		t.Fatalf("got %q", got)
	}
	if got := CleanToken(strings.Repeat("a", 100)); len(got) != 64 {
		t.Fatalf("len %d", len(got))
	}
}

func TestCleanURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://crm.example/c/42?x=1&y=2", "https://crm.example/c/42?x=1&y=2"},
		{"https://crm.example/c/${x}", "https://crm.example/c/%24%7Bx%7D"},
		{"https://crm.example/a b\r\nX-Evil: 1", "https://crm.example/a%20b%0D%0AX-Evil:%201"},
		{"https://crm.example/?n=Doe,Jane", "https://crm.example/?n=Doe%2CJane"},
		{"https://crm.example/é", "https://crm.example/%C3%A9"},
	}
	for _, tt := range tests {
		if got := CleanURL(tt.in); got != tt.want {
			t.Errorf("CleanURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := CleanURL("https://x/" + strings.Repeat("$", 1000))
	if len(long) > MaxURLLen || strings.HasSuffix(long, "%") || strings.HasSuffix(long, "%2") {
		t.Fatalf("bad cut: len %d, suffix %q", len(long), long[len(long)-3:])
	}
}

// safeForPBX is the property every cleaned value must have.
func safeForPBX(s string) bool {
	if !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if strings.ContainsRune("${}\\\"`,;", r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return utf8.RuneCountInString(s) <= MaxValueLen
}

func FuzzCleanValue(f *testing.F) {
	for _, s := range []string{"Jane Doe", "${system(touch /tmp/x)}", "a\n\nb", "\xff\xfe", "Doe, Jane;x", " \u202e "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := CleanValue(s)
		if !safeForPBX(got) {
			t.Fatalf("CleanValue(%q) = %q is not safe", s, got)
		}
		if CleanValue(got) != got {
			t.Fatalf("CleanValue not idempotent on %q", got)
		}
		u := CleanURL(s)
		for i := 0; i < len(u); i++ {
			if u[i] <= 0x20 || u[i] >= 0x7f || strings.IndexByte("${}\\\",;`<>", u[i]) >= 0 {
				t.Fatalf("CleanURL(%q) = %q has byte %q", s, u, u[i])
			}
		}
	})
}

// TestCleanIdempotent: a clean value passes through unchanged (the fast
// path returns it as is), so cleaning twice is cleaning once.
func TestCleanIdempotent(t *testing.T) {
	for _, in := range []string{"", "+14155550123", "vip", "fraud_suspect", "a b", "https://crm.example/c/1?x=1&y=%20",
		"https://crm.example/c/6666\r\nX-Injected: 1\" onclick", "${x}", strings.Repeat("a", 100), strings.Repeat("$", 300),
		"Zoë", "a\x00b", "sip:alice@example.com"} {
		if once := CleanToken(in); CleanToken(once) != once {
			t.Errorf("CleanToken(%q) = %q, again %q", in, once, CleanToken(once))
		}
		if once := CleanURL(in); CleanURL(once) != once {
			t.Errorf("CleanURL(%q) = %q, again %q", in, once, CleanURL(once))
		}
	}
	if got := CleanURL("https://crm.example/c/1"); got != "https://crm.example/c/1" {
		t.Fatalf("CleanURL = %q", got)
	}
}
