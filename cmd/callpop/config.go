package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/callpop/callpop/adapters/ari"
	"github.com/callpop/callpop/adapters/esl"
	"github.com/callpop/callpop/callbacks"
	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/internal/apiauth"
	"github.com/callpop/callpop/internal/tlsfiles"
	"github.com/callpop/callpop/popper"
	"github.com/callpop/callpop/router"
)

// Config is the whole callpop.yaml: the process's own keys and each
// package's section, in the order config.example.yaml lists them.
type Config struct {
	Listen    string           `mapstructure:"listen"`
	TLS       tlsfiles.Config  `mapstructure:"tls"`
	API       apiauth.Config   `mapstructure:"api"`
	Call      CallConfig       `mapstructure:"call"`
	Numbers   callerid.Config  `mapstructure:"numbers"`
	CRM       crm.Config       `mapstructure:"crm"`
	Cache     crm.CacheConfig  `mapstructure:"cache"`
	Router    router.Config    `mapstructure:"router"`
	PBX       PBXConfig        `mapstructure:"pbx"`
	PBXes     []PBXEntry       `mapstructure:"pbxes"`
	Popper    popper.Config    `mapstructure:"popper"`
	Callbacks callbacks.Config `mapstructure:"callbacks"`
	Log       LogConfig        `mapstructure:"log"`
}

// CallConfig is the `call` section.
type CallConfig struct {
	// Budget is how long a call may wait on callpop, from the moment its event is read.
	Budget time.Duration `mapstructure:"budget"`
	// DrainDelay is how long SIGTERM keeps taking calls with /readyz at 503,
	// so load balancers see the instance leave first.
	DrainDelay time.Duration `mapstructure:"drain_delay"`
	// DrainTimeout bounds how long SIGTERM then waits for work in flight.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
}

// PBXConfig is the `pbx` section: which adapter runs, and each adapter's settings.
type PBXConfig struct {
	Kind       string     `mapstructure:"kind"` // none | asterisk | freeswitch
	Asterisk   ari.Config `mapstructure:"asterisk"`
	FreeSWITCH esl.Config `mapstructure:"freeswitch"`
}

// LogConfig is the `log` section.
type LogConfig struct {
	Level            string `mapstructure:"level"`  // debug | info | warn | error; "" = the command's default
	Format           string `mapstructure:"format"` // json | text
	MaskPersonalData bool   `mapstructure:"mask_personal_data"`
}

// The values of pbx.kind.
const (
	PBXNone       = "none"
	PBXAsterisk   = "asterisk"
	PBXFreeSWITCH = "freeswitch"
)

// Limits of call.budget: a call must not wait on callpop for long.
const (
	maxBudget       = 10 * time.Second
	maxDrainTimeout = 5 * time.Minute
	maxDrainDelay   = 5 * time.Minute
)

// drainDelay is call.drain_delay's default; defaultDrainDelay is what
// DefaultConfig uses (0 in this package's tests, which set TestMain).
const drainDelay = 5 * time.Second

var defaultDrainDelay = drainDelay

// keyDelimiter separates key levels inside viper.
const keyDelimiter = "::"

// defaultConfigPath is where --config points when it is not given.
const defaultConfigPath = "./callpop.yaml"

// DefaultConfig returns the embedded defaults: every section's DefaultConfig.
func DefaultConfig() Config {
	return Config{
		Listen:  "127.0.0.1:8080",
		API:     apiauth.DefaultConfig(),
		Call:    CallConfig{Budget: 300 * time.Millisecond, DrainDelay: defaultDrainDelay, DrainTimeout: 10 * time.Second},
		Numbers: callerid.DefaultConfig(),
		CRM:     crm.DefaultConfig(),
		Cache:   crm.DefaultCacheConfig(),
		Router:  router.DefaultConfig(),
		PBX: PBXConfig{
			Kind:       PBXNone,
			Asterisk:   ari.DefaultConfig(),
			FreeSWITCH: esl.DefaultConfig(),
		},
		Popper:    popper.DefaultConfig(),
		Callbacks: callbacks.DefaultConfig(),
		Log:       LogConfig{Format: "json", MaskPersonalData: true}, // Level unset: info for run, warn for one-shot commands
	}
}

