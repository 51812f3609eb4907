package router

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

// envFor builds a rule environment the way Decide does, for a record (nil =
// no customer) at a local time.
func envFor(match call.Match, c *call.Customer, at time.Time, flags ...string) *Env {
	e := &Env{Match: string(match), Flags: append([]string(nil), flags...), DNIS: "0800123456", Profile: "default"}
	if match == call.MatchHit || match == call.MatchMiss || match == call.MatchTimeout || match == call.MatchError {
		e.E164, e.Source, e.CountryCode, e.Region, e.NumberType, e.Geo = "+31201234567", "cli", 31, "NL", "fixed_line", "Amsterdam"
	}
	e.Customer, e.Record = customerEnv(c)
	e.setTime(at)
	return e
}

var (
	// Rule-clock inputs relative to the real date (never a fixed one).
	monday10 = localAt(time.Now(), time.UTC, time.Monday, 10, 0)
	monday20 = localAt(time.Now(), time.UTC, time.Monday, 20, 15)
	saturday = localAt(time.Now(), time.UTC, time.Saturday, 11, 0)

	janVIP   = &call.Customer{ID: "C-1001", Name: "Jan de Vries", Tier: "vip", Language: "nl", Phones: []string{"+31201234567"}, Extra: map[string]any{"region": "NL", "segment": "enterprise"}}
	anneNL   = &call.Customer{ID: "C-1002", Name: "Anne Bakker", Tier: "gold", Language: "NL", Extra: map[string]any{"region": "NL"}}
	bobEN    = &call.Customer{ID: "C-2001", Name: "Bob Smith", Tier: "standard", Language: "en", Extra: map[string]any{"region": "US", "open_tickets": 3}}
	dieterDE = &call.Customer{ID: "C-3001", Name: "Dieter Weber", Tier: "standard", Language: "de"}
)

func mustCompile(t *testing.T, rules []Rule) []*compiledRule {
	t.Helper()
	cr, err := compileRules("router.rules", rules, "UTC")
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return cr
}

func TestDefaultRules(t *testing.T) {
	rules := mustCompile(t, DefaultRules())
	tests := []struct {
		name      string
		env       *Env
		wantPrio  int
		wantQueue string
		wantSkill string
		wantRules []string
	}{
		{"vip customer", envFor(call.MatchHit, janVIP, monday10, "vip"), 10, "vip", "senior", []string{"vip-first"}},
		{"dutch customer, upper-case language", envFor(call.MatchHit, anneNL, monday10), 5, "support-nl", "", []string{"language-queue"}},
		{"german customer", envFor(call.MatchHit, dieterDE, monday10), 5, "support-de", "", []string{"language-queue"}},
		{"english customer", envFor(call.MatchHit, bobEN, monday10), 5, "support", "", []string{"known-customer"}},
		{"unknown caller", envFor(call.MatchMiss, nil, monday10), 1, "general", "", []string{"unknown-caller"}},
		{"anonymous caller", envFor(call.MatchAnonymous, nil, monday10), 1, "general", "", []string{"unknown-caller"}},
		{"crm timeout", envFor(call.MatchTimeout, nil, monday10), 1, "general", "", []string{"unknown-caller"}},
		{"fraud suspect beats vip", envFor(call.MatchHit, janVIP, monday10, "vip", "fraud_suspect"), 0, "fraud-desk", "", []string{"fraud-desk"}},
		{"blocked unknown number", envFor(call.MatchMiss, nil, monday10, "fraud_suspect"), 0, "fraud-desk", "", []string{"fraud-desk"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := evalRules(rules, tt.env, false)
			if !o.prioritySet || o.priority != tt.wantPrio || o.queue != tt.wantQueue || o.skill != tt.wantSkill {
				t.Errorf("got priority %d (set %v) queue %q skill %q; want %d %q %q", o.priority, o.prioritySet, o.queue, o.skill, tt.wantPrio, tt.wantQueue, tt.wantSkill)
			}
			if !slices.Equal(o.matched, tt.wantRules) {
				t.Errorf("matched %v, want %v", o.matched, tt.wantRules)
			}
			if o.errors != 0 {
				t.Errorf("%d rule errors", o.errors)
			}
		})
	}
}

// strategy is a richer rule set, as a business user would write it.
var strategy = []Rule{
	{Name: "after-hours", When: `weekend || hhmm < 900 || hhmm >= 1730`, Then: Then{Queue: "after-hours", Vars: map[string]string{"closed": "yes"}}, Stop: true},
	{Name: "sales-line", When: `dnis == "0800123456" && profile == "sales"`, Then: Then{Queue: "sales"}},
	{Name: "german-region", When: `region == "DE" || country_code == 49`, Then: Then{Language: "de", Skill: "german"}},
	{Name: "mobile", When: `number_type == "mobile"`, Then: Then{Flags: []string{"mobile_caller"}}},
	{Name: "enterprise", When: `customer.extra.segment == "enterprise"`, Then: Then{Priority: "=20 + len(customer.phones)", Vars: map[string]string{"segment": "=customer.extra.segment"}}},
	{Name: "open-tickets", When: `record["open_tickets"] != nil && record["open_tickets"] > 2`, Then: Then{Priority: 7, Flags: []string{"escalation"}, Skill: "care"}},
	{Name: "escalations-first", When: `"escalation" in flags`, Then: Then{Queue: "care"}},
}

