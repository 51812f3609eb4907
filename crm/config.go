package crm

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/callpop/callpop/internal/tlsfiles"
)

// Config is the `crm` section of callpop.yaml. mapstructure tags are the YAML
// keys; unknown keys are rejected at load.
type Config struct {
	// Timeout is the default per-source timeout. It may exceed call.budget: a
	// late answer still fills the cache for the next call.
	Timeout time.Duration `mapstructure:"timeout"`
	// Region is the default region for numbers in CSV sources ("" = US).
	Region string `mapstructure:"region"`
	// Breaker configures the circuit breaker of every source.
	Breaker BreakerConfig `mapstructure:"breaker"`
	// Sample lets `callpop run` serve the embedded sample CSV when Sources
	// is empty; without it run refuses to start, so a production instance
	// never shows made-up customers. lookup and demo use the sample anyway.
	Sample bool `mapstructure:"sample"`
	// Sources are tried in order; the first hit wins. None = the embedded sample CSV.
	Sources []SourceConfig `mapstructure:"sources"`
}

// BreakerConfig configures a circuit breaker.
type BreakerConfig struct {
	// Failures is the number of consecutive failures that open the breaker.
	Failures int `mapstructure:"failures"`
	// Cooldown is how long an open breaker rejects calls before one trial call.
	Cooldown time.Duration `mapstructure:"cooldown"`
}

// SourceConfig is one entry of crm.sources.
type SourceConfig struct {
	Name    string        `mapstructure:"name"`
	Kind    string        `mapstructure:"kind"`    // http | postgres | csv
	Timeout time.Duration `mapstructure:"timeout"` // 0 = crm.timeout

	// http
	URL string `mapstructure:"url"` // template with {e164} {national} {digits}
	// URLByEmail (optional) finds customers by e-mail: a template with
	// {email} (the normalised address, escaped for where it stands).
	URLByEmail string            `mapstructure:"url_by_email"`
	Headers    map[string]string `mapstructure:"headers"`  // values may hold ${ENV}
	Fields     map[string]string `mapstructure:"fields"`   // id|name|tier|language|url|phones → dotted path
	Extra      map[string]string `mapstructure:"extra"`    // extra field name → dotted path
	MaxBody    int64             `mapstructure:"max_body"` // bytes; 0 = 1 MiB
	CAFile     string            `mapstructure:"ca_file"`  // extra trusted CA (PEM) for a private CRM; verification stays on

	// MaxConns caps the connections to the source (http: per host; postgres:
	// the pool). Look-ups beyond it wait for a connection within their
	// timeout rather than opening one each. 0 = DefaultMaxConns for http, the
	// DSN's pool_max_conns or pgx's default for postgres.
	MaxConns int `mapstructure:"max_conns"`

	// Lists are the customer's named lists (history, tickets, …), each name
	// ([a-z][a-z0-9_]*) mapped to — http: the dotted path of an array of
	// objects in the answer (data.0.tickets); postgres: a query run on a hit,
	// $1 = the customer's id; csv: a CSV file with a customer_id column.
	Lists map[string]string `mapstructure:"lists"`
	// ListFields (http) renames and selects an item's fields, per list:
	// {tickets: {at: created, summary: subject}}; a list not named here
	// keeps each item's scalar fields as they are.
	ListFields map[string]map[string]string `mapstructure:"list_fields"`

	// postgres
	DSN     string `mapstructure:"dsn"`      // may hold ${ENV}; or dsn_file, or env CALLPOP_CRM_<NAME>_DSN
	DSNFile string `mapstructure:"dsn_file"` // file holding the DSN
	Query   string `mapstructure:"query"`    // $1 = E.164; columns id,name,tier,language,url (+ extra)
	// QueryByEmail (optional) finds customers by e-mail: $1 = the normalised
	// address; the same columns as query.
	QueryByEmail string `mapstructure:"query_by_email"`

	// csv
	Path   string `mapstructure:"path"`   // CSV file; reloaded when it changes
	Region string `mapstructure:"region"` // region for national numbers in the file; "" = crm.region
}

// RedisConfig is `cache.redis`.
type RedisConfig struct {
	// Addrs: none = no Redis; one = single node; several = cluster (or sentinels with master_name).
	Addrs        []string      `mapstructure:"addrs"`
	MasterName   string        `mapstructure:"master_name"`
	Username     string        `mapstructure:"username"`
	Password     string        `mapstructure:"password"`      // prefer password_file or CALLPOP_CACHE_REDIS_PASSWORD
	PasswordFile string        `mapstructure:"password_file"` // file holding the password
	DB           int           `mapstructure:"db"`
	DialTimeout  time.Duration `mapstructure:"dial_timeout"`
	Timeout      time.Duration `mapstructure:"timeout"` // per-command bound on the hot path
	PoolSize     int           `mapstructure:"pool_size"`
	Breaker      BreakerConfig `mapstructure:"breaker"`
	TLS          RedisTLS      `mapstructure:"tls"`
}

