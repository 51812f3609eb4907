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
		te.router.now = func() time.Time { return time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC) } // Monday 15:00 in Amsterdam
		// Received from the real clock: the budget runs from it, the rules read the fixed one.
		d := te.router.Decide(context.Background(), call.Call{CLI: "0201234567", Received: time.Now()})
		if d.Queue != "vip" || d.Priority != 10 {
			t.Errorf("docs block %d: VIP at 15:00 → queue %q priority %d", blocks, d.Queue, d.Priority)
		}
	}
	if blocks == 0 {
		t.Fatal("no router rules example in the docs")
	}
}
