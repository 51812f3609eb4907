package esl

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
)

func TestConfigValidate(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		env    string
		change func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"outbound without events needs no password", "", func(c *Config) { c.Events = false }, ""},
		{"outbound with events needs a password", "", func(c *Config) {}, "pbx.freeswitch.password: required for the event connection"},
		{"password from env", "from-env", func(c *Config) {}, ""},
		{"password from file", "", func(c *Config) { c.PasswordFile = pwFile }, ""},
		{"missing password file", "", func(c *Config) { c.PasswordFile = "/nonexistent/pw" }, "pbx.freeswitch.password_file: open /nonexistent/pw"},
		{"password and file", "", func(c *Config) { c.Password = "x"; c.PasswordFile = pwFile }, "can not both be set"},
		{"default password refused", "", func(c *Config) { c.Password = "ClueCon" }, "pbx.freeswitch.password: is FreeSWITCH's default"},
		{"default password allowed", "", func(c *Config) { c.Password = "ClueCon"; c.AllowDefaultPassword = true }, ""},
		{"default password from env refused", "ClueCon", func(c *Config) {}, "default"},
		{"bad mode", "", func(c *Config) { c.Mode = "both"; c.Events = false }, "pbx.freeswitch.mode: must be outbound or inbound"},
		{"bad listen", "", func(c *Config) { c.Events = false; c.Listen = "8084" }, "pbx.freeswitch.listen"},
		{"inbound ok", "", func(c *Config) { c.Mode = "inbound"; c.Password = "pw" }, ""},
		{"inbound needs password", "", func(c *Config) { c.Mode = "inbound" }, "pbx.freeswitch.password: required ("},
		{"inbound bad address", "", func(c *Config) { c.Mode = "inbound"; c.Password = "pw"; c.Address = "fs" }, "pbx.freeswitch.address"},
		{"inbound bad context", "", func(c *Config) { c.Mode = "inbound"; c.Password = "pw"; c.ParkContext = "a b" }, "pbx.freeswitch.park_context"},
		{"inbound bad extension", "", func(c *Config) { c.Mode = "inbound"; c.Password = "pw"; c.TransferTo.Extension = "1000 XML x" }, "pbx.freeswitch.transfer_to.extension"},
		{"inbound bad dialplan", "", func(c *Config) { c.Mode = "inbound"; c.Password = "pw"; c.TransferTo.Dialplan = "" }, "pbx.freeswitch.transfer_to.dialplan"},
		{"negative reserve", "", func(c *Config) { c.Events = false; c.ApplyReserve = -time.Millisecond }, "pbx.freeswitch.apply_reserve"},
		{"zero command timeout", "", func(c *Config) { c.Events = false; c.CommandTimeout = 0 }, "pbx.freeswitch.command_timeout"},
		{"backoff order", "", func(c *Config) { c.Events = false; c.ReconnectMax = time.Millisecond }, "pbx.freeswitch.reconnect_max"},
		{"max calls", "", func(c *Config) { c.Events = false; c.MaxCalls = 0 }, "pbx.freeswitch.max_calls"},
		{"password with newline", "", func(c *Config) { c.Password = "a\nauth x" }, "line breaks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(PasswordEnv, tt.env)
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPasswordPrecedence(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.PasswordFile = pwFile
	t.Setenv(PasswordEnv, "")
	if pw, _ := c.password(); pw != "from-file" {
		t.Fatalf("file: %q", pw)
	}
	t.Setenv(PasswordEnv, "from-env")
	if pw, _ := c.password(); pw != "from-env" {
		t.Fatalf("env: %q", pw)
	}
}

func TestNewRefusesReserveAboveBudget(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Events = false
	cfg.ApplyReserve = 50 * time.Millisecond
	if _, err := New(cfg, adapters.Deps{Budget: 40 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "pbx.freeswitch.apply_reserve") {
		t.Fatalf("err = %v", err)
	}
}

// A listener address in use is the one error Run returns.
func TestRunListenerInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := DefaultConfig()
	cfg.Events = false
	cfg.Listen = ln.Addr().String()
	a, err := New(cfg, adapters.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.Run(ctx); err == nil || !strings.Contains(err.Error(), "adapters/esl: listen") {
		t.Fatalf("Run = %v", err)
	}
}
