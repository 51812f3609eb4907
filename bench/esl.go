package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/esl"
	"github.com/callpop/callpop/adapters/esl/eslwire"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/call"
)

func init() {
	targetFactories[PBXFreeSWITCHOutbound] = func(m mode, tc targetConfig) Target {
		return &eslTarget{outbound: true, bare: m == modeBare, external: m == modeExternal, log: tc.log, maxCalls: tc.maxCalls, decisions: tc.decisions()}
	}
	targetFactories[PBXFreeSWITCHInbound] = func(m mode, tc targetConfig) Target {
		return &eslTarget{bare: m == modeBare, external: m == modeExternal, log: tc.log, maxCalls: tc.maxCalls, decisions: tc.decisions()}
	}
}

const benchESLPassword = "bench-not-ClueCon"

// eslTarget is the ESL simulator (outbound: it dials callpop's socket
// listener per call; inbound: callpop connects to it and takes parked calls)
// with callpop's ESL adapter, or with a bare client doing the adapter's round
// trips (outbound: connect + resume, api uuid_setvar_multi, exit; inbound: bgapi
// uuid_setvar_multi, bgapi uuid_transfer) with no look-up.
type eslTarget struct {
	outbound, bare bool
	external       bool
	log            *slog.Logger
	maxCalls       int             // the adapter's max_calls; 0 = its default
	decisions      []call.Decision // what the bare client sets, in turn
	seq            atomic.Int64
	bareReady      atomic.Bool // the bare inbound client is subscribed
	in             *eslsim.Inbound
	out            *eslsim.Outbound
	ad             *esl.Adapter
	bareLn         net.Listener
	bareIn         net.Conn
	wg             sync.WaitGroup
	addr           chan string
}

func (t *eslTarget) Start(ctx context.Context, deps adapters.Deps) error {
	if t.outbound {
		if t.external {
			return nil // Attach makes the dialler
		}
		if t.bare {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			t.bareLn = ln
			t.out = eslsim.NewOutbound(ln.Addr().String(), eslsim.Options{Password: benchESLPassword})
			t.wg.Add(1)
			go func() { // ends when the listener closes
				defer t.wg.Done()
				t.serveBareOutbound(ln)
			}()
			return nil
		}
		a, err := startESLAdapter(ctx, "outbound", "127.0.0.1:0", t.maxCalls, deps, t.log)
		t.ad = a
		return err
	}
	in, err := eslsim.NewInbound(eslsim.Options{Password: benchESLPassword})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	t.in = in
	switch {
	case t.external:
		return nil
	case t.bare:
		return t.startBareInbound(ctx)
	}
	a, err := startESLAdapter(ctx, "inbound", in.Addr(), t.maxCalls, deps, t.log)
	t.ad = a
	return err
}

// startESLAdapter runs callpop's ESL adapter until ctx ends: outbound listens
// on addr, inbound connects to addr; maxCalls > 0 replaces max_calls.
func startESLAdapter(ctx context.Context, mode, addr string, maxCalls int, deps adapters.Deps, log *slog.Logger) (*esl.Adapter, error) {
	cfg := esl.DefaultConfig()
	cfg.Events = false // agent-leg events need the inbound socket; not measured here
	if maxCalls > 0 {
		cfg.MaxCalls = maxCalls
	}
	cfg.Password = benchESLPassword
	cfg.Mode = mode
	if mode == "outbound" {
		cfg.Listen = addr
	} else {
		cfg.Address = addr
	}
	a, err := esl.New(cfg, deps)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	go func() { // ends with ctx
		if err := a.Run(ctx); err != nil {
			log.Error("esl adapter stopped", "component", "bench", "err", err)
		}
	}()
	return a, nil
}

// Endpoint is the inbound simulator's address ("" in outbound mode: the simulator dials).
func (t *eslTarget) Endpoint() string {
	if t.in != nil {
		return t.in.Addr()
	}
	return ""
}

// Attach points the outbound simulator at the sidecar's socket listener.
func (t *eslTarget) Attach(addr string) {
	if t.outbound && addr != "" {
		t.out = eslsim.NewOutbound(addr, eslsim.Options{Password: benchESLPassword})
	}
}

func (t *eslTarget) Ready() bool {
	switch {
	case t.external && t.outbound:
		return t.out != nil
	case t.bare && t.outbound:
		return true
	case t.bare:
		return t.bareReady.Load()
	case t.external:
		return t.in.Clients() > 0
	}
	ok, _ := t.ad.Ready()
	if ok && t.outbound && t.out == nil {
		if addr := t.ad.Addr(); addr != "" {
			t.out = eslsim.NewOutbound(addr, eslsim.Options{Password: benchESLPassword})
		} else {
			return false
		}
	}
	return ok
}

func (t *eslTarget) Offer(ctx context.Context, c Caller, dnis string) (Outcome, error) {
	ec := eslsim.Caller{Number: c.CLI, Name: "Bench Caller", DNIS: dnis, HideNumber: c.Kind == KindAnonymous}
	if t.outbound {
		r, err := t.out.Call(ctx, ec)
		if err != nil {
			return Outcome{CallID: r.UUID}, err
		}
		o := Outcome{CallID: r.UUID, Sent: r.Connected, Released: r.Released}
		if n := len(r.Sets); n > 0 {
			o.LastVar = r.Sets[n-1].At
		}
		return o, nil
	}
	id := t.in.OfferCall(ec)
	if err := t.in.WaitReleased(ctx, id); err != nil {
		t.in.Hangup(id)
		return Outcome{CallID: id}, err
	}
	ch, _ := t.in.Channel(id)
	t.in.Hangup(id)
	o := Outcome{CallID: id, Sent: ch.Created, Released: ch.Released}
	if n := len(ch.Sets); n > 0 {
		o.LastVar = ch.Sets[n-1].At
	}
	return o, nil
}