// loadedConfig is a Config and where it came from.
type loadedConfig struct {
	Config
	Path     string   // the file read; "" when running on the embedded defaults
	Read     bool     // the file was read, or there was none to read (embedded defaults)
	Decoded  bool     // Config holds the file's values (it may still be invalid; keys that failed keep their defaults)
	Warnings []string // things worth a log line that do not stop start-up
}

// configFromCmd loads the file named by --config (or $CALLPOP_CONFIG). A
// missing default file means the embedded defaults; a missing file that was
// asked for is an error. The result is validated.
func configFromCmd(cmd *cobra.Command) (loadedConfig, error) {
	path := defaultConfigPath
	explicit := false
	if f := cmd.Flags().Lookup("config"); f != nil {
		path = f.Value.String()
		explicit = f.Changed
	}
	if !explicit {
		if p := os.Getenv("CALLPOP_CONFIG"); p != "" {
			path, explicit = p, true
		}
	}
	return loadConfig(path, explicit)
}

// loadConfig reads path over the defaults, applies CALLPOP_* environment
// overrides and validates the result. Errors name the key, and the
// environment variable when the value came from one; every problem is
// reported, not only the first kind found.
func loadConfig(path string, explicit bool) (loadedConfig, error) {
	var data []byte
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			data = b
		case errors.Is(err, fs.ErrNotExist) && !explicit:
			path = ""
		default:
			return loadedConfig{}, fmt.Errorf("config: %w", err)
		}
	}
	lc := loadedConfig{Path: path, Read: true, Warnings: unknownEnv(os.Environ(), data)}
	cfg, err := decodeConfig(data, os.LookupEnv)
	if errors.Is(err, errNotYAML) {
		return lc, withFile(path, err)
	}
	// Validate even when some keys did not decode (they keep their
	// defaults): an unknown key must not hide a broken rule elsewhere. The
	// decoded config goes back too, for check-config's report.
	lc.Config, lc.Decoded = cfg, true
	if err := errors.Join(err, cfg.Validate()); err != nil {
		return lc, withFile(path, withEnvOrigin(err, os.LookupEnv))
	}
	return lc, nil
}

// problemKey matches a problem line that starts with the key it is about:
// "crm.sources[0].url: ...", "router.tier_priority[gold]: ...",
// `router.rules[0] "vip": ...`.
var problemKey = regexp.MustCompile(`^([a-z0-9_]+(?:\.[a-z0-9_]+|\[[^\]]*\])*)((?: "(?:[^"\\]|\\.)*"| \(unnamed\))?: .*)$`)

// withEnvOrigin names the environment variable behind each problem whose
// key (or the list or map holding it) a variable set: the environment wins
// over the file, so the bad value came from there.
// `call.budget (CALLPOP_CALL_BUDGET=200): "200" is not a duration`.
func withEnvOrigin(err error, lookupEnv func(string) (string, bool)) error {
	lines := strings.Split(err.Error(), "\n")
	changed := false
	for i, line := range lines {
		m := problemKey.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if origin := envOrigin(m[1], lookupEnv); origin != "" {
			lines[i] = m[1] + " (" + origin + ")" + m[2]
			changed = true
		}
	}
	if !changed {
		return err
	}
	return errors.New(strings.Join(lines, "\n"))
}

// overridable is the set of keys an environment variable overrides.
var overridable = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, k := range envKeys(reflect.TypeFor[Config]()) {
		m[k] = true
	}
	return m
})

// envOrigin returns "NAME=value" for the variable that set key or the
// nearest list, map or value holding it; "" when none did. Secrets and JSON
// (which may hold a DSN or a token) show the name only.
func envOrigin(key string, lookupEnv func(string) (string, bool)) string {
	for k := key; k != ""; k = k[:max(strings.LastIndexAny(k, ".["), 0)] {
		if !overridable()[k] {
			continue
		}
		name := envName(k)
		val, ok := lookupEnv(name)
		if !ok {
			return ""
		}
		last := k[strings.LastIndex(k, ".")+1:]
		trimmed := strings.TrimSpace(val)
		if (strings.Contains(last, "password") || strings.Contains(last, "secret")) && !strings.HasSuffix(last, "_file") ||
			strings.HasPrefix(trimmed, "[") || strings.HasPrefix(trimmed, "{") {
			return name
		}
		if u, err := url.Parse(trimmed); err == nil && u.User != nil {
			val = u.Redacted()
		}
		if q := strconv.Quote(val); val == "" || q[1:len(q)-1] != val || strings.ContainsAny(val, " \t") {
			val = q
		}
		return name + "=" + val
	}
	return ""
}

