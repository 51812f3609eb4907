package popper

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

const testSecret = "0123456789abcdef-test-secret"

// instance is a running popper with its HTTP server.
type instance struct {
	p      *Popper
	srv    *httptest.Server
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startInstance(t testing.TB, cfg Config, deps Deps) *instance {
	t.Helper()
	if cfg.TokenSecret == "" {
		cfg.TokenSecret = testSecret
	}
	p, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{p: p, srv: httptest.NewServer(p.Handler()), cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- p.Run(ctx) }()
	t.Cleanup(in.stop)
	waitFor(t, func() bool { ok, _ := p.Ready(); return ok })
	return in
}

func (in *instance) stop() { in.once.Do(in.stopOnce) }

func (in *instance) stopOnce() {
	in.srv.CloseClientConnections()
	in.srv.Close()
	in.cancel()
	select {
	case <-in.done:
	case <-time.After(5 * time.Second):
		panic("popper.Run did not end")
	}
}

func token(t testing.TB, agent string) string {
	t.Helper()
	tok, err := IssueToken([]byte(testSecret), agent, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// sseEvent is one event read from a stream.
type sseMsg struct {
	ID, Event, Data string
	Comment         bool
}

// stream is an open SSE connection whose events arrive on C.
type stream struct {
	C    chan sseMsg
	resp *http.Response
}

func openStream(t testing.TB, base, agent, tok string, hdr map[string]string) *stream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/agents/"+agent+"/pops", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream %s: %d %s", agent, resp.StatusCode, b)
	}
	s := &stream{C: make(chan sseMsg, 4096), resp: resp}
	go func() {
		defer close(s.C)
		r := bufio.NewReader(resp.Body)
		var m sseMsg
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if m != (sseMsg{}) {
					s.C <- m
				}
				m = sseMsg{}
			case strings.HasPrefix(line, ":"):
				m.Comment = true
			case strings.HasPrefix(line, "id: "):
				m.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				m.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				m.Data += line[6:]
			}
		}
	}()
	t.Cleanup(s.Close)
	return s
}

func (s *stream) Close() { s.resp.Body.Close() }

// next returns the next pop event, skipping comments.
func (s *stream) next(t testing.TB, within time.Duration) sseMsg {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-s.C:
			if !ok {
				t.Fatal("stream closed")
			}
			if m.Event == "pop" {
				return m
			}
		case <-timer.C:
			t.Fatalf("no pop within %v", within)
		}
	}
}

func ring(p *Popper, callID, agent string) {
	p.AgentLeg(call.LegEvent{CallID: callID, Leg: callID + "-" + agent, Endpoint: "PJSIP/" + agent + "-0000000a", State: call.LegRinging})
}

func enrich(p *Popper, callID string, d call.Decision) {
	d.CallID = callID
	p.CallEnriched(call.Enriched{CallID: callID, Call: call.Call{ID: callID, PBX: "asterisk"}, Decision: d})
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached within 10s")
}

func (h *hub) backlogLen(agent string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ah := h.agents[agent]; ah != nil {
		return len(ah.backlog)
	}
	return 0
}

func (h *hub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ah := range h.agents {
		n += len(ah.subs)
	}
	return n
}

// rawStream opens a stream over a bare TCP connection and reads up to the
// first event (so the subscription exists), keeping client memory small.
func rawStream(t testing.TB, addr, agent, tok string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /v1/agents/%s/pops HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", agent, addr, tok)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("raw stream %s: %q %v", agent, buf[:n], err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}
