package router

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/call"

	"github.com/spf13/viper"
)

// decodeRouterYAML decodes a `router:` section the way cmd/callpop does
// (viper, exact keys) over DefaultConfig.
func decodeRouterYAML(t *testing.T, data []byte) (Config, error) {
	t.Helper()
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Rules = nil
	err := v.Sub("router").UnmarshalExact(&cfg)
	return cfg, err
}

// The router section of config.example.yaml documents exactly the defaults,
// and its rule set is DefaultRules.
func TestExampleSectionIsDefault(t *testing.T) {
	raw, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Skipf("no config.example.yaml: %v", err)
	}
	cfg, err := decodeRouterYAML(t, raw)
	if err != nil {
		t.Fatalf("router section: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("router section does not validate: %v", err)
	}
	def := DefaultConfig()
	// Empty and nil maps/lists are the same configuration.
	for _, c := range []*Config{&cfg, &def} {
		if len(c.TierPriority) == 0 {
			c.TierPriority = nil
		}
		if len(c.RuleSets) == 0 {
			c.RuleSets = nil
		}
		if len(c.Profiles) == 0 {
			c.Profiles = nil
		}
	}
	if !reflect.DeepEqual(cfg, def) {
		t.Fatalf("config.example.yaml router section differs from DefaultConfig()\n example %+v\n default %+v", cfg, def)
	}
}

// Hot reload from a file as cmd/callpop does it: decode, Reload; a file with
// a broken rule is rejected and the old rules keep serving.
func TestReloadFromFile(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	c := call.Call{CLI: "0201234567"}
	if q := te.router.Decide(context.Background(), c).Queue; q != "vip" {
		t.Fatalf("queue %q", q)
	}
	load := func(yaml string) error {
		cfg, err := decodeRouterYAML(t, []byte(yaml))
		if err != nil {
			return err
		}
		cfg.FastAGI.Listen = ""
		return te.router.Reload(cfg)
	}
	good := `
router:
  timezone: UTC
  rules:
    - name: everyone-to-sales
      when: 'match == "hit"'
      then: {queue: sales, priority: 7, vars: {campaign: winter}}
`
	if err := load(good); err != nil {
		t.Fatal(err)
	}
	d := te.router.Decide(context.Background(), c)
	if d.Queue != "sales" || d.Priority != 7 || d.Extra["CAMPAIGN"] != "winter" {
		t.Fatalf("after reload: %q %d %v", d.Queue, d.Priority, d.Extra)
	}
	for _, bad := range []struct{ name, yaml, want string }{
		{"typo in a field", `
router:
  rules:
    - name: vip-first
      when: 'custmer.tier == "vip"'
      then: {queue: vip}
`, `router.rules[0] "vip-first": unknown name custmer`},
		{"priority not an integer", `
router:
  rules:
    - name: prio
      then: {priority: high}
`, `router.rules[0] "prio": then.priority: "high" is not an integer`},
		{"unknown output", `
router:
  rules:
    - name: x
      then: {queueue: vip}
`, `queueue`},
	} {
		t.Run(bad.name, func(t *testing.T) {
			err := load(bad.yaml)
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Fatalf("load = %v, want %q", err, bad.want)
			}
			if q := te.router.Decide(context.Background(), c).Queue; q != "sales" {
				t.Fatalf("after a bad file: queue %q, want the previous rules", q)
			}
		})
	}
}

// The rules shown in docs/dialplan-routing.md are copy-paste material: they
// must load, and behave as the text says.
func TestDocsRulesCompile(t *testing.T) {
	raw, err := os.ReadFile("../docs/dialplan-routing.md")
	if err != nil {
		t.Skipf("no docs: %v", err)
	}
	blocks := 0
	for _, part := range strings.Split(string(raw), "```yaml\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		if !strings.HasPrefix(block, "router:") {
			continue
		}
		blocks++
		cfg, err := decodeRouterYAML(t, []byte(block))
		if err != nil {
			t.Fatalf("docs block %d: %v\n%s", blocks, err, block)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("docs block %d: %v\n%s", blocks, err, block)
		}
		cfg.FastAGI.Listen = ""
		te := newTestEnv(t, cfg, nil, testBudget)
		ams, err := time.LoadLocation("Europe/Amsterdam")
		if err != nil {
			t.Fatal(err)
		}
		// The rule clock a year either side of the real date: the decisions
		// the text documents hold on any date, and deadlines stay real.
		for _, years := range []int{-1, 1} {
			base := time.Now().AddDate(years, 0, 0)
			for _, tt := range []struct {
				when   time.Time
				queue  string
				prio   int
				closed string
			}{
				{localAt(base, ams, time.Monday, 15, 0), "vip", 10, ""},
				{localAt(base, ams, time.Wednesday, 17, 29), "vip", 10, ""},
				{localAt(base, ams, time.Monday, 8, 59), "voicemail", 0, "yes"},
				{localAt(base, ams, time.Friday, 17, 30), "voicemail", 0, "yes"},
				{localAt(base, ams, time.Saturday, 15, 0), "voicemail", 0, "yes"},
			} {
				te.router.ruleClock = func() time.Time { return tt.when }
				d := te.router.Decide(context.Background(), call.Call{CLI: "0201234567"})
				if d.Match != call.MatchHit || d.Queue != tt.queue || (tt.prio != 0 && d.Priority != tt.prio) ||
					varValue(d, "CALLPOP_CLOSED") != tt.closed {
					t.Errorf("docs block %d, VIP caller at %s: match %s queue %q priority %d CALLPOP_CLOSED %q; want queue %q priority %d closed %q",
						blocks, tt.when.Format("Mon 2006-01-02 15:04 MST"), d.Match, d.Queue, d.Priority,
						varValue(d, "CALLPOP_CLOSED"), tt.queue, tt.prio, tt.closed)
				}
			}
		}
	}
	if blocks == 0 {
		t.Fatal("no router rules example in the docs")
	}
}

// localAt is the first given weekday at hh:mm in loc on or after t's date
// there: a rule-clock instant relative to the real date, never a fixed one.
func localAt(t time.Time, loc *time.Location, wd time.Weekday, hh, mm int) time.Time {
	t = t.In(loc)
	d := time.Date(t.Year(), t.Month(), t.Day(), hh, mm, 0, 0, loc)
	return d.AddDate(0, 0, (int(wd)-int(d.Weekday())+7)%7)
}
