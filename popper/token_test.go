package popper

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestToken(t *testing.T) {
	secret := []byte(testSecret)
	now := time.Now()
	tok, err := IssueToken(secret, "1001", 12*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	agent, exp, err := VerifyToken(secret, tok, now)
	if err != nil || agent != "1001" || exp.Unix() != now.Add(12*time.Hour).Unix() {
		t.Fatalf("verify: %q %v %v", agent, exp, err)
	}
	if _, _, err := VerifyToken(secret, tok, now.Add(13*time.Hour)); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	bad := []string{"", ".", "a.b", tok + "x", strings.Replace(tok, ".", "", 1), "x" + tok, tok[:len(tok)-2]}
	for _, b := range bad {
		if _, _, err := VerifyToken(secret, b, now); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("VerifyToken(%q) = %v, want invalid", b, err)
		}
	}
	if _, err := IssueToken(secret, "10 01", time.Hour, now); err == nil {
		t.Error("agent with a space accepted")
	}
	if _, err := IssueToken([]byte("short"), "1001", time.Hour, now); err == nil {
		t.Error("short secret accepted")
	}
}

// FuzzVerifyToken: tokens come from browsers; no input may panic or verify
// without the secret.
func FuzzVerifyToken(f *testing.F) {
	secret := []byte(testSecret)
	tok, _ := IssueToken(secret, "1001", time.Hour, time.Unix(1_800_000_000, 0))
	f.Add(tok)
	f.Add("")
	f.Add("MTAwMXwxODAwMDAzNjAw.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, s string) {
		agent, _, err := VerifyToken(secret, s, time.Unix(1_800_000_000, 0))
		if err == nil && (s != tok || agent != "1001") {
			t.Fatalf("accepted %q as %q", s, agent)
		}
	})
}

// FuzzDefaultAgent: endpoints come from the PBX; the agent id is always a clean token.
func FuzzDefaultAgent(f *testing.F) {
	for _, s := range []string{"PJSIP/1001-00000005", "Local/1001@agents-000048d7;1", "sofia/agents/1001@127.0.0.1:5072", "user/1001", "1001@default"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a := DefaultAgent(s)
		if cleanAgent(a) != a || strings.ContainsAny(a, "@-;/") {
			t.Fatalf("DefaultAgent(%q) = %q", s, a)
		}
	})
}
