package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/internal/testcerts"
)

// healthcheck exits 0 and prints "ready" against a ready instance.
func TestHealthcheckReady(t *testing.T) {
	base, _, stop := startRun(t, writeConfig(t, runConfig))
	defer func() { _ = stop() }()
	waitReady(t, base, true)
	out, _, err := execute(t, context.Background(), "healthcheck", "--url", base+"/readyz")
	if err != nil || out != "ready\n" {
		t.Fatalf("got %q, %v", out, err)
	}
}

// Against an instance whose PBX is away it fails with the instance's reason.
func TestHealthcheckUnready(t *testing.T) {
	sim, err := arisim.New(arisim.Options{Username: "callpop", Password: "test-ari-secret", App: "callpop-test"})
	if err != nil {
		t.Fatal(err)
	}
	sim.Close() // Asterisk is down
	t.Setenv("CALLPOP_PBX_ASTERISK_PASSWORD", "test-ari-secret")
	base, _, stop := startRun(t, writeConfig(t, asteriskRunConfig(sim.URL())))
	defer func() { _ = stop() }()
	waitReady(t, base, false)
	out, _, err := execute(t, context.Background(), "healthcheck", "--url", base+"/readyz")
	if err == nil || out != "" || !strings.HasPrefix(err.Error(), "not ready (503): pbx: ") {
		t.Fatalf("got %q, %v", out, err)
	}
}

// Against no instance at all: exit status 1 and one line saying why, from
// the real process.
func TestHealthcheckAbsent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cmd := exec.Command(os.Args[0], "healthcheck", "--config", writeConfig(t, testConfig), "--url", "http://"+addr+"/readyz", "--timeout", "5s")
	cmd.Env = append(os.Environ(), execMainEnv+"=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "not ready: http://"+addr+"/readyz unreachable") {
		t.Fatalf("output %q", out)
	}
}

// Over TLS: the instance's own certificate (tls.cert_file of the same
// configuration) is trusted; without it, the certificate from an unknown CA
// is not.
func TestHealthcheckTLS(t *testing.T) {
	dir := t.TempDir()
	srv := testcerts.NewCA(t, "callpop test CA").Server(t, "callpop.test").Write(t, dir, "server")
	cfg := writeConfig(t, runConfig+"tls: {cert_file: "+srv.CertFile+", key_file: "+srv.KeyFile+"}\n")
	base, _, stop := startRun(t, cfg)
	defer func() { _ = stop() }()
	url := "https://" + strings.TrimPrefix(base, "http://") + "/readyz"
	out, _, err := execute(t, context.Background(), "healthcheck", "--config", cfg, "--url", url)
	if err != nil || out != "ready\n" {
		t.Fatalf("with the instance's config: %q, %v", out, err)
	}
	out, _, err = execute(t, context.Background(), "healthcheck", "--config", writeConfig(t, testConfig), "--url", url)
	if err == nil || out != "" || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("with a config that does not name the certificate: %q, %v", out, err)
	}
	// Plain HTTP to the TLS listener is not "ready" either.
	if _, _, err := execute(t, context.Background(), "healthcheck", "--url", base+"/readyz"); err == nil {
		t.Fatal("plain HTTP to a TLS listener reported ready")
	}
}

// Without --url the address and scheme come from listen and tls.
func TestHealthURL(t *testing.T) {
	for _, tt := range []struct {
		listen string
		tls    bool
		want   string
	}{
		{"0.0.0.0:8080", false, "http://127.0.0.1:8080/readyz"},
		{":9090", true, "https://127.0.0.1:9090/readyz"},
		{"[::]:8443", true, "https://[::1]:8443/readyz"},
		{"127.0.0.2:8080", false, "http://127.0.0.2:8080/readyz"},
		{"127.0.0.1:0", false, defaultHealthURL},
	} {
		cfg := DefaultConfig()
		cfg.Listen = tt.listen
		if tt.tls {
			cfg.TLS.CertFile, cfg.TLS.KeyFile = "/c", "/k"
		}
		if got := healthURL(&cfg); got != tt.want {
			t.Errorf("%s tls=%v: %s, want %s", tt.listen, tt.tls, got, tt.want)
		}
	}
	if got := healthURL(nil); got != defaultHealthURL {
		t.Errorf("no config: %s", got)
	}
}
