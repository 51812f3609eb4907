package arisim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a simulator.
type Options struct {
	Username string // ARI user; empty with Password empty = no authentication
	Password string
	App      string        // default Stasis application for offered calls ("callpop")
	Labels   []string      // dialplan labels continue accepts; nil = any label
	Logger   *slog.Logger  // nil = discard
	Addr     string        // listen address; default 127.0.0.1:0
	EventBuf int           // per-socket event queue; a socket that falls this far behind is dropped
	EndDelay time.Duration // delay between a continue's 204 and StasisEnd (async, like Asterisk)
	// Linger is how long a continued call without agent legs stays up before
	// the caller hangs up (default 1s; negative = never).
	Linger time.Duration
	// MaxRecords bounds the call records kept (oldest dropped); default 200000.
	MaxRecords int
	// OnContinue, when set, is called (on the request's goroutine, after the
	// 204 is written) with each channel continued and the time the continue
	// was recorded: a load generator's cheap alternative to polling Continued.
	OnContinue func(id string, at time.Time)
	// ChannelVars is ari.conf's [general] channelvars: every channel snapshot
	// (events and REST replies) carries these names under "channelvars", in
	// this order, unset ones as "". Plain variables and the dialplan functions
	// the simulator knows (CALLERID(ani), CALLERID(num-pres), CHANNEL(linkedid), ...)
	// are evaluated. nil = no "channelvars" key, as without the option.
	ChannelVars []string
	// Version is the Asterisk version reported (GET /asterisk/info); before
	// 20.20, 22.10 and 23.4 there is no /channels/{id}/variables (api-docs
	// does not list it, the route answers 404). Default DefaultVersion.
	Version string
	// SetDelay holds every variable request (single or multiple) this long
	// before it is carried out, as a loaded Asterisk would.
	SetDelay time.Duration
	// GetDelay holds every variable read (single or multiple) this long.
	GetDelay time.Duration
	// SessionLimit is http.conf sessionlimit: beyond this many open HTTP
	// sessions (a WebSocket counts while open) a new connection is accepted
	// and closed unanswered, as Asterisk does. 0 = no limit (Asterisk's
	// default is 100).
	SessionLimit int
	// Dialplan is an extensions.conf subset (see dialplan.go) that channels
	// originated to Local/<exten>@<context> run, and originated channels to
	// a device once answered (originate.go); "" = none (Local ones hang up;
	// answered ones queue to DefaultQueue's agents).
	Dialplan string
	// RingTime is how long a dialled number rings before its scripted
	// outcome (ScriptOutcomes); default 1.5 s.
	RingTime time.Duration
	// DialDelay is the time from an originate to the dialled side's first
	// answer (ringing, or a failure "at once"): a trunk's round trip.
	// Default 20 ms; negative = none.
	DialDelay time.Duration
	// Queues are the agents Queue(name) in the dialplan rings; a name not
	// here rings DefaultQueue.
	Queues map[string]Queue
}

// Server is a running ARI simulator: real HTTP and WebSocket on a loopback port.
type Server struct {
	opts Options
	log  *slog.Logger
	ln   net.Listener
	srv  *http.Server
	base string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	seq   atomic.Int64
	epoch int64

	mu       sync.Mutex
	channels map[string]*channel
	apps     map[string]*app
	conns    map[*wsConn]struct{}
	records  map[string]*Record
	order    []string // offered channel ids, in order
	appIndex map[string]*appIndex

	faults map[string]int // op → requests left to fail with 500

	scripts   map[string][]Outcome // dialled number or endpoint → outcomes to come
	origs     []OriginateRequest
	queueTurn atomic.Int64 // DefaultQueue's answering agent, in turn

	multiVars bool // the version serves /channels/{id}/variables
	dialplan  dialplan
	sessions  *sessionListener

	tmu    sync.Mutex
	timers map[*time.Timer]struct{} // pending after() calls

	hold subHold // HoldSubscriptions

	stats struct {
		offered, failed, continued, hungUp, sets, gets, requests, connections, replaced, dropped, accepted atomic.Int64
		multiSets, multiGets, refused, originated                                                          atomic.Int64
	}
}

