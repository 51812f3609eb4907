package fsvars

import (
	"slices"
	"strings"

	"github.com/callpop/callpop/call"
)

// FreeSWITCH's multiset application (mod_dptools.c, multiset_function): data
// starting with `^^<c>` is split at <c> by switch_separate_string, which also
// honours `'` quotes and `\` escapes and trims spaces around each part; each
// part goes to base_set: the name up to the first `=`, the value after it
// expanded (`${…}`) before it is stored, an empty value unsets the variable.
// At most MultisetMax parts are read; the rest is ignored.
const (
	MultisetPrefix = "^^|"
	MultisetDelim  = '|'
	MultisetMax    = 256
)

// Multiset renders the variables Vars gives d (the ESL adapter's set) and the
// SIP Call-Info header as the argument of FreeSWITCH's multiset application:
// `^^|callpop_match=hit|callpop_e164=+31…|cc_base_score=600|…`. Text values
// have `|` folded on top of Text's rules, so no value can split the list or
// be expanded. Empty values are left out: multiset would unset the variable
// (as uuid_setvar_multi does), so a default the dialplan set before stays.
//
// The export lists are the one expansion callpop writes itself:
// `export_vars=${export_vars},callpop_call_id`, which base_set expands to the
// channel's list with callpop's names appended (",callpop_call_id" when the
// channel had none; FreeSWITCH skips the empty name).
func Multiset(d call.Decision, callID string) string {
	vars := Vars(d, callID, multisetText, func(list string, add []string) string {
		return "${" + list + "}," + strings.Join(add, ",")
	})
	if ci, ok := CallInfo(d); ok {
		vars = append(vars, ci) // `;` and `=` are plain characters in a `|` list
	}
	dropExtras(vars)
	vars = slices.DeleteFunc(vars, func(v call.Var) bool { return v.Value == "" })
	var b strings.Builder
	b.WriteString(MultisetPrefix)
	for i, v := range vars {
		if i > 0 {
			b.WriteByte(MultisetDelim)
		}
		b.WriteString(v.Name)
		b.WriteByte('=')
		b.WriteString(v.Value)
	}
	return b.String()
}

// multisetText is Text with the multiset delimiter folded into a space
// before Text's rules (so the folds and prefix strips apply to the result).
func multisetText(s string) string {
	if strings.IndexByte(s, MultisetDelim) >= 0 {
		s = strings.ReplaceAll(s, string(MultisetDelim), " ")
	}
	return Text(s)
}

// SetvarMultiMax is how many pairs one uuid_setvar_multi takes: mod_commands.c
// splits its argument into argv[64], and past the 64th the rest of the line
// stays in the last value.
const SetvarMultiMax = 64

// FitExtras drops the rules' extra variables (Vars puts them between
// callpop_pop_url and cc_base_score) from the end until vars has at most max
// entries, so callpop's own variables (the call id and the export lists
// last) always arrive; it returns vars and how many were dropped.
func FitExtras(vars []call.Var, max int) ([]call.Var, int) {
	from := slices.IndexFunc(vars, func(v call.Var) bool { return v.Name == "callpop_pop_url" }) + 1
	to := slices.IndexFunc(vars, func(v call.Var) bool { return v.Name == "cc_base_score" })
	over := len(vars) - max
	if over <= 0 || from <= 0 || to < from {
		return vars, 0
	}
	n := min(over, to-from)
	return slices.Delete(vars, to-n, to), n
}

// dropExtras blanks the rules' extra variables (Vars puts them between
// callpop_pop_url and cc_base_score) from the end until the non-empty ones
// fit in one multiset: callpop's own variables are never the ones FreeSWITCH
// leaves unread.
func dropExtras(vars []call.Var) {
	over := -MultisetMax
	for _, v := range vars {
		if v.Value != "" {
			over++
		}
	}
	from := slices.IndexFunc(vars, func(v call.Var) bool { return v.Name == "callpop_pop_url" }) + 1
	for i := slices.IndexFunc(vars, func(v call.Var) bool { return v.Name == "cc_base_score" }) - 1; over > 0 && i >= from && from > 0; i-- {
		if vars[i].Value != "" {
			vars[i].Value = ""
			over--
		}
	}
}
