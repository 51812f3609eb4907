package callbacks

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers/v2"
)

// Config is the `callbacks` section of callpop.yaml.
type Config struct {
	// Enabled mounts POST /v1/callbacks and runs the scheduler (default false).
	Enabled bool `mapstructure:"enabled"`
	// PBX names the PBX that dials (a pbxes entry's name, or the single pbx
	// section's kind); required with several PBXs.
	PBX string `mapstructure:"pbx"`
	// AllowedRegions are the CLDR regions (ISO 3166: GB, IE) whose numbers
	// may be called back; required when enabled.
	AllowedRegions []string `mapstructure:"allowed_regions"`
	// Hours are when callbacks may be dialled ("mon-fri 08:00-18:00"); empty = any time.
	Hours []string `mapstructure:"hours"`
	// Timezone the hours are read in (IANA name); empty = router.timezone, else UTC.
	Timezone string `mapstructure:"timezone"`
	// Attempts is how many times a request is dialled on busy / no answer (default 3).
	Attempts int `mapstructure:"attempts"`
	// RetryAfter is the wait between two attempts (default 5m).
	RetryAfter time.Duration `mapstructure:"retry_after"`
	// RingTimeout is how long the customer's phone may ring (default 30s).
	RingTimeout time.Duration `mapstructure:"ring_timeout"`
	// MaxPerMinute bounds originates a minute, across all instances sharing the Redis (default 30).
	MaxPerMinute int `mapstructure:"max_per_minute"`
	// MaxPerNumber bounds requests (new or updating) for one number in an hour (default 5; 429 beyond).
	MaxPerNumber int `mapstructure:"max_per_number"`
	// MaxAhead is how far ahead `when` may be (default 336h, 14 days).
	MaxAhead time.Duration `mapstructure:"max_ahead"`
	// CallerID is what the customer's phone shows.
	CallerID CallerIDConfig `mapstructure:"caller_id"`
	// Asterisk and FreeSWITCH say how the PBX dials and where the answered channel goes.
	Asterisk   DialConfig `mapstructure:"asterisk"`
	FreeSWITCH DialConfig `mapstructure:"freeswitch"`
}

// CallerIDConfig is callbacks.caller_id.
type CallerIDConfig struct {
	Number string `mapstructure:"number"`
	Name   string `mapstructure:"name"`
}

// DialConfig is callbacks.asterisk / callbacks.freeswitch.
type DialConfig struct {
	// Endpoint is the dial string, {number} standing for the E.164 number:
	// "PJSIP/{number}@trunk", "sofia/gateway/trunk/{number}".
	Endpoint string `mapstructure:"endpoint"`
	// Context and Extension are where the answered channel goes.
	Context   string `mapstructure:"context"`
	Extension string `mapstructure:"extension"`
}

// The PBX kinds a Service dials on.
const (
	KindAsterisk   = "asterisk"
	KindFreeSWITCH = "freeswitch"
)

// DefaultConfig returns the defaults documented in config.example.yaml.
func DefaultConfig() Config {
	return Config{
		Attempts:     3,
		RetryAfter:   5 * time.Minute,
		RingTimeout:  30 * time.Second,
		MaxPerMinute: 30,
		MaxPerNumber: 5,
		MaxAhead:     14 * 24 * time.Hour,
		Asterisk:     DialConfig{Context: "callpop-callback", Extension: "s"},
		FreeSWITCH:   DialConfig{Context: "callpop-callback", Extension: "callback"},
	}
}

// Limits on the section's values.
const (
	maxAttempts    = 20
	maxRingTimeout = 5 * time.Minute
	maxMaxAhead    = 90 * 24 * time.Hour
)

