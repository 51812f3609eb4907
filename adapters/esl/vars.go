package esl

import (
	"slices"
	"strconv"
	"strings"

	"github.com/callpop/callpop/call"
)

// Value rules for FreeSWITCH, on top of call.CleanValue (which already drops
// `$ { } \ "`, control characters and line breaks, folds `,` `;` and runs of
// white space, trims, and bounds the length). What FreeSWITCH 1.10.12 was
// seen to do with the rest (recorded; the table in docs/freeswitch.md):
//   - `'` pairs are removed by the api argument parser (switch_separate_string):
//     dropped, so the stored value is the value sent;
//   - `\s` `\t` `\n` are unescaped: backslashes are already gone;
//   - leading/trailing spaces are trimmed: CleanValue never produces them;
//   - `;` splits uuid_setvar_multi: CleanValue folds it into a space;
//   - `^^<c>` at the start of a value changes the delimiter of variable lists
//     and `ARRAY::` turns a value into an array: both prefixes are removed;
//   - `${…}` / `$${…}` expand when the dialplan uses the variable: `$ { }` are gone.
//
// The result needs no quoting and cannot end or split an api command line.

// eslValue reduces a text value from a caller or a CRM to the FreeSWITCH-safe form.
func eslValue(s string) string {
	if strings.IndexByte(s, '\'') >= 0 {
		s = strings.ReplaceAll(s, "'", "")
	}
	return stripPrefixes(call.CleanValue(s))
}

func stripPrefixes(v string) string {
	for {
		v = strings.TrimSpace(v)
		switch {
		case strings.HasPrefix(v, "^"):
			v = strings.TrimLeft(v, "^")
		case strings.HasPrefix(strings.ToUpper(v), "ARRAY::"):
			v = v[len("ARRAY::"):]
		default:
			return v
		}
	}
}

// eslURL makes an already CleanURL'd value safe for FreeSWITCH: `'` is encoded.
func eslURL(s string) string {
	return strings.ReplaceAll(call.CleanURL(s), "'", "%27")
}

// assignment is one channel variable callpop sets.
type assignment struct{ name, value string }

// variables returns what callpop sets on the caller's channel for d, in a fixed
// order, every value in the FreeSWITCH-safe form. chanVars are the channel's
// current variables (from the connect reply or the CHANNEL_PARK event), used to
// extend export_vars / cc_export_vars rather than replace them.
// chanVarsRead are the channel variables variables reads: lists it extends
// rather than replaces.
var chanVarsRead = [...]string{"export_vars", "cc_export_vars"}

// keepChanVars copies what variables will read of a channel's event (whose
// getter takes "variable_<name>"), so a call waiting for its decision does not
// keep the whole event alive.
func keepChanVars(get func(string) string) func(string) string {
	var vals [len(chanVarsRead)]string
	for i, n := range chanVarsRead {
		vals[i] = strings.Clone(get("variable_" + n))
	}
	return func(name string) string {
		for i, n := range chanVarsRead {
			if name == "variable_"+n {
				return vals[i]
			}
		}
		return ""
	}
}

func variables(c call.Call, d call.Decision, chanVars func(string) string) []assignment {
	out := make([]assignment, 0, 20)
	for _, v := range d.Vars() {
		name := strings.ToLower(v.Name)
		val := v.Value
		if v.Name == "CALLPOP_POP_URL" {
			val = strings.ReplaceAll(val, "'", "%27")
		} else {
			val = eslValue(val)
		}
		out = append(out, assignment{name, val})
	}
	out = append(out, assignment{"cc_base_score", strconv.Itoa(d.BaseScore)})
	id := call.CleanToken(c.ID)
	if d.CallID != "" {
		id = call.CleanToken(d.CallID)
	}
	exports := []string{"callpop_call_id"}
	if _, ok := callInfo(d); ok {
		// the softphone link: also as a plain variable for dial strings, and
		// exported so the agent legs' INVITEs carry the Call-Info header
		out = append(out, assignment{"callpop_info_url", eslURL(d.InfoURL)})
		exports = append(exports, "sip_h_Call-Info")
	}
	out = append(out,
		assignment{"callpop_call_id", id},
		assignment{"export_vars", appendList(chanVars("export_vars"), exports...)},
		assignment{"cc_export_vars", appendList(chanVars("cc_export_vars"), exports...)},
	)
	if d.CallerName != "" && !d.Privacy {
		out = append(out, assignment{"effective_caller_id_name", eslValue(d.CallerName)})
	}
	return out
}

// appendList adds add to a comma list of variable names, keeping only names.
func appendList(list string, add ...string) string {
	var names []string
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if isVarName(n) && !slices.Contains(add, n) {
			names = append(names, n)
		}
	}
	return strings.Join(append(names, add...), ",")
}

func isVarName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// setvarMulti renders the argument of `uuid_setvar_multi <uuid> a=1;b=2`.
// Values hold no `;`, quote, backslash or line break (eslValue), so each pair
// arrives as sent.
func setvarMulti(uuid string, vars []assignment) string {
	var b strings.Builder
	b.WriteString("uuid_setvar_multi ")
	b.WriteString(uuid)
	b.WriteByte(' ')
	for i, a := range vars {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(a.name)
		b.WriteByte('=')
		b.WriteString(a.value)
	}
	return b.String()
}

// callInfo is the SIP Call-Info header for the softphone link; set with
// uuid_setvar because its `;purpose=info` would split uuid_setvar_multi.
func callInfo(d call.Decision) (assignment, bool) {
	if d.InfoURL == "" {
		return assignment{}, false
	}
	u := eslURL(d.InfoURL)
	if u == "" {
		return assignment{}, false
	}
	return assignment{"sip_h_Call-Info", "<" + u + ">;purpose=info"}, true
}
