package crm

import (
	"context"
	"errors"
	"net/mail"
	"strings"
)

// ErrInvalidEmail is what a look-up by an e-mail address that is not one returns.
var ErrInvalidEmail = errors.New("crm: not an e-mail address")

// maxEmailLen is the longest address taken (RFC 5321's path limit).
const maxEmailLen = 254

// emailKeyPrefix marks an e-mail key: a number key (E.164) starts with '+',
// so the two kinds never share an in-process entry or a Redis hash.
const emailKeyPrefix = "mailto:"

// NormalizeEmail returns addr trimmed with its domain lower-cased (the local
// part is kept as is: it may be case-sensitive), or ErrInvalidEmail when addr
// is not a bare address (local@domain: no display name, no angle brackets, no
// quoted local part, no control characters).
func NormalizeEmail(addr string) (string, error) {
	s := strings.TrimSpace(addr)
	if s == "" || len(s) > maxEmailLen || strings.ContainsAny(s, "<>\"\r\n\t ") {
		return "", ErrInvalidEmail
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", ErrInvalidEmail
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", ErrInvalidEmail
	}
	return s[:at] + "@" + strings.ToLower(s[at+1:]), nil
}

// EmailSource is a Source that can find customers by e-mail address: the CRM
// asks it with a Query whose Email is set (normalised; E164 empty). A source
// without it is skipped for e-mail look-ups. Emails reports whether this
// source was configured with a way to look up by e-mail.
type EmailSource interface {
	Source
	Emails() bool
}

// canEmail reports whether s takes e-mail look-ups.
func canEmail(s Source) bool {
	es, ok := s.(EmailSource)
	return ok && es.Emails()
}

// LookupEmail finds the customers with e-mail address email (normalised
// first: ErrInvalidEmail when it is not one), through the same cache tiers,
// flights and breakers as a number, asking only the sources that can look up
// by e-mail. It is Lookup with Query{Email: email}.
func (c *CRM) LookupEmail(ctx context.Context, email string) (Result, error) {
	if email == "" {
		return Result{}, ErrInvalidEmail
	}
	return c.Lookup(ctx, Query{Email: email})
}

// LookupEmailAsync is LookupEmail without holding the caller's goroutine, as LookupAsync.
func (c *CRM) LookupEmailAsync(ctx context.Context, email string, done func(Result, error)) {
	if email == "" {
		done(Result{}, ErrInvalidEmail)
		return
	}
	c.LookupAsync(ctx, Query{Email: email}, done)
}

// lookupKey is q's key identity and q with its e-mail normalised: the E.164
// for a number, emailKeyPrefix + the address for an e-mail.
func lookupKey(q Query) (string, Query, error) {
	switch {
	case q.E164 != "" && q.Email != "":
		return "", q, errors.New("crm: query with both e164 and email")
	case q.E164 != "":
		return q.E164, q, nil
	case q.Email != "":
		e, err := NormalizeEmail(q.Email)
		if err != nil {
			return "", q, err
		}
		q.Email = e
		return emailKeyPrefix + e, q, nil
	}
	return "", q, errors.New("crm: query without e164 or email")
}