// Validate checks the section as a whole; errors name the key
// ("callbacks.x: why"). A disabled section is checked too: a mistake must
// not wait for the day it is switched on.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("callbacks.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if c.Enabled && len(c.AllowedRegions) == 0 {
		bad("allowed_regions", "required when callbacks are enabled: the regions (e.g. [GB, IE]) whose numbers callpop may dial")
	}
	supported := phonenumbers.GetSupportedRegions()
	for i, r := range c.AllowedRegions {
		if !supported[strings.ToUpper(strings.TrimSpace(r))] {
			bad(fmt.Sprintf("allowed_regions[%d]", i), "%q is not a known region (ISO 3166 / CLDR, e.g. GB)", r)
		}
	}
	if _, err := ParseHours(c.Hours); err != nil {
		errs = append(errs, fmt.Errorf("callbacks.hours%w", err))
	}
	if c.Timezone != "" {
		if _, err := time.LoadLocation(c.Timezone); err != nil {
			bad("timezone", "%q is not a time zone (an IANA name such as Europe/London)", c.Timezone)
		}
	}
	if c.Attempts < 1 || c.Attempts > maxAttempts {
		bad("attempts", "must be between 1 and %d (default 3), got %d", maxAttempts, c.Attempts)
	}
	if c.RetryAfter <= 0 {
		bad("retry_after", "must be above 0 (default 5m), got %s", c.RetryAfter)
	}
	if c.RingTimeout < time.Second || c.RingTimeout > maxRingTimeout {
		bad("ring_timeout", "must be between 1s and %s (default 30s), got %s", maxRingTimeout, c.RingTimeout)
	}
	if c.MaxPerMinute < 1 {
		bad("max_per_minute", "must be at least 1 (default 30), got %d", c.MaxPerMinute)
	}
	if c.MaxPerNumber < 1 {
		bad("max_per_number", "must be at least 1 (default 5), got %d", c.MaxPerNumber)
	}
	if c.MaxAhead <= 0 || c.MaxAhead > maxMaxAhead {
		bad("max_ahead", "must be between 1s and %s (default 336h), got %s", maxMaxAhead, c.MaxAhead)
	}
	if n := c.CallerID.Number; n != "" && !callerIDNumber.MatchString(n) {
		bad("caller_id.number", "must be digits with an optional leading +, got %q", n)
	}
	if len(c.CallerID.Name) > 64 || strings.ContainsAny(c.CallerID.Name, "\"\\${}`\r\n") {
		bad("caller_id.name", "at most 64 characters, none of \" \\ $ { } ` or line breaks")
	}
	for kind, d := range map[string]DialConfig{KindAsterisk: c.Asterisk, KindFreeSWITCH: c.FreeSWITCH} {
		errs = append(errs, d.validate("callbacks."+kind)...)
	}
	return errors.Join(errs...)
}

// CheckDial is what main adds once it knows which PBX kind dials: that
// PBX's endpoint, context and extension are set.
func (c *Config) CheckDial(kind string) error {
	d, key := c.Dial(kind), "callbacks."+kind
	var errs []error
	if d.Endpoint == "" {
		errs = append(errs, fmt.Errorf("%s.endpoint: required when callbacks are enabled on a %s PBX: the dial string with {number} (e.g. %q)",
			key, kind, map[string]string{KindAsterisk: "PJSIP/{number}@trunk", KindFreeSWITCH: "sofia/gateway/trunk/{number}"}[kind]))
	}
	if d.Context == "" {
		errs = append(errs, fmt.Errorf("%s.context: required when callbacks are enabled", key))
	}
	if d.Extension == "" {
		errs = append(errs, fmt.Errorf("%s.extension: required when callbacks are enabled", key))
	}
	return errors.Join(errs...)
}

// Dial is the dial configuration of kind.
func (c *Config) Dial(kind string) DialConfig {
	if kind == KindFreeSWITCH {
		return c.FreeSWITCH
	}
	return c.Asterisk
}

func (d DialConfig) validate(key string) []error {
	var errs []error
	if d.Endpoint != "" {
		switch {
		case strings.Count(d.Endpoint, "{number}") != 1:
			errs = append(errs, fmt.Errorf("%s.endpoint: must hold {number} once (the E.164 number), got %q", key, d.Endpoint))
		case !dialString.MatchString(strings.Replace(d.Endpoint, "{number}", "+1", 1)):
			errs = append(errs, fmt.Errorf("%s.endpoint: only letters, digits and / @ : . _ - + = ; may surround {number}, got %q", key, d.Endpoint))
		}
	}
	if d.Context != "" && !dialToken.MatchString(d.Context) {
		errs = append(errs, fmt.Errorf("%s.context: letters, digits, _ - . only, got %q", key, d.Context))
	}
	if d.Extension != "" && !dialToken.MatchString(d.Extension) {
		errs = append(errs, fmt.Errorf("%s.extension: letters, digits, _ - . + only, got %q", key, d.Extension))
	}
	return errs
}

var (
	callerIDNumber = regexp.MustCompile(`^\+?[0-9]{1,20}$`)
	dialString     = regexp.MustCompile(`^[A-Za-z0-9/@:._+=;-]+$`)
	dialToken      = regexp.MustCompile(`^[A-Za-z0-9_.+-]{1,64}$`)
)
