package router

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/internal/netallow"
)

// Config is the `router` section of callpop.yaml. mapstructure tags are the YAML
// keys; unknown keys are rejected at load.
type Config struct {
	// Timezone is the IANA zone rules see as local time (hour, weekday); "Local" is the host's zone.
	Timezone string `mapstructure:"timezone"`
	// NewCustomerURL is the pop URL on a miss; "{e164}" is replaced by the URL-escaped number,
	// "{network_name}" by the caller name the PBX saw (call.NetworkName), URL-escaped.
	NewCustomerURL string `mapstructure:"new_customer_url"`
	// TierPriority is the base priority per customer tier, before the rules run (issue 2's minimal mapping).
	TierPriority map[string]int `mapstructure:"tier_priority"`
	// Priority bounds and scales the priority output.
	Priority PriorityConfig `mapstructure:"priority"`
	// Flags configures the built-in flags (vip, fraud_suspect, region_mismatch, ani_verified).
	Flags FlagsConfig `mapstructure:"flags"`
	// Rules is the default rule set, evaluated in order.
	Rules []Rule `mapstructure:"rules"`
	// RuleSets are further named rule sets a profile can select.
	RuleSets map[string][]Rule `mapstructure:"rule_sets"`
	// Profiles select region, CRM sources and rule set per dialled line.
	Profiles []Profile `mapstructure:"profiles"`
	// FastAGI is the Asterisk FastAGI server.
	FastAGI FastAGIConfig `mapstructure:"fastagi"`
	// AnswerReserve is the part of call.budget kept back for the answer to
	// reach the dialplan (/v1/route, /v1/lookup, FastAGI's EXEC MSet): they
	// decide by received + budget − answer_reserve, so a call never waits on
	// callpop past its budget because the answer was still on its way.
	AnswerReserve time.Duration `mapstructure:"answer_reserve"`
}

// PriorityConfig bounds the priority output; all integers.
type PriorityConfig struct {
	Default          int `mapstructure:"default"`             // priority when no tier mapping or rule sets one
	Min              int `mapstructure:"min"`                 // lower clamp
	Max              int `mapstructure:"max"`                 // upper clamp
	QueuePrioScale   int `mapstructure:"queue_prio_scale"`    // QUEUE_PRIO = priority × scale
	CCBaseScoreScale int `mapstructure:"cc_base_score_scale"` // cc_base_score = priority × scale
}

// FlagsConfig configures the built-in flags.
type FlagsConfig struct {
	// BlockListFile holds one number per line (any format; "#" comments; a trailing "*" makes a prefix).
	BlockListFile string `mapstructure:"block_list_file"`
	// BlockListReload is how often the file's modification time is checked.
	BlockListReload time.Duration `mapstructure:"block_list_reload"`
	// BlockListRedisKey is a Redis set of E.164 numbers shared by all instances; "" = none.
	BlockListRedisKey string `mapstructure:"block_list_redis_key"`
	// RegionField is the customer field holding the customer's usual region ("NL") or country code ("31").
	RegionField string `mapstructure:"region_field"`
	// VIPTiers are the tiers that get the vip flag (case-insensitive).
	VIPTiers []string `mapstructure:"vip_tiers"`
}

// Rule is one routing rule: when its expression holds, its outputs apply.
type Rule struct {
	Name string `mapstructure:"name"`
	When string `mapstructure:"when"` // expr-lang expression returning a bool; "" = always
	Then Then   `mapstructure:"then"`
	Stop bool   `mapstructure:"stop"` // end evaluation after this rule matched (same as then.stop)
}

// Then holds a rule's outputs. A string value starting with "=" is an
// expression evaluated against the same environment as `when`.
type Then struct {
	Priority any               `mapstructure:"priority"` // integer, or "=expression"
	Queue    string            `mapstructure:"queue"`
	Skill    string            `mapstructure:"skill"`
	Language string            `mapstructure:"language"`
	Flags    []string          `mapstructure:"flags"` // flags to add
	Vars     map[string]string `mapstructure:"vars"`  // extra CALLPOP_<NAME> variables
	Stop     bool              `mapstructure:"stop"`
}

