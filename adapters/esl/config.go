package esl

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/callpop/callpop/internal/netallow"
	"github.com/callpop/callpop/internal/secret"
)

// PasswordEnv overrides pbx.freeswitch.password.
const PasswordEnv = "CALLPOP_PBX_FREESWITCH_PASSWORD"

// DefaultPassword is FreeSWITCH's shipped event socket password; callpop
// refuses it unless allow_default_password is set.
const DefaultPassword = "ClueCon"

// Config is the `pbx.freeswitch` section of callpop.yaml. mapstructure tags are the YAML
// keys; unknown keys are rejected at load.
type Config struct {
	// Mode is "outbound" (the dialplan's socket app connects to callpop; the
	// call waits) or "inbound" (callpop connects, takes parked calls, transfers them).
	Mode string `mapstructure:"mode"`
	// Listen is where outbound mode accepts the socket app's connections.
	Listen string `mapstructure:"listen"`
	// Allow lists the sources (CIDRs) whose socket app may connect in
	// outbound mode; others are closed at once. The default, loopback only,
	// is refused on a listener bound beyond loopback.
	Allow []string `mapstructure:"allow"`
	// Address is FreeSWITCH's event socket (inbound mode, and agent-leg events).
	Address string `mapstructure:"address"`
	// Password for the event socket; prefer password_file or CALLPOP_PBX_FREESWITCH_PASSWORD.
	Password string `mapstructure:"password"`
	// PasswordFile holds the password.
	PasswordFile string `mapstructure:"password_file"`
	// PasswordEnvName overrides PasswordEnv: an entry of pbxes reads
	// CALLPOP_PBXES_<NAME>_PASSWORD. Not a configuration key.
	PasswordEnvName string `mapstructure:"-"`
	// AllowDefaultPassword permits "ClueCon" (lab set-ups only).
	AllowDefaultPassword bool `mapstructure:"allow_default_password"`
	// Events opens an event connection to Address in outbound mode for agent-leg
	// life (ringing/answered/ended) and hang-ups. Inbound mode always has it.
	Events bool `mapstructure:"events"`
	// ParkContext is the dialplan context whose parked inbound legs are callpop's (inbound mode).
	ParkContext string `mapstructure:"park_context"`
	// TransferTo is where inbound mode sends a call once its variables are set.
	TransferTo TransferConfig `mapstructure:"transfer_to"`
	// ApplyReserve is kept from the budget for setting variables and releasing the call.
	ApplyReserve time.Duration `mapstructure:"apply_reserve"`
	// CommandTimeout bounds one command on the event connection; a connection
	// with a reply older than this is dropped and redialled.
	CommandTimeout time.Duration `mapstructure:"command_timeout"`
	// ReconnectMin / ReconnectMax bound the redial backoff (with jitter).
	ReconnectMin time.Duration `mapstructure:"reconnect_min"`
	ReconnectMax time.Duration `mapstructure:"reconnect_max"`
	// MaxCalls bounds calls handled at once; beyond it calls are released unenriched.
	MaxCalls int `mapstructure:"max_calls"`
}

// TransferConfig is pbx.freeswitch.transfer_to: the uuid_transfer destination.
type TransferConfig struct {
	// Extension; "" = the call's own destination number.
	Extension string `mapstructure:"extension"`
	Dialplan  string `mapstructure:"dialplan"`
	Context   string `mapstructure:"context"`
}

// DefaultConfig returns the defaults documented in config.example.yaml.
func DefaultConfig() Config {
	return Config{
		Mode:           "outbound",
		Listen:         "127.0.0.1:8084",
		Allow:          slices.Clone(netallow.DefaultAllow),
		Address:        "127.0.0.1:8021",
		Events:         true,
		ParkContext:    "callpop",
		TransferTo:     TransferConfig{Dialplan: "XML", Context: "default"},
		ApplyReserve:   20 * time.Millisecond,
		CommandTimeout: 2 * time.Second,
		ReconnectMin:   100 * time.Millisecond,
		ReconnectMax:   5 * time.Second,
		MaxCalls:       2000,
	}
}

