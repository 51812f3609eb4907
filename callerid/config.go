package callerid

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nyaruka/phonenumbers/v2"
)

// Config is the `numbers` section of callpop.yaml. mapstructure tags are the YAML
// keys; unknown keys are rejected at load.
type Config struct {
	// DefaultRegion is the ISO 3166 region national numbers are read in ("US", "NL").
	DefaultRegion string `mapstructure:"default_region"`
	// Anonymous lists caller-ID values (case-insensitive) that mean "withheld".
	Anonymous []string `mapstructure:"anonymous"`
	// CacheSize bounds the memo of parsed numbers.
	CacheSize int `mapstructure:"cache_size"`
	// Profiles choose a region by the dialled number (DNIS).
	Profiles []Profile `mapstructure:"profiles"`
}

// Profile maps dialled numbers to the region callers' national numbers are read in.
type Profile struct {
	// DNIS lists dialled numbers (digits compared; a trailing '*' matches a prefix).
	DNIS []string `mapstructure:"dnis"`
	// Region is the ISO 3166 region for calls to these numbers.
	Region string `mapstructure:"region"`
}

// DefaultAnonymous is the default list of withheld caller-ID values.
var DefaultAnonymous = []string{"anonymous", "unknown", "restricted", "private", "unavailable", "withheld"}

// DefaultConfig returns the defaults documented in config.example.yaml.
func DefaultConfig() Config {
	return Config{
		DefaultRegion: "US",
		Anonymous:     append([]string(nil), DefaultAnonymous...),
		CacheSize:     10000,
	}
}

// Validate checks the section as a whole; errors name the key ("numbers.x: why").
func (c *Config) Validate() error {
	var errs []error
	if !knownRegion(c.DefaultRegion) {
		errs = append(errs, fmt.Errorf("numbers.default_region: %q is not a known ISO 3166 region", c.DefaultRegion))
	}
	if c.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("numbers.cache_size: must not be negative"))
	}
	for i, a := range c.Anonymous {
		if strings.TrimSpace(a) == "" {
			errs = append(errs, fmt.Errorf("numbers.anonymous[%d]: must not be empty", i))
		}
	}
	for i, p := range c.Profiles {
		if len(p.DNIS) == 0 {
			errs = append(errs, fmt.Errorf("numbers.profiles[%d].dnis: must list at least one number", i))
		}
		for j, d := range p.DNIS {
			if !ValidDNIS(d) {
				errs = append(errs, fmt.Errorf("numbers.profiles[%d].dnis[%d]: %q has no digits", i, j, d))
			}
		}
		if !knownRegion(p.Region) {
			errs = append(errs, fmt.Errorf("numbers.profiles[%d].region: %q is not a known ISO 3166 region", i, p.Region))
		}
	}
	return errors.Join(errs...)
}

func knownRegion(r string) bool {
	return r != "" && phonenumbers.GetSupportedRegions()[strings.ToUpper(r)]
}
