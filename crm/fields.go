package crm

import (
	"encoding/json"
	"maps"
	"slices"
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

	MaxLists      = 8  // named lists per customer
	MaxListItems  = 20 // items per list (the first ones, in the source's order)
	MaxItemFields = 16 // scalar fields per item (by name order when there are more)
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
	out.Lists = capLists(c.Lists)
	return out
}

// capLists bounds a customer's lists: at most MaxLists lists (by name order)
// of at most MaxListItems items, each of at most MaxItemFields scalar fields
// (strings capped); an item left empty is dropped. nil when nothing is left.
func capLists(lists map[string][]map[string]any) map[string][]map[string]any {
	if len(lists) == 0 {
		return nil
	}
	var out map[string][]map[string]any
	for _, name := range slices.Sorted(maps.Keys(lists)) {
		if len(out) >= MaxLists {
			break
		}
		items := make([]map[string]any, 0, min(len(lists[name]), MaxListItems))
		for _, it := range lists[name] {
			if len(items) >= MaxListItems {
				break
			}
			if it := capItem(it); it != nil {
				items = append(items, it)
			}
		}
		if out == nil {
			out = map[string][]map[string]any{}
		}
		out[capString(name)] = items // an empty list stays: the CRM said there is none
	}
	return out
}

// capItem keeps at most MaxItemFields scalar fields of one list item.
func capItem(it map[string]any) map[string]any {
	var out map[string]any
	for _, k := range slices.Sorted(maps.Keys(it)) {
		if len(out) >= MaxItemFields {
			break
		}
		if v, ok := scalar(it[k]); ok {
			if out == nil {
				out = make(map[string]any, min(len(it), MaxItemFields))
			}
			out[capString(k)] = v
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
