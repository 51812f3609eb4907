package ari

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/callpop/callpop/adapters"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"https", func(c *Config) { c.URL = "https://pbx.internal:8089" }, ""},
		{"label", func(c *Config) { c.Continue.Label = "after" }, ""},
		{"context extension priority", func(c *Config) { c.Continue = ContinueConfig{Context: "q", Extension: "s", Priority: 1} }, ""},
		{"bad url", func(c *Config) { c.URL = "ws://x" }, "pbx.asterisk.url: must be an http or https URL"},
		{"no host", func(c *Config) { c.URL = "http://" }, "pbx.asterisk.url:"},
		{"empty app", func(c *Config) { c.App = "" }, "pbx.asterisk.app:"},
		{"app with comma", func(c *Config) { c.App = "callpop,vip" }, "pbx.asterisk.app:"},
		{"both passwords", func(c *Config) { c.Password, c.PasswordFile = "x", "/run/x" }, "pbx.asterisk.password: password and password_file"},
		{"negative reserve", func(c *Config) { c.ApplyReserve = -time.Millisecond }, "pbx.asterisk.apply_reserve:"},
		{"zero ping", func(c *Config) { c.PingInterval = 0 }, "pbx.asterisk.ping_interval: must be positive"},
		{"backoff inverted", func(c *Config) { c.ReconnectMax = time.Millisecond }, "pbx.asterisk.reconnect_max: must not be below reconnect_min"},
		{"too few conns", func(c *Config) { c.MaxConnections = 3 }, "pbx.asterisk.max_connections:"},
		{"no follow bound", func(c *Config) { c.MaxFollow = 0 }, "pbx.asterisk.max_follow:"},
		{"label and priority", func(c *Config) { c.Continue = ContinueConfig{Label: "a", Priority: 2} }, "pbx.asterisk.continue.label:"},
		{"extension without priority", func(c *Config) { c.Continue = ContinueConfig{Extension: "s"} }, "pbx.asterisk.continue.priority:"},
		{"injection in context", func(c *Config) { c.Continue = ContinueConfig{Context: "x,${SHELL}", Extension: "s", Priority: 1} }, "pbx.asterisk.continue.context:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestPasswordSources(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	os.WriteFile(f, []byte("from-file\n"), 0o600)
	c := DefaultConfig()
	c.PasswordFile = f
	if p, err := c.password(); err != nil || p != "from-file" {
		t.Errorf("file: %q %v", p, err)
	}
	t.Setenv(PasswordEnv, "from-env")
	if p, _ := c.password(); p != "from-env" {
		t.Errorf("env must win: %q", p)
	}
	os.Unsetenv(PasswordEnv)
	c.PasswordFile = filepath.Join(dir, "missing")
	if _, err := c.password(); err == nil || !strings.Contains(err.Error(), "pbx.asterisk.password_file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestJitterBounds(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 2, time.Millisecond, 100 * time.Millisecond, 10 * time.Second} {
		for i := 0; i < 200; i++ {
			j := jitter(d)
			if j > d || (d > 1 && j < d/2) {
				t.Fatalf("jitter(%v) = %v, want within [%v, %v]", d, j, d/2, d)
			}
		}
	}
}

// Wrong credentials: not ready, with a reason that names the keys to check.
func TestBadCredentialsNotReady(t *testing.T) {
	sim := newSim(t, arisimOptions())
	cfg := DefaultConfig()
	cfg.URL, cfg.Username, cfg.Password, cfg.App = sim.URL(), testUser, "wrong", sim.App()
	cfg.ReconnectMin, cfg.ReconnectMax = 10*time.Millisecond, 50*time.Millisecond
	a, err := New(cfg, depsFor(&fixedDecider{}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runAdapter(t, a)
	defer stop()
	waitFor(t, 3*time.Second, "a reason", func() bool { _, r := a.Ready(); return strings.Contains(r, "401") })
	if ok, _ := a.Ready(); ok {
		t.Error("ready with a wrong password")
	}
}

func TestNewChecksReserveAgainstBudget(t *testing.T) {
	cfg := DefaultConfig()
	deps := depsFor(&fixedDecider{})
	deps.Budget = 25 * time.Millisecond
	if _, err := New(cfg, deps); err == nil || !strings.Contains(err.Error(), "pbx.asterisk.apply_reserve: must be below call.budget") {
		t.Errorf("err %v", err)
	}
	deps.Budget = 300 * time.Millisecond
	if _, err := New(cfg, deps); err != nil {
		t.Errorf("err %v", err)
	}
	if _, err := New(cfg, adapters.Deps{}); err == nil {
		t.Error("no decider accepted")
	}
}

// The reconnect schedule, on a fake clock: delays double from min to max,
// each within [d/2, d]; a successful connect starts over.
func TestBackoffSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := backoff{min: 100 * time.Millisecond, max: time.Second}
		want := []time.Duration{100, 200, 400, 800, 1000, 1000}
		start := time.Now()
		var total time.Duration
		for i, w := range want {
			w *= time.Millisecond
			d := b.next()
			if d < w/2 || d > w {
				t.Fatalf("delay %d = %v, want within [%v, %v]", i, d, w/2, w)
			}
			if !sleepCtx(t.Context(), d) {
				t.Fatal("sleep cut short")
			}
			total += d
		}
		if got := time.Since(start); got != total {
			t.Errorf("fake clock advanced %v, slept %v", got, total)
		}
		b.reset()
		if d := b.next(); d > 100*time.Millisecond {
			t.Errorf("after reset %v", d)
		}
	})
}
