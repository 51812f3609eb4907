package stats

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/callpop/callpop/internal/webhdr"
)

//go:embed web
var webFiles embed.FS

// Access is who may read the stats.
type Access struct {
	// Require serves h to requests with an API key holding the scope stats
	// (internal/apiauth's Require with apiauth.ScopeStats).
	Require func(h http.Handler) http.Handler
	// Supervisor reads a panel token or cookie: ok when one verified, and
	// whether its agent is in popper.supervisors. Nil without a popper.
	Supervisor func(r *http.Request) (agent string, supervisor, ok bool)
}

// writeWait bounds each write to a stream.
const writeWait = 10 * time.Second

// Handler serves GET /stats (the page, no data in it: a wall screen signs
// in as a supervisor at /agent first, or passes an API key in the page's
// fragment), its assets under /stats/, GET /v1/stats and
// GET /v1/stats/stream (the scope stats).
func (s *Stats) Handler(a Access, pbx PBXFunc) http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFiles, "web")
	files := http.StripPrefix("/stats/", http.FileServerFS(static))
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		webhdr.Set(w.Header())
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.Handle("GET /stats/{file}", webhdr.Wrap(files))
	mux.Handle("GET /v1/stats", a.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(s.Fresh(pbx))
	})))
	mux.Handle("GET /v1/stats/stream", a.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveStream(w, r, pbx)
	})))
	return mux
}

// guard lets in a supervisor's panel token, refuses another agent's (403),
// and leaves the rest to the API keys.
func (a Access) guard(h http.Handler) http.Handler {
	keyed := a.Require(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.Supervisor != nil {
			if agent, sup, ok := a.Supervisor(r); ok {
				if !sup {
					w.Header().Set("Cache-Control", "no-store")
					http.Error(w, fmt.Sprintf("callpop: agent %q is not in popper.supervisors", agent), http.StatusForbidden)
					return
				}
				h.ServeHTTP(w, r)
				return
			}
		}
		keyed.ServeHTTP(w, r)
	})
}

// serveStream sends a snapshot now and after every sample (once a second)
// until the client goes.
func (s *Stats) serveStream(w http.ResponseWriter, r *http.Request, pbx PBXFunc) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	next := s.ticked()
	snap := s.Snapshot(pbx)
	for {
		b, err := json.Marshal(snap)
		if err != nil {
			return
		}
		_ = rc.SetWriteDeadline(time.Now().Add(writeWait))
		if _, err := fmt.Fprintf(w, "event: stats\ndata: %s\n\n", b); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-next:
		}
		next = s.ticked()
		snap = s.Snapshot(pbx)
	}
}
