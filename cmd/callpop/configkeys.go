package main

import (
	"encoding"
	"reflect"
	"strings"
	"time"
)

// configKey is one key of the composed configuration, as the YAML spells it.
type configKey struct {
	Path string       // dotted path; elements of a list of sections are "[]": "crm.sources[].url"
	Type reflect.Type // the Go type of the field
	Leaf bool         // a value (scalar, list of values, map, duration), not a section
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// keyName returns the YAML key of a struct field and whether it is squashed
// into its parent; "" means the field is not configuration.
func keyName(f reflect.StructField) (name string, squash bool) {
	if !f.IsExported() {
		return "", false
	}
	tag, ok := f.Tag.Lookup("mapstructure")
	if !ok {
		// mapstructure matches untagged fields by name, case-insensitively;
		// viper lower-cases every key.
		return strings.ToLower(f.Name), f.Anonymous
	}
	parts := strings.Split(tag, ",")
	for _, opt := range parts[1:] {
		if opt == "squash" {
			return "", true
		}
	}
	if parts[0] == "-" {
		return "", false
	}
	if parts[0] == "" {
		return strings.ToLower(f.Name), false
	}
	return parts[0], false
}

// isSection says whether t is decoded key by key (a struct of settings)
// rather than as one value.
func isSection(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() {
		return false
	}
	return !reflect.PointerTo(t).Implements(textUnmarshalerType)
}

// configKeys lists every key of the configuration type t, sections and
// values, in declaration order.
func configKeys(t reflect.Type) []configKey {
	var out []configKey
	walkKeys(t, "", &out)
	return out
}

func walkKeys(t reflect.Type, prefix string, out *[]configKey) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, squash := keyName(f)
		if squash {
			walkKeys(f.Type, prefix, out)
			continue
		}
		if name == "" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		ft := f.Type
		switch {
		case isSection(ft):
			*out = append(*out, configKey{Path: path, Type: ft})
			walkKeys(ft, path, out)
		case ft.Kind() == reflect.Slice && isSection(ft.Elem()):
			*out = append(*out, configKey{Path: path, Type: ft, Leaf: true})
			walkKeys(ft.Elem(), path+"[]", out)
		default:
			*out = append(*out, configKey{Path: path, Type: ft, Leaf: true})
		}
	}
}

// envName is the environment variable that overrides a key:
// "cache.miss_ttl" → "CALLPOP_CACHE_MISS_TTL".
func envName(path string) string {
	return "CALLPOP_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// envKeys are the keys an environment variable may override: every value
// outside lists of sections (a list of sections as a whole takes JSON).
func envKeys(t reflect.Type) []string {
	var out []string
	for _, k := range configKeys(t) {
		if k.Leaf && !strings.Contains(k.Path, "[]") {
			out = append(out, k.Path)
		}
	}
	return out
}