// RedisTLS is cache.redis.tls: TLS to Redis (and to sentinels), with an
// optional client certificate.
type RedisTLS struct {
	Enabled    bool   `mapstructure:"enabled"`
	CAFile     string `mapstructure:"ca_file"`     // "" = the system's roots
	CertFile   string `mapstructure:"cert_file"`   // client certificate (tls-auth-clients)
	KeyFile    string `mapstructure:"key_file"`    // its key
	ServerName string `mapstructure:"server_name"` // "" = the address's host
}

// CacheConfig is the top-level `cache` section.
type CacheConfig struct {
	Redis         RedisConfig   `mapstructure:"redis"`
	TTL           time.Duration `mapstructure:"ttl"`
	MissTTL       time.Duration `mapstructure:"miss_ttl"`
	StaleFor      time.Duration `mapstructure:"stale_for"`
	LocalSize     int           `mapstructure:"local_size"`
	LocalTTL      time.Duration `mapstructure:"local_ttl"`
	KeyPrefix     string        `mapstructure:"key_prefix"`
	KeySecret     string        `mapstructure:"key_secret"`      // prefer key_secret_file or CALLPOP_CACHE_KEY_SECRET
	KeySecretFile string        `mapstructure:"key_secret_file"` // file holding the HMAC key
}

// Defaults.
const (
	DefaultMaxBody = 1 << 20
	// DefaultMaxConns is an http source's connection cap: a call centre's
	// concurrent first-time callers, not one connection per held call.
	DefaultMaxConns = 64
	maxFieldLen     = 1024
)

// DefaultConfig returns the defaults documented in config.example.yaml.
func DefaultConfig() Config {
	return Config{
		Timeout: 2 * time.Second,
		Breaker: BreakerConfig{Failures: 5, Cooldown: 10 * time.Second},
	}
}

// DefaultCacheConfig returns the `cache` defaults documented in config.example.yaml.
func DefaultCacheConfig() CacheConfig {
	return CacheConfig{
		Redis: RedisConfig{
			DialTimeout: 100 * time.Millisecond,
			Timeout:     100 * time.Millisecond,
			PoolSize:    20,
			Breaker:     BreakerConfig{Failures: 5, Cooldown: 5 * time.Second},
		},
		TTL:       10 * time.Minute,
		MissTTL:   time.Minute,
		StaleFor:  time.Hour,
		LocalSize: 10000,
		LocalTTL:  time.Minute,
		KeyPrefix: "callpop:c:",
	}
}

// Validate checks the section as a whole; errors name the key ("crm.x: why").
func (c *Config) Validate() error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("crm.timeout: must be positive"))
	}
	errs = append(errs, c.Breaker.validate("crm.breaker")...)
	if c.Sample && len(c.Sources) > 0 {
		// Which one was meant can not be told: say so rather than guess.
		errs = append(errs, errors.New("crm.sample: true asks for the embedded sample customers, but crm.sources is set too: keep one"))
	}
	names := map[string]bool{}
	for i, s := range c.Sources {
		k := fmt.Sprintf("crm.sources[%d]", i)
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: required", k))
		} else if names[s.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q used twice", k, s.Name))
		} else if s.Name == "cache" || strings.ContainsAny(s.Name, ",\x00") {
			errs = append(errs, fmt.Errorf("%s.name: %q is reserved or holds a comma", k, s.Name))
		}
		names[s.Name] = true
		if s.Timeout < 0 {
			errs = append(errs, fmt.Errorf("%s.timeout: must not be negative", k))
		}
		if s.MaxConns < 0 {
			errs = append(errs, fmt.Errorf("%s.max_conns: must not be negative (0 = the default)", k))
		}
		errs = append(errs, s.validateLists(k)...)
		if s.URLByEmail != "" && s.Kind != "http" {
			errs = append(errs, fmt.Errorf("%s.url_by_email: only for kind http", k))
		}
		if s.QueryByEmail != "" && s.Kind != "postgres" {
			errs = append(errs, fmt.Errorf("%s.query_by_email: only for kind postgres", k))
		}
		switch s.Kind {
		case "http":
			errs = append(errs, s.validateHTTP(k)...)
		case "postgres":
			if s.DSN == "" && s.DSNFile == "" && os.Getenv(dsnEnv(s.Name)) == "" {
				errs = append(errs, fmt.Errorf("%s.dsn: required (or dsn_file, or env %s)", k, dsnEnv(s.Name)))
			}
			if s.DSN != "" && s.DSNFile != "" {
				errs = append(errs, fmt.Errorf("%s.dsn_file: dsn and dsn_file can not both be set", k))
			}
			if !strings.Contains(s.Query, "$1") {
				errs = append(errs, fmt.Errorf("%s.query: must use $1 (the E.164 number)", k))
			}
			if s.QueryByEmail != "" && !strings.Contains(s.QueryByEmail, "$1") {
				errs = append(errs, fmt.Errorf("%s.query_by_email: must use $1 (the e-mail address)", k))
			}
		case "csv":
			if s.Path == "" {
				errs = append(errs, fmt.Errorf("%s.path: required", k))
			}
		case "":
			errs = append(errs, fmt.Errorf("%s.kind: required (http, postgres or csv)", k))
		default:
			errs = append(errs, fmt.Errorf("%s.kind: %q is not http, postgres or csv", k, s.Kind))
		}
	}
	return errors.Join(errs...)
}