// unknownEnv names CALLPOP_* variables that override no key: most likely a
// typo (CALLPOP_CALL_BUGDET). Variables the packages read themselves, test
// variables, and variables the file refers to (${NAME} in a header) are fine.
func unknownEnv(environ []string, file []byte) []string {
	known := map[string]bool{"CALLPOP_CONFIG": true, "CALLPOP_ARTIFACTS": true}
	for _, k := range envKeys(reflect.TypeFor[Config]()) {
		known[envName(k)] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "CALLPOP_") || known[name] ||
			strings.HasPrefix(name, "CALLPOP_TEST_") ||
			strings.HasPrefix(name, "CALLPOP_CRM_") && strings.HasSuffix(name, "_DSN") || // crm: a source's DSN
			strings.HasPrefix(name, "CALLPOP_POPPER_WEBHOOKS_") || // popper: a webhook's secret
			apiauth.IsKeyEnv(name) || // api: a key's value
			isPBXesEnv(name) || // pbxes: an entry's password
			bytes.Contains(file, []byte(name)) {
			continue
		}
		out = append(out, fmt.Sprintf("environment variable %s overrides no configuration key (a typo?)", name))
	}
	sort.Strings(out)
	return out
}

func withFile(path string, err error) error {
	if path == "" {
		return fmt.Errorf("config (embedded defaults): %w", err)
	}
	return fmt.Errorf("config %s: %w", path, err)
}

// errNotYAML: the file could not be parsed, so nothing of it was decoded.
var errNotYAML = errors.New("not valid YAML")

// decodeConfig decodes YAML data (may be empty) and environment overrides over
// DefaultConfig. Unknown keys and values of the wrong type are errors naming
// the key; it does not validate. With such errors the Config still holds
// every key that did decode (the others keep their defaults), so it can be
// validated for the rest of the report.
func decodeConfig(data []byte, lookupEnv func(string) (string, bool)) (Config, error) {
	// "::" between key levels, so a map key holding a dot (a header name, an
	// extra field "account.manager") stays one key.
	v := viper.NewWithOptions(viper.KeyDelimiter(keyDelimiter))
	v.SetConfigType("yaml")
	if len(bytes.TrimSpace(data)) > 0 {
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			return Config{}, fmt.Errorf("%w: %w", errNotYAML, err)
		}
	}
	// Bind every value key to its variable by name (not AutomaticEnv, which
	// only sees keys the file or defaults already hold). Viper reads the
	// variable at Get time, so take the value from lookupEnv instead, which
	// keeps tests independent of the process environment.
	keys := envKeys(reflect.TypeFor[Config]())
	known := make(map[string]bool, len(keys))
	for _, key := range keys {
		known[key] = true
	}
	var fromEnv []string
	for _, key := range keys {
		if val, ok := lookupEnv(envName(key)); ok {
			v.Set(strings.ReplaceAll(key, ".", keyDelimiter), val)
			fromEnv = append(fromEnv, key)
		}
	}
	// Decode over the defaults so absent keys keep them; ZeroFields makes a
	// given list or map replace the default rather than merge into it.
	cfg := DefaultConfig()
	err := v.UnmarshalExact(&cfg, viper.DecodeHook(decodeHooks()), func(dc *mapstructure.DecoderConfig) {
		dc.ZeroFields = true
	})
	if err != nil {
		err = decodeErrors(err)
	}
	// A secret from the environment wins over its sibling in the file:
	// CALLPOP_CACHE_REDIS_PASSWORD set clears cache.redis.password_file,
	// and a *_FILE variable clears the inline value.
	for _, key := range fromEnv {
		sibling, ok := strings.CutSuffix(key, "_file")
		if !ok {
			sibling = key + "_file"
		}
		if known[sibling] && !slices.Contains(fromEnv, sibling) {
			clearKey(reflect.ValueOf(&cfg).Elem(), strings.Split(sibling, "."))
		}
	}
	return cfg, err
}