// Profile is a dialled line (or tenant) with its own settings.
type Profile struct {
	Name           string   `mapstructure:"name"`
	DNIS           []string `mapstructure:"dnis"`             // dialled numbers; digits compared, a trailing "*" is a prefix
	Region         string   `mapstructure:"region"`           // default region for parsing; "" = numbers section's
	Sources        []string `mapstructure:"sources"`          // CRM sources, in order; empty = all
	RuleSet        string   `mapstructure:"rule_set"`         // name in rule_sets; "" = rules
	NewCustomerURL string   `mapstructure:"new_customer_url"` // overrides router.new_customer_url
}

// FastAGIConfig configures the FastAGI server.
type FastAGIConfig struct {
	Listen      string        `mapstructure:"listen"`       // "" disables the server
	ReadTimeout time.Duration `mapstructure:"read_timeout"` // deadline for every read from Asterisk
	MaxSessions int           `mapstructure:"max_sessions"` // concurrent sessions; further connections are closed
	// Allow lists the sources (CIDRs) that may connect; others are closed at
	// once. The default, loopback only, is refused on a listener bound
	// beyond loopback.
	Allow []string `mapstructure:"allow"`
}

// DefaultConfig returns the defaults documented in config.example.yaml.
func DefaultConfig() Config {
	return Config{
		Timezone: "Local",
		Priority: PriorityConfig{Default: 0, Min: 0, Max: 100, QueuePrioScale: 1, CCBaseScoreScale: 60},
		Flags: FlagsConfig{
			BlockListReload: 10 * time.Second,
			RegionField:     "region",
			VIPTiers:        []string{"vip"},
		},
		Rules: DefaultRules(),
		FastAGI: FastAGIConfig{Listen: "127.0.0.1:4573", ReadTimeout: 5 * time.Second, MaxSessions: 256,
			Allow: slices.Clone(netallow.DefaultAllow)},
		AnswerReserve: 10 * time.Millisecond,
	}
}

// DefaultRules is the default rule set (also in config.example.yaml): fraud
// suspects to the fraud desk at the lowest priority, VIPs first to senior
// agents, known customers (one match, or the best of several) to their
// language's queue, unknown callers to a general queue.
func DefaultRules() []Rule {
	return []Rule{
		{Name: "fraud-desk", When: `"fraud_suspect" in flags`, Then: Then{Priority: 0, Queue: "fraud-desk"}, Stop: true},
		{Name: "vip-first", When: `"vip" in flags`, Then: Then{Priority: 10, Queue: "vip", Skill: "senior"}, Stop: true},
		{Name: "language-queue", When: `match in ["hit", "multiple"] && lower(customer.language) in ["nl", "de", "fr", "es"]`,
			Then: Then{Priority: 5, Queue: `="support-" + lower(customer.language)`}, Stop: true},
		{Name: "known-customer", When: `match in ["hit", "multiple"]`, Then: Then{Priority: 5, Queue: "support"}, Stop: true},
		{Name: "unknown-caller", When: `match not in ["hit", "multiple"]`, Then: Then{Priority: 1, Queue: "general"}},
	}
}

// Validate checks the section as a whole, rules included (they are
// compiled); errors name the key ("router.x: why").
func (c *Config) Validate() error {
	var errs []error
	if _, err := loadLocation(c.Timezone); err != nil {
		errs = append(errs, fmt.Errorf("router.timezone: %w", err))
	}
	if err := checkURLTemplate(c.NewCustomerURL); err != nil {
		errs = append(errs, fmt.Errorf("router.new_customer_url: %w", err))
	}
	if c.AnswerReserve < 0 {
		errs = append(errs, fmt.Errorf("router.answer_reserve: must not be negative, got %s", c.AnswerReserve))
	}
	p := c.Priority
	if p.Min > p.Max {
		errs = append(errs, fmt.Errorf("router.priority.min: %d is above router.priority.max %d", p.Min, p.Max))
	}
	if p.Default < p.Min || p.Default > p.Max {
		errs = append(errs, fmt.Errorf("router.priority.default: %d is outside min..max (%d..%d)", p.Default, p.Min, p.Max))
	}
	if p.QueuePrioScale < 0 {
		errs = append(errs, errors.New("router.priority.queue_prio_scale: must not be negative"))
	}
	if p.CCBaseScoreScale < 0 {
		errs = append(errs, errors.New("router.priority.cc_base_score_scale: must not be negative"))
	}
	if c.Flags.BlockListFile != "" && c.Flags.BlockListReload < 0 {
		errs = append(errs, errors.New("router.flags.block_list_reload: must not be negative"))
	}
	for i, t := range c.Flags.VIPTiers {
		if strings.TrimSpace(t) == "" {
			errs = append(errs, fmt.Errorf("router.flags.vip_tiers[%d]: empty", i))
		}
	}
	errs = append(errs, c.validateProfiles()...)
	errs = append(errs, c.FastAGI.validate()...)
	errs = append(errs, c.validateRules()...)
	return errors.Join(errs...)
}

