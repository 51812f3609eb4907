// Package apiauth guards callpop's HTTP API: API keys with scopes sent as
// "Authorization: Bearer <key>", a per-key rate limit, client certificates
// (mutual TLS) standing for a set of scopes, and loopback-only service when
// no key is configured.
package apiauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/time/rate"

	"github.com/callpop/callpop/internal/loglimit"
	"github.com/callpop/callpop/internal/netallow"
	"github.com/callpop/callpop/internal/secret"
)

// The scopes a key may hold.
const (
	ScopeRoute     = "route"     // GET /v1/route (it returns the decision, the customer's record included)
	ScopeLookup    = "lookup"    // GET /v1/lookup
	ScopeCache     = "cache"     // DELETE /v1/cache/{number}
	ScopeMetrics   = "metrics"   // /metrics
	ScopeStats     = "stats"     // GET /v1/stats, /v1/stats/stream (the live stats; stats package)
	ScopeContacts  = "contacts"  // POST /v1/contacts, POST /v1/contacts/{id}/end
	ScopeCallbacks = "callbacks" // POST /v1/callbacks, GET and DELETE /v1/callbacks/{id} (it makes callpop dial)
)

// refusals counts requests turned away, by scope and why: a key rotated
// away that a dialplan still sends shows here.
var refusals = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "callpop_api_refused_total",
	Help: "API requests refused: reason is unauthenticated (no, unknown or malformed key; not loopback without keys), scope (the key lacks it) or rate (over api.rate_limit).",
}, []string{"scope", "reason"})

// Scopes lists every scope, in the order the docs give them.
var Scopes = []string{ScopeRoute, ScopeLookup, ScopeCache, ScopeMetrics, ScopeStats, ScopeContacts, ScopeCallbacks}

// Config is the `api` section.
type Config struct {
	Keys      []KeyConfig `mapstructure:"keys"`
	RateLimit RateLimit   `mapstructure:"rate_limit"`
	// MetricsOpen serves /metrics to any client (a Prometheus scraping over
	// a private network) instead of requiring the metrics scope.
	MetricsOpen bool `mapstructure:"metrics_open"`
}

// KeyConfig is one API key. Its value is read from KeyFile or from the
// environment variable EnvName(Name), never from the config file.
type KeyConfig struct {
	Name    string   `mapstructure:"name"`
	Scopes  []string `mapstructure:"scopes"`
	KeyFile string   `mapstructure:"key_file"`
}

// RateLimit is each key's allowance; PerSecond 0 turns it off.
type RateLimit struct {
	PerSecond float64 `mapstructure:"per_second"`
	Burst     int     `mapstructure:"burst"`
}

// DefaultConfig has no keys (loopback clients only) and 100 requests a
// second per key, bursts of 200.
func DefaultConfig() Config {
	return Config{RateLimit: RateLimit{PerSecond: 100, Burst: 200}}
}

var keyName = regexp.MustCompile(`^[a-z0-9_-]+$`)

// EnvName is the environment variable that holds the key called name:
// CALLPOP_API_KEYS_<NAME>_KEY, upper-cased, "-" as "_".
func EnvName(name string) string {
	return "CALLPOP_API_KEYS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_KEY"
}

// IsKeyEnv says whether an environment variable's name is an API key's.
func IsKeyEnv(name string) bool {
	return strings.HasPrefix(name, "CALLPOP_API_KEYS_") && strings.HasSuffix(name, "_KEY") && len(name) > len("CALLPOP_API_KEYS__KEY")
}