var listName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// validateLists checks lists and list_fields for the source's kind.
func (s *SourceConfig) validateLists(k string) []error {
	var errs []error
	if len(s.Lists) > MaxLists {
		errs = append(errs, fmt.Errorf("%s.lists: at most %d lists", k, MaxLists))
	}
	for _, name := range slices.Sorted(maps.Keys(s.Lists)) {
		v := strings.TrimSpace(s.Lists[name])
		switch {
		case !listName.MatchString(name):
			errs = append(errs, fmt.Errorf("%s.lists.%s: a list name is lower-case letters, digits and _ (starting with a letter, at most 32)", k, name))
		case v == "":
			errs = append(errs, fmt.Errorf("%s.lists.%s: empty", k, name))
		case s.Kind == "postgres" && !strings.Contains(v, "$1"):
			errs = append(errs, fmt.Errorf("%s.lists.%s: the query must use $1 (the customer's id)", k, name))
		}
	}
	if len(s.ListFields) > 0 && s.Kind != "http" {
		errs = append(errs, fmt.Errorf("%s.list_fields: only for kind http (name the columns in the query, or in the CSV header)", k))
	}
	for _, name := range slices.Sorted(maps.Keys(s.ListFields)) {
		if _, ok := s.Lists[name]; !ok {
			errs = append(errs, fmt.Errorf("%s.list_fields.%s: no such list in lists", k, name))
		}
		if len(s.ListFields[name]) > MaxItemFields {
			errs = append(errs, fmt.Errorf("%s.list_fields.%s: at most %d fields", k, name, MaxItemFields))
		}
	}
	return errs
}

func (s *SourceConfig) validateHTTP(k string) []error {
	var errs []error
	u, err := url.Parse(strings.NewReplacer("{e164}", "x", "{national}", "x", "{digits}", "x").Replace(s.URL))
	switch {
	case s.URL == "":
		errs = append(errs, fmt.Errorf("%s.url: required", k))
	case err != nil:
		errs = append(errs, fmt.Errorf("%s.url: %v", k, err))
	case u.Scheme != "https" && u.Scheme != "http":
		errs = append(errs, fmt.Errorf("%s.url: must be https or http", k))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("%s.url: has no host", k))
	case !strings.Contains(s.URL, "{e164}") && !strings.Contains(s.URL, "{national}") && !strings.Contains(s.URL, "{digits}"):
		errs = append(errs, fmt.Errorf("%s.url: must hold {e164}, {national} or {digits}", k))
	}
	if s.URLByEmail != "" {
		u, err := url.Parse(strings.ReplaceAll(s.URLByEmail, "{email}", "x"))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s.url_by_email: %v", k, err))
		case u.Scheme != "https" && u.Scheme != "http":
			errs = append(errs, fmt.Errorf("%s.url_by_email: must be https or http", k))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("%s.url_by_email: has no host", k))
		case !strings.Contains(s.URLByEmail, "{email}"):
			errs = append(errs, fmt.Errorf("%s.url_by_email: must hold {email}", k))
		}
	}
	if s.MaxBody < 0 {
		errs = append(errs, fmt.Errorf("%s.max_body: must not be negative", k))
	}
	for f := range s.Fields {
		switch f {
		case "id", "name", "tier", "language", "url", "phones":
		default:
			errs = append(errs, fmt.Errorf("%s.fields.%s: not a customer field (id, name, tier, language, url, phones)", k, f))
		}
	}
	for h := range s.Headers {
		if h == "" || strings.ContainsAny(h, " :\r\n") {
			errs = append(errs, fmt.Errorf("%s.headers: %q is not a header name", k, h))
		}
	}
	return errs
}