func TestStrategyRules(t *testing.T) {
	rules := mustCompile(t, strategy)
	deCaller := func(typ string) *Env {
		e := envFor(call.MatchMiss, nil, monday10)
		e.E164, e.CountryCode, e.Region, e.NumberType, e.Geo = "+4915112345678", 49, "DE", typ, ""
		return e
	}
	sales := envFor(call.MatchMiss, nil, monday10)
	sales.Profile = "sales"
	tests := []struct {
		name string
		env  *Env
		want outcome // priority, queue, skill, language, flags, vars, matched
	}{
		{"weekend closes", envFor(call.MatchHit, janVIP, saturday), outcome{queue: "after-hours", vars: map[string]string{"CLOSED": "yes"}, matched: []string{"after-hours"}}},
		{"evening closes", envFor(call.MatchHit, bobEN, monday20), outcome{queue: "after-hours", vars: map[string]string{"CLOSED": "yes"}, matched: []string{"after-hours"}}},
		{"sales line by dnis and profile", sales, outcome{queue: "sales", matched: []string{"sales-line"}}},
		{"german mobile", deCaller("mobile"), outcome{language: "de", skill: "german", flags: []string{"mobile_caller"}, matched: []string{"german-region", "mobile"}}},
		{"german landline", deCaller("fixed_line"), outcome{language: "de", skill: "german", matched: []string{"german-region"}}},
		{"enterprise customer", envFor(call.MatchHit, janVIP, monday10), outcome{priority: 21, prioritySet: true, vars: map[string]string{"SEGMENT": "enterprise"}, matched: []string{"enterprise"}}},
		{"customer with open tickets", envFor(call.MatchHit, bobEN, monday10), outcome{priority: 7, prioritySet: true, skill: "care", queue: "care", flags: []string{"escalation"}, matched: []string{"open-tickets", "escalations-first"}}},
		{"plain caller", envFor(call.MatchHit, dieterDE, monday10), outcome{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := evalRules(rules, tt.env, false)
			if got.errors != 0 {
				t.Errorf("%d rule errors", got.errors)
			}
			got.errors = 0
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRulesSeeEarlierFlags(t *testing.T) {
	rules := mustCompile(t, []Rule{
		{Name: "a", When: `true`, Then: Then{Flags: []string{"x"}}},
		{Name: "b", When: `"x" in flags`, Then: Then{Queue: "seen-x"}},
	})
	e := envFor(call.MatchMiss, nil, monday10)
	o := evalRules(rules, e, false)
	if o.queue != "seen-x" || !slices.Equal(e.Flags, []string{"x"}) {
		t.Fatalf("queue %q flags %v", o.queue, e.Flags)
	}
}

func TestRuleRuntimeErrorSkipsRule(t *testing.T) {
	rules := mustCompile(t, []Rule{
		{Name: "bad", When: `customer.extra.score > 3`, Then: Then{Queue: "never"}}, // score is a string below: runtime type error
		{Name: "good", When: `true`, Then: Then{Queue: "fallback"}},
	})
	e := envFor(call.MatchHit, &call.Customer{ID: "1", Extra: map[string]any{"score": "high"}}, monday10)
	o := evalRules(rules, e, true)
	if o.queue != "fallback" || o.errors != 1 {
		t.Fatalf("queue %q errors %d", o.queue, o.errors)
	}
	if o.trace[0].Error == "" || o.trace[0].Matched || !o.trace[1].Matched {
		t.Fatalf("trace %+v", o.trace)
	}
}

func TestExplainTrace(t *testing.T) {
	rules := mustCompile(t, DefaultRules())
	o := evalRules(rules, envFor(call.MatchHit, anneNL, monday10), true)
	if len(o.trace) != 3 {
		t.Fatalf("trace has %d entries, want 3 (stop after language-queue): %+v", len(o.trace), o.trace)
	}
	last := o.trace[2]
	if last.Name != "language-queue" || !last.Matched || !last.Stop || last.Set["queue"] != "support-nl" || last.Set["priority"] != 5 {
		t.Fatalf("trace %+v", last)
	}
	if o.trace[0].Matched || o.trace[0].When != `"fraud_suspect" in flags` {
		t.Fatalf("trace %+v", o.trace[0])
	}
}

func TestInvalidRulesRejected(t *testing.T) {
	good := Rule{Name: "ok", When: `match == "hit"`, Then: Then{Queue: "q"}}
	tests := []struct {
		name string
		rule Rule
		want string
	}{
		{"unknown field", Rule{Name: "vip-first", When: `custmer.tier == "vip"`}, `router.rules[1] "vip-first": unknown name custmer`},
		{"unknown customer field", Rule{Name: "typo", When: `customer.teir == "vip"`}, `router.rules[1] "typo": type router.CustomerEnv has no field teir`},
		{"syntax", Rule{Name: "syntax", When: `match == "hit" &&`}, `router.rules[1] "syntax": unexpected token EOF`},
		{"when not bool", Rule{Name: "notbool", When: `customer.tier`}, `router.rules[1] "notbool": expected bool, but got string`},
		{"priority word", Rule{Name: "prio", Then: Then{Priority: "high"}}, `router.rules[1] "prio": then.priority: "high" is not an integer`},
		{"priority fraction", Rule{Name: "frac", Then: Then{Priority: 2.5}}, `router.rules[1] "frac": then.priority: 2.5 is not an integer`},
		{"priority expression of a string", Rule{Name: "pe", Then: Then{Priority: "=customer.name"}}, `router.rules[1] "pe": then.priority: expected int, but got string`},
		{"priority list", Rule{Name: "pl", Then: Then{Priority: []any{1}}}, `router.rules[1] "pl": then.priority: [1] ([]interface {}) is not an integer`},
		{"queue expression of a number", Rule{Name: "qe", Then: Then{Queue: "=1 + 2"}}, `router.rules[1] "qe": then.queue: expected string, but got int`},
		{"bad var expression", Rule{Name: "ve", Then: Then{Vars: map[string]string{"x": "=nope"}}}, `router.rules[1] "ve": then.vars.x: unknown name nope`},
		{"bad flag", Rule{Name: "fl", Then: Then{Flags: []string{"two words"}}}, `router.rules[1] "fl": then.flags[0]: "two words" must be`},
		{"no name", Rule{When: "true"}, `router.rules[1] (unnamed): name: required`},
		{"duplicate name", Rule{Name: "ok", When: "true"}, `router.rules[1] "ok": name: also used by router.rules[0]`},
		{"queue with a comma", Rule{Name: "qc", Then: Then{Queue: "sales,vip"}}, `router.rules[1] "qc": then.queue: "sales,vip" has characters a channel variable cannot carry`},
		{"var with a dollar", Rule{Name: "vd", Then: Then{Vars: map[string]string{"x": "${EXEC}"}}}, `router.rules[1] "vd": then.vars.x:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Rules = []Rule{good, tt.rule}
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v\nwant it to contain %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n |") {
				t.Errorf("error carries a multi-line snippet: %q", err)
			}
			rep := CompileReport(cfg)
			if len(rep) != 2 || rep[0].Err != "" || rep[1].Err == "" || rep[1].Key != "router.rules[1]" {
				t.Errorf("CompileReport = %+v", rep)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"bad timezone", func(c *Config) { c.Timezone = "Mars/Olympus" }, "router.timezone:"},
		{"min above max", func(c *Config) { c.Priority.Min, c.Priority.Max = 10, 5 }, "router.priority.min:"},
		{"default outside", func(c *Config) { c.Priority.Default = 500 }, "router.priority.default:"},
		{"negative scale", func(c *Config) { c.Priority.QueuePrioScale = -1 }, "router.priority.queue_prio_scale:"},
		{"profile without name", func(c *Config) { c.Profiles = []Profile{{DNIS: []string{"0800"}}} }, "router.profiles[0].name: required"},
		{"profile dnis junk", func(c *Config) { c.Profiles = []Profile{{Name: "a", DNIS: []string{"abc"}}} }, "router.profiles[0].dnis[0]:"},
		{"profile unknown rule set", func(c *Config) { c.Profiles = []Profile{{Name: "a", RuleSet: "nope"}} }, "router.profiles[0].rule_set:"},
		{"profile region", func(c *Config) { c.Profiles = []Profile{{Name: "a", Region: "Netherlands"}} }, "router.profiles[0].region:"},
		{"new customer url", func(c *Config) { c.NewCustomerURL = "javascript:alert(1)" }, "router.new_customer_url:"},
		{"fastagi listen", func(c *Config) { c.FastAGI.Listen = "4573" }, "router.fastagi.listen:"},
		{"fastagi timeout", func(c *Config) { c.FastAGI.ReadTimeout = 0 }, "router.fastagi.read_timeout:"},
		{"bad rule in a set", func(c *Config) { c.RuleSets = map[string][]Rule{"vip": {{Name: "x", When: "nope"}}} }, `router.rule_sets.vip[0] "x": unknown name nope`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.modify(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cfg.Timezone = "Europe/Amsterdam"
	cfg.RuleSets = map[string][]Rule{"tenantb": DefaultRules()}
	cfg.Profiles = []Profile{{Name: "b", DNIS: []string{"+31 800 1234", "0900*"}, Region: "NL", RuleSet: "TenantB"}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
}

func TestCheckSources(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Profiles = []Profile{{Name: "a", Sources: []string{"main", "Backup"}}, {Name: "b", Sources: []string{"nope"}}}
	err := cfg.CheckSources([]string{"main", "backup"})
	if err == nil || !strings.Contains(err.Error(), `router.profiles[1].sources[0]: "nope" is not a crm.sources name`) || strings.Contains(err.Error(), "profiles[0]") {
		t.Fatalf("CheckSources = %v", err)
	}
	def := DefaultConfig()
	if err := def.CheckSources(nil); err != nil {
		t.Fatal(err)
	}
}
