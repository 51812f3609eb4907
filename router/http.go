package router

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/apiauth"
)

// maxParamLen bounds every query parameter of the dialplan endpoints.
const maxParamLen = 256

// Handler serves GET /v1/lookup, GET /v1/route, DELETE /v1/cache/{number},
// POST /v1/contacts and POST /v1/contacts/{id}/end.
// Bad input is a 400 with a message; it never answers 500.
func (r *Router) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/lookup", r.guard("lookup", r.handleLookup))
	mux.HandleFunc("GET /v1/route", r.guard("route", r.handleRoute))
	mux.HandleFunc("DELETE /v1/cache/{number}", r.guard("cache", r.handleForget))
	mux.HandleFunc("POST /v1/contacts", r.guard("contacts", r.handleContact))
	mux.HandleFunc("POST /v1/contacts/{id}/end", r.guard("contacts", r.handleContactEnd))
	return MultisetSafe(mux)
}

// statusWriter remembers the status for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Audited wraps the handler of a data endpoint (lookup, cache) and its
// key check: each request, let in or refused, is one audit line with the
// key's name, the masked number, the status and the match. Never the
// customer's data.
func (r *Router) Audited(endpoint string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx, principal := apiauth.Track(req.Context())
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			number := req.PathValue("number")
			if rest, ok := strings.CutPrefix(req.URL.Path, "/v1/cache/"); ok && number == "" {
				number = rest // wrapped outside the router's mux, which names the path value
			}
			if endpoint == "lookup" {
				q, _ := url.ParseQuery(req.URL.RawQuery)
				if number = q.Get("number"); number == "" {
					number = q.Get("ani")
				}
			}
			attrs := []slog.Attr{slog.String("endpoint", endpoint), slog.String("method", req.Method),
				slog.String("key", principal()), slog.String("number", call.MaskNumber(number)),
				slog.Int("status", sw.code), slog.String("match", sw.Header().Get("X-Callpop-Match"))}
			if endpoint == "contacts" {
				// The contact's id (callpop's own, random): never the sender's number or address.
				attrs = append(attrs, slog.String("contact", sw.Header().Get(headerContactID)))
			}
			r.log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
		}()
		h.ServeHTTP(sw, req.WithContext(ctx))
	})
}

// guard counts requests and turns a panic into a 503 instead of a dropped connection.
func (r *Router) guard(endpoint string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				r.log.Error("http handler panicked", "endpoint", endpoint, "panic", fmt.Sprint(p))
				if sw.code == 0 {
					httpError(sw, http.StatusServiceUnavailable, "internal error")
				}
			}
			httpRequests.WithLabelValues(endpoint, strconv.Itoa(sw.code)).Inc()
		}()
		h(sw, req)
	}
}

// routeFields maps `field=` names to a decision's variables. Extra variables
// set by rules are reachable by their name too (field=segment → CALLPOP_SEGMENT).
var routeFields = map[string]string{
	"match": "CALLPOP_MATCH", "e164": "CALLPOP_E164", "source": "CALLPOP_SOURCE",
	"customer_id": "CALLPOP_CUSTOMER_ID", "id": "CALLPOP_CUSTOMER_ID", "name": "CALLPOP_NAME",
	"tier": "CALLPOP_TIER", "lang": "CALLPOP_LANG", "language": "CALLPOP_LANG",
	"priority": "CALLPOP_PRIORITY", "queue": "CALLPOP_QUEUE", "skill": "CALLPOP_SKILL",
	"flags": "CALLPOP_FLAGS", "pop_url": "CALLPOP_POP_URL", "candidates": "CALLPOP_CANDIDATES", // set on match multiple only
	"queue_prio": "QUEUE_PRIO", "cc_base_score": "cc_base_score", "profile": "profile", "cached": "cached",
	"caller_name": "CALLERID(name)", "info_url": "CALLPOP_INFO_URL", // with popper.softphone configured
}

// params reads the query, rejecting malformed, unknown, repeated and oversized parameters.
func params(rawQuery string, allowed ...string) (map[string]string, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("malformed query: %s", call.CleanValueN(err.Error(), 96))
	}
	out := make(map[string]string, len(q))
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("unknown parameter %q (allowed: %s)", call.CleanValueN(k, 32), strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return nil, fmt.Errorf("%s: given %d times", k, len(vs))
		}
		if len(vs[0]) > maxParamLen {
			return nil, fmt.Errorf("%s: longer than %d bytes", k, maxParamLen)
		}
		if !utf8.ValidString(vs[0]) {
			return nil, fmt.Errorf("%s: not valid UTF-8", k)
		}
		out[k] = vs[0]
	}
	return out, nil
}