// Record is what callpop did to one offered channel.
type Record struct {
	ID        string
	Spec      CallSpec
	Offered   time.Time         // StasisStart written to the socket queue
	Failed    bool              // no app was connected: Stasis() failed and the dialplan went on
	Continued time.Time         // zero until continued
	Target    ContinueTarget    // where it was continued to
	Vars      map[string]string // every variable set over ARI, by the name used (prefixes kept)
	SetOrder  []string          // the names in the order they were set
	HungUp    bool              // the caller hung up while in Stasis
	SetErrors int               // variable sets answered 404/409
	AGI       []string          // the AGI commands read on the channel (RunAGI, a dialplan's AGI), as read
}

// ContinueTarget is the parameters a continue carried.
type ContinueTarget struct {
	Context, Extension, Label string
	Priority                  int
}

// Stats counts what the simulator saw.
type Stats struct {
	Offered, Failed, Continued, HungUp, VarSets, VarGets, Requests, Connections, Replaced, Dropped int64
	Accepted                                                                                       int64 // TCP connections accepted (HTTP and WebSocket): a client's dials
	Waiting                                                                                        int   // in Stasis, not continued, now
	// MultiSets and MultiGets count POST and GET /channels/{id}/variables
	// (a MultiGet is in VarGets too; VarSets counts each variable set).
	MultiSets, MultiGets int64
	// Refused counts connections closed unanswered past SessionLimit;
	// Sessions is the HTTP sessions open now, PeakSessions the most at once.
	Refused, Sessions, PeakSessions int64
	Originated                      int64 // POST /channels answered 200
}

// New starts a simulator on a loopback port.
func New(opts Options) (*Server, error) {
	if opts.App == "" {
		opts.App = "callpop"
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = 200000
	}
	if opts.Linger == 0 {
		opts.Linger = time.Second
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.RingTime <= 0 {
		opts.RingTime = 1500 * time.Millisecond
	}
	if opts.DialDelay == 0 {
		opts.DialDelay = 20 * time.Millisecond
	}
	if opts.EventBuf <= 0 {
		opts.EventBuf = 1 << 16
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dp, err := parseDialplan(opts.Dialplan)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("arisim: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts: opts, log: log.With("component", "arisim"), ln: ln,
		base:     "http://" + ln.Addr().String(),
		ctx:      ctx,
		cancel:   cancel,
		epoch:    time.Now().Unix(),
		channels: map[string]*channel{}, apps: map[string]*app{}, appIndex: map[string]*appIndex{},
		conns: map[*wsConn]struct{}{}, records: map[string]*Record{}, faults: map[string]int{}, scripts: map[string][]Outcome{},
		timers: map[*time.Timer]struct{}{}, multiVars: hasMultiVars(opts.Version), dialplan: dp,
	}
	s.sessions = &sessionListener{Listener: ln, limit: opts.SessionLimit, refused: &s.stats.refused, accepted: &s.stats.accepted}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(s.sessions); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	return s, nil
}

// URL is the HTTP base of the simulator (what pbx.asterisk.url takes).
func (s *Server) URL() string { return s.base }

// App is the default application name offered calls go to.
func (s *Server) App() string { return s.opts.App }

// Close stops the server, its sockets and its timers.
func (s *Server) Close() error {
	s.cancel()
	s.stopTimers()
	s.mu.Lock()
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.srv.Close()
	s.wg.Wait()
	return err
}

// ServeHTTP routes the ARI subset callpop uses.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.stats.requests.Add(1)
	if !strings.HasPrefix(r.URL.Path, "/ari/") {
		writeMsg(w, http.StatusNotFound, "Resource not found")
		return
	}
	q := r.URL.Query()
	if !s.authorised(r, q) {
		w.Header().Set("WWW-Authenticate", `Basic realm="Asterisk REST Interface"`)
		writeMsg(w, http.StatusUnauthorized, "Authentication required")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/ari/"), "/")
	if s.fault(r.Method, parts) {
		writeMsg(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	switch {
	case len(parts) == 1 && parts[0] == "events":
		s.serveEvents(w, r)
	case len(parts) == 2 && parts[0] == "asterisk" && parts[1] == "info" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"system": map[string]string{"version": s.opts.Version, "entity_id": asteriskID}})
	case len(parts) == 2 && parts[0] == "api-docs":
		s.apiDocs(w, r, parts[1])
	case len(parts) == 3 && parts[0] == "channels" && parts[2] == "variables" && s.multiVars:
		switch r.Method {
		case http.MethodGet:
			s.getVars(w, parts[1], q.Get("variables"))
		case http.MethodPost:
			s.setVars(w, r, parts[1])
		default:
			writeMsg(w, http.StatusMethodNotAllowed, "Invalid method")
		}
	case len(parts) == 2 && parts[0] == "asterisk" && parts[1] == "ping" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]string{"asterisk_id": asteriskID, "ping": "pong", "timestamp": stamp(time.Now())})
	case len(parts) == 1 && parts[0] == "channels" && r.Method == http.MethodGet:
		s.listChannels(w)
	case len(parts) == 1 && parts[0] == "channels" && r.Method == http.MethodPost:
		s.originate(w, r, q)
	case len(parts) == 2 && parts[0] == "channels" && r.Method == http.MethodDelete:
		s.hangupChannel(w, parts[1], q)
	case len(parts) == 2 && parts[0] == "channels" && r.Method == http.MethodGet:
		s.getChannel(w, parts[1])
	case len(parts) == 3 && parts[0] == "channels" && parts[2] == "variable":
		switch r.Method {
		case http.MethodGet:
			s.getVar(w, parts[1], q)
		case http.MethodPost:
			s.setVar(w, r, parts[1], q)
		default:
			writeMsg(w, http.StatusMethodNotAllowed, "Invalid method")
		}
	case len(parts) == 3 && parts[0] == "channels" && parts[2] == "continue":
		if r.Method != http.MethodPost {
			writeMsg(w, http.StatusMethodNotAllowed, "Invalid method")
			return
		}
		s.continueChannel(w, r, parts[1], q)
	case len(parts) == 2 && parts[0] == "applications" && r.Method == http.MethodGet:
		s.getApp(w, parts[1])
	case len(parts) == 3 && parts[0] == "applications" && parts[2] == "subscription":
		switch r.Method {
		case http.MethodPost, http.MethodDelete:
			if r.Method == http.MethodPost {
				s.holdSubscription(r.Context())
			}
			s.subscription(w, parts[1], q.Get("eventSource"), r.Method == http.MethodPost)
		default:
			writeMsg(w, http.StatusMethodNotAllowed, "Invalid method")
		}
	default:
		writeMsg(w, http.StatusNotFound, "Resource not found")
	}
}

