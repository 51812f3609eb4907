package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

const unitPath = "../../deploy/systemd/callpop.service"

// knownEnv is every CALLPOP_* variable that overrides a configuration key.
func knownEnv() map[string]bool {
	m := map[string]bool{"CALLPOP_CONFIG": true}
	for _, k := range envKeys(reflect.TypeFor[Config]()) {
		m[envName(k)] = true
	}
	return m
}

// deploy/systemd/callpop.service is what the issue asks (Type=notify, a user
// of its own, hardening, LoadCredential= for the secrets read through *_file
// keys, Restart=on-failure), and `systemd-analyze verify` finds nothing in it.
func TestSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	for _, want := range []string{
		"Type=notify", "DynamicUser=yes", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"PrivateTmp=yes", "CapabilityBoundingSet=\n", "WatchdogSec=",
		"ExecStart=/usr/local/bin/callpop run --config /etc/callpop/callpop.yaml",
	} {
		if !strings.Contains(unit, "\n"+want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	// Every credential is read by callpop through a *_FILE variable naming
	// a key, and every such variable points at a credential.
	creds := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^LoadCredential=([^:\s]+):/\S+$`).FindAllStringSubmatch(unit, -1) {
		creds[m[1]] = true
	}
	if len(creds) == 0 {
		t.Fatal("no LoadCredential= lines")
	}
	known := knownEnv()
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^Environment=(CALLPOP_\w+)=(.*)$`).FindAllStringSubmatch(unit, -1) {
		name, val := m[1], m[2]
		if !known[name] {
			t.Errorf("Environment=%s overrides no configuration key", name)
		}
		cred, ok := strings.CutPrefix(val, "%d/")
		if !strings.HasSuffix(name, "_FILE") || !ok || !creds[cred] {
			t.Errorf("Environment=%s=%s: want a *_FILE variable pointing at a credential (%%d/<name>)", name, val)
		}
		used[cred] = true
	}
	for c := range creds {
		if !used[c] {
			t.Errorf("LoadCredential=%s is read by no *_FILE variable", c)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian's systemd package): the unit is not verified")
	}
	// verify wants ExecStart's binary to exist: this test binary stands in
	// for /usr/local/bin/callpop.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	check := func(name, text string) (string, error) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(text, "/usr/local/bin/callpop", self)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", p).CombinedOutput()
		var ours []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, name) { // not other units' complaints
				ours = append(ours, l)
			}
		}
		return strings.Join(ours, "\n"), err
	}
	if out, err := check("callpop.service", unit); err != nil || out != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check sees a mistake: an unknown key is only a warning to verify.
	if out, _ := check("typo.service", strings.Replace(unit, "\nType=notify", "\nTyp=notify", 1)); !strings.Contains(out, "Typ") {
		t.Fatalf("a misspelt key passed verify: %q", out)
	}
}
