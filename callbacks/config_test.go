package callbacks

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/internal/apiauth"
)

func TestConfigValidate(t *testing.T) {
	tc0 := testConfig()
	if err := tc0.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	def := DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		says string
	}{
		{"enabled without regions", func(c *Config) { c.AllowedRegions = nil }, "callbacks.allowed_regions: required"},
		{"unknown region", func(c *Config) { c.AllowedRegions = []string{"GB", "XX"} }, "callbacks.allowed_regions[1]"},
		{"bad hours", func(c *Config) { c.Hours = []string{"mon-fri 8-18"} }, "callbacks.hours[0]"},
		{"overnight hours", func(c *Config) { c.Hours = []string{"mon 22:00-06:00"} }, "cannot cross midnight"},
		{"bad day", func(c *Config) { c.Hours = []string{"mon-fry 08:00-18:00"} }, "days are mon"},
		{"bad time", func(c *Config) { c.Hours = []string{"mon 08:00-25:00"} }, "not a time of day"},
		{"bad zone", func(c *Config) { c.Timezone = "Mars/Olympus" }, "callbacks.timezone"},
		{"attempts", func(c *Config) { c.Attempts = 0 }, "callbacks.attempts"},
		{"retry_after", func(c *Config) { c.RetryAfter = 0 }, "callbacks.retry_after"},
		{"ring_timeout", func(c *Config) { c.RingTimeout = time.Hour }, "callbacks.ring_timeout"},
		{"max_per_minute", func(c *Config) { c.MaxPerMinute = 0 }, "callbacks.max_per_minute"},
		{"max_per_number", func(c *Config) { c.MaxPerNumber = 0 }, "callbacks.max_per_number"},
		{"max_ahead", func(c *Config) { c.MaxAhead = 365 * 24 * time.Hour }, "callbacks.max_ahead"},
		{"caller id number", func(c *Config) { c.CallerID.Number = "+44 20 x" }, "callbacks.caller_id.number"},
		{"caller id name", func(c *Config) { c.CallerID.Name = "${x}" }, "callbacks.caller_id.name"},
		{"endpoint without number", func(c *Config) { c.Asterisk.Endpoint = "PJSIP/trunk" }, "callbacks.asterisk.endpoint: must hold {number}"},
		{"endpoint injection", func(c *Config) { c.FreeSWITCH.Endpoint = "{absolute_codec_string=${x}}sofia/gw/{number}" }, "callbacks.freeswitch.endpoint"},
		{"context", func(c *Config) { c.Asterisk.Context = "a b" }, "callbacks.asterisk.context"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %v, want one saying %q", err, tc.says)
			}
		})
	}
	c := testConfig()
	c.Asterisk.Endpoint = ""
	if err := c.CheckDial(KindAsterisk); err == nil || !strings.Contains(err.Error(), "callbacks.asterisk.endpoint: required") {
		t.Errorf("CheckDial: %v", err)
	}
	if err := c.CheckDial(KindFreeSWITCH); err != nil {
		t.Errorf("CheckDial freeswitch: %v", err)
	}
}

func TestHoursNext(t *testing.T) {
	h, err := ParseHours([]string{"mon-fri 08:00-18:00", "sat 09:00-13:00", "sun,wed 20:00-24:00"})
	if err != nil {
		t.Fatal(err)
	}
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Skip("no tz data:", err)
	}
	at := func(d, hh, mm int) time.Time { return time.Date(2025, 3, d, hh, mm, 0, 0, london) } // 24 March 2025 is a Monday
	for _, tc := range []struct{ in, want time.Time }{
		{at(24, 10, 0), at(24, 10, 0)},   // open
		{at(24, 7, 59), at(24, 8, 0)},    // before opening
		{at(24, 18, 0), at(25, 8, 0)},    // the end is exclusive
		{at(26, 19, 0), at(26, 20, 0)},   // Wednesday evening window
		{at(26, 23, 59), at(26, 23, 59)}, // up to midnight
		{at(28, 18, 30), at(29, 9, 0)},   // Friday evening → Saturday
		{at(29, 13, 0), at(30, 20, 0)},   // Saturday afternoon → Sunday evening (DST day)
		{at(30, 23, 0), at(30, 23, 0)},   // Sunday evening window
		{at(25, 19, 0), at(26, 8, 0)},    // Tuesday evening → Wednesday morning, not evening
	} {
		got, ok := h.Next(tc.in, london)
		if !ok || !got.Equal(tc.want) {
			t.Errorf("Next(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	var none Hours
	if now := time.Now(); !none.Any() {
		t.Error("no hours is not any time")
	} else if got, _ := none.Next(now, london); !got.Equal(now) {
		t.Errorf("no hours moved %s to %s", now, got)
	}
	if _, err := ParseHours([]string{"mon-fri 08:00-18:00", "weekdays 9-5"}); err == nil || !strings.HasPrefix(err.Error(), "[1]: ") {
		t.Errorf("error %v should name entry [1]", err)
	}
}

// The endpoints behind the API keys, as main mounts them.
func TestEndpointsNeedTheCallbacksScope(t *testing.T) {
	dir := t.TempDir()
	keys := map[string]string{"web": "k-web-0123456789abcdef", "stats": "k-stats-0123456789abcdef"}
	var kc []apiauth.KeyConfig
	for name, scope := range map[string]string{"web": apiauth.ScopeCallbacks, "stats": apiauth.ScopeStats} {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(keys[name]), 0o600); err != nil {
			t.Fatal(err)
		}
		kc = append(kc, apiauth.KeyConfig{Name: name, Scopes: []string{scope}, KeyFile: f})
	}
	auth, err := apiauth.New(apiauth.Config{Keys: kc}, apiauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := newService(t, testConfig(), testRedis(t), newRecorder(nil))
	srv := httptest.NewServer(auth.Require(apiauth.ScopeCallbacks, s.Handler()))
	defer srv.Close()
	send := func(key string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/callbacks", strings.NewReader(`{"number":"+442079460018"}`))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		code, _, _ := do(t, req)
		return code
	}
	if code := send(""); code != http.StatusUnauthorized {
		t.Errorf("no key: %d, want 401", code)
	}
	if code := send("wrong-key-0123456789"); code != http.StatusUnauthorized {
		t.Errorf("wrong key: %d, want 401", code)
	}
	if code := send(keys["stats"]); code != http.StatusForbidden {
		t.Errorf("a key without scope callbacks: %d, want 403", code)
	}
	if code := send(keys["web"]); code != http.StatusCreated {
		t.Errorf("a key with scope callbacks: %d, want 201", code)
	}
}
