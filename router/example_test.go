package router

import (
	"bytes"
	"os"
	"reflect"
	"testing"

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
