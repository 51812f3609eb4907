package router

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
)

// A model of what FreeSWITCH 1.10 does with the argument of its multiset
// application, written from the C source (read, not copied):
//   - mod_dptools.c multiset_function: `^^<c>` at the start makes <c> the
//     delimiter (else a space), the rest goes to switch_split into at most 256
//     parts, each to base_set;
//   - switch_utils.c switch_separate_string: `^^<c>` once more, then
//     separate_string_char_delim / separate_string_blank_delim (a `\` skips the
//     next character, `'…'` hides delimiters) and cleanup_separated_string
//     (leading spaces, quotes and `\` escapes removed, trailing spaces cut);
//   - base_set: the name up to the first `=` (else `,`), the value after it
//     expanded by switch_channel_expand_variables; an empty value, or an empty
//     expansion, unsets the variable (switch_channel_add_variable_var_check),
//     an empty name is ignored there and "No variable name specified" is
//     logged for an empty part.
//
// The expansion is modelled only for `${name}`; a value with anything else
// FreeSWITCH would act on (`${…}` of another form, `\` escapes) is an error
// of the model's, so a test fails rather than guessing.

// fsOp is one variable multiset set (or unset: value "").
type fsOp struct{ name, value string }

// fsMultiset applies data to vars as multiset would and returns what it
// did, the `${name}` references it expanded, and what FreeSWITCH would log
// or the model cannot say.
func fsMultiset(data string, vars map[string]string) (ops []fsOp, expanded []string, errs []string) {
	if i := strings.IndexByte(data, 0); i >= 0 {
		errs = append(errs, "NUL in the data: C would stop there")
		data = data[:i]
	}
	delim := byte(' ')
	if strings.HasPrefix(data, "^^") {
		if len(data) < 3 {
			return nil, nil, append(errs, "^^ without a delimiter")
		}
		delim, data = data[2], data[3:]
	}
	for _, part := range fsSeparate(data, delim, 256) {
		if part == "" {
			errs = append(errs, "No variable name specified.")
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			name, val, _ = strings.Cut(part, ",")
		}
		if val != "" {
			var refs []string
			var err error
			val, refs, err = fsExpand(val, vars)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", name, err))
				continue
			}
			expanded = append(expanded, refs...)
		}
		if name == "" {
			continue
		}
		if val == "" {
			delete(vars, name)
		} else {
			vars[name] = val
		}
		ops = append(ops, fsOp{name, val})
	}
	return ops, expanded, errs
}

// fsSeparate is switch_separate_string: the ESL simulator's model of it
// (adapters/pbxsim/eslsim), which the originate path is tested against too.
func fsSeparate(s string, delim byte, max int) []string {
	return eslsim.SeparateString(s, delim, max)
}

var fsRef = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// fsExpand is the part of switch_channel_expand_variables the answers may
// meet: `${name}` from vars; a `\` or any other variable syntax is an error.
func fsExpand(v string, vars map[string]string) (string, []string, error) {
	if strings.IndexByte(v, '\\') >= 0 {
		return "", nil, fmt.Errorf("%q: FreeSWITCH would read its backslashes as escapes", v)
	}
	var refs []string
	out := fsRef.ReplaceAllStringFunc(v, func(m string) string {
		name := m[2 : len(m)-1]
		refs = append(refs, name)
		return vars[name] // stored values hold no references in these tests
	})
	if fsVarCheck(out) || strings.Contains(out, "$${") {
		return "", nil, fmt.Errorf("%q: an expansion the model does not follow", v)
	}
	return out, refs, nil
}

// fsVarCheck is switch_string_var_check_const: a `$` then `{` (backslashes
// between them allowed) starts an expansion.
func fsVarCheck(s string) bool {
	dol := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '$':
			dol = true
		case dol && s[i] == '{':
			return true
		case s[i] != '\\':
			dol = false
		}
	}
	return false
}
