package esl

import (
	"cmp"
	"strings"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/fsvars"
)

// chanVarsRead are the channel variables variables reads: lists it extends
// rather than replaces.
var chanVarsRead = fsvars.ExportLists

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

// variables returns what callpop sets on the caller's channel for d (see
// fsvars.Vars), every value in the FreeSWITCH-safe form. chanVars are the
// channel's current variables (from the connect reply or the CHANNEL_PARK
// event), used to extend export_vars / cc_export_vars rather than replace them.
func variables(c call.Call, d call.Decision, chanVars func(string) string) []call.Var {
	return fsvars.Vars(d, cmp.Or(d.CallID, c.ID), fsvars.Text, func(list string, add []string) string {
		return fsvars.AppendList(chanVars(list), add...)
	})
}

// setvarMulti renders the argument of `uuid_setvar_multi <uuid> a=1;b=2`.
// Values hold no `;`, quote, backslash or line break (fsvars.Text), so each pair
// arrives as sent.
func setvarMulti(uuid string, vars []call.Var) string {
	var b strings.Builder
	b.WriteString("uuid_setvar_multi ")
	b.WriteString(uuid)
	b.WriteByte(' ')
	for i, a := range vars {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(a.Name)
		b.WriteByte('=')
		b.WriteString(a.Value)
	}
	return b.String()
}
