package arisim

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultVersion is the Asterisk version the simulator reports unless
// Options.Version says otherwise.
const DefaultVersion = "22.10.1"

// hasMultiVars reports whether Asterisk version v serves
// /channels/{channelId}/variables (added in 20.20.0, 22.10.0 and 23.4.0).
func hasMultiVars(v string) bool {
	major, minor := versionNumbers(v)
	switch {
	case major >= 24:
		return true
	case major == 23:
		return minor >= 4
	case major == 22:
		return minor >= 10
	case major == 20:
		return minor >= 20
	}
	return false
}

// versionNumbers reads "22.10.1" (or "22.10.1-rc1") as 22, 10.
func versionNumbers(v string) (major, minor int) {
	parts := strings.SplitN(v, ".", 3)
	major, _ = strconv.Atoi(parts[0])
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	return major, minor
}

// channelsDoc is the part of api-docs/channels.json a client reads to see
// which paths this Asterisk serves (a swagger 1.1 resource listing).
type channelsDoc struct {
	APIVersion     string    `json:"apiVersion"`
	SwaggerVersion string    `json:"swaggerVersion"`
	BasePath       string    `json:"basePath"`
	ResourcePath   string    `json:"resourcePath"`
	APIs           []docPath `json:"apis"`
}

type docPath struct {
	Path        string  `json:"path"`
	Description string  `json:"description"`
	Operations  []docOp `json:"operations"`
}

type docOp struct {
	HTTPMethod string   `json:"httpMethod"`
	Since      []string `json:"since"`
	Nickname   string   `json:"nickname"`
}

// apiDocs serves GET /ari/api-docs/channels.json: the channel paths the
// simulator implements, /variables only for a version that has it.
func (s *Server) apiDocs(w http.ResponseWriter, r *http.Request, file string) {
	if r.Method != http.MethodGet {
		writeMsg(w, http.StatusMethodNotAllowed, "Unsupported method")
		return
	}
	if file != "channels.json" {
		writeMsg(w, http.StatusNotFound, "Resource not found")
		return
	}
	doc := channelsDoc{APIVersion: "2.0.0", SwaggerVersion: "1.1", BasePath: s.base + "/ari", ResourcePath: "/api-docs/channels.{format}",
		APIs: []docPath{
			{Path: "/channels", Description: "Active channels", Operations: []docOp{{HTTPMethod: "GET", Since: []string{"12.0.0"}, Nickname: "list"}}},
			{Path: "/channels/{channelId}", Description: "Active channel", Operations: []docOp{{HTTPMethod: "GET", Since: []string{"12.0.0"}, Nickname: "get"}}},
			{Path: "/channels/{channelId}/continue", Description: "Exit application; continue execution in the dialplan",
				Operations: []docOp{{HTTPMethod: "POST", Since: []string{"12.0.0"}, Nickname: "continueInDialplan"}}},
			{Path: "/channels/{channelId}/variable", Description: "Variables on a channel", Operations: []docOp{
				{HTTPMethod: "GET", Since: []string{"12.0.0"}, Nickname: "getChannelVar"},
				{HTTPMethod: "POST", Since: []string{"12.0.0"}, Nickname: "setChannelVar"}}},
		}}
	if s.multiVars {
		since := []string{"20.20.0", "22.10.0", "23.4.0"}
		doc.APIs = append(doc.APIs, docPath{Path: "/channels/{channelId}/variables", Description: "Multiple variables on a channel",
			Operations: []docOp{{HTTPMethod: "GET", Since: since, Nickname: "getChannelVars"},
				{HTTPMethod: "POST", Since: since, Nickname: "setChannelVars"}}})
	}
	writeJSON(w, http.StatusOK, doc)
}