func (b BreakerConfig) validate(k string) []error {
	var errs []error
	if b.Failures < 0 {
		errs = append(errs, fmt.Errorf("%s.failures: must not be negative (0 = no breaker)", k))
	}
	if b.Cooldown < 0 {
		errs = append(errs, fmt.Errorf("%s.cooldown: must not be negative", k))
	}
	return errs
}

// Validate checks the `cache` section; errors name the key ("cache.x: why").
func (c *CacheConfig) Validate() error {
	var errs []error
	if c.TTL <= 0 {
		errs = append(errs, errors.New("cache.ttl: must be positive"))
	}
	if c.MissTTL < 0 {
		errs = append(errs, errors.New("cache.miss_ttl: must not be negative"))
	}
	if c.StaleFor < 0 {
		errs = append(errs, errors.New("cache.stale_for: must not be negative"))
	}
	if c.LocalSize < 0 {
		errs = append(errs, errors.New("cache.local_size: must not be negative"))
	}
	if c.LocalTTL < 0 {
		errs = append(errs, errors.New("cache.local_ttl: must not be negative"))
	}
	if c.KeySecret != "" && c.KeySecretFile != "" {
		errs = append(errs, errors.New("cache.key_secret_file: key_secret and key_secret_file can not both be set"))
	}
	r := c.Redis
	for i, a := range r.Addrs {
		if !strings.Contains(a, ":") {
			errs = append(errs, fmt.Errorf("cache.redis.addrs[%d]: %q must be host:port", i, a))
		}
	}
	if r.Password != "" && r.PasswordFile != "" {
		errs = append(errs, errors.New("cache.redis.password_file: password and password_file can not both be set"))
	}
	if r.DB < 0 {
		errs = append(errs, errors.New("cache.redis.db: must not be negative"))
	}
	if r.DB != 0 && len(r.Addrs) > 1 && r.MasterName == "" {
		errs = append(errs, errors.New("cache.redis.db: a cluster has only db 0"))
	}
	if r.DialTimeout <= 0 {
		errs = append(errs, errors.New("cache.redis.dial_timeout: must be positive"))
	}
	if r.Timeout <= 0 {
		errs = append(errs, errors.New("cache.redis.timeout: must be positive"))
	}
	if r.PoolSize < 0 {
		errs = append(errs, errors.New("cache.redis.pool_size: must not be negative"))
	}
	errs = append(errs, r.Breaker.validate("cache.redis.breaker")...)
	errs = append(errs, r.TLS.validate()...)
	if len(r.Addrs) > 0 && c.KeySecret == "" && c.KeySecretFile == "" && os.Getenv(EnvKeySecret) == "" {
		errs = append(errs, errKeySecret)
	}
	return errors.Join(errs...)
}

// EnvKeySecret holds cache.key_secret.
const EnvKeySecret = "CALLPOP_CACHE_KEY_SECRET"

// errKeySecret: with Redis, keys are HMACs of numbers; under a key anyone
// can know, a Redis dump gives the numbers back by hashing a country's.
var errKeySecret = fmt.Errorf("cache.key_secret: required with cache.redis.addrs (set cache.key_secret_file or %s): "+
	"Redis keys are an HMAC of the caller's number, and without a secret of your own anyone holding a Redis dump can reverse them", EnvKeySecret)

func (t RedisTLS) validate() []error {
	var errs []error
	if !t.Enabled {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" {
			errs = append(errs, errors.New("cache.redis.tls: set enabled: true to use its files and server_name"))
		}
		return errs
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, errors.New("cache.redis.tls.cert_file, key_file: set both or neither"))
	}
	if _, err := t.config(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// config is the tls.Config the client dials with; nil when TLS is off.
func (t RedisTLS) config() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		var err error
		if c.RootCAs, err = tlsfiles.CAPool("cache.redis.tls.ca_file", t.CAFile); err != nil {
			return nil, err
		}
	}
	if t.CertFile != "" && t.KeyFile != "" {
		kp, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cache.redis.tls.cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c, nil
}

func dsnEnv(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return "CALLPOP_CRM_" + string(b) + "_DSN"
}