func (s *Server) authorised(r *http.Request, q url.Values) bool {
	if s.opts.Username == "" && s.opts.Password == "" {
		return true
	}
	want := s.opts.Username + ":" + s.opts.Password
	if k := q.Get("api_key"); k != "" {
		return subtle.ConstantTimeCompare([]byte(k), []byte(want)) == 1
	}
	u, p, ok := r.BasicAuth()
	return ok && subtle.ConstantTimeCompare([]byte(u+":"+p), []byte(want)) == 1
}

// writeMsg answers like Asterisk: JSON {"message": ...} with its headers.
func writeMsg(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, messageJSON{Message: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	writeRaw(w, code, mustJSON(v))
}

// writeRaw answers with b, JSON already encoded.
func writeRaw(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h.Set("Server", "Asterisk/22.10.1")
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

func writeNoContent(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Server", "Asterisk/22.10.1")
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
}

// params merges the query with a JSON or form body, as Asterisk does.
func params(r *http.Request, q url.Values) url.Values {
	if r.Body == nil {
		return q
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if len(body) == 0 {
		return q
	}
	out := url.Values{}
	for k, v := range q {
		out[k] = v
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			for k, v := range m {
				switch v := v.(type) {
				case string:
					out.Set(k, v)
				case float64:
					out.Set(k, strconv.FormatFloat(v, 'f', -1, 64))
				}
			}
		}
		return out
	}
	if f, err := url.ParseQuery(string(body)); err == nil {
		for k, v := range f {
			out[k] = v
		}
	}
	return out
}

// FailNext makes the next n requests of op answer 500: op is "continue",
// "set" (POST variable or variables), "get" (GET variable or variables), "channels" (GET /channels) or
// "subscribe".
func (s *Server) FailNext(op string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[op] += n
}

func (s *Server) fault(method string, parts []string) bool {
	op := ""
	switch {
	case len(parts) == 3 && parts[0] == "channels" && parts[2] == "continue":
		op = "continue"
	case len(parts) == 3 && parts[0] == "channels" && (parts[2] == "variable" || parts[2] == "variables") && method == http.MethodPost:
		op = "set"
	case len(parts) == 3 && parts[0] == "channels" && (parts[2] == "variable" || parts[2] == "variables") && method == http.MethodGet:
		op = "get"
	case len(parts) == 1 && parts[0] == "channels":
		op = "channels"
	case len(parts) == 3 && parts[0] == "applications" && parts[2] == "subscription":
		op = "subscribe"
	default:
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults[op] > 0 {
		s.faults[op]--
		return true
	}
	return false
}

// Stats returns the counters and the number of channels waiting in Stasis.
func (s *Server) Stats() Stats {
	st := Stats{
		Offered: s.stats.offered.Load(), Failed: s.stats.failed.Load(), Continued: s.stats.continued.Load(),
		HungUp: s.stats.hungUp.Load(), VarSets: s.stats.sets.Load(), VarGets: s.stats.gets.Load(),
		Requests: s.stats.requests.Load(), Connections: s.stats.connections.Load(),
		Replaced: s.stats.replaced.Load(), Dropped: s.stats.dropped.Load(), Accepted: s.stats.accepted.Load(),
		MultiSets: s.stats.multiSets.Load(), MultiGets: s.stats.multiGets.Load(), Refused: s.stats.refused.Load(),
		Sessions: s.sessions.open.Load(), PeakSessions: s.sessions.peak.Load(), Originated: s.stats.originated.Load(),
	}
	st.Waiting = len(s.Waiting())
	return st
}

// Waiting lists channels that sit in Stasis and were never continued.
func (s *Server) Waiting() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, id := range s.order {
		if ch := s.channels[id]; ch != nil && ch.stasisApp != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// Record returns a copy of what was done to channel id.
func (s *Server) Record(id string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	if !ok {
		return Record{}, false
	}
	c := *r
	c.SetOrder = slices.Clone(r.SetOrder)
	c.AGI = slices.Clone(r.AGI)
	c.Vars = make(map[string]string, len(r.Vars))
	for k, v := range r.Vars {
		c.Vars[k] = v
	}
	return c, true
}

// Vars returns the variables callpop set on channel id, by the name it used.
func (s *Server) Vars(id string) map[string]string {
	r, _ := s.Record(id)
	return r.Vars
}

// Continued reports when channel id was continued.
func (s *Server) Continued(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[id]
	if !ok || r.Continued.IsZero() {
		return time.Time{}, false
	}
	return r.Continued, true
}

// Records returns every offered call's record, in offer order.
func (s *Server) Records() []Record {
	s.mu.Lock()
	ids := append([]string(nil), s.order...)
	s.mu.Unlock()
	out := make([]Record, 0, len(ids))
	for _, id := range ids {
		if r, ok := s.Record(id); ok {
			out = append(out, r)
		}
	}
	return out
}

// Connected reports whether app has a live (not replaced) WebSocket.
func (s *Server) Connected(app string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[app]
	return a != nil && a.conn != nil
}

// after runs f after d on the server's lifetime; it is dropped on Close.
// A timer, not a goroutine: a simulator holding thousands of lingering
// calls should not cost the process under test thousands of goroutines.
func (s *Server) after(d time.Duration, f func()) {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	s.wg.Add(1)
	var t *time.Timer
	t = time.AfterFunc(max(d, 0), func() {
		defer s.wg.Done()
		s.tmu.Lock()
		delete(s.timers, t)
		s.tmu.Unlock()
		if s.ctx.Err() == nil {
			f()
		}
	})
	s.timers[t] = struct{}{}
}

// stopTimers drops the timers not yet fired (Close).
func (s *Server) stopTimers() {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	for t := range s.timers {
		if t.Stop() {
			s.wg.Done()
		}
		delete(s.timers, t)
	}
}
