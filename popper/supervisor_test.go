package popper

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// popper.supervisors names agents; a bad id is refused at load.
func TestConfigSupervisors(t *testing.T) {
	c := DefaultConfig()
	c.Supervisors = []string{"alice", "bad agent"}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "popper.supervisors[1]") || strings.Contains(err.Error(), "supervisors[0]") {
		t.Fatalf("Validate: %v", err)
	}
}

// Supervisor reads a panel token from the Bearer header or the session
// cookie; an API key, a forged or expired token is no panel token.
func TestSupervisor(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TokenSecret = testSecret
	cfg.Supervisors = []string{"boss"}
	p, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	boss, _ := IssueToken([]byte(testSecret), "boss", time.Hour, time.Now())
	alice, _ := IssueToken([]byte(testSecret), "alice", time.Hour, time.Now())
	old, _ := IssueToken([]byte(testSecret), "boss", time.Minute, time.Now().Add(-time.Hour))
	forged, _ := IssueToken([]byte("another-secret-0123456789"), "boss", time.Hour, time.Now())
	for _, tc := range []struct {
		name, header, cookie string
		agent                string
		sup, ok              bool
	}{
		{"boss bearer", "Bearer " + boss, "", "boss", true, true},
		{"boss cookie", "", boss, "boss", true, true},
		{"alice bearer", "Bearer " + alice, "", "alice", false, true},
		{"alice cookie", "", alice, "alice", false, true},
		{"api key in header, boss cookie", "Bearer some-api-key", boss, "", false, false},
		{"expired", "Bearer " + old, "", "", false, false},
		{"forged", "", forged, "", false, false},
		{"none", "", "", "", false, false},
	} {
		r, _ := http.NewRequest("GET", "/v1/stats", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if tc.cookie != "" {
			r.AddCookie(&http.Cookie{Name: cookieName, Value: tc.cookie})
		}
		agent, sup, ok := p.Supervisor(r)
		if agent != tc.agent || sup != tc.sup || ok != tc.ok {
			t.Errorf("%s: %q %v %v", tc.name, agent, sup, ok)
		}
	}
}
