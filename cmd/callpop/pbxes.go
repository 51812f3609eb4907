package main

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/callpop/callpop/adapters/ari"
	"github.com/callpop/callpop/adapters/esl"
)

// PBXEntry is one element of `pbxes`: a named PBX connection, with the
// same keys as the single `pbx` section, and whether /readyz waits for it.
type PBXEntry struct {
	Name string `mapstructure:"name"` // [a-z0-9_-]+, unique; in logs, metrics, pops and call ids
	// Required: /readyz is ready only while this PBX is (default true).
	Required  *bool `mapstructure:"required"`
	PBXConfig `mapstructure:",squash"`
}

// IsRequired says whether /readyz waits for this PBX (unset = true).
func (e PBXEntry) IsRequired() bool { return e.Required == nil || *e.Required }

// pbxName is what a PBX's name may be: it shows in call ids, metrics and
// environment variable names.
var pbxName = regexp.MustCompile(`^[a-z0-9_-]+$`)

// pbxesEnv is the variable that overrides the password of pbxes entry
// name: "fs-b" → CALLPOP_PBXES_FS_B_PASSWORD.
func pbxesEnv(name string) string {
	return "CALLPOP_PBXES_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_PASSWORD"
}

// isPBXesEnv says whether name is a pbxes entry's password variable.
func isPBXesEnv(name string) bool {
	return strings.HasPrefix(name, "CALLPOP_PBXES_") && strings.HasSuffix(name, "_PASSWORD")
}

// defaultPBXEntry is what an entry of pbxes starts from before its keys are
// decoded: the adapters' defaults, as for the single pbx section.
func defaultPBXEntry() PBXEntry {
	return PBXEntry{PBXConfig: PBXConfig{Kind: "", Asterisk: ari.DefaultConfig(), FreeSWITCH: esl.DefaultConfig()}}
}

var pbxEntryType = reflect.TypeFor[PBXEntry]()

// pbxEntryHook decodes an entry of pbxes over the adapters' defaults (a list
// element would otherwise start from zero: no timeouts, no limits).
func pbxEntryHook(from, to reflect.Type, data any) (any, error) {
	if to != pbxEntryType || from.Kind() != reflect.Map {
		return data, nil
	}
	e := defaultPBXEntry()
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:  mapstructure.ComposeDecodeHookFunc(durationHook, listHook, mapstructure.TextUnmarshallerHookFunc()),
		ErrorUnused: true,
		ZeroFields:  true,
		Result:      &e,
	})
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(data); err != nil {
		return nil, errors.New(strings.ReplaceAll(decodeErrors(err).Error(), "\n", "; "))
	}
	return e, nil
}

// pbxList is the PBXs callpop connects to: the entries of pbxes, or the
// single pbx section as one entry named after its kind; none with pbx.kind
// none. legacy says the list is the single section (call ids stay the
// PBX's own, as before pbxes).
func (c *Config) pbxList() (list []PBXEntry, legacy bool) {
	if len(c.PBXes) > 0 {
		out := make([]PBXEntry, len(c.PBXes))
		for i, e := range c.PBXes {
			e.Asterisk.PasswordEnvName = pbxesEnv(e.Name)
			e.FreeSWITCH.PasswordEnvName = pbxesEnv(e.Name)
			out[i] = e
		}
		return out, false
	}
	switch c.PBX.Kind {
	case "", PBXNone:
		return nil, true
	}
	return []PBXEntry{{Name: c.PBX.Kind, PBXConfig: c.PBX}}, true
}

// validatePBXes checks pbx and pbxes: one or the other, names unique and
// well formed, each entry as the pbx section is checked.
func (c *Config) validatePBXes() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	single := c.PBX.Kind != "" && c.PBX.Kind != PBXNone
	if len(c.PBXes) > 0 && single {
		add(errors.New("pbxes: pbx and pbxes are both set: use one (pbx is one PBX; move it into pbxes as an entry to add more)"))
	}
	if len(c.PBXes) == 0 {
		add(validatePBX("pbx", c.PBX, c.Call.Budget))
		return errors.Join(errs...)
	}
	seen := map[string]int{}
	list, _ := c.pbxList()
	for i, e := range list {
		key := fmt.Sprintf("pbxes[%d]", i)
		switch j, dup := seen[e.Name]; {
		case !pbxName.MatchString(e.Name):
			add(fmt.Errorf("%s.name: must be lower-case letters, digits, _ and - (it shows in call ids and metrics), got %q", key, e.Name))
		case dup:
			add(fmt.Errorf("%s.name: %q is also pbxes[%d]'s name: names must be unique", key, e.Name, j))
		default:
			seen[e.Name] = i
		}
		if e.Kind == "" || e.Kind == PBXNone {
			add(fmt.Errorf("%s.kind: must be asterisk or freeswitch, got %q", key, e.Kind))
			continue
		}
		add(validatePBX(key, e.PBXConfig, c.Call.Budget))
	}
	return errors.Join(errs...)
}

// validatePBX checks one PBX section; key ("pbx", "pbxes[1]") starts each
// problem's key.
func validatePBX(key string, p PBXConfig, budget time.Duration) error {
	var err error
	switch p.Kind {
	case "", PBXNone:
		return nil
	case PBXAsterisk:
		err = errors.Join(p.Asterisk.Validate(), checkReserve("pbx.asterisk.apply_reserve", p.Asterisk.ApplyReserve, budget))
	case PBXFreeSWITCH:
		err = errors.Join(p.FreeSWITCH.Validate(), checkReserve("pbx.freeswitch.apply_reserve", p.FreeSWITCH.ApplyReserve, budget))
	default:
		return fmt.Errorf("%s.kind: must be none, asterisk or freeswitch, got %q", key, p.Kind)
	}
	if err == nil || key == "pbx" {
		return err
	}
	// The adapters name their keys pbx.asterisk.…: name the entry instead.
	return errors.New(strings.ReplaceAll(err.Error(), "pbx.", key+"."))
}
