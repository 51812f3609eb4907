package popper

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/callpop/callpop/internal/webhdr"
)

//go:embed web
var webFiles embed.FS

// pageTmpl is the panel, filled from pageData.
var pageTmpl = template.Must(template.ParseFS(webFiles, "web/index.html"))

// writeTimeout bounds one write to a stream, so a stuck client cannot hold
// its goroutine.
const writeTimeout = 10 * time.Second

// groupWait bounds how long a new stream waits for its group's subscription.
const groupWait = 5 * time.Second

// Handler serves the agent panel (GET /agent, assets under /agent/), the
// agents' pop streams (GET /v1/agents/{agent}/pops, Server-Sent Events), the
// agent's choice among candidates (POST /v1/pops/{id}/choice) and one-click
// actions (POST /v1/pops/{id}/actions/{name}), all under the panel's token
// or cookie, and GET / as a redirect to the panel.
func (p *Popper) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFiles, "web")
	files := http.StripPrefix("/agent/", http.FileServerFS(static))
	// A fixed target: the request's query (a token, say) is not carried over.
	mux.Handle("GET /{$}", http.RedirectHandler("/agent", http.StatusSeeOther))
	mux.HandleFunc("GET /agent", p.servePage)
	mux.HandleFunc("GET /agent/{$}", p.servePage) // the file server would send the template raw
	mux.HandleFunc("POST /agent", p.signIn)
	mux.HandleFunc("POST /agent/signout", p.signOut)
	mux.Handle("GET /agent/", webhdr.Wrap(files))
	mux.HandleFunc("GET /v1/agents/{agent}/pops", p.serveStream)
	mux.HandleFunc("OPTIONS /v1/agents/{agent}/pops", p.servePreflight)
	mux.HandleFunc("POST /v1/pops/{id}/choice", p.serveChoice)
	mux.HandleFunc("POST /v1/pops/{id}/actions/{name}", p.serveAction)
	return mux
}

// cookieName is the agent's session cookie: the token itself (it keeps its
// signature and expiry), HttpOnly so the page's scripts never hold it.
const cookieName = "callpop_agent"

// pageData fills the panel's template: the agent signed in by cookie, or
// why a sign-in failed.
type pageData struct {
	Reason string
	Agent  string
	Exp    int64 // unix seconds
}

// servePage serves the panel. A token in the address is exchanged at once
// for the session cookie and the address redirected without it, so it stays
// in no history, proxy log or Referer; one that does not verify gets the
// sign-in form with the reason, as 401.
func (p *Popper) servePage(w http.ResponseWriter, r *http.Request) {
	if p.refuseOrigin(w, r) {
		return
	}
	if t := r.URL.Query().Get("token"); t != "" {
		p.exchange(w, r, t)
		return
	}
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		p.renderPage(w, http.StatusOK, pageData{})
		return
	}
	agent, exp, err := p.verify(w, c.Value)
	if err != nil {
		p.clearCookie(w, r)
		p.renderPage(w, http.StatusUnauthorized, pageData{Reason: p.tokenReason(err)})
		return
	}
	p.renderPage(w, http.StatusOK, pageData{Agent: agent, Exp: exp.Unix()})
}

// signIn takes the token pasted into the sign-in form (a POST, so it never
// appears in an address) and exchanges it for the session cookie.
func (p *Popper) signIn(w http.ResponseWriter, r *http.Request) {
	if p.refuseOrigin(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad sign-in form", http.StatusBadRequest)
		return
	}
	p.exchange(w, r, strings.TrimSpace(r.PostForm.Get("token")))
}

