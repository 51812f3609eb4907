package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func noEnv(string) (string, bool) { return "", false }

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultConfigValidates(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.Call.Budget != 300*time.Millisecond || !cfg.Log.MaskPersonalData {
		t.Fatalf("documented defaults changed: %+v %+v %+v", cfg.Listen, cfg.Call, cfg.Log)
	}
}

// Every file in testdata/config is one bad configuration; each must be
// rejected with a message that names the key.
func TestBadConfigs(t *testing.T) {
	tests := []struct {
		file string
		want string // fragment of the error
	}{
		{"bad-unknown-top.yaml", "listne: unknown key"},
		{"bad-unknown-nested.yaml", "call.budgte: unknown key"},
		{"bad-budget-zero.yaml", "call.budget: must be above 0"},
		{"bad-budget-negative.yaml", "call.budget: must be above 0"},
		{"bad-budget-too-long.yaml", "call.budget: must be at most 10s"},
		{"bad-budget-no-unit.yaml", "call.budget: 300 is not a duration"},
		{"bad-budget-garbage.yaml", `call.budget: "soon" is not a duration`},
		{"bad-drain-negative.yaml", "call.drain_timeout: must be between 0 and 5m0s"},
		{"bad-listen-no-port.yaml", "listen: must be host:port"},
		{"bad-listen-port.yaml", "listen: port must be a number"},
		{"bad-listen-type.yaml", "listen: "},
		{"bad-pbx-kind.yaml", `pbx.kind: must be none, asterisk or freeswitch, got "3cx"`},
		{"bad-router-profile-source.yaml", `router.profiles[0].sources[0]: "mian" is not a crm.sources name`},
		{"bad-log-level.yaml", `log.level: must be debug, info, warn or error, got "verbose"`},
		{"bad-log-format.yaml", `log.format: must be json or text, got "xml"`},
		{"bad-log-mask-type.yaml", "log.mask_personal_data: "},
		{"bad-cache-ttl.yaml", `cache.ttl: "forever" is not a duration`},
		{"bad-cache-unknown.yaml", "cache.redis.adresses: unknown key"},
		{"bad-crm-sources-scalar.yaml", "crm.sources: a list of sections"},
		{"bad-crm-source-unknown-key.yaml", "crm.sources[0].timout: unknown key"},
		{"bad-crm-source-timeout.yaml", "crm.sources[0].timeout: 200 is not a duration"},
		{"bad-numbers-region.yaml", "numbers.default_region"},
		{"bad-reserve-over-budget.yaml", "pbx.freeswitch.apply_reserve: must be at most half of call.budget (100ms)"},
		{"bad-not-yaml.yaml", "not valid YAML"},
		{"bad-section-scalar.yaml", "call: "},
	}
	files, err := filepath.Glob("testdata/config/bad-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !slices.ContainsFunc(tests, func(tc struct{ file, want string }) bool { return tc.file == filepath.Base(f) }) {
			t.Errorf("%s has no expected message in the table", f)
		}
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "config", tc.file)
			_, err := loadConfig(path, true)
			if err == nil {
				t.Fatalf("%s loaded without error", tc.file)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
}

// Several problems in one file are all reported, one a line.
func TestAllProblemsReported(t *testing.T) {
	data := "listen: nope\ncall:\n  budget: 5\n  bogus: 1\ncache:\n  ttl: abc\nlog:\n  level: loud\n"
	cfg, err := decodeConfig([]byte(data), noEnv)
	if err == nil {
		t.Fatal("decoded without error")
	}
	for _, want := range []string{"call.budget: 5 is not a duration", "call.bogus: unknown key", `cache.ttl: "abc" is not a duration`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	cfg = DefaultConfig()
	cfg.Listen = "nope"
	cfg.Log.Level = "loud"
	err = cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "listen:") || !strings.Contains(err.Error(), "log.level:") {
		t.Fatalf("want both listen and log.level named, got %v", err)
	}
}