// Validate checks the section whole; errors name the key.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	envs := map[string]string{}
	for i, k := range c.Keys {
		at := fmt.Sprintf("api.keys[%d]", i)
		switch {
		case k.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: required", at))
		case !keyName.MatchString(k.Name):
			errs = append(errs, fmt.Errorf("%s.name: %q must match [a-z0-9_-]+", at, k.Name))
		case seen[k.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q is used twice", at, k.Name))
		default:
			if other, ok := envs[EnvName(k.Name)]; ok {
				errs = append(errs, fmt.Errorf("%s.name: %q and %q share the variable %s", at, other, k.Name, EnvName(k.Name)))
			}
			envs[EnvName(k.Name)] = k.Name
		}
		seen[k.Name] = true
		if len(k.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("%s.scopes: required (one or more of %s)", at, strings.Join(Scopes, ", ")))
		}
		errs = append(errs, CheckScopes(at+".scopes", k.Scopes))
	}
	if c.RateLimit.PerSecond < 0 || math.IsNaN(c.RateLimit.PerSecond) || math.IsInf(c.RateLimit.PerSecond, 0) {
		errs = append(errs, errors.New("api.rate_limit.per_second: must be 0 (off) or more"))
	}
	if c.RateLimit.PerSecond > 0 && c.RateLimit.Burst < 1 {
		errs = append(errs, errors.New("api.rate_limit.burst: must be at least 1 with a per_second limit"))
	}
	return errors.Join(errs...)
}

// CheckScopes rejects scopes callpop does not know; key names the list.
func CheckScopes(key string, scopes []string) error {
	var errs []error
	for j, s := range scopes {
		if !slices.Contains(Scopes, s) {
			errs = append(errs, fmt.Errorf("%s[%d]: unknown scope %q (one of %s)", key, j, s, strings.Join(Scopes, ", ")))
		}
	}
	return errors.Join(errs...)
}

// principal is who a request came as: a key, or a client certificate.
type principal struct {
	name    string
	scopes  []string
	limiter *rate.Limiter // nil: no limit
}

type storedKey struct {
	hash [sha256.Size]byte // only the hash of the key stays in memory
	principal
}

// Options are what Auth needs besides its config.
type Options struct {
	Logger *slog.Logger
	// ClientScopes are the scopes of a verified client certificate
	// (tls.client_scopes); none means a certificate grants nothing.
	ClientScopes []string
}

// Auth checks requests against the configured keys. Safe for concurrent use.
type Auth struct {
	keys      []storedKey
	rl        RateLimit
	log       *slog.Logger
	certs     []string
	refuseLog loglimit.Limiter

	mu           sync.Mutex
	certLimiters map[string]*rate.Limiter // by certificate subject
}

// New reads every key's secret (file or environment) and keeps its hash.
// An error names the key and where its value was looked for.
func New(cfg Config, opts Options) (*Auth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Auth{rl: cfg.RateLimit, log: opts.Logger.With("component", "api"), certs: opts.ClientScopes,
		certLimiters: map[string]*rate.Limiter{}}
	var errs []error
	for i, k := range cfg.Keys {
		v, err := secret.Read(EnvName(k.Name), k.KeyFile, fmt.Sprintf("api.keys[%d].key", i))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a.keys = append(a.keys, storedKey{hash: sha256.Sum256(v),
			principal: principal{name: k.Name, scopes: slices.Clone(k.Scopes), limiter: a.newLimiter()}})
		clear(v)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Auth) newLimiter() *rate.Limiter {
	if a.rl.PerSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(a.rl.PerSecond), a.rl.Burst)
}

// KeysConfigured says whether any key is configured; without one, only
// loopback clients are served.
func (a *Auth) KeysConfigured() bool { return len(a.keys) > 0 }

// find returns the key whose value is token. Every stored hash is compared,
// in constant time, whichever matches.
func (a *Auth) find(token string) *principal {
	h := sha256.Sum256([]byte(token))
	var found *principal
	for i := range a.keys {
		if subtle.ConstantTimeCompare(h[:], a.keys[i].hash[:]) == 1 {
			found = &a.keys[i].principal
		}
	}
	return found
}

// ParseBearer returns the token of an "Authorization: Bearer <token>"
// header value. The scheme is case-insensitive (RFC 9110); the token must be
// one token68 word, visible ASCII without spaces.
func ParseBearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || len(token) > 4096 {
		return "", false
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return "", false
		}
	}
	return token, true
}

