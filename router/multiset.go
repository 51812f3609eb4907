package router

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/fsvars"
)

// writeMultiset answers d as the argument of FreeSWITCH's multiset
// application: `^^|callpop_match=hit|…` (fsvars.Multiset), no line break.
func writeMultiset(w http.ResponseWriter, d call.Decision, callID string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Callpop-Match", string(d.Match))
	_, _ = io.WriteString(w, fsvars.Multiset(d, callID))
}

// maxErrorHeader bounds the X-Callpop-Error header, in runes.
const maxErrorHeader = 200

// MultisetSafe wraps a handler that may serve format=multiset: any answer to
// such a request other than 200 goes out with its status and headers but an
// empty body, the message in X-Callpop-Error. FreeSWITCH's ${curl(…)} returns
// the body whatever the status, and multiset would take the words of an error
// text (`callpop: number: missing …`) as variables to set or unset; an empty
// argument sets nothing, as when callpop is down.
func MultisetSafe(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, wrapped := w.(*multisetWriter); wrapped || !asksMultiset(req.URL.RawQuery) {
			h.ServeHTTP(w, req)
			return
		}
		mw := &multisetWriter{ResponseWriter: w}
		defer mw.finish()
		h.ServeHTTP(mw, req)
	})
}

// asksMultiset says whether a query asks for format=multiset. Most requests
// on the hot path are ruled out without parsing the query: no "multiset" in
// it, and no escape that could spell one.
func asksMultiset(raw string) bool {
	if !strings.Contains(raw, "%") && !strings.Contains(strings.ToLower(raw), "multiset") {
		return false
	}
	q, _ := url.ParseQuery(raw) // what parses of a malformed query still says what was asked
	return slices.ContainsFunc(q["format"], func(f string) bool { return strings.EqualFold(strings.TrimSpace(f), "multiset") })
}

// multisetWriter holds back a status other than 200 and keeps the start of
// its body for the error header.
type multisetWriter struct {
	http.ResponseWriter
	held int // the status held back, 0 until one is
	sent bool
	msg  []byte
}

func (w *multisetWriter) WriteHeader(code int) {
	switch {
	case w.held != 0 || w.sent:
	case code == http.StatusOK:
		w.sent = true
		w.ResponseWriter.WriteHeader(code)
	case code >= 200:
		w.held = code
	}
}

func (w *multisetWriter) Write(b []byte) (int, error) {
	if w.held == 0 {
		w.sent = true
		return w.ResponseWriter.Write(b)
	}
	if room := 4 * maxErrorHeader; len(w.msg) < room {
		w.msg = append(w.msg, b[:min(len(b), room-len(w.msg))]...)
	}
	return len(b), nil
}

// finish sends a held status with an empty body.
func (w *multisetWriter) finish() {
	if w.held == 0 {
		return
	}
	h := w.Header()
	if msg := strings.TrimPrefix(strings.TrimSpace(string(w.msg)), "callpop: "); msg != "" {
		h.Set("X-Callpop-Error", call.CleanValueN(msg, maxErrorHeader))
	}
	h.Del("Content-Type")
	h.Set("Content-Length", "0")
	w.ResponseWriter.WriteHeader(w.held)
}