func TestConfigFiles(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing default file runs on defaults", func(t *testing.T) {
		lc, err := loadConfig(filepath.Join(dir, "callpop.yaml"), false)
		if err != nil {
			t.Fatal(err)
		}
		if lc.Path != "" || !reflect.DeepEqual(lc.Config, DefaultConfig()) {
			t.Fatalf("want embedded defaults, got path %q %+v", lc.Path, lc.Config)
		}
	})
	t.Run("missing explicit file is an error", func(t *testing.T) {
		_, err := loadConfig(filepath.Join(dir, "nope.yaml"), true)
		if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
			t.Fatalf("want an error naming the file, got %v", err)
		}
	})
	t.Run("empty file is the defaults", func(t *testing.T) {
		p := filepath.Join(dir, "empty.yaml")
		if err := os.WriteFile(p, []byte("# nothing\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		lc, err := loadConfig(p, true)
		if err != nil {
			t.Fatal(err)
		}
		if lc.Path != p || !reflect.DeepEqual(lc.Config, DefaultConfig()) {
			t.Fatalf("want defaults from %s, got %+v", p, lc.Config)
		}
	})
	t.Run("empty sections keep their defaults", func(t *testing.T) {
		cfg, err := decodeConfig([]byte("call:\npbx:\nlog:\n  level: debug\n"), noEnv)
		if err != nil {
			t.Fatal(err)
		}
		want := DefaultConfig()
		want.Log.Level = "debug"
		if !reflect.DeepEqual(cfg, want) {
			t.Fatalf("got %+v, want %+v", cfg, want)
		}
	})
}

func TestFileValues(t *testing.T) {
	data := `
listen: 0.0.0.0:9090
call: {budget: 250ms, drain_timeout: 3s}
numbers:
  default_region: nl
  anonymous: [anonymous, verborgen]
cache:
  redis: {addrs: ["127.0.0.1:6379", "127.0.0.1:6380"]}
  ttl: 10m
  miss_ttl: 1m
crm:
  sources:
    - {name: main, kind: http, url: "https://crm.example/api/customers?phone={e164}", timeout: 2s}
    - {name: sheet, kind: csv, path: /srv/customers.csv}
log: {level: warn, format: text, mask_personal_data: false}
`
	cfg, err := decodeConfig([]byte(data), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "0.0.0.0:9090" || cfg.Call.Budget != 250*time.Millisecond || cfg.Call.DrainTimeout != 3*time.Second {
		t.Errorf("listen/call: %q %+v", cfg.Listen, cfg.Call)
	}
	// A list given in the file replaces the default list, it does not merge.
	if !reflect.DeepEqual(cfg.Numbers.Anonymous, []string{"anonymous", "verborgen"}) {
		t.Errorf("numbers.anonymous = %q", cfg.Numbers.Anonymous)
	}
	if !reflect.DeepEqual(cfg.Cache.Redis.Addrs, []string{"127.0.0.1:6379", "127.0.0.1:6380"}) || cfg.Cache.TTL != 10*time.Minute || cfg.Cache.MissTTL != time.Minute {
		t.Errorf("cache: %+v", cfg.Cache)
	}
	if len(cfg.CRM.Sources) != 2 || cfg.CRM.Sources[0].Name != "main" || cfg.CRM.Sources[0].Timeout != 2*time.Second ||
		cfg.CRM.Sources[1].Kind != "csv" || cfg.CRM.Sources[1].Path != "/srv/customers.csv" {
		t.Errorf("crm.sources: %+v", cfg.CRM.Sources)
	}
	if cfg.Log != (LogConfig{Level: "warn", Format: "text", MaskPersonalData: false}) {
		t.Errorf("log: %+v", cfg.Log)
	}
	// Keys not in the file keep their defaults.
	def := DefaultConfig()
	if cfg.Cache.StaleFor != def.Cache.StaleFor || cfg.Numbers.CacheSize != def.Numbers.CacheSize || cfg.PBX.Kind != PBXNone {
		t.Errorf("defaults lost: stale_for %s cache_size %d pbx.kind %q", cfg.Cache.StaleFor, cfg.Numbers.CacheSize, cfg.PBX.Kind)
	}
}

// A map key with a dot in it stays one key.
func TestDottedMapKeys(t *testing.T) {
	data := "router:\n  tier_priority: {gold.plus: 7, vip: 10}\n"
	cfg, err := decodeConfig([]byte(data), envMap(map[string]string{"CALLPOP_CACHE_TTL": "2m"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Router.TierPriority["gold.plus"] != 7 || cfg.Router.TierPriority["vip"] != 10 || len(cfg.Router.TierPriority) != 2 {
		t.Fatalf("tier_priority = %v", cfg.Router.TierPriority)
	}
	if cfg.Cache.TTL != 2*time.Minute {
		t.Fatalf("env override lost: %s", cfg.Cache.TTL)
	}
}

func TestEnvOverrides(t *testing.T) {
	file := "call: {budget: 200ms}\ncache: {ttl: 1m, key_secret: inline-secret, redis: {password_file: /run/secrets/redis}}\n"
	tests := []struct {
		name  string
		env   map[string]string
		check func(Config) bool
	}{
		{"duration over file", map[string]string{"CALLPOP_CALL_BUDGET": "250ms"},
			func(c Config) bool { return c.Call.Budget == 250*time.Millisecond }},
		{"key with underscore", map[string]string{"CALLPOP_CACHE_MISS_TTL": "30s"},
			func(c Config) bool { return c.Cache.MissTTL == 30*time.Second && c.Cache.TTL == time.Minute }},
		{"nested key", map[string]string{"CALLPOP_CACHE_TTL": "5m"},
			func(c Config) bool { return c.Cache.TTL == 5*time.Minute }},
		{"top-level key", map[string]string{"CALLPOP_LISTEN": "0.0.0.0:8080"},
			func(c Config) bool { return c.Listen == "0.0.0.0:8080" }},
		{"list of values, comma-separated", map[string]string{"CALLPOP_CACHE_REDIS_ADDRS": "10.0.0.1:6379, 10.0.0.2:6379"},
			func(c Config) bool {
				return reflect.DeepEqual(c.Cache.Redis.Addrs, []string{"10.0.0.1:6379", "10.0.0.2:6379"})
			}},
		{"list of values, JSON", map[string]string{"CALLPOP_NUMBERS_ANONYMOUS": `["anonymous","n/a"]`},
			func(c Config) bool { return reflect.DeepEqual(c.Numbers.Anonymous, []string{"anonymous", "n/a"}) }},
		{"list of sections, JSON", map[string]string{"CALLPOP_CRM_SOURCES": `[{"name":"main","kind":"http","url":"https://crm.example/c?p={e164}","timeout":"1s"}]`},
			func(c Config) bool {
				return len(c.CRM.Sources) == 1 && c.CRM.Sources[0].URL == "https://crm.example/c?p={e164}" && c.CRM.Sources[0].Timeout == time.Second
			}},
		{"boolean", map[string]string{"CALLPOP_LOG_MASK_PERSONAL_DATA": "false"},
			func(c Config) bool { return !c.Log.MaskPersonalData }},
		{"secret", map[string]string{"CALLPOP_CACHE_REDIS_PASSWORD": "s3cret"},
			func(c Config) bool { return c.Cache.Redis.Password == "s3cret" }},
		{"secret from the environment wins over the file's *_file", map[string]string{"CALLPOP_CACHE_REDIS_PASSWORD": "s3cret"},
			func(c Config) bool { return c.Cache.Redis.Password == "s3cret" && c.Cache.Redis.PasswordFile == "" }},
		{"*_file from the environment wins over an inline secret", map[string]string{"CALLPOP_CACHE_KEY_SECRET_FILE": "/run/secrets/k"},
			func(c Config) bool { return c.Cache.KeySecretFile == "/run/secrets/k" && c.Cache.KeySecret == "" }},
		{"no variables: the file", nil,
			func(c Config) bool { return c.Call.Budget == 200*time.Millisecond && c.Cache.TTL == time.Minute }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := decodeConfig([]byte(file), envMap(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Fatalf("override not applied: %+v", cfg)
			}
		})
	}
	t.Run("bad value names the key", func(t *testing.T) {
		_, err := decodeConfig(nil, envMap(map[string]string{"CALLPOP_CALL_BUDGET": "fast"}))
		if err == nil || !strings.Contains(err.Error(), "call.budget:") {
			t.Fatalf("want call.budget named, got %v", err)
		}
		_, err = decodeConfig(nil, envMap(map[string]string{"CALLPOP_CRM_SOURCES": `[{"name":"x","bogus":1}]`}))
		if err == nil || !strings.Contains(err.Error(), "crm.sources[0].bogus: unknown key") {
			t.Fatalf("want crm.sources[0].bogus named, got %v", err)
		}
	})
	t.Run("process environment", func(t *testing.T) {
		t.Setenv("CALLPOP_CALL_BUDGET", "123ms")
		lc, err := loadConfig(filepath.Join(t.TempDir(), "absent.yaml"), false)
		if err != nil {
			t.Fatal(err)
		}
		if lc.Call.Budget != 123*time.Millisecond {
			t.Fatalf("budget %s", lc.Call.Budget)
		}
	})
}

// Every variable name maps back to exactly one key.
func TestEnvNamesUnique(t *testing.T) {
	seen := map[string]string{}
	for _, k := range envKeys(reflect.TypeFor[Config]()) {
		n := envName(k)
		if prev, ok := seen[n]; ok {
			t.Errorf("%s overrides both %s and %s", n, prev, k)
		}
		seen[n] = k
	}
	if seen["CALLPOP_CALL_BUDGET"] != "call.budget" || seen["CALLPOP_CACHE_REDIS_ADDRS"] != "cache.redis.addrs" {
		t.Fatalf("unexpected names: %v", seen)
	}
}

const examplePath = "../../config.example.yaml"

func TestExampleConfigLoads(t *testing.T) {
	lc, err := loadConfig(examplePath, true)
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	if lc.Call.Budget != 300*time.Millisecond || lc.Listen != "127.0.0.1:8080" || lc.Call.DrainDelay != drainDelay {
		t.Fatalf("example differs from the documented defaults: %q %s %s", lc.Listen, lc.Call.Budget, lc.Call.DrainDelay)
	}
}

// Every key of the composed configuration is documented in
// config.example.yaml: values and sections as YAML keys; keys of list
// entries (crm.sources[], ...) at least as "key:" in an entry or a
// commented-out entry, or named in a comment.
func TestExampleHasEveryKey(t *testing.T) {
	raw, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range configKeys(reflect.TypeFor[Config]()) {
		if i := strings.Index(k.Path, "[]"); i >= 0 {
			name := k.Path[strings.LastIndex(k.Path, ".")+1:]
			// "key:" in an entry or a commented-out entry, or the key named in
			// a comment (a secret such as dsn is described, not shown).
			asKey := regexp.MustCompile(`(?m)^[\s#-]*` + regexp.QuoteMeta(name) + `:`)
			inComment := regexp.MustCompile(`(?m)^\s*#.*\b` + regexp.QuoteMeta(name) + `\b`)
			if !asKey.Match(raw) && !inComment.Match(raw) {
				t.Errorf("config.example.yaml: %s is not documented (no %q in an entry or comment)", k.Path, name+":")
			}
			continue
		}
		if !hasKey(doc, strings.Split(k.Path, ".")) {
			t.Errorf("config.example.yaml: %s is missing (add it with its default and a comment)", k.Path)
		}
	}
}

func hasKey(m map[string]any, path []string) bool {
	for i, p := range path {
		v, ok := m[p]
		if !ok {
			return false
		}
		if i == len(path)-1 {
			return true
		}
		next, ok := v.(map[string]any)
		if !ok {
			return false
		}
		m = next
	}
	return false
}

func TestConfigKeys(t *testing.T) {
	keys := map[string]bool{}
	for _, k := range configKeys(reflect.TypeFor[Config]()) {
		keys[k.Path] = k.Leaf
	}
	for path, leaf := range map[string]bool{
		"listen": true, "call": false, "call.budget": true, "pbx.kind": true, "log.mask_personal_data": true,
		"cache.redis": false, "cache.redis.addrs": true, "crm.sources": true, "crm.sources[].url": true,
	} {
		got, ok := keys[path]
		if !ok || got != leaf {
			t.Errorf("%s: present %v leaf %v, want leaf %v", path, ok, got, leaf)
		}
	}
}

func TestUnknownEnv(t *testing.T) {
	env := []string{
		"PATH=/usr/bin",
		"CALLPOP_CALL_BUDGET=250ms",        // a key
		"CALLPOP_CALL_BUGDET=250ms",        // a typo
		"CALLPOP_CONFIG=/etc/callpop.yaml", // the file
		"CALLPOP_CRM_MAIN_DSN=postgres://", // read by crm
		"CALLPOP_TEST_PG_DSN=postgres://",  // tests
		"CALLPOP_CRM_TOKEN=abc",            // referred to by the file
	}
	got := unknownEnv(env, []byte("crm:\n  sources:\n    - headers: {Authorization: \"Bearer ${CALLPOP_CRM_TOKEN}\"}\n"))
	if len(got) != 1 || !strings.Contains(got[0], "CALLPOP_CALL_BUGDET") {
		t.Fatalf("got %q", got)
	}
}

// A problem's key leads to the variable that set it (or the list or map
// holding it); secrets and JSON show the name alone, odd values quoted.
func TestEnvOrigin(t *testing.T) {
	tests := []struct {
		key, name, val string
		want           string
	}{
		{"call.budget", "CALLPOP_CALL_BUDGET", "200", "CALLPOP_CALL_BUDGET=200"},
		{"call.budget", "CALLPOP_CACHE_TTL", "5m", ""},
		{"crm.sources[0].url", "CALLPOP_CRM_SOURCES", `[{"url":"x"}]`, "CALLPOP_CRM_SOURCES"},
		{"router.tier_priority[gold.plus]", "CALLPOP_ROUTER_TIER_PRIORITY", `{"gold.plus":"x"}`, "CALLPOP_ROUTER_TIER_PRIORITY"},
		{"numbers.anonymous[1]", "CALLPOP_NUMBERS_ANONYMOUS", "anonymous, ", "CALLPOP_NUMBERS_ANONYMOUS=\"anonymous, \""},
		{"cache.redis.password", "CALLPOP_CACHE_REDIS_PASSWORD", "hunter2", "CALLPOP_CACHE_REDIS_PASSWORD"},
		{"popper.token_secret", "CALLPOP_POPPER_TOKEN_SECRET", "hunter2", "CALLPOP_POPPER_TOKEN_SECRET"},
		{"cache.key_secret_file", "CALLPOP_CACHE_KEY_SECRET_FILE", "/run/secrets/k", "CALLPOP_CACHE_KEY_SECRET_FILE=/run/secrets/k"},
		{"pbx.asterisk.url", "CALLPOP_PBX_ASTERISK_URL", "http://ari:hunter2@127.0.0.1:8088", "CALLPOP_PBX_ASTERISK_URL=http://ari:xxxxx@127.0.0.1:8088"},
		{"log.level", "CALLPOP_LOG_LEVEL", "", `CALLPOP_LOG_LEVEL=""`},
		{"log.level", "CALLPOP_LOG_LEVEL", "loud\x1b[2J", `CALLPOP_LOG_LEVEL="loud\x1b[2J"`},
		{"listne", "CALLPOP_LISTNE", "x", ""},
	}
	for _, tc := range tests {
		t.Run(tc.key+"/"+tc.name, func(t *testing.T) {
			if got := envOrigin(tc.key, envMap(map[string]string{tc.name: tc.val})); got != tc.want {
				t.Fatalf("envOrigin(%q) = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

// An unknown key does not stop the load: the rest is decoded and validated,
// so every problem is reported together.
func TestLoadReportsPastUnknownKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "callpop.yaml")
	body := "listne: x\ncall:\n  budget: 20s\ncrm:\n  sources:\n    - {name: a, kind: csv, timout: 1s}\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	lc, err := loadConfig(p, true)
	if err == nil {
		t.Fatal("loaded without error")
	}
	for _, want := range []string{"listne: unknown key", "crm.sources[0].timout: unknown key", "call.budget: must be at most 10s", "crm.sources[0].path: required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if !lc.Decoded || lc.Call.Budget != 20*time.Second || len(lc.CRM.Sources) != 1 || lc.CRM.Sources[0].Name != "a" {
		t.Fatalf("the keys that did decode are lost: decoded %v %+v %+v", lc.Decoded, lc.Call, lc.CRM.Sources)
	}
}

// A key of an earlier release says what replaced it.
func TestRenamedKey(t *testing.T) {
	_, err := loadConfig(writeConfig(t, "pbx:\n  asterisk:\n    max_conns: 64\n"), true)
	if err == nil || !strings.Contains(err.Error(), "pbx.asterisk.max_conns: renamed: use pbx.asterisk.max_connections") {
		t.Fatalf("err = %v", err)
	}
}
