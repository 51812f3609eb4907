package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// The dialplan ways in, on the bench's own listeners (--listen): callpop's
// FastAGI server and /v1/route, or a bare server doing the minimum.

// agiHandler serves `AGI(${CALLPOP_BENCH_AGI}?ani=…)` (the bench context
// passes the ANI, so callpop sends one command): callpop's FastAGI (its
// commands counted) or a bare server that reads the environment and ends
// the session.
type agiHandler struct {
	bare     bool
	listen   string
	p        *Pipeline
	ln       net.Listener
	commands atomic.Int64
	wg       sync.WaitGroup
}

func (h *agiHandler) start(ctx context.Context) error {
	ln, err := net.Listen("tcp", h.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	h.ln = ln
	h.wg.Add(1)
	if h.bare {
		go func() { // ends when the listener closes
			defer h.wg.Done()
			serveConns(ln, &h.wg, bareAGI)
		}()
		return nil
	}
	go func() { // ends with ctx or close
		defer h.wg.Done()
		_ = h.p.Router.ServeFastAGIListener(ctx, &countingListener{Listener: ln, sep: "\n", lines: &h.commands})
	}()
	return nil
}

// bareAGI reads the agi_* environment up to its blank line and hangs up the session.
func bareAGI(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	rd := bufio.NewReader(c)
	for {
		line, err := rd.ReadString('\n')
		if err != nil || line == "\n" || line == "\r\n" {
			return
		}
	}
}

// serveConns runs serve on each connection ln accepts, on a goroutine wg
// counts, until ln closes.
func serveConns(ln net.Listener, wg *sync.WaitGroup, serve func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() { // ends with its connection
			defer wg.Done()
			defer c.Close()
			serve(c)
		}()
	}
}

func (h *agiHandler) ready() bool { return h.ln != nil }
func (h *agiHandler) vars(string) map[string]string {
	return map[string]string{"CALLPOP_BENCH_AGI": "agi://" + h.ln.Addr().String() + "/route"}
}
func (h *agiHandler) requests() int64 { return h.commands.Load() }
func (h *agiHandler) close() {
	if h.ln != nil {
		h.ln.Close()
	}
	h.wg.Wait()
}

// countingListener counts the commands its connections write: what ends
// each (AGI: a line; Event Socket: a blank line).
type countingListener struct {
	net.Listener
	sep   string
	lines *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, sep: []byte(l.sep), lines: l.lines}, nil
}

type countingConn struct {
	net.Conn
	sep   []byte
	lines *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.lines.Add(int64(bytes.Count(b, c.sep)))
	return c.Conn.Write(b)
}

// httpHandler serves the dialplan's HTTP GET (Asterisk `${CURL(...)}`,
// FreeSWITCH `${curl(...)}`): callpop's /v1/route or a bare server
// answering a fixed body. The dialplan appends &call_id=<the call's id>.
// With --crm-delay the bare server stands for the PBX asking the slow CRM
// itself: it answers delay late (or when it closes).
type httpHandler struct {
	bare    bool
	listen  string
	p       *Pipeline
	varName string        // the channel variable carrying the URL ("" = none)
	body    string        // the bare server's answer ("" = "hit")
	delay   time.Duration // the bare server's answer time (--crm-delay)
	// recordMatch keeps the match of each answer by its call_id (the http
	// way, whose dialplan cannot read the match out of the JSON body).
	recordMatch bool
	answered    sync.Map      // call_id → match
	stop        chan struct{} // closed by close: a delayed answer is given up
	ln          net.Listener
	srv         *http.Server
	served      atomic.Int64
	done        chan struct{}
}

func (h *httpHandler) start(context.Context) error {
	ln, err := net.Listen("tcp", h.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	h.ln, h.stop = ln, make(chan struct{})
	var inner http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.delay > 0 {
			t := time.NewTimer(h.delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			case <-h.stop:
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(cmp.Or(h.body, "hit")))
	})
	if !h.bare {
		inner = h.p.Router.Handler()
	}
	h.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.served.Add(1)
		if !h.recordMatch {
			inner.ServeHTTP(w, r)
			return
		}
		rec := &bodyRecorder{ResponseWriter: w}
		inner.ServeHTTP(rec, r)
		if id := r.URL.Query().Get("call_id"); id != "" {
			h.answered.Store(id, answerMatch(rec.body.Bytes()))
		}
	})}
	h.done = make(chan struct{})
	go func() { // ends when close shuts the server down
		defer close(h.done)
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener failed: calls will report nothing, and the report says so
		}
	}()
	return nil
}

func (h *httpHandler) ready() bool { return h.ln != nil }
func (h *httpHandler) vars(cli string) map[string]string {
	if h.varName == "" {
		return nil
	}
	return map[string]string{h.varName: "http://" + h.ln.Addr().String() + "/v1/route?number=" + url.QueryEscape(cli)}
}
func (h *httpHandler) requests() int64 { return h.served.Load() }
func (h *httpHandler) close() {
	if h.srv == nil {
		return
	}
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
	<-h.done
}

// sampleCallID is a call id of FreeSWITCH's ${uuid} shape, for sampleAnswer.
const sampleCallID = "0b1e5c7a-3f2d-4c8e-9a6b-2d4f6e8a0c1e"

// sampleAnswer is callpop's /v1/route answer to query for a known customer:
// the bare server answers it, a body of the same size and shape.
func sampleAnswer(p *Pipeline, query string) string {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v1/route?number="+url.QueryEscape(CustomerNumber(0))+"&"+query, nil)
	p.Router.Handler().ServeHTTP(rec, req)
	return rec.Body.String()
}

// bodyRecorder keeps a copy of what a handler writes (one /v1/route answer, a few hundred bytes).
type bodyRecorder struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (b *bodyRecorder) Write(p []byte) (int, error) {
	if b.body.Len() < 64<<10 {
		b.body.Write(p)
	}
	return b.ResponseWriter.Write(p)
}

// answerMatch is the match of a /v1/route answer: the JSON's "match", or
// a bare server's plain-text body as it is.
func answerMatch(body []byte) string {
	var d struct {
		Match string `json:"match"`
	}
	if json.Unmarshal(body, &d) == nil {
		return d.Match
	}
	return string(bytes.TrimSpace(body))
}

// match is what the handler answered the call with id (the PBX's call id), if it recorded it.
func (h *httpHandler) match(id string) (string, bool) {
	v, ok := h.answered.LoadAndDelete(id)
	if !ok {
		return "", false
	}
	return v.(string), true
}