// validateProfiles checks router.profiles.
func (c *Config) validateProfiles() []error {
	var errs []error
	for i, r := range c.Profiles {
		key := fmt.Sprintf("router.profiles[%d]", i)
		if r.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: required", key))
		}
		for j := range i {
			if c.Profiles[j].Name == r.Name && r.Name != "" {
				errs = append(errs, fmt.Errorf("%s.name: %q is used twice", key, r.Name))
			}
		}
		for j, d := range r.DNIS {
			if !callerid.ValidDNIS(d) {
				errs = append(errs, fmt.Errorf("%s.dnis[%d]: %q has no digits", key, j, d))
			}
		}
		if r.Region != "" && !isRegion(r.Region) {
			errs = append(errs, fmt.Errorf("%s.region: %q is not a two-letter region code", key, r.Region))
		}
		if r.RuleSet != "" {
			if _, ok := c.ruleSet(r.RuleSet); !ok {
				errs = append(errs, fmt.Errorf("%s.rule_set: %q is not in router.rule_sets", key, r.RuleSet))
			}
		}
		if err := checkURLTemplate(r.NewCustomerURL); err != nil {
			errs = append(errs, fmt.Errorf("%s.new_customer_url: %w", key, err))
		}
	}
	return errs
}

// validate checks router.fastagi (nothing when it is off).
func (a FastAGIConfig) validate() []error {
	if a.Listen == "" {
		return nil
	}
	var errs []error
	if _, _, err := net.SplitHostPort(a.Listen); err != nil {
		errs = append(errs, fmt.Errorf("router.fastagi.listen: %w", err))
	}
	if a.ReadTimeout <= 0 {
		errs = append(errs, errors.New("router.fastagi.read_timeout: must be positive"))
	}
	if a.MaxSessions <= 0 {
		errs = append(errs, errors.New("router.fastagi.max_sessions: must be positive"))
	}
	if _, err := netallow.Parse("router.fastagi.allow", a.Allow); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, netallow.CheckBind(a.Listen, a.Allow, "router.fastagi.allow", "CALLPOP_ROUTER_FASTAGI_ALLOW"))
	return errs
}

// validateRules checks that router.rules and every rule set compile.
func (c *Config) validateRules() []error {
	var errs []error
	if _, err := compileRules("router.rules", c.Rules, c.Timezone); err != nil {
		errs = append(errs, err)
	}
	for _, name := range sortedKeys(c.RuleSets) {
		if _, err := compileRules("router.rule_sets."+name, c.RuleSets[name], c.Timezone); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// CheckSources reports profiles naming CRM sources that are not among names
// (the crm.sources names); for the whole-config check in cmd/callpop.
func (c *Config) CheckSources(names []string) error {
	var errs []error
	for i, p := range c.Profiles {
		for j, s := range p.Sources {
			found := false
			for _, n := range names {
				if strings.EqualFold(n, s) {
					found = true
					break
				}
			}
			if !found {
				errs = append(errs, fmt.Errorf("router.profiles[%d].sources[%d]: %q is not a crm.sources name (have %s)",
					i, j, s, strings.Join(names, ", ")))
			}
		}
	}
	return errors.Join(errs...)
}

// ruleSet finds a rule set by name, case-insensitively (viper lower-cases map keys).
func (c *Config) ruleSet(name string) ([]Rule, bool) {
	for k, rs := range c.RuleSets {
		if strings.EqualFold(k, name) {
			return rs, true
		}
	}
	return nil, false
}

func quoteName(n string) string {
	if n == "" {
		return "(unnamed)"
	}
	return fmt.Sprintf("%q", n)
}

func loadLocation(tz string) (*time.Location, error) {
	if tz == "" || tz == "Local" {
		return time.Local, nil
	}
	return time.LoadLocation(tz)
}

func checkURLTemplate(u string) error {
	if u == "" {
		return nil
	}
	if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
		return errors.New("must be https or http")
	}
	return nil
}

func isRegion(s string) bool {
	if len(s) != 2 {
		return false
	}
	for i := range 2 {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}