// clearKey zeroes the field at path (YAML key names) under v.
func clearKey(v reflect.Value, path []string) {
	for len(path) > 0 {
		t := v.Type()
		found := false
		for i := range t.NumField() {
			name, squash := keyName(t.Field(i))
			if squash {
				continue
			}
			if name == path[0] {
				v, path, found = v.Field(i), path[1:], true
				break
			}
		}
		if !found || (len(path) > 0 && v.Kind() != reflect.Struct) {
			return
		}
	}
	v.Set(reflect.Zero(v.Type()))
}

// decodeHooks turn YAML and environment strings into durations, lists and
// maps: "300ms"; "a,b" or a YAML/JSON list; a JSON object or list for a map
// or a list of sections given in one environment variable.
func decodeHooks() mapstructure.DecodeHookFunc {
	return mapstructure.ComposeDecodeHookFunc(
		durationHook,
		jsonStringHook,
		pbxEntryHook,
		listHook,
		mapstructure.TextUnmarshallerHookFunc(),
	)
}

// durationHook parses "300ms" and rejects bare numbers, which would otherwise
// silently mean nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.String:
		s := strings.TrimSpace(data.(string))
		if s == "" || s == "0" {
			return time.Duration(0), nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration (use a unit: 300ms, 2s, 10m)", s)
		}
		return d, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if from == durationType {
			return data, nil
		}
		if reflect.ValueOf(data).IsZero() {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("%v is not a duration (use a unit: 300ms, 2s, 10m)", data)
	}
	return data, nil
}

// jsonStringHook lets one string (an environment variable) carry a map or a
// list of sections as JSON: CALLPOP_CRM_SOURCES='[{"name":"main",...}]'.
func jsonStringHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String {
		return data, nil
	}
	s := strings.TrimSpace(data.(string))
	switch {
	case to.Kind() == reflect.Map && strings.HasPrefix(s, "{"):
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			return nil, fmt.Errorf("not a JSON object: %w", err)
		}
		return m, nil
	case to.Kind() == reflect.Slice && strings.HasPrefix(s, "["):
		var l []any
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			return nil, fmt.Errorf("not a JSON list: %w", err)
		}
		return l, nil
	case to.Kind() == reflect.Map && s == "":
		return map[string]any{}, nil
	}
	return data, nil
}

// listHook splits "a, b" into a list of values (sections need JSON).
func listHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice {
		return data, nil
	}
	if isSection(to.Elem()) {
		return nil, errors.New("a list of sections: give it in YAML, or as a JSON list in the environment")
	}
	s := strings.TrimSpace(data.(string))
	if s == "" {
		return []string{}, nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts, nil
}

// decodeErrors rewrites mapstructure's errors as "key: why", one per line,
// unknown keys spelled out in full.
func decodeErrors(err error) error {
	var msgs []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		de, ok := err.(*mapstructure.DecodeError)
		if !ok {
			if inner := errors.Unwrap(err); inner != nil {
				walk(inner)
				return
			}
			msgs = append(msgs, err.Error())
			return
		}
		inner := de.Unwrap()
		if j, ok := inner.(interface{ Unwrap() []error }); ok {
			walk(errors.Join(j.Unwrap()...))
			return
		}
		name := de.Name()
		msg := inner.Error()
		if keys, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
			for _, k := range strings.Split(keys, ", ") {
				if name != "" {
					k = name + "." + k
				}
				if to, ok := renamedKeys[k]; ok {
					msgs = append(msgs, k+": renamed: "+to)
					continue
				}
				msgs = append(msgs, k+": unknown key")
			}
			return
		}
		if name == "" {
			msgs = append(msgs, msg)
			return
		}
		msgs = append(msgs, name+": "+msg)
	}
	walk(err)
	sort.Strings(msgs)
	return errors.New(strings.Join(msgs, "\n"))
}