// exchange sets the session cookie for a good token and sends the browser
// to the bare panel address; a bad one gets the sign-in form with why.
func (p *Popper) exchange(w http.ResponseWriter, r *http.Request, token string) {
	_, exp, err := p.verify(w, token)
	if err != nil {
		p.renderPage(w, http.StatusUnauthorized, pageData{Reason: p.tokenReason(err)})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: token, Path: "/", Expires: exp, MaxAge: max(1, int(time.Until(exp).Seconds())),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	webhdr.Set(w.Header())
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/agent", http.StatusSeeOther)
}

// signOut drops the session cookie.
func (p *Popper) signOut(w http.ResponseWriter, r *http.Request) {
	if p.refuseOrigin(w, r) {
		return
	}
	p.clearCookie(w, r)
	http.Redirect(w, r, "/agent", http.StatusSeeOther)
}

func (p *Popper) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func (p *Popper) renderPage(w http.ResponseWriter, status int, d pageData) {
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, d); err != nil {
		http.Error(w, "panel unavailable", http.StatusInternalServerError)
		return
	}
	webhdr.Set(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// verify checks a token; on failure it counts it and sets WWW-Authenticate.
func (p *Popper) verify(w http.ResponseWriter, tok string) (string, time.Time, error) {
	agent, exp, err := VerifyToken(p.secret, tok, time.Now())
	if err != nil {
		authFailuresTotal.WithLabelValues("token").Inc()
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	return agent, exp, err
}

// tokenReason is what an agent is told about a token that did not verify.
func (p *Popper) tokenReason(err error) string {
	switch {
	case len(p.secret) == 0:
		return "agent sign-in is disabled: popper.token_secret is not set"
	case errors.Is(err, ErrTokenExpired):
		return "token expired"
	default:
		return "token invalid"
	}
}

// refuseOrigin answers 403 to a request from an origin not allowed.
func (p *Popper) refuseOrigin(w http.ResponseWriter, r *http.Request) bool {
	if p.originAllowed(r) {
		return false
	}
	authFailuresTotal.WithLabelValues("origin").Inc()
	http.Error(w, "origin not allowed", http.StatusForbidden)
	return true
}

// originAllowed accepts no Origin (not a browser), the server's own origin
// and the configured popper.allowed_origins.
func (p *Popper) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	if o == "null" {
		// The panel's own form posts: under Referrer-Policy no-referrer a
		// browser sends Origin: null, and says where the request came from
		// in Sec-Fetch-Site instead.
		return r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	o = strings.TrimRight(strings.ToLower(o), "/")
	for _, a := range p.cfg.AllowedOrigins {
		if strings.TrimRight(strings.ToLower(a), "/") == o {
			return true
		}
	}
	return false
}

func (p *Popper) setCORS(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" {
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Add("Vary", "Origin")
	}
}

func (p *Popper) servePreflight(w http.ResponseWriter, r *http.Request) {
	if p.refuseOrigin(w, r) {
		return
	}
	p.setCORS(w, r)
	w.Header().Set("Access-Control-Allow-Methods", "GET")
	w.Header().Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control")
	w.Header().Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// authAgent returns the agent of the request's token, which must be the
// agent of the path, or writes the error.
func (p *Popper) authAgent(w http.ResponseWriter, r *http.Request) (string, time.Time, bool) {
	agent, exp, ok := p.tokenAgent(w, r)
	if !ok {
		return "", time.Time{}, false
	}
	if r.PathValue("agent") != agent {
		authFailuresTotal.WithLabelValues("agent").Inc()
		http.Error(w, "this token is for another agent", http.StatusForbidden)
		return "", time.Time{}, false
	}
	return agent, exp, true
}

// tokenAgent returns the agent of the request's token, or writes the error.
func (p *Popper) tokenAgent(w http.ResponseWriter, r *http.Request) (string, time.Time, bool) {
	if p.refuseOrigin(w, r) {
		return "", time.Time{}, false
	}
	if len(p.secret) == 0 {
		http.Error(w, "agent streams are disabled: popper.token_secret is not set", http.StatusServiceUnavailable)
		return "", time.Time{}, false
	}
	// The Bearer header (programs), else ?token= (non-browser clients and
	// panels on other origins), else the panel's session cookie.
	tok := ""
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, v, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			tok = strings.TrimSpace(v)
		}
	} else if tok = r.URL.Query().Get("token"); tok == "" {
		if c, err := r.Cookie(cookieName); err == nil {
			tok = c.Value
		}
	}
	agent, exp, err := p.verify(w, tok)
	if err != nil {
		http.Error(w, p.tokenReason(err), http.StatusUnauthorized)
		return "", time.Time{}, false
	}
	return agent, exp, true
}

// serveStream is the agent's Server-Sent Events stream of pops.
func (p *Popper) serveStream(w http.ResponseWriter, r *http.Request) {
	agent, exp, ok := p.authAgent(w, r)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	p.setCORS(w, r)
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = r.URL.Query().Get("last_event_id")
	}
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 2000\n: callpop pops for agent " + agent + "\n\n")) {
		return
	}
	if p.rdb != nil {
		// The agent's group channel, subscribed and caught up before the
		// replay is taken (a slow Redis delays the replay at most groupWait).
		release := p.groups.acquire(r.Context(), agent, groupWait)
		defer release()
	}
	sub, replay := p.hub.Subscribe(agent, lastID, time.Now())
	defer p.hub.Unsubscribe(agent, sub)
	streamsGauge.Inc()
	defer streamsGauge.Dec()
	for _, pop := range replay {
		if !write(sseEvent(pop)) {
			return
		}
	}
	beat := time.NewTicker(p.cfg.Heartbeat)
	defer beat.Stop()
	expire := time.NewTimer(time.Until(exp))
	defer expire.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.gone:
			return // too slow: the client reconnects with Last-Event-ID
		case <-expire.C:
			return // the reconnect gets 401 and the panel asks for a new token
		case <-beat.C:
			if !write([]byte(": ping\n\n")) {
				return
			}
		case pop := <-sub.ch:
			if !write(sseEvent(*pop)) {
				return
			}
		}
	}
}

// sseEvent formats one pop; JSON has no raw newlines, so one data line.
func sseEvent(pop Pop) []byte {
	body, err := json.Marshal(pop)
	if err != nil {
		body = []byte("{}")
	}
	b := make([]byte, 0, len(body)+64)
	b = append(b, "id: "...)
	b = append(b, pop.ID...)
	b = append(b, "\nevent: pop\ndata: "...)
	b = append(b, body...)
	b = append(b, "\n\n"...)
	return b
}
