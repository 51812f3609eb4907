package arisim

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

type app struct {
	conn *wsConn // the live socket; nil when none (or after ApplicationReplaced went out and it closed)
}

type wsConn struct {
	cmu    sync.Mutex
	c      *websocket.Conn // set once the handshake is done
	apps   []string
	all    bool // subscribeAll=true
	out    chan []byte
	done   chan struct{}
	once   sync.Once
	server *Server
}

func (c *wsConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.cmu.Lock()
		conn := c.c
		c.cmu.Unlock()
		if conn != nil {
			conn.CloseNow()
		}
	})
}

// send queues msg; a socket too far behind is dropped, as a stuck reader would be.
func (c *wsConn) send(msg []byte) {
	select {
	case <-c.done:
	case c.out <- msg:
	default:
		c.server.stats.dropped.Add(1)
		c.close()
	}
}

func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var apps []string
	for _, a := range strings.Split(q.Get("app"), ",") {
		if a != "" {
			apps = append(apps, a)
		}
	}
	if len(apps) == 0 {
		writeMsg(w, http.StatusBadRequest, "Missing parameter app")
		return
	}
	// Register before the handshake completes, so a call offered the moment
	// the client sees 101 already goes to this socket (queued until written).
	wc := &wsConn{apps: apps, all: q.Get("subscribeAll") == "true", out: make(chan []byte, s.opts.EventBuf),
		done: make(chan struct{}), server: s}
	s.mu.Lock()
	s.conns[wc] = struct{}{}
	for _, name := range apps {
		a := s.apps[name]
		if a == nil {
			a = &app{}
			s.apps[name] = a
		}
		if old := a.conn; old != nil && old != wc {
			// One WebSocket per app: the newer one wins; the older gets only ApplicationReplaced.
			s.stats.replaced.Add(1)
			old.send(mustJSON(appReplacedJSON{Type: "ApplicationReplaced", Timestamp: stamp(time.Now()),
				Application: name, AsteriskID: asteriskID}))
		}
		a.conn = wc
	}
	s.mu.Unlock()
	defer func() {
		wc.close()
		s.mu.Lock()
		delete(s.conns, wc)
		for _, name := range apps {
			if a := s.apps[name]; a != nil && a.conn == wc {
				a.conn = nil
			}
		}
		s.mu.Unlock()
	}()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	c.SetReadLimit(1 << 20)
	wc.cmu.Lock()
	wc.c = c
	wc.cmu.Unlock()
	s.stats.connections.Add(1)
	select {
	case <-wc.done: // dropped while the handshake ran
		c.CloseNow()
		return
	default:
	}

	ctx := c.CloseRead(s.ctx) // answers pings; done when the peer goes away
	for {
		select {
		case <-ctx.Done():
			return
		case <-wc.done:
			return
		case msg := <-wc.out:
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.Write(wctx, websocket.MessageText, msg)
			cancel()
			if err != nil {
				return
			}
		}
	}
}

// emitLocked sends an event about ch to every app that should see it: the
// Stasis app holding it, apps subscribed to it, and subscribeAll sockets.
// build gets the application name for the event's "application" field.
func (s *Server) emitLocked(ch *channel, build func(app string) []byte) {
	s.emitToLocked(ch, nil, build)
}

func (s *Server) emitToLocked(ch *channel, extra []string, build func(app string) []byte) {
	sent := map[*wsConn]bool{}
	deliver := func(name string) {
		a := s.apps[name]
		if a == nil || a.conn == nil || sent[a.conn] {
			return
		}
		sent[a.conn] = true
		a.conn.send(build(name))
	}
	if ch.stasisApp != "" {
		deliver(ch.stasisApp)
	}
	for name := range ch.subs {
		deliver(name)
	}
	for _, name := range extra {
		deliver(name)
	}
	for c := range s.conns {
		if c.all && !sent[c] {
			for _, name := range c.apps {
				if a := s.apps[name]; a != nil && a.conn == c {
					sent[c] = true
					c.send(build(name))
					break
				}
			}
		}
	}
}

// DropSockets closes every WebSocket abruptly (events queued on them are lost),
// as a network failure or an Asterisk restart of res_ari would.
func (s *Server) DropSockets() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.close()
		for _, name := range c.apps {
			if a := s.apps[name]; a != nil && a.conn == c {
				a.conn = nil // the app is gone at once: new calls fail over
			}
		}
	}
}

// Inject sends a raw event to every live socket of app (an unknown event type,
// a recorded line, ...).
func (s *Server) Inject(app string, raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[app]; a != nil && a.conn != nil {
		a.conn.send(append([]byte(nil), raw...))
	}
}
