package popper

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Token errors; Verify wraps one of them.
var (
	ErrTokenInvalid = errors.New("popper: invalid token")
	ErrTokenExpired = errors.New("popper: token expired")
)

// tokenDomain separates these signatures from any other use of the secret.
const tokenDomain = "callpop-agent-token.v1."

// IssueToken signs a token that lets agent open its own pops until now+ttl.
// The token is "<base64url(agent|expiry)>.<base64url(HMAC-SHA256)>".
func IssueToken(secret []byte, agent string, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) < minSecret {
		return "", fmt.Errorf("popper: token secret must be at least %d bytes", minSecret)
	}
	if agent == "" || cleanAgent(agent) != agent {
		return "", fmt.Errorf("popper: agent %q: must be letters, digits or + - _ . @ : (at most 64)", agent)
	}
	if ttl <= 0 {
		return "", errors.New("popper: token ttl must be positive")
	}
	payload := base64.RawURLEncoding.EncodeToString([]byte(agent + "|" + strconv.FormatInt(now.Add(ttl).Unix(), 10)))
	return payload + "." + sign(secret, payload), nil
}

func sign(secret []byte, payload string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tokenDomain))
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// VerifyToken checks a token's signature and expiry and returns its agent.
func VerifyToken(secret []byte, token string, now time.Time) (agent string, exp time.Time, err error) {
	if len(secret) == 0 || len(token) > 512 {
		return "", time.Time{}, ErrTokenInvalid
	}
	payload, sig, ok := strings.Cut(token, ".")
	if !ok || payload == "" || sig == "" {
		return "", time.Time{}, ErrTokenInvalid
	}
	want := sign(secret, payload)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return "", time.Time{}, ErrTokenInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return "", time.Time{}, ErrTokenInvalid
	}
	agent, expS, ok := strings.Cut(string(raw), "|")
	expU, err := strconv.ParseInt(expS, 10, 64)
	if !ok || err != nil || agent == "" || cleanAgent(agent) != agent {
		return "", time.Time{}, ErrTokenInvalid
	}
	exp = time.Unix(expU, 0)
	if !now.Before(exp) {
		return agent, exp, ErrTokenExpired
	}
	return agent, exp, nil
}