type slotKey struct{}

// Track returns a context in which Require records who a request came as
// (the key's name, "tls:<subject>" or "loopback"), let in or refused, and a
// func that reads it once the request is done: an audit wrapper outside
// Require sees the refused requests too.
func Track(ctx context.Context) (context.Context, func() string) {
	name := new(string)
	return context.WithValue(ctx, slotKey{}, name), func() string { return *name }
}

// note records who r came as in r's Track slot, if it has one.
func note(r *http.Request, name string) {
	if s, ok := r.Context().Value(slotKey{}).(*string); ok {
		*s = name
	}
}

// Require serves h only to requests whose key (or client certificate) has
// scope: 401 without a valid key, 403 without the scope, 429 over the rate.
// With no key configured, loopback clients are served and others refused.
func (a *Auth) Require(scope string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, status, why := a.authenticate(r)
		switch {
		case p != nil:
			note(r, p.name)
		case status == 0:
			note(r, "loopback")
		}
		switch {
		case status == http.StatusUnauthorized:
			challenge := `Bearer realm="callpop"`
			if why == "invalid key" {
				challenge += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			refusals.WithLabelValues(scope, "unauthenticated").Inc()
			deny(w, status, why)
			return
		case p == nil: // loopback with no keys configured
			h.ServeHTTP(w, r)
			return
		case !slices.Contains(p.scopes, scope):
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="callpop", error="insufficient_scope", scope=%q`, scope))
			refusals.WithLabelValues(scope, "scope").Inc()
			deny(w, http.StatusForbidden, fmt.Sprintf("%q lacks the %s scope", p.name, scope))
			return
		}
		if p.limiter != nil {
			res := p.limiter.Reserve()
			if d := res.Delay(); !res.OK() || d > 0 {
				res.Cancel()
				if !res.OK() {
					d = time.Second
				}
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
				refusals.WithLabelValues(scope, "rate").Inc()
				deny(w, http.StatusTooManyRequests, "rate limit of "+p.name+" exceeded")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// authenticate returns the request's principal; nil with status 0 is a
// loopback client served without keys.
func (a *Auth) authenticate(r *http.Request) (*principal, int, string) {
	if hv := r.Header.Get("Authorization"); hv != "" {
		token, ok := ParseBearer(hv)
		if !ok {
			return nil, http.StatusUnauthorized, "malformed Authorization header (want: Bearer <key>)"
		}
		if p := a.find(token); p != nil {
			return p, 0, ""
		}
		if len(a.keys) > 0 {
			return nil, http.StatusUnauthorized, "invalid key"
		}
	}
	if p := a.certPrincipal(r); p != nil {
		return p, 0, ""
	}
	if len(a.keys) > 0 {
		return nil, http.StatusUnauthorized, "an API key is required (Authorization: Bearer <key>)"
	}
	if netallow.IsLoopback(r.RemoteAddr) {
		return nil, 0, ""
	}
	if n, ok := a.refuseLog.Allow(); ok {
		a.log.Warn("API request refused: no api.keys configured, so only loopback clients are served",
			"peer", netallow.RemoteIP(r.RemoteAddr).String(), "path", r.URL.Path, "suppressed", n)
	}
	return nil, http.StatusUnauthorized, "no API keys are configured: only loopback clients are served"
}

// certPrincipal is the principal of a verified client certificate.
func (a *Auth) certPrincipal(r *http.Request) *principal {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	subject := r.TLS.VerifiedChains[0][0].Subject.CommonName
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.certLimiters[subject]
	if !ok {
		if len(a.certLimiters) >= 1024 { // bounded: subjects come from the CA's certificates
			clear(a.certLimiters)
		}
		l = a.newLimiter()
		a.certLimiters[subject] = l
	}
	return &principal{name: "tls:" + subject, scopes: a.certs, limiter: l}
}

func deny(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, "callpop: %s\n", msg)
}