// parsePrivacy reads a presentation indication: Asterisk's CALLERID(num-pres)
// names, FreeSWITCH's true/false, or 0/1.
func parsePrivacy(s string) (bool, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "" || s == "0" || s == "false" || s == "no" || strings.HasPrefix(s, "allowed"):
		return false, nil
	case s == "1" || s == "true" || s == "yes" || strings.HasPrefix(s, "prohib") || s == "restricted" || s == "unavailable":
		return true, nil
	}
	return false, fmt.Errorf("privacy: %q is not one of 0, 1, true, false, allowed…, prohib…", call.CleanValueN(s, 32))
}

// callFromQuery builds a Call from a dialplan request.
func (r *Router) callFromQuery(req *http.Request, p map[string]string) (call.Call, error) {
	_, hasNumber := p["number"]
	_, hasANI := p["ani"]
	if !hasNumber && !hasANI {
		return call.Call{}, fmt.Errorf("number: missing (send number= even when the caller ID is empty)")
	}
	priv, err := parsePrivacy(p["privacy"])
	if err != nil {
		return call.Call{}, err
	}
	if prof := p["profile"]; prof != "" && !r.state.Load().hasProfile(prof) {
		return call.Call{}, fmt.Errorf("profile: %q is not a configured profile", call.CleanValueN(prof, 64))
	}
	return call.Call{
		ID: p["call_id"], PBX: "http", CLI: plusFix(p["number"]), CLIName: p["name"], ANI: plusFix(p["ani"]), DNIS: plusFix(p["dnis"]),
		Privacy: priv, Profile: p["profile"], Received: time.Now(),
	}, nil
}

// plusFix restores the "+" of an E.164 number a dialplan forgot to
// URI-encode: in a query string "+31…" arrives as " 31…", and a leading space
// means nothing in a phone number.
func plusFix(s string) string {
	if len(s) > 1 && s[0] == ' ' && s[1] >= '0' && s[1] <= '9' {
		return "+" + s[1:]
	}
	return s
}

// handleLookup: GET /v1/lookup?number=&dnis=[&ani=][&explain=1] → the decision as JSON.
func (r *Router) handleLookup(w http.ResponseWriter, req *http.Request) {
	p, err := params(req.URL.RawQuery, "number", "ani", "dnis", "name", "privacy", "profile", "call_id", "explain")
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	c, err := r.callFromQuery(req, p)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if ex := p["explain"]; ex != "" && ex != "0" && ex != "false" {
		e := r.Explain(req.Context(), c)
		if dj, ok := e.(*decisionJSON); ok {
			w.Header().Set("X-Callpop-Match", string(dj.Match))
		}
		writeJSON(w, e)
		return
	}
	d := r.endpointDecide(req.Context(), c)
	w.Header().Set("X-Callpop-Match", string(d.Match))
	writeJSON(w, DecisionJSON(d))
}

// routeFormats are the values of /v1/route's `format=`; json is the default.
var routeFormats = []string{"json", "multiset"}

// handleRoute: GET /v1/route?number=&ani=&dnis=[&field=x[,y…]|&format=multiset]
// → JSON, one value as text/plain, several as name=value&… (one decision for
// all, so a dialplan that needs two values asks once), or every FreeSWITCH
// variable as the argument of the multiset application.
func (r *Router) handleRoute(w http.ResponseWriter, req *http.Request) {
	p, err := params(req.URL.RawQuery, "number", "ani", "dnis", "name", "privacy", "profile", "call_id", "field", "format")
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	format, hasFormat := p["format"]
	if hasFormat && !slices.Contains(routeFormats, format) {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("format: %q is not one of %s",
			call.CleanValueN(format, 32), strings.Join(routeFormats, ", ")))
		return
	}
	if _, ok := p["field"]; ok && hasFormat {
		httpError(w, http.StatusBadRequest, "field and format: give only one of the two")
		return
	}
	var names, varNames []string
	if field, ok := p["field"]; ok {
		names = strings.Split(field, ",")
		varNames = make([]string, len(names))
		for i, f := range names {
			if varNames[i], err = r.fieldVar(f); err != nil {
				httpError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
	}
	c, err := r.callFromQuery(req, p)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	d := r.endpointDecide(req.Context(), c)
	// Answer once a Dial after this request would be seen, within the budget.
	r.awaitFollow(req.Context(), "route", r.follow("route", c, d), c)
	if format == "multiset" {
		writeMultiset(w, d, cmp.Or(d.CallID, c.ID))
		return
	}
	if len(names) == 0 {
		writeJSON(w, DecisionJSON(d))
		return
	}
	w.Header().Set("X-Callpop-Match", string(d.Match))
	if len(names) == 1 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(fieldValue(d, varNames[0])))
		return
	}
	pairs := make([]string, len(names))
	for i, n := range names {
		pairs[i] = formEscape(strings.TrimSpace(n)) + "=" + formEscape(fieldValue(d, varNames[i]))
	}
	w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
	_, _ = w.Write([]byte(strings.Join(pairs, "&")))
}

