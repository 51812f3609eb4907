package crm

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/callpop/callpop/call"
)

// Bounds on what a CRM may hand us. Values stay raw (sanitising happens at the
// edges) but bounded.
const (
	maxExtra  = 32 // extra fields per customer
	maxPhones = 16 // phone numbers per customer
)

// capCustomer bounds every field of a customer from a source.
func capCustomer(c *call.Customer) *call.Customer {
	out := &call.Customer{
		ID:       capString(c.ID),
		Name:     capString(c.Name),
		Tier:     capString(c.Tier),
		Language: capString(c.Language),
		URL:      capString(c.URL),
	}
	for i, p := range c.Phones {
		if i >= maxPhones {
			break
		}
		out.Phones = append(out.Phones, capString(p))
	}
	if len(c.Extra) > 0 {
		out.Extra = map[string]any{}
		for k, v := range c.Extra {
			if len(out.Extra) >= maxExtra {
				break
			}
			if v, ok := scalar(v); ok {
				out.Extra[capString(k)] = v
			}
		}
	}
	return out
}

// capString cuts s to maxFieldLen bytes on a rune boundary and drops invalid UTF-8.
func capString(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "")
	}
	if len(s) <= maxFieldLen {
		return s
	}
	cut := maxFieldLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// scalar keeps strings (capped), numbers and booleans; anything else
// (objects, arrays, null) is dropped.
func scalar(v any) (any, bool) {
	switch v := v.(type) {
	case string:
		return capString(v), true
	case json.Number:
		if f, err := v.Float64(); err == nil {
			return f, true
		}
		return capString(v.String()), true
	case bool, float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return v, true
	}
	return nil, false
}

// text turns a JSON scalar into a customer field: strings as is, numbers in
// their JSON spelling (ids are often numeric), booleans; else "" (dropped).
func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// path is a parsed dotted path: "data.0.name".
type path []string

func parsePath(s string) path { return strings.Split(s, ".") }

// get walks v along p: object keys, array indexes.
func (p path) get(v any) (any, bool) {
	for _, seg := range p {
		switch cur := v.(type) {
		case map[string]any:
			next, ok := cur[seg]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(cur) {
				return nil, false
			}
			v = cur[i]
		default:
			return nil, false
		}
	}
	return v, true
}
