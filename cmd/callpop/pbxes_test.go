package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// loadPBXes decodes and validates file under env, as loadConfig does.
func loadPBXes(t *testing.T, file string, env map[string]string) (Config, error) {
	t.Helper()
	cfg, err := decodeConfig([]byte(file), envMap(env))
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// The single pbx section alone works as before: one PBX named after its kind.
func TestPBXSingleSectionIsOneEntry(t *testing.T) {
	cfg, err := loadPBXes(t, `
pbx:
  kind: asterisk
  asterisk: {url: "http://127.0.0.1:8088", username: callpop, app: callpop}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, legacy := cfg.pbxList()
	if !legacy || len(list) != 1 || list[0].Name != "asterisk" || list[0].Kind != PBXAsterisk || !list[0].IsRequired() ||
		list[0].Asterisk.URL != "http://127.0.0.1:8088" || list[0].Asterisk.PingInterval != 5*time.Second {
		t.Fatalf("pbx alone: legacy %v, %+v", legacy, list)
	}
	cfg, err = loadPBXes(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := cfg.pbxList(); len(list) != 0 {
		t.Fatalf("no PBX configured: %+v", list)
	}
}

// pbxes alone: every entry decodes over the adapters' defaults, required
// defaults to true, and each entry's password comes from its own variable.
func TestPBXesAlone(t *testing.T) {
	t.Setenv("CALLPOP_PBXES_FS_B_PASSWORD", "env-secret")
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "ari-password")
	if err := os.WriteFile(pwFile, []byte("file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadPBXes(t, `
pbxes:
  - name: ast-a
    kind: asterisk
    asterisk: {url: "http://127.0.0.1:8088", username: callpop, app: callpop, password_file: `+pwFile+`}
  - name: fs-b
    required: false
    kind: freeswitch
    freeswitch: {mode: inbound, address: "127.0.0.1:8021", reconnect_max: 2s}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, legacy := cfg.pbxList()
	if legacy || len(list) != 2 {
		t.Fatalf("legacy %v, %d entries", legacy, len(list))
	}
	a, f := list[0], list[1]
	if a.Name != "ast-a" || !a.IsRequired() || a.Asterisk.PingInterval != 5*time.Second || a.Asterisk.MaxCalls != 1000 {
		t.Fatalf("ast-a: %+v", a)
	}
	if f.Name != "fs-b" || f.IsRequired() || f.FreeSWITCH.ReconnectMax != 2*time.Second || f.FreeSWITCH.MaxCalls != 2000 {
		t.Fatalf("fs-b: %+v", f)
	}
	if a.Asterisk.PasswordEnvName != "CALLPOP_PBXES_AST_A_PASSWORD" || f.FreeSWITCH.PasswordEnvName != "CALLPOP_PBXES_FS_B_PASSWORD" {
		t.Fatalf("password variables: %q %q", a.Asterisk.PasswordEnvName, f.FreeSWITCH.PasswordEnvName)
	}
}

// Env overrides per entry: CALLPOP_PBXES_<NAME>_PASSWORD is the entry's
// password (and not a typo warning), and without it the entry says which
// variable to set; the whole list may come as JSON in CALLPOP_PBXES.
func TestPBXesEnvOverrides(t *testing.T) {
	file := `
pbxes:
  - name: fs-b
    kind: freeswitch
    freeswitch: {mode: inbound, address: "127.0.0.1:8021"}
`
	if _, err := loadPBXes(t, file, nil); err == nil || !strings.Contains(err.Error(), "pbxes[0].freeswitch.password: required (set password_file or CALLPOP_PBXES_FS_B_PASSWORD)") {
		t.Fatalf("no password: %v", err)
	}
	t.Setenv("CALLPOP_PBXES_FS_B_PASSWORD", "env-secret")
	if _, err := loadPBXes(t, file, nil); err != nil {
		t.Fatalf("password from CALLPOP_PBXES_FS_B_PASSWORD: %v", err)
	}
	if w := unknownEnv([]string{"CALLPOP_PBXES_FS_B_PASSWORD=x"}, nil); len(w) != 0 {
		t.Fatalf("warned about an entry's password variable: %v", w)
	}

	cfg, err := loadPBXes(t, "", map[string]string{
		"CALLPOP_PBXES": `[{"name":"fs-b","kind":"freeswitch","freeswitch":{"mode":"inbound","address":"127.0.0.1:8021","reconnect_min":"50ms"}}]`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := cfg.pbxList(); len(list) != 1 || list[0].Name != "fs-b" || list[0].FreeSWITCH.ReconnectMin != 50*time.Millisecond ||
		list[0].FreeSWITCH.ReconnectMax != 5*time.Second {
		t.Fatalf("from CALLPOP_PBXES: %+v", list)
	}
}

// Config errors: both sections (naming both), duplicate and malformed
// names, a missing kind, an unknown key in an entry, and an entry's own
// checks named after the entry.
func TestPBXesErrors(t *testing.T) {
	ari := `kind: asterisk
    asterisk: {url: "http://127.0.0.1:8088", app: callpop}`
	for _, tc := range []struct {
		name, file, want string
	}{
		{"both", "pbx: {kind: asterisk}\npbxes:\n  - name: a\n    " + ari + "\n", "pbx and pbxes are both set"},
		{"duplicate", "pbxes:\n  - name: a\n    " + ari + "\n  - name: a\n    " + ari + "\n", `pbxes[1].name: "a" is also pbxes[0]'s name`},
		{"bad name", "pbxes:\n  - name: Site A\n    " + ari + "\n", `pbxes[0].name: must be lower-case letters`},
		{"no name", "pbxes:\n  - " + ari + "\n", `pbxes[0].name: must be lower-case letters`},
		{"no kind", "pbxes:\n  - name: a\n", `pbxes[0].kind: must be asterisk or freeswitch, got ""`},
		{"unknown key", "pbxes:\n  - name: a\n    " + ari + "\n    bogus: 1\n", "bogus: unknown key"},
		{"entry check", "pbxes:\n  - name: a\n    kind: asterisk\n    asterisk: {url: ftp://x, app: callpop}\n", "pbxes[0].asterisk.url: must be an http or https URL"},
		{"valid", "call: {budget: 100ms}\npbxes:\n  - name: a\n    " + ari + "\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadPBXes(t, tc.file, nil)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if tc.name == "both" && (!strings.Contains(err.Error(), "pbx ") || !strings.Contains(err.Error(), "pbxes")) {
				t.Fatalf("does not name both: %v", err)
			}
		})
	}
}

// /readyz reports every PBX by name, and is ready while every required
// one is: a PBX with required: false down is reported, not a 503.
func TestReadinessPerPBX(t *testing.T) {
	var astUp atomic.Bool
	astUp.Store(true)
	rd := &readiness{}
	rd.addPBX("pbx ast-a", "ast-a", true, func() (bool, string) {
		if astUp.Load() {
			return true, ""
		}
		return false, "reconnecting: connection refused"
	})
	rd.addPBX("pbx fs-b", "fs-b", false, func() (bool, string) { return false, "event socket 127.0.0.1:8021 not connected" })
	st := rd.status()
	if !st.Ready || st.Pbxes["ast-a"] != "ready" || st.Pbxes["fs-b"] != "event socket 127.0.0.1:8021 not connected" {
		t.Fatalf("optional PBX down: %+v", st)
	}
	astUp.Store(false)
	st = rd.status()
	if st.Ready || st.Pbxes["ast-a"] != "reconnecting: connection refused" || len(st.Reasons) != 1 || st.Reasons[0] != "pbx ast-a: reconnecting: connection refused" {
		t.Fatalf("required PBX down: %+v", st)
	}
}
