package main

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The image's bases are pinned by digest, its HEALTHCHECK runs `callpop
// healthcheck` in exec form (no shell in the image), and with the image's
// ENV that asks http://127.0.0.1:8080/readyz.
func TestDockerfileImage(t *testing.T) {
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(text, -1)
	if len(froms) < 2 {
		t.Fatalf("FROM lines: %q", froms)
	}
	for _, f := range froms {
		if !regexp.MustCompile(`^[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}$`).MatchString(f[1]) {
			t.Errorf("base image %s is not pinned as name:tag@sha256:digest", f[1])
		}
	}
	final := text[strings.LastIndex(text, "\nFROM "):]
	m := regexp.MustCompile(`(?m)^HEALTHCHECK (?:--\S+ )*\\?\n?\s*CMD (\[.*\])$`).FindStringSubmatch(final)
	if m == nil {
		t.Fatal("the final image has no HEALTHCHECK ... CMD [...]")
	}
	var argv []string
	if err := json.Unmarshal([]byte(m[1]), &argv); err != nil || len(argv) < 2 || argv[0] != "/usr/local/bin/callpop" || argv[1] != "healthcheck" {
		t.Fatalf("HEALTHCHECK CMD %s (%v), want the exec form of callpop healthcheck", m[1], err)
	}
	cmd, rest, err := newRootCmd().Find(argv[1:])
	if err != nil || cmd.Name() != "healthcheck" || cmd.ParseFlags(rest) != nil {
		t.Fatalf("HEALTHCHECK's arguments %q do not parse: %v", argv[1:], err)
	}
	image, _ := parseDockerfile(t, "../../Dockerfile")
	for k, v := range image {
		t.Setenv(k, v)
	}
	lc, _ := loadConfig(os.Getenv("CALLPOP_CONFIG"), true)
	if !lc.Decoded {
		t.Fatal("the image's configuration does not decode")
	}
	if got := healthURL(&lc.Config); got != "http://127.0.0.1:8080/readyz" {
		t.Fatalf("the image's health check asks %s", got)
	}
	lc.TLS.CertFile, lc.TLS.KeyFile = "/etc/callpop/tls/tls.crt", "/etc/callpop/tls/tls.key"
	if got := healthURL(&lc.Config); got != "https://127.0.0.1:8080/readyz" {
		t.Fatalf("with TLS the image's health check asks %s", got)
	}
}

// goBuildLine is the `go build` of the Dockerfile and README: static, paths
// trimmed, the version from the build.
var goBuildLine = regexp.MustCompile(`CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main\.version=[^"]+" -o \S+ \./cmd/callpop`)

// README's build line is the Dockerfile's, and it makes a static binary.
func TestREADMEBuildsStatic(t *testing.T) {
	for _, f := range []string{"../../Dockerfile", "../../README.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !goBuildLine.Match(b) {
			t.Errorf("%s has no %s", f, goBuildLine)
		}
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	out := filepath.Join(t.TempDir(), "callpop")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=test", "-o", out, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Skipf("not an ELF binary here: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary asks for a dynamic loader (PT_INTERP): not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the binary needs %q: not static", libs)
	}
	v, err := exec.Command(out, "version").Output()
	if err != nil || !strings.Contains(string(v), "test") {
		t.Fatalf("callpop version: %q %v", v, err)
	}
}