// requests is the simulator's command count (connect, api, bgapi, exit, ...):
// requests per call.
func (t *eslTarget) requests() (requests, offered int64) {
	var st eslsim.Stats
	switch {
	case t.in != nil:
		st = t.in.Stats()
	case t.out != nil:
		st = t.out.Stats()
	}
	return int64(st.Commands), int64(st.Offered)
}

func (t *eslTarget) Close() error {
	if t.bareLn != nil {
		t.bareLn.Close()
	}
	if t.bareIn != nil {
		t.bareIn.Close()
	}
	if t.in != nil {
		t.in.Close()
	}
	t.wg.Wait()
	return nil
}

// bareSetvar is the uuid_setvar_multi argument list the adapter sends for a typical known caller.
func bareSetvar(uuid string, d call.Decision) string {
	var b strings.Builder
	b.WriteString("uuid_setvar_multi " + uuid + " ")
	for i, v := range bareVars(d) {
		if v.Name == "QUEUE_PRIO" || strings.HasPrefix(v.Name, "__") {
			continue
		}
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(strings.ToLower(v.Name) + "=" + strings.ReplaceAll(v.Value, ";", " "))
	}
	b.WriteString(";cc_base_score=5;callpop_call_id=" + uuid + ";export_vars=callpop_call_id;cc_export_vars=callpop_call_id")
	return b.String()
}

// replyReader returns a function that sends one command (line "" = none,
// already written) and returns the next command/reply or api/response.
func replyReader(w io.Writer, r *eslwire.Reader) func(line string) (*eslwire.Frame, error) {
	return func(line string) (*eslwire.Frame, error) {
		if line != "" {
			if _, err := io.WriteString(w, line+"\n\n"); err != nil {
				return nil, err
			}
		}
		for {
			f, err := r.ReadFrame()
			if err != nil {
				return nil, err
			}
			if ct := f.ContentType(); ct == eslwire.TypeReply || ct == eslwire.TypeAPIResponse {
				return f, nil
			}
		}
	}
}

// socketConnect opens an outbound socket session as callpop's adapter does:
// connect and resume in one write (without resume, a session that ends
// before FreeSWITCH's channel thread has parked leaves the call parked for
// good; see adapters/esl), and returns connect's reply.
func socketConnect(w io.Writer, cmd func(string) (*eslwire.Frame, error)) (*eslwire.Frame, error) {
	if _, err := io.WriteString(w, "connect\n\nresume\n\n"); err != nil {
		return nil, err
	}
	f, err := cmd("")
	if err != nil {
		return nil, err
	}
	_, err = cmd("")
	return f, err
}

// serveBareOutbound answers each socket-app connection: connect + resume, api uuid_setvar_multi, exit.
func (t *eslTarget) serveBareOutbound(ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() { // ends with its connection
			defer wg.Done()
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
			cmd := replyReader(nc, eslwire.NewReader(nc))
			f, err := socketConnect(nc, cmd)
			if err != nil {
				return
			}
			uuid := eslwire.Decode(f.Headers.Get("Unique-ID"))
			if _, err := cmd("api " + bareSetvar(uuid, t.decisions[int(t.seq.Add(1))%len(t.decisions)])); err != nil {
				return
			}
			_, _ = cmd("exit")
		}()
	}
}

// startBareInbound connects a bare client to the inbound simulator: auth,
// subscribe to CHANNEL_PARK, and per parked call bgapi uuid_setvar_multi then
// bgapi uuid_transfer.
func (t *eslTarget) startBareInbound(ctx context.Context) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", t.in.Addr())
	if err != nil {
		return fmt.Errorf("bench: bare ESL: %w", err)
	}
	t.bareIn = nc
	r := eslwire.NewReader(nc)
	var wmu sync.Mutex
	w := bufio.NewWriter(nc)
	send := func(line string) {
		wmu.Lock()
		w.WriteString(line + "\n\n")
		_ = w.Flush()
		wmu.Unlock()
	}
	if _, err := r.ReadFrame(); err != nil { // auth/request
		return fmt.Errorf("bench: bare ESL: %w", err)
	}
	// Ready (the simulator counts the client) once subscribed, not before:
	// a park before then would never be seen.
	for _, line := range []string{"auth " + benchESLPassword, "event plain CHANNEL_PARK"} {
		send(line)
		f, err := r.ReadFrame()
		if err != nil {
			return fmt.Errorf("bench: bare ESL: %s: %w", strings.Fields(line)[0], err)
		}
		if reply := f.Headers.Get("Reply-Text"); !strings.HasPrefix(reply, "+OK") {
			return fmt.Errorf("bench: bare ESL: %s: %q", strings.Fields(line)[0], reply)
		}
	}
	t.bareReady.Store(true)
	t.wg.Add(1)
	go func() { // ends when the connection closes
		defer t.wg.Done()
		job := 0
		for {
			f, err := r.ReadFrame()
			if err != nil {
				return
			}
			if f.ContentType() != eslwire.TypeEventPlain {
				continue
			}
			ev, err := eslwire.ParseEvent(f.Body)
			if err != nil || ev.Headers.Get("Event-Name") != "CHANNEL_PARK" {
				continue
			}
			uuid := eslwire.Decode(ev.Headers.Get("Unique-ID"))
			job++
			send(fmt.Sprintf("bgapi %s\nJob-UUID: bench-%d", bareSetvar(uuid, t.decisions[int(t.seq.Add(1))%len(t.decisions)]), job))
			job++
			send(fmt.Sprintf("bgapi uuid_transfer %s 8005550100 XML default\nJob-UUID: bench-%d", uuid, job))
		}
	}()
	return nil
}
