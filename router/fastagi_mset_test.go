package router

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/callpop/callpop/call"
)

// msetHostile are values that would go wrong if any layer between callpop
// and the channel read them differently: AGI quoting, AGIEXECFULL's
// substitution, MSet's separation into pairs and at `=`.
var msetHostile = []string{
	"", "plain", "a,b", "a|b", `a"b`, `"quoted"`, `back\slash`, `trailing\`, `\\`, `\"`, `"\`,
	"(", ")", "a(b,c)d", "[", "]", "a[b,c]d", "){[", "=", "a=b", "==", "a=b,c=d",
	"${SHELL(id)}", "$[1+1]", "$", "${", "$${X}", "\\${X}", "{}", "%{x}",
	"  lead and trail  ", "tab\there", "multi   space", "Zoë 李 😀", "\xff\xfe raw bytes",
	"https://crm.example/c?id=7&x=(1)[2]#a,b", "vip,fraud_suspect,ani_verified",
	`x" EXEC System "rm -rf /`, "a,b\\,c\\\\,d", "'single'", ";semi;", "!@#%^&*-_+~`",
}

// msetVars is a decision-shaped set of variables all carrying v.
func msetVars(v string) []call.Var {
	return []call.Var{
		{Name: "CALLPOP_NAME", Value: v}, {Name: "CALLERID(name)", Value: v}, {Name: "CALLPOP_EMPTY", Value: ""},
		{Name: "__CALLPOP_CALL_ID", Value: v + v}, {Name: "CALLPOP_MATCH", Value: "hit"},
	}
}

// msetRoundTrip sends vars the way serveAGI does and returns what
// Asterisk's side sets for them, with or without AGIEXECFULL.
func msetRoundTrip(t testing.TB, vars []call.Var) []call.Var {
	t.Helper()
	var got []call.Var
	for rest := vars; len(rest) > 0; {
		line, n := agiMSetCommand(rest)
		if n == 0 {
			t.Fatalf("no command for %q", rest[0])
		}
		if len(line) > asteriskAGIBuf-2 {
			t.Fatalf("a %d-byte line: res_agi would cut it", len(line))
		}
		args := asteriskParseArgs(line)
		if len(args) != 3 || args[0] != "EXEC" || args[1] != "MSet" {
			t.Fatalf("%q parses as %q", line, args)
		}
		if strings.Contains(args[2], "${") || strings.Contains(args[2], "$[") {
			t.Fatalf("AGIEXECFULL would substitute in %q", args[2])
		}
		set, ignored := asteriskMSet(args[2])
		if len(ignored) > 0 || len(set) != n {
			t.Fatalf("%q: MSet set %d pairs of %d, ignored %q", line, len(set), n, ignored)
		}
		got = append(got, set...)
		rest = rest[n:]
	}
	return got
}

// Every value arrives through EXEC MSet exactly as it does through SET
// VARIABLE, which is exactly as sent.
func TestMSetRoundTrip(t *testing.T) {
	for _, v := range msetHostile {
		vars := msetVars(v)
		if got := msetRoundTrip(t, vars); !slices.Equal(got, vars) {
			t.Errorf("value %q\n got  %q\n want %q", v, got, vars)
		}
		if args := asteriskParseArgs("SET VARIABLE CALLPOP_NAME " + agiQuote(v)); len(args) != 4 || args[3] != v {
			t.Errorf("SET VARIABLE of %q stores %q", v, args)
		}
	}
	// all of them in one command, side by side
	var all []call.Var
	for i, v := range msetHostile {
		all = append(all, call.Var{Name: fmt.Sprintf("CALLPOP_V%d", i), Value: v})
	}
	if line, n := agiMSetCommand(all); n != len(all) {
		t.Fatalf("%d of %d pairs in %q", n, len(all), line)
	}
	if got := msetRoundTrip(t, all); !slices.Equal(got, all) {
		t.Errorf("side by side\n got  %q\n want %q", got, all)
	}
}

// More pairs than MSet parses, or more bytes than res_agi reads in a line,
// go in several commands, in order.
func TestMSetCommandSplits(t *testing.T) {
	var many []call.Var
	for i := range 250 {
		many = append(many, call.Var{Name: fmt.Sprintf("CALLPOP_X%d", i), Value: msetHostile[i%len(msetHostile)]})
	}
	if _, n := agiMSetCommand(many); n != agiMSetMaxPairs {
		t.Fatalf("first command carries %d pairs, want %d", n, agiMSetMaxPairs)
	}
	if got := msetRoundTrip(t, many); !slices.Equal(got, many) {
		t.Fatalf("250 pairs did not survive")
	}
	long := []call.Var{
		{Name: "CALLPOP_A", Value: strings.Repeat(`"\,`, 700)}, // 2,100 bytes; escaped and quoted 7,700
		{Name: "CALLPOP_B", Value: strings.Repeat("x", 3000)},
		{Name: "CALLPOP_C", Value: strings.Repeat("y", 3000)},
		{Name: "CALLPOP_D", Value: strings.Repeat("z", 2200)},
	}
	if line, n := agiMSetCommand(long); n != 1 || len(line) > agiMaxCommand {
		t.Fatalf("%d pairs in %d bytes", n, len(line))
	}
	if line, n := agiMSetCommand(long[1:]); n != 2 || len(line) > agiMaxCommand {
		t.Fatalf("%d pairs in %d bytes", n, len(line))
	}
	if got := msetRoundTrip(t, long); !slices.Equal(got, long) {
		t.Fatal("long values did not survive")
	}
	if _, n := agiMSetCommand([]call.Var{{Name: "CALLPOP_A", Value: strings.Repeat(`"\,`, 800)}}); n != 0 {
		t.Fatal("a pair longer than a line was put in one")
	}
	// why 98: MSet leaves the 99th pair as it is, escapes and all
	var pairs []string
	for i := range 99 {
		pairs = append(pairs, fmt.Sprintf(`V%d=a\,b`, i))
	}
	set, _ := asteriskMSet(strings.Join(pairs, ","))
	if len(set) != 99 || set[97].Value != "a,b" || set[98].Value != `a\,b` {
		t.Fatalf("the model of MSet's 99 pairs: %q", set[96:])
	}
}

