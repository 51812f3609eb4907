package popper

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// Supervisor reads the request's panel token (the Bearer header, else the
// panel's session cookie) without counting a failure: the header may hold
// an API key instead. ok says a token verified; supervisor, that its agent
// is listed in popper.supervisors.
func (p *Popper) Supervisor(r *http.Request) (agent string, supervisor, ok bool) {
	if len(p.secret) == 0 {
		return "", false, false
	}
	tok := ""
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, v, found := strings.Cut(h, " ")
		if !found || !strings.EqualFold(scheme, "Bearer") {
			return "", false, false
		}
		tok = strings.TrimSpace(v)
	} else if c, err := r.Cookie(cookieName); err == nil {
		tok = c.Value
	}
	if tok == "" {
		return "", false, false
	}
	agent, _, err := VerifyToken(p.secret, tok, time.Now())
	if err != nil {
		return "", false, false
	}
	return agent, slices.Contains(p.cfg.Supervisors, agent), true
}
