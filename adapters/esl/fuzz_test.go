package esl

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzSetvarLine: whatever a caller or a CRM sends, the uuid_setvar_multi
// line is one line, splits into exactly the variables callpop sets, and no
// value carries a character FreeSWITCH would act on.
func FuzzSetvarLine(f *testing.F) {
	for _, v := range hostile {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c := callFromCaller()
		d := hostileDecider(v).Decide(context.Background(), c)
		vars := variables(c, d, func(string) string { return v })
		line := setvarMulti(c.ID, vars)
		if strings.ContainsAny(line, "\r\n\x00") {
			t.Fatalf("line break in %q", line)
		}
		rest := strings.TrimPrefix(line, "uuid_setvar_multi "+c.ID+" ")
		pairs := strings.Split(rest, ";")
		if len(pairs) != len(vars) {
			t.Fatalf("%d pairs for %d variables: %q", len(pairs), len(vars), line)
		}
		for i, p := range pairs {
			name, val, ok := strings.Cut(p, "=")
			if !ok || name != vars[i].Name {
				t.Fatalf("pair %d = %q, want variable %s", i, p, vars[i].Name)
			}
			if strings.ContainsAny(val, "${}\\'\"`") || val != strings.TrimSpace(val) || !utf8.ValidString(val) ||
				strings.HasPrefix(val, "^^") || strings.HasPrefix(strings.ToUpper(val), "ARRAY::") {
				t.Fatalf("%s = %q", name, val)
			}
		}
	})
}
