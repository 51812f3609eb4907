package call

import (
	"strings"
	"testing"
)

func TestDecisionVars(t *testing.T) {
	d := Decision{
		Match:    MatchHit,
		E164:     "+14155550123",
		Source:   SourceCLI,
		Customer: &Customer{ID: "C-1", Name: "Jane\n${SHELL(rm)}, Doe", Tier: "vip", Language: "en"},
		Priority: 10,
		Queue:    "vip",
		Flags:    []string{"vip", "ani_verified", "bad,flag\n"},
		PopURL:   "https://crm.example/c/C-1?a=b,c",
		Extra:    map[string]string{"segment": "gold", "bad name!": "x", "": "dropped"},
	}
	got := map[string]string{}
	var order []string
	for _, v := range d.Vars() {
		got[v.Name] = v.Value
		order = append(order, v.Name)
	}
	want := map[string]string{
		"CALLPOP_MATCH":       "hit",
		"CALLPOP_E164":        "+14155550123",
		"CALLPOP_SOURCE":      "cli",
		"CALLPOP_CUSTOMER_ID": "C-1",
		"CALLPOP_NAME":        "Jane SHELL(rm) Doe",
		"CALLPOP_TIER":        "vip",
		"CALLPOP_LANG":        "en",
		"CALLPOP_PRIORITY":    "10",
		"CALLPOP_QUEUE":       "vip",
		"CALLPOP_SKILL":       "",
		"CALLPOP_FLAGS":       "vip,ani_verified,badflag",
		"CALLPOP_POP_URL":     "https://crm.example/c/C-1?a=b%2Cc",
		"CALLPOP_SEGMENT":     "gold",
		"CALLPOP_BAD_NAME":    "x",
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s = %q (present %v), want %q", k, g, ok, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d vars %v, want %d", len(got), order, len(want))
	}
	if order[0] != "CALLPOP_MATCH" || !strings.HasPrefix(order[len(order)-1], "CALLPOP_") {
		t.Errorf("order %v", order)
	}
}

func TestDecisionVarsMiss(t *testing.T) {
	d := Decision{Match: MatchAnonymous}
	for _, v := range d.Vars() {
		switch v.Name {
		case "CALLPOP_MATCH":
			if v.Value != "anonymous" {
				t.Errorf("match %q", v.Value)
			}
		case "CALLPOP_PRIORITY":
			if v.Value != "0" {
				t.Errorf("priority %q", v.Value)
			}
		default:
			if v.Value != "" {
				t.Errorf("%s = %q, want empty", v.Name, v.Value)
			}
		}
	}
}

func TestMask(t *testing.T) {
	if got := MaskNumber("+14155550123"); got != "+1415***0123" {
		t.Errorf("MaskNumber = %q", got)
	}
	if got := MaskNumber("123"); got != "***" {
		t.Errorf("MaskNumber short = %q", got)
	}
	if got := MaskName("Jane Doe"); got != "J*** D***" {
		t.Errorf("MaskName = %q", got)
	}
	if got := MaskNumber("+1\n${x}555550123"); strings.ContainsAny(got, "\n${}") {
		t.Errorf("MaskNumber leaks %q", got)
	}
}

func BenchmarkCleanValue(b *testing.B) {
	b.ReportAllocs()
	for _, in := range []string{"Jane Doe", "Zoë \"Ünïcode\" Łukasz, ${x}\n"} {
		b.Run(in[:4], func(b *testing.B) {
			for b.Loop() {
				CleanValue(in)
			}
		})
	}
}

func BenchmarkDecisionVars(b *testing.B) {
	d := Decision{Match: MatchHit, E164: "+14155550123", Source: SourceCLI,
		Customer: &Customer{ID: "C-1", Name: "Jane Doe", Tier: "vip", Language: "en"},
		Priority: 10, Queue: "vip", Flags: []string{"vip"}, PopURL: "https://crm.example/c/C-1"}
	b.ReportAllocs()
	for b.Loop() {
		d.Vars()
	}
}

func TestDecisionVarsMultiple(t *testing.T) {
	d := Decision{Match: MatchMultiple, E164: "+14155550123", Source: SourceCLI,
		Customer:   &Customer{ID: "c1", Name: "Ann\nDoe ${x}", Tier: "gold"},
		Candidates: []Candidate{{ID: "c1", Name: "Ann Doe"}, {ID: "c2", Name: "Bob Doe"}, {ID: "c3", Name: "Cy Doe"}}}
	got := map[string]string{}
	for _, v := range d.Vars() {
		got[v.Name] = v.Value
	}
	if got["CALLPOP_MATCH"] != "multiple" || got["CALLPOP_CANDIDATES"] != "3" || got["CALLPOP_CUSTOMER_ID"] != "c1" {
		t.Fatalf("vars %v", got)
	}
	if n := got["CALLPOP_NAME"]; strings.ContainsAny(n, "\n${}") || n == "" {
		t.Fatalf("CALLPOP_NAME %q not sanitised", n)
	}
	for _, v := range (Decision{Match: MatchHit, Customer: &Customer{ID: "c1"}}).Vars() {
		if v.Name == "CALLPOP_CANDIDATES" {
			t.Fatal("CALLPOP_CANDIDATES set on a plain hit")
		}
	}
}
