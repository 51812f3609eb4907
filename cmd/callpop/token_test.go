package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/popper"
)

func TestTokenCommand(t *testing.T) {
	const secret = "token-cmd-secret-0123456789"
	t.Setenv("CALLPOP_POPPER_TOKEN_SECRET", secret)
	cfg := writeConfig(t, "popper:\n  pop_on: ring\n")
	out, errOut, err := execute(t, context.Background(), "token", "--config", cfg, "--agent", "1001", "--ttl", "12h")
	if err != nil {
		t.Fatalf("token: %v %s", err, errOut)
	}
	tok := strings.TrimSpace(out)
	if strings.Count(out, "\n") != 1 || strings.ContainsAny(tok, " \t") {
		t.Fatalf("output is not the token alone: %q", out)
	}
	agent, exp, err := popper.VerifyToken([]byte(secret), tok, time.Now())
	if err != nil || agent != "1001" || time.Until(exp) < 11*time.Hour || time.Until(exp) > 13*time.Hour {
		t.Fatalf("verify: %q %v %v", agent, exp, err)
	}
	tests := [][]string{
		{"token", "--config", cfg},                                     // no agent
		{"token", "--config", cfg, "--agent", "10 01"},                 // bad id
		{"token", "--config", cfg, "--agent", "1001", "--ttl", "-1h"},  // bad ttl
		{"token", "--config", cfg, "--agent", "1001", "--ttl", "999h"}, // above max_token_ttl
	}
	for _, args := range tests {
		if _, _, err := execute(t, context.Background(), args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	t.Setenv("CALLPOP_POPPER_TOKEN_SECRET", "")
	if _, _, err := execute(t, context.Background(), "token", "--config", cfg, "--agent", "1001"); err == nil {
		t.Error("no secret: no error")
	}
}