// formEscape percent-encodes all but RFC 3986's unreserved characters, a
// space as %20: Asterisk's CURLOPT(hashcompat) and FreeSWITCH's url_decode
// read it back, neither takes "+" for a space.
func formEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// fieldVar resolves a `field=` value; unknown names are an error.
func (r *Router) fieldVar(field string) (string, error) {
	f := strings.ToLower(strings.TrimSpace(field))
	f = strings.TrimPrefix(f, "callpop_")
	if v, ok := routeFields[f]; ok {
		return v, nil
	}
	if n := call.VarName(f); n != "" && r.state.Load().extraVars[n] {
		return "CALLPOP_" + n, nil
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range routeFields {
			if !yield(k) {
				return
			}
		}
	})
	return "", fmt.Errorf("field: %q is not one of %s or a variable the rules set", call.CleanValueN(field, 32), strings.Join(names, ", "))
}

// fieldValue is one value of d, sanitised like the channel variables.
func fieldValue(d call.Decision, name string) string {
	switch name {
	case "QUEUE_PRIO":
		return strconv.Itoa(d.QueuePrio)
	case "cc_base_score":
		return strconv.Itoa(d.BaseScore)
	case "profile":
		return call.CleanValue(d.Profile)
	case "cached":
		return strconv.FormatBool(d.Cached)
	case "CALLERID(name)":
		return call.CleanValue(d.CallerName)
	case "CALLPOP_INFO_URL":
		return call.CleanURL(d.InfoURL)
	}
	for _, v := range d.Vars() {
		if v.Name == name {
			return v.Value
		}
	}
	return ""
}

// handleForget: DELETE /v1/cache/{number}[?dnis=] → normalise, then forget in every cache tier.
func (r *Router) handleForget(w http.ResponseWriter, req *http.Request) {
	p, err := params(req.URL.RawQuery, "dnis")
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	raw := req.PathValue("number")
	if len(raw) > maxParamLen || !utf8.ValidString(raw) {
		httpError(w, http.StatusBadRequest, "number: not a phone number")
		return
	}
	if r.deps.Numbers.Anonymous(raw) {
		httpError(w, http.StatusBadRequest, "number: empty or withheld")
		return
	}
	n, err := r.deps.Numbers.Parse(raw, r.deps.Numbers.RegionFor(p["dnis"]))
	if err != nil {
		httpError(w, http.StatusBadRequest, "number: not a phone number")
		return
	}
	ctx := req.Context()
	if _, ok := ctx.Deadline(); !ok {
		var cancel func()
		ctx, cancel = context.WithTimeout(ctx, max(r.deps.Budget, time.Second))
		defer cancel()
	}
	if err := r.deps.CRM.Forget(ctx, n.E164); err != nil {
		r.log.Warn("cache forget failed", "e164", call.MaskNumber(n.E164), "err", err)
		httpError(w, http.StatusServiceUnavailable, "cache: forget failed: "+call.CleanValue(err.Error()))
		return
	}
	r.log.Info("cache entry forgotten", "e164", call.MaskNumber(n.E164))
	writeJSON(w, map[string]any{"e164": n.E164, "forgotten": true})
}

func writeJSON(w http.ResponseWriter, v any) {
	var b bytes.Buffer
	if err := EncodeJSON(&b, v, ""); err != nil {
		httpError(w, http.StatusServiceUnavailable, "encoding failed")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b.Bytes())
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, "callpop: %s\n", msg)
}