// needsSocket reports whether callpop connects to FreeSWITCH's event socket.
func (c *Config) needsSocket() bool { return c.Mode == "inbound" || c.Events }

// Validate checks the section as a whole; errors name the key ("pbx.freeswitch.x: why").
func (c *Config) Validate() error {
	const k = "pbx.freeswitch."
	var errs []error
	bad := func(key, why string, a ...any) { errs = append(errs, fmt.Errorf(k+key+": "+why, a...)) }
	switch c.Mode {
	case "outbound", "inbound":
	default:
		bad("mode", "must be outbound or inbound, not %q", c.Mode)
	}
	if c.Mode == "outbound" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("listen", "must be host:port (%v)", err)
		}
		if _, err := netallow.Parse(k+"allow", c.Allow); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, netallow.CheckBind(c.Listen, c.Allow, k+"allow", "CALLPOP_PBX_FREESWITCH_ALLOW"))
	}
	if c.needsSocket() {
		if _, _, err := net.SplitHostPort(c.Address); err != nil {
			bad("address", "must be host:port (%v)", err)
		}
		if err := c.checkPassword(bad); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Mode == "inbound" {
		if !isToken(c.ParkContext) {
			bad("park_context", "must be a context name (letters, digits, - _ .)")
		}
		if c.TransferTo.Extension != "" && !isToken(c.TransferTo.Extension) {
			bad("transfer_to.extension", "must be an extension (letters, digits, + - _ . *)")
		}
		if !isToken(c.TransferTo.Dialplan) {
			bad("transfer_to.dialplan", "must be a dialplan name (XML)")
		}
		if !isToken(c.TransferTo.Context) {
			bad("transfer_to.context", "must be a context name")
		}
	}
	if c.ApplyReserve < 0 {
		bad("apply_reserve", "must not be negative")
	}
	if c.CommandTimeout <= 0 {
		bad("command_timeout", "must be positive")
	}
	if c.ReconnectMin <= 0 || c.ReconnectMax < c.ReconnectMin {
		bad("reconnect_max", "reconnect_min must be positive and not above reconnect_max")
	}
	if c.MaxCalls <= 0 {
		bad("max_calls", "must be positive")
	}
	return errors.Join(errs...)
}

// checkPassword checks the event socket's password: set once, not
// FreeSWITCH's default unless allowed, one line. It reports through bad, and
// returns an error resolving it (a password_file that cannot be read).
func (c *Config) checkPassword(bad func(key, why string, a ...any)) error {
	if c.Password != "" && c.PasswordFile != "" {
		bad("password_file", "password and password_file can not both be set")
	}
	pw, err := c.password()
	switch {
	case err != nil:
		return err
	case pw == "":
		if c.Mode == "outbound" {
			bad("password", "required for the event connection (set password_file or %s), or set pbx.freeswitch.events: false (no agent-leg pops)", c.passwordEnv())
		} else {
			bad("password", "required (set password_file or %s)", c.passwordEnv())
		}
	case pw == DefaultPassword && !c.AllowDefaultPassword:
		bad("password", "is FreeSWITCH's default %q; change it in event_socket.conf.xml or set allow_default_password: true", DefaultPassword)
	case strings.ContainsAny(pw, "\r\n\x00"):
		bad("password", "must not contain line breaks")
	}
	return nil
}

// password resolves the password: env, then file, then the key.
func (c *Config) password() (string, error) {
	return secret.Resolve(c.passwordEnv(), c.PasswordFile, c.Password, "pbx.freeswitch.password")
}

func isToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '+' || c == '*' || c == '#':
		default:
			return false
		}
	}
	return true
}

// passwordEnv is the variable that overrides the password: PasswordEnvName
// when set (an entry of pbxes), else PasswordEnv.
func (c *Config) passwordEnv() string {
	if c.PasswordEnvName != "" {
		return c.PasswordEnvName
	}
	return PasswordEnv
}
