package main

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// The callbacks section checked with the rest: the PBX that dials, its
// dial string, unknown keys; run refuses callbacks without Redis.
func TestCallbacksConfig(t *testing.T) {
	base := "callbacks:\n  enabled: true\n  allowed_regions: [GB]\n"
	ast := "pbx:\n  kind: asterisk\n  asterisk: {url: \"http://127.0.0.1:8088\", username: callpop, password_file: /dev/null}\n"
	two := "pbxes:\n" +
		"  - {name: ast-a, kind: asterisk, asterisk: {url: \"http://127.0.0.1:8088\", username: callpop}}\n" +
		"  - {name: fs-b, kind: freeswitch, freeswitch: {mode: outbound, listen: \"127.0.0.1:8084\", events: false}}\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"no PBX", base, "callbacks.enabled: no PBX to dial on"},
		{"no endpoint", base + ast, "callbacks.asterisk.endpoint: required"},
		{"several PBXs, none named", base + two, "callbacks.pbx: required with several PBXs: the name of the one that dials (ast-a, fs-b)"},
		{"an unknown PBX", base + "  pbx: fs-c\n" + two, `callbacks.pbx: "fs-c" is not a configured PBX`},
		{"the named PBX's endpoint", base + "  pbx: fs-b\n  asterisk: {endpoint: \"PJSIP/{number}@t\"}\n" + two, "callbacks.freeswitch.endpoint: required"},
		{"unknown key", base + "  retries: 4\n", "callbacks.retries: unknown key"},
		{"no regions", "callbacks:\n  enabled: true\n", "callbacks.allowed_regions: required"},
		{"bad hours", "callbacks:\n  hours: [\"weekdays\"]\n", "callbacks.hours[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := decodeConfig([]byte(tc.yaml), noEnv)
			err = errors.Join(err, cfg.Validate())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	good := base + "  pbx: fs-b\n  freeswitch: {endpoint: \"sofia/gateway/trunk/{number}\"}\n" + two
	cfg, err := decodeConfig([]byte(good), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid callbacks refused: %v", err)
	}
	if e, err := cfg.callbacksPBX(); err != nil || e.Name != "fs-b" {
		t.Errorf("dialling PBX %q, %v", e.Name, err)
	}
	// run keeps the requests in Redis only; check-config says so
	p := &pipeline{cfg: cfg}
	if _, err := p.newCallbacks(nil, true); !errors.Is(err, errCallbacksNoRedis) {
		t.Errorf("run without Redis: %v", err)
	}
	out, _, err := execute(t, context.Background(), "check-config", "--config", writeConfig(t, runConfig+good))
	if err != nil || !strings.Contains(out, "warning: callbacks.enabled: needs cache.redis") || !strings.Contains(out, "OK") {
		t.Errorf("check-config: %v\n%s", err, out)
	}
}