// FuzzMSetRoundTrip: any value without a line break or NUL arrives through
// EXEC MSet exactly as through SET VARIABLE. The seeds run as a normal test.
func FuzzMSetRoundTrip(f *testing.F) {
	for _, v := range msetHostile {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if strings.ContainsAny(v, "\r\n\x00") {
			return // refused before any command (agiSafeVars)
		}
		vars := msetVars(v)
		if got := msetRoundTrip(t, vars); !slices.Equal(got, vars) {
			t.Fatalf("value %q\n got  %q\n want %q", v, got, vars)
		}
		if args := asteriskParseArgs("SET VARIABLE CALLPOP_NAME " + agiQuote(v)); len(args) != 4 || args[3] != v {
			t.Fatalf("SET VARIABLE of %q stores %q", v, args)
		}
	})
}

// The model of main/app.c's argument separation, on cases read off its
// source.
func TestAppSeparateArgs(t *testing.T) {
	tests := []struct {
		in       string
		delim    byte
		arraylen int
		want     []string
	}{
		{"", ',', 99, nil},
		{"a", ',', 99, []string{"a"}},
		{"a,b", ',', 99, []string{"a", "b"}},
		{"a,", ',', 99, []string{"a", ""}},
		{",", ',', 99, []string{"", ""}},
		{`a(b,c),d`, ',', 99, []string{"a(b,c)", "d"}},
		{`a[b,c],d`, ',', 99, []string{"a[b,c]", "d"}},
		{`a),b`, ',', 99, []string{"a)", "b"}}, // a stray ) is ignored
		{`a(,b,c`, ',', 99, []string{"a(,b,c"}},
		{`"a,b",c`, ',', 99, []string{"a,b", "c"}},
		{`a\,b,c`, ',', 99, []string{"a,b", "c"}},
		{`a\\,b`, ',', 99, []string{`a\`, "b"}},
		{`a,b,c`, ',', 2, []string{"a", "b,c"}},
		{`N=a=b`, '=', 2, []string{"N", "a=b"}},
		{`N=a\,"b"`, '=', 2, []string{"N", `a\,"b"`}}, // the value is not parsed
		{`CALLERID(name)=x`, '=', 2, []string{"CALLERID(name)", "x"}},
		{`F(a=b)=x`, '=', 2, []string{"F(a=b)", "x"}},
	}
	for _, tt := range tests {
		if got := appSeparateArgs(tt.in, tt.delim, true, tt.arraylen); !slices.Equal(got, tt.want) {
			t.Errorf("appSeparateArgs(%q, %q, %d) = %q, want %q", tt.in, tt.delim, tt.arraylen, got, tt.want)
		}
	}
	if got := appSeparateArgs(`"a\,b",c`, ',', false, 99); !slices.Equal(got, []string{`"a\,b"`, "c"}) {
		t.Errorf("raw: %q", got)
	}
}

func TestAGIVarName(t *testing.T) {
	for _, n := range []string{"CALLPOP_MATCH", "__CALLPOP_CALL_ID", "QUEUE_PRIO", "CALLERID(name)", "CALLERID(num-pres)", "x1"} {
		if !agiVarName(n) {
			t.Errorf("%q refused", n)
		}
	}
	for _, n := range []string{"", "A B", "A=B", "A,B", `A"`, `A\`, "A(", "A()", "A(b)c", "A(b(c))", "A(b,c)", "$A", "A{B}", "A\tB", "Ä"} {
		if agiVarName(n) {
			t.Errorf("%q taken", n)
		}
	}
}

func TestAGIMSetSafe(t *testing.T) {
	for v, want := range map[string]bool{
		"22.10.1": true, "13.0.0": true, "20.7-cert5": true, "certified/20.7-cert5": true, "certified-18.9-cert4": true,
		"GIT-master-8a3f9d1": true, "GIT-22-8a3f9d1": true, "100.0.0": true,
		"12.8.2": false, "11.25.3": false, "1.8.32.3": false, "1.4.44": false, "SVN-branch-1.8-r1234": false, "": false, "unknown": false,
	} {
		if got := agiMSetSafe(v); got != want {
			t.Errorf("agiMSetSafe(%q) = %v, want %v", v, got, want)
		}
	}
}