// Validate checks the whole configuration: the process's own keys, every
// section, and how they fit together. All problems are reported, one a line.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(validateListen("listen", c.Listen))
	add(c.TLS.Validate())
	add(apiauth.CheckScopes("tls.client_scopes", c.TLS.ClientScopes))
	add(c.API.Validate())
	switch {
	case c.Call.Budget <= 0:
		add(fmt.Errorf("call.budget: must be above 0 (default 300ms), got %s", c.Call.Budget))
	case c.Call.Budget > maxBudget:
		add(fmt.Errorf("call.budget: must be at most %s: a call must not wait on callpop longer, got %s", maxBudget, c.Call.Budget))
	}
	if c.Call.DrainDelay < 0 || c.Call.DrainDelay > maxDrainDelay {
		add(fmt.Errorf("call.drain_delay: must be between 0 and %s, got %s", maxDrainDelay, c.Call.DrainDelay))
	}
	if c.Call.DrainTimeout < 0 || c.Call.DrainTimeout > maxDrainTimeout {
		add(fmt.Errorf("call.drain_timeout: must be between 0 and %s, got %s", maxDrainTimeout, c.Call.DrainTimeout))
	}
	add(c.Numbers.Validate())
	add(c.CRM.Validate())
	add(c.Cache.Validate())
	add(c.Router.Validate())
	add(c.Router.CheckSources(c.sourceNames()))
	add(checkReserve("router.answer_reserve", c.Router.AnswerReserve, c.Call.Budget))
	add(c.validatePBXes())
	add(c.Popper.Validate())
	add(c.Callbacks.Validate())
	add(c.validateCallbacks())
	switch strings.ToLower(c.Log.Level) {
	case "", "debug", "info", "warn", "warning", "error":
	default:
		add(fmt.Errorf("log.level: must be debug, info, warn or error, got %q", c.Log.Level))
	}
	switch strings.ToLower(c.Log.Format) {
	case "json", "text":
	default:
		add(fmt.Errorf("log.format: must be json or text, got %q", c.Log.Format))
	}
	return errors.Join(errs...)
}

// renamedKeys are keys of earlier releases, each with what replaced it:
// a config written for one says so rather than "unknown key".
var renamedKeys = map[string]string{
	"pbx.asterisk.max_conns": "use pbx.asterisk.max_connections (the HTTP connections to Asterisk, both pools together, default 32)",
}

// errNoCRMSources is why `run` refuses a config without crm.sources.
var errNoCRMSources = errors.New("crm.sources: none configured: `callpop run` does not serve the embedded sample customers " +
	"unless asked to; configure crm.sources, or set crm.sample: true (CALLPOP_CRM_SAMPLE=true) to run on the sample")

// runCRM says what `run` makes of the crm section. Without crm.sources the
// CRM is the embedded sample: made-up customers a production instance must
// not show, so run refuses unless crm.sample asks for it (and then warns).
func (c *Config) runCRM() (warning string, err error) {
	switch {
	case len(c.CRM.Sources) > 0:
		return "", nil
	case c.CRM.Sample:
		return "crm.sample is true and crm.sources empty: `callpop run` serves the embedded sample customers (made-up data)", nil
	}
	return "", errNoCRMSources
}

// sourceNames lists the CRM sources a router profile may name; with none
// configured the embedded sample CSV is the one source.
func (c *Config) sourceNames() []string {
	if len(c.CRM.Sources) == 0 {
		return []string{"sample"}
	}
	names := make([]string, 0, len(c.CRM.Sources))
	for _, s := range c.CRM.Sources {
		names = append(names, s.Name)
	}
	return names
}

// checkReserve: the time an adapter keeps back for applying the decision
// must leave most of the budget to the decision itself.
func checkReserve(key string, reserve, budget time.Duration) error {
	if budget > 0 && reserve*2 > budget {
		return fmt.Errorf("%s: must be at most half of call.budget (%s), got %s", key, budget, reserve)
	}
	return nil
}

// validateListen checks a host:port listen address.
func validateListen(key, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: must be host:port, got %q", key, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s: port must be a number 0-65535, got %q", key, port)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /\\") {
		return fmt.Errorf("%s: bad host %q", key, host)
	}
	return nil
}
