package fsvars

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/callpop/callpop/call"
)

func TestText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Erika Mustermann", "Erika Mustermann"},
		{"it's Bob's", "its Bobs"},
		{"O'Brien", "OBrien"},
		{"${system(touch /tmp/x)}", "system(touch /tmp/x)"},
		{"$${domain}", "domain"},
		{`back\slash \s`, "backslash s"},
		{"   padded   ", "padded"},
		{"a=b;c=d", "a=b c=d"},
		{"^^:a=b:c", ":a=b:c"},
		{"ARRAY::x|:y", "x|:y"},
		{"^ ARRAY::z", "z"},
		{"line1\n\napi uuid_kill all", "line1 api uuid_kill all"},
		{"Jürgen Groß 東京", "Jürgen Groß 東京"},
		{strings.Repeat("x", 300), strings.Repeat("x", call.MaxValueLen)},
	}
	for _, tt := range tests {
		if got := Text(tt.in); got != tt.want {
			t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAppendList(t *testing.T) {
	tests := []struct{ list, want string }{
		{"", "callpop_call_id"},
		{"a,b", "a,b,callpop_call_id"},
		{"callpop_call_id,a", "a,callpop_call_id"},
		{"a, b ,${x},c;d", "a,b,callpop_call_id"},
	}
	for _, tt := range tests {
		if got := AppendList(tt.list, "callpop_call_id"); got != tt.want {
			t.Errorf("AppendList(%q) = %q, want %q", tt.list, got, tt.want)
		}
	}
}

// A call id is a token, and a token may read as an ARRAY:: value.
func TestVarsCallIDPrefix(t *testing.T) {
	for _, id := range []string{"ARRAY::0", "array::ARRAY::x-1", "^^:y"} {
		for _, v := range Vars(call.Decision{Match: call.MatchHit}, id, Text, func(l string, add []string) string { return AppendList("", add...) }) {
			if v.Name == "callpop_call_id" && (strings.Contains(strings.ToUpper(v.Value), "ARRAY::") || strings.HasPrefix(v.Value, "^")) {
				t.Errorf("call id %q stored as %q", id, v.Value)
			}
		}
	}
}

func TestMultisetText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a|b", "a b"},
		{"a | b||c", "a b c"},
		{"|", ""},
		{"|^^|x=y", "x=y"},
		{"|ARRAY::|a", "a"},
		{"'|'", ""},
		{"x${y}|z", "xy z"},
	}
	for _, tt := range tests {
		if got := multisetText(tt.in); got != tt.want {
			t.Errorf("multisetText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Beyond 256 parts FreeSWITCH leaves the rest unread: callpop keeps its own
// variables and drops the rules' extras from the end.
func TestMultisetLimit(t *testing.T) {
	extra := map[string]string{}
	for i := range 300 {
		extra[fmt.Sprintf("x%03d", i)] = "v"
	}
	d := call.Decision{Match: call.MatchHit, Priority: 1, BaseScore: 60, Extra: extra, InfoURL: "https://crm.example/i/1"}
	parts := strings.Split(strings.TrimPrefix(Multiset(d, "id-1"), MultisetPrefix), "|")
	if len(parts) != MultisetMax {
		t.Fatalf("%d parts", len(parts))
	}
	for _, want := range []string{"callpop_match=hit", "callpop_x000=v", "cc_base_score=60", "callpop_call_id=id-1",
		"export_vars=${export_vars},callpop_call_id,sip_h_Call-Info", "sip_h_Call-Info=<https://crm.example/i/1>;purpose=info"} {
		if !slices.Contains(parts, want) {
			t.Errorf("no %s", want)
		}
	}
	if slices.Contains(parts, "callpop_x299=v") {
		t.Error("the last extra kept, callpop's own dropped")
	}
}
