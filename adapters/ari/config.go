package ari

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/callpop/callpop/internal/secret"
)

// PasswordEnv overrides pbx.asterisk.password and password_file when set.
const PasswordEnv = "CALLPOP_PBX_ASTERISK_PASSWORD"

// Config is the `pbx.asterisk` section of callpop.yaml. mapstructure tags are the YAML
// keys; unknown keys are rejected at load.
type Config struct {
	URL          string `mapstructure:"url"`           // Asterisk HTTP base, e.g. http://127.0.0.1:8088 (the /ari prefix is added)
	Username     string `mapstructure:"username"`      // ARI user (ari.conf)
	Password     string `mapstructure:"password"`      // ARI password; prefer password_file or the env override
	PasswordFile string `mapstructure:"password_file"` // file holding the ARI password
	App          string `mapstructure:"app"`           // Stasis application name; distinct per replica

	ApplyReserve      time.Duration `mapstructure:"apply_reserve"`       // budget kept back for setting variables and continuing
	CallerVarsTimeout time.Duration `mapstructure:"caller_vars_timeout"` // bound on reading CALLERID(ani) and CALLERID(num-pres)
	RequestTimeout    time.Duration `mapstructure:"request_timeout"`     // REST calls outside a call's budget (reconcile, continue)
	PingInterval      time.Duration `mapstructure:"ping_interval"`       // WebSocket ping period
	PingTimeout       time.Duration `mapstructure:"ping_timeout"`        // a pong later than this drops the connection
	ReconnectMin      time.Duration `mapstructure:"reconnect_min"`       // first reconnect delay
	ReconnectMax      time.Duration `mapstructure:"reconnect_max"`       // reconnect delay cap
	MaxConnections    int           `mapstructure:"max_connections"`     // HTTP connections to Asterisk at most, WebSocket and both pools together
	MaxCalls          int           `mapstructure:"max_calls"`           // calls enriched at once; beyond, channels are continued at once, unenriched
	ReconcileInterval time.Duration `mapstructure:"reconcile_interval"`  // also reconcile this often while connected; 0 = only after a connect

	Continue ContinueConfig `mapstructure:"continue"`

	FollowLegs bool          `mapstructure:"follow_legs"` // subscribe to enriched channels and report agent legs
	LegTTL     time.Duration `mapstructure:"leg_ttl"`     // forget a followed call after this long
	MaxFollow  int           `mapstructure:"max_follow"`  // bound on calls followed at once

	// PasswordEnvName overrides PasswordEnv: an entry of pbxes reads
	// CALLPOP_PBXES_<NAME>_PASSWORD. Not a configuration key.
	PasswordEnvName string `mapstructure:"-"`
}

// ContinueConfig is where a channel goes on after Stasis; all empty = the next priority.
type ContinueConfig struct {
	Context   string `mapstructure:"context"`
	Extension string `mapstructure:"extension"`
	Priority  int    `mapstructure:"priority"`
	Label     string `mapstructure:"label"`
}

// minConnections is the fewest HTTP connections the adapter works with:
// the WebSocket, one for continues and two for the calls' requests.
const minConnections = 4

// DefaultConfig returns the defaults documented in config.example.yaml.
func DefaultConfig() Config {
	return Config{
		URL:               "http://127.0.0.1:8088",
		Username:          "callpop",
		App:               "callpop",
		ApplyReserve:      20 * time.Millisecond,
		CallerVarsTimeout: 50 * time.Millisecond,
		RequestTimeout:    2 * time.Second,
		PingInterval:      5 * time.Second,
		PingTimeout:       3 * time.Second,
		ReconnectMin:      100 * time.Millisecond,
		ReconnectMax:      10 * time.Second,
		MaxConnections:    32,
		MaxCalls:          1000,
		ReconcileInterval: 30 * time.Second,
		FollowLegs:        true,
		LegTTL:            4 * time.Hour,
		MaxFollow:         50000,
	}
}

// Validate checks the section as a whole; errors name the key ("pbx.asterisk.x: why").
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, why string) { errs = append(errs, fmt.Errorf("pbx.asterisk.%s: %s", key, why)) }
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("url", "must be an http or https URL with a host")
	}
	if c.App == "" || c.App != strings.TrimSpace(c.App) || strings.ContainsAny(c.App, ",/?&# ") {
		bad("app", "must be a non-empty name without spaces, commas, slashes or query characters")
	}
	if c.Password != "" && c.PasswordFile != "" {
		bad("password", "password and password_file can not both be set")
	}
	if c.ApplyReserve < 0 {
		bad("apply_reserve", "must not be negative")
	}
	for key, d := range map[string]time.Duration{
		"caller_vars_timeout": c.CallerVarsTimeout, "request_timeout": c.RequestTimeout,
		"ping_interval": c.PingInterval, "ping_timeout": c.PingTimeout,
		"reconnect_min": c.ReconnectMin, "reconnect_max": c.ReconnectMax, "leg_ttl": c.LegTTL,
	} {
		if d <= 0 {
			bad(key, "must be positive")
		}
	}
	if c.ReconnectMax < c.ReconnectMin {
		bad("reconnect_max", "must not be below reconnect_min")
	}
	if c.ReconcileInterval < 0 {
		bad("reconcile_interval", "must not be negative (0 = only after a connect)")
	}
	if c.MaxCalls <= 0 {
		bad("max_calls", "must be positive")
	}
	if c.MaxConnections < minConnections {
		bad("max_connections", fmt.Sprintf("must be at least %d (the event WebSocket, a control and a per-call pool)", minConnections))
	}
	if c.MaxFollow <= 0 {
		bad("max_follow", "must be positive")
	}
	k := c.Continue
	if k.Label != "" && k.Priority != 0 {
		bad("continue.label", "label and priority can not both be set")
	}
	if k.Priority < 0 {
		bad("continue.priority", "must not be negative")
	}
	if k.Extension != "" && k.Priority == 0 && k.Label == "" {
		bad("continue.priority", "an extension needs a priority or a label")
	}
	for key, v := range map[string]string{"context": k.Context, "extension": k.Extension, "label": k.Label} {
		if strings.ContainsAny(v, ",;|\n\r\t ${}") {
			bad("continue."+key, "must not contain spaces, separators or ${}")
		}
	}
	return errors.Join(errs...)
}

// password resolves the password: env override, then password_file, then password.
func (c *Config) password() (string, error) {
	return secret.Resolve(c.passwordEnv(), c.PasswordFile, c.Password, "pbx.asterisk.password")
}

// passwordEnv is the variable that overrides the password: PasswordEnvName
// when set (an entry of pbxes), else PasswordEnv.
func (c *Config) passwordEnv() string {
	if c.PasswordEnvName != "" {
		return c.PasswordEnvName
	}
	return PasswordEnv
}
