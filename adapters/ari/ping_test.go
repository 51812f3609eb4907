package ari

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

// freezer is a TCP proxy whose existing connections can be frozen: bytes
// stop flowing both ways but nothing is closed, like a half-open socket
// behind a dead NAT or a hung Asterisk. New connections flow normally.
type freezer struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*frozenPair
	wg     sync.WaitGroup
}

type frozenPair struct {
	mu     sync.Mutex
	frozen bool
	a, b   net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p := &frozenPair{a: c, b: u}
			f.mu.Lock()
			f.conns = append(f.conns, p)
			f.mu.Unlock()
			f.wg.Add(2)
			go func() { defer f.wg.Done(); p.pipe(c, u) }()
			go func() { defer f.wg.Done(); p.pipe(u, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, p := range f.conns {
			p.a.Close()
			p.b.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (p *frozenPair) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			for {
				p.mu.Lock()
				frozen := p.frozen
				p.mu.Unlock()
				if !frozen {
					break
				}
				time.Sleep(5 * time.Millisecond) // hold the bytes: nothing gets through
				if isClosed(src) {
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			dst.Close()
			return
		}
	}
}

func isClosed(c net.Conn) bool {
	c.SetReadDeadline(time.Now())
	_, err := c.Read(make([]byte, 0))
	c.SetReadDeadline(time.Time{})
	ne, ok := err.(net.Error)
	return err != nil && !(ok && ne.Timeout())
}

func (f *freezer) freezeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.conns {
		p.mu.Lock()
		p.frozen = true
		p.mu.Unlock()
	}
}

// A half-open event socket is noticed by the pings and replaced; calls
// offered meanwhile are reconciled. No reconnect happens on a healthy one.
func TestPingDetectsHalfOpenSocket(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	fz := newFreezer(t, sim.URL()[len("http://"):])
	h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchMiss}}, testBudget, func(c *Config) {
		c.URL = "http://" + fz.ln.Addr().String()
		c.PingInterval = 50 * time.Millisecond
		c.PingTimeout = 100 * time.Millisecond
		c.RequestTimeout = 500 * time.Millisecond
	})
	time.Sleep(200 * time.Millisecond) // several pings on a healthy socket
	if c := sim.Stats().Connections; c != 1 {
		t.Fatalf("connections %d before the freeze", c)
	}
	fz.freezeAll()
	waitFor(t, 5*time.Second, "a new connection", func() bool { return sim.Stats().Connections >= 2 })
	waitFor(t, 5*time.Second, "ready again", func() bool { ok, _ := h.a.Ready(); return ok })
	id := sim.OfferCall(arisim.CallSpec{CLI: "+14155550123"})
	waitSettled(t, sim, []string{id}, 5*time.Second)
	if r, _ := sim.Record(id); r.Continued.IsZero() {
		t.Errorf("call after the reconnect not continued: %+v", r)
	}
}
