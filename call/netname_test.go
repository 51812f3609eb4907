package call

import "testing"

func TestNetworkName(t *testing.T) {
	for in, want := range map[string]string{
		"Jan de Vries":            "Jan de Vries",
		"  Bakkerij Jansen  ":     "Bakkerij Jansen",
		"":                        "",
		"Anonymous":               "",
		"UNKNOWN":                 "",
		"Unknown Caller":          "",
		"+31 20 123 4567":         "",
		"0201234567":              "",
		"Zoë \"Ünïcode\" O'Brien": "Zoë Ünïcode O'Brien", // as CleanValue cleans any value
		"a\r\nInjected: header":   "a Injected: header",
	} {
		if got := NetworkName(in); got != want {
			t.Errorf("NetworkName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := NetworkName(repeat("y", 200)); len([]rune(got)) > 64 {
		t.Errorf("not bounded: %d runes", len([]rune(got)))
	}
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}