// setVars is POST /channels/{id}/variables with a JSON body
// {"variables": {"NAME": "value" or {"value": "v", "report_events": bool}}},
// checked in Asterisk's order: no body 400, no channel 404, not in Stasis
// 409, then the body's shape 400. Every variable is set in one go (under
// the lock: nothing else happens to the channel in between).
func (s *Server) setVars(w http.ResponseWriter, r *http.Request, id string) {
	var body map[string]json.RawMessage
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	isJSON := strings.EqualFold(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]), "application/json")
	switch {
	case !isJSON || len(raw) == 0:
		// Asterisk reads a body only as application/json: anything else is no body.
		writeMsg(w, http.StatusBadRequest, "The 'variables' field is required")
		return
	case json.Unmarshal(raw, &body) != nil || body == nil:
		writeMsg(w, http.StatusBadRequest, "Error parsing request body")
		return
	}
	s.delaySet()
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[id]
	if ch == nil {
		if rec := s.records[id]; rec != nil {
			rec.SetErrors++
		}
		writeMsg(w, http.StatusNotFound, "Provided channel was not found")
		return
	}
	if _, ok := s.controlLocked(w, id); !ok {
		return
	}
	var vars map[string]json.RawMessage
	if json.Unmarshal(body["variables"], &vars) != nil || vars == nil {
		writeMsg(w, http.StatusBadRequest, "The 'variables' field must be a JSON object")
		return
	}
	type nv struct{ name, value string }
	list := make([]nv, 0, len(vars))
	for name, v := range vars {
		if name == "" {
			continue
		}
		var str string
		if json.Unmarshal(v, &str) == nil {
			list = append(list, nv{strings.TrimSpace(name), str})
			continue
		}
		var obj struct {
			Value        *string `json:"value"`
			ReportEvents *bool   `json:"report_events"`
		}
		if json.Unmarshal(v, &obj) != nil || obj.Value == nil {
			writeMsg(w, http.StatusBadRequest, "Each object value in 'variables' must include string field 'value'")
			return
		}
		list = append(list, nv{strings.TrimSpace(name), *obj.Value})
	}
	s.stats.multiSets.Add(1)
	for _, v := range list {
		s.setLocked(ch, v.name, v.value, true)
	}
	writeNoContent(w)
}

// getVars is GET /channels/{id}/variables?variables=A,B: 200
// {"variables": {"A": "...", "B": "..."}}; functions evaluated as the
// single GET does; one unset plain variable answers 404 for all.
func (s *Server) getVars(w http.ResponseWriter, id string, names string) {
	s.stats.gets.Add(1)
	s.stats.multiGets.Add(1)
	s.wait(s.opts.GetDelay)
	var list []string
	for n := range strings.SplitSeq(names, ",") {
		list = append(list, strings.TrimSpace(n))
	}
	if names == "" || len(list) == 0 {
		writeMsg(w, http.StatusBadRequest, "At least one variable name is required")
		return
	}
	s.mu.Lock()
	ch := s.channels[id]
	out := make(map[string]string, len(list))
	status, msg := 0, ""
	for _, n := range list {
		if ch == nil {
			status, msg = http.StatusNotFound, "Provided channel was not found"
			break
		}
		if n == "" {
			status, msg = http.StatusBadRequest, "Variable names are required"
			break
		}
		v, found, fnErr := ch.read(n)
		if fnErr {
			status, msg = http.StatusInternalServerError, "Unable to read provided function"
			break
		}
		if !found {
			status, msg = http.StatusNotFound, "Provided variable was not found"
			break
		}
		out[n] = v
	}
	s.mu.Unlock()
	if status != 0 {
		writeMsg(w, status, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"variables": out})
}

// delaySet holds a variable request for Options.SetDelay: an Asterisk whose
// HTTP threads are slow to get to it. The variables are set after it, so a
// continue that arrives meanwhile is taken first (and the set answers 409).
func (s *Server) delaySet() { s.wait(s.opts.SetDelay) }

// wait waits d, or until the server closes.
func (s *Server) wait(d time.Duration) {
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.ctx.Done():
		}
	}
}

// sessionListener counts HTTP sessions (a WebSocket is one for as long as it
// is open) and, beyond limit, does what Asterisk's httpd_helper_thread does
// past http.conf sessionlimit: accepts the connection and closes it at once,
// unanswered ("HTTP session count exceeded").
type sessionListener struct {
	net.Listener
	limit             int // 0 = none
	open, peak        atomic.Int64
	refused, accepted *atomic.Int64
}

func (l *sessionListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.accepted.Add(1)
		n := l.open.Add(1)
		if l.limit > 0 && n > int64(l.limit) {
			l.open.Add(-1)
			l.refused.Add(1)
			c.Close()
			continue
		}
		for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
		}
		return &sessionConn{Conn: c, l: l}, nil
	}
}

// sessionConn ends its session once, however it is closed (by the server,
// or by a WebSocket that took it over).
type sessionConn struct {
	net.Conn
	l    *sessionListener
	once sync.Once
}

func (c *sessionConn) Close() error {
	c.end()
	return c.Conn.Close()
}

// Read ends the session as soon as the client has closed it (EOF), as
// Asterisk's session thread ends on its failed read, not later when the
// server gets round to closing its side.
func (c *sessionConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.end()
	}
	return n, err
}

func (c *sessionConn) end() { c.once.Do(func() { c.l.open.Add(-1) }) }
