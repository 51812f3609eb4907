package call

import (
	"sort"
	"strconv"
	"strings"
)

// Var is one channel variable in the CALLPOP_* contract. Name is upper-case
// (Asterisk's spelling); FreeSWITCH adapters lower-case it.
type Var struct {
	Name  string
	Value string
}

// Bounds for values leaving callpop.
const (
	MaxValueLen = 128 // runes, for text values
	MaxURLLen   = 512 // bytes, for CALLPOP_POP_URL
)

// Vars returns the CALLPOP_* variables of the contract in a fixed order, every
// value sanitised. PBX-specific priority variables (QUEUE_PRIO,
// cc_base_score) are the adapters' to add from QueuePrio and BaseScore.
func (d Decision) Vars() []Var {
	var c Customer
	if d.Customer != nil {
		c = *d.Customer
	}
	lang := d.Language
	if lang == "" {
		lang = c.Language
	}
	vars := make([]Var, 0, 13+len(d.Extra))
	vars = append(vars,
		Var{"CALLPOP_MATCH", CleanToken(string(d.Match))},
		Var{"CALLPOP_E164", CleanToken(d.E164)},
		Var{"CALLPOP_SOURCE", CleanToken(string(d.Source))},
		Var{"CALLPOP_CUSTOMER_ID", CleanValue(c.ID)},
		Var{"CALLPOP_NAME", CleanValue(c.Name)},
		Var{"CALLPOP_TIER", CleanValue(c.Tier)},
		Var{"CALLPOP_LANG", CleanValue(lang)},
		Var{"CALLPOP_PRIORITY", strconv.Itoa(d.Priority)},
		Var{"CALLPOP_QUEUE", CleanValue(d.Queue)},
		Var{"CALLPOP_SKILL", CleanValue(d.Skill)},
		Var{"CALLPOP_FLAGS", cleanFlags(d.Flags)},
		Var{"CALLPOP_POP_URL", CleanURL(d.PopURL)},
	)
	if d.Match == MatchMultiple {
		vars = append(vars, Var{"CALLPOP_CANDIDATES", strconv.Itoa(len(d.Candidates))})
	}
	if len(d.Extra) > 0 {
		names := make([]string, 0, len(d.Extra))
		for k := range d.Extra {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			n := VarName(k)
			if n == "" {
				continue
			}
			vars = append(vars, Var{"CALLPOP_" + n, CleanValue(d.Extra[k])})
		}
	}
	return vars
}

func cleanFlags(flags []string) string {
	clean := true
	for _, f := range flags {
		clean = clean && f != "" && len(f) <= 64 && isToken(f)
	}
	if clean {
		return strings.Join(flags, ",")
	}
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if t := CleanToken(f); t != "" {
			out = append(out, t)
		}
	}
	return strings.Join(out, ",")
}

// VarName reduces s to an upper-case variable-name suffix: A-Z, 0-9 and _,
// at most 32 characters; "" when nothing is left.
func VarName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		case r == '-' || r == '.' || r == ' ':
			b.WriteByte('_')
		}
		if b.Len() >= 32 {
			break
		}
	}
	return b.String()
}
