// Package fsvars is what callpop sets on a FreeSWITCH call for a decision:
// the lower-case contract variables, cc_base_score, the call id and its
// exports, the softphone's caller name and link, every value in a form
// FreeSWITCH stores as sent. The ESL adapter writes them with
// uuid_setvar_multi; GET /v1/route?format=multiset answers them for the
// dialplan's multiset application (Multiset).
package fsvars

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

// Text reduces a text value from a caller or a CRM to the FreeSWITCH-safe form.
func Text(s string) string {
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

// URL makes a URL safe for FreeSWITCH: call.CleanURL, and `'` encoded.
func URL(s string) string {
	return strings.ReplaceAll(call.CleanURL(s), "'", "%27")
}

// ExportLists are the channel's lists of variables handed to other legs:
// export_vars (bridge, originate) and cc_export_vars (mod_callcenter's agent
// legs). callpop extends them rather than replace them.
var ExportLists = [...]string{"export_vars", "cc_export_vars"}

// Vars returns what callpop sets on the caller's channel for d, in a fixed
// order: the contract's variables, cc_base_score, the softphone link, the call
// id (CleanToken(callID); with none, no call id and no exports), export_vars
// and cc_export_vars extended by extend, and the caller name the softphone
// rewrites. Text values go through text (Text, or a stricter form); URLs
// through URL. The SIP Call-Info header is CallInfo's.
func Vars(d call.Decision, callID string, text func(string) string, extend func(list string, add []string) string) []call.Var {
	out := make([]call.Var, 0, 20)
	for _, v := range d.Vars() {
		val := v.Value
		if v.Name == "CALLPOP_POP_URL" {
			val = strings.ReplaceAll(val, "'", "%27")
		} else {
			val = text(val)
		}
		out = append(out, call.Var{Name: strings.ToLower(v.Name), Value: val})
	}
	out = append(out, call.Var{Name: "cc_base_score", Value: strconv.Itoa(d.BaseScore)})
	exports := []string{"callpop_call_id"}
	if _, ok := CallInfo(d); ok {
		// the softphone link: also as a plain variable for dial strings, and
		// exported so the agent legs' INVITEs carry the Call-Info header
		out = append(out, call.Var{Name: "callpop_info_url", Value: URL(d.InfoURL)})
		exports = append(exports, "sip_h_Call-Info")
	}
	// a token may still be an ARRAY:: value: stripped like text
	if id := stripPrefixes(call.CleanCallID(callID)); id != "" {
		out = append(out, call.Var{Name: "callpop_call_id", Value: id})
		for _, l := range ExportLists {
			out = append(out, call.Var{Name: l, Value: extend(l, exports)})
		}
	}
	if d.CallerName != "" && !d.Privacy {
		out = append(out, call.Var{Name: "effective_caller_id_name", Value: text(d.CallerName)})
	}
	return out
}

// CallInfo is the SIP Call-Info header for the softphone link.
func CallInfo(d call.Decision) (call.Var, bool) {
	if d.InfoURL == "" {
		return call.Var{}, false
	}
	u := URL(d.InfoURL)
	if u == "" {
		return call.Var{}, false
	}
	return call.Var{Name: "sip_h_Call-Info", Value: "<" + u + ">;purpose=info"}, true
}

// AppendList adds add to a comma list of variable names, keeping only names.
func AppendList(list string, add ...string) string {
	var names []string
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if IsVarName(n) && !slices.Contains(add, n) {
			names = append(names, n)
		}
	}
	return strings.Join(append(names, add...), ",")
}

// IsVarName reports whether s is a channel variable name callpop writes:
// at most 64 of [A-Za-z0-9_-].
func IsVarName(s string) bool {
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
