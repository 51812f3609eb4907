package eslsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
)

// Inbound is a simulated FreeSWITCH event socket (port 8021): clients connect,
// authenticate, subscribe, and control the calls the test parks with OfferCall.
type Inbound struct {
	*sim
	ln     net.Listener
	wg     sync.WaitGroup
	closed chan struct{}
	// refuseUntil: connections accepted before it are closed at once (DropConnectionsFor)
	refuseUntil time.Time
}

// NewInbound starts a simulator listening on a free 127.0.0.1 port.
func NewInbound(opts Options) (*Inbound, error) {
	return NewInboundAt("127.0.0.1:0", opts)
}

// NewInboundAt starts a simulator listening on addr (a loopback host:port),
// e.g. where a client is already trying to connect.
func NewInboundAt(addr string, opts Options) (*Inbound, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("eslsim: listen: %w", err)
	}
	in := &Inbound{sim: newSim(opts), ln: ln, closed: make(chan struct{})}
	in.wg.Add(1)
	go in.accept()
	return in, nil
}

// Addr is the host:port clients dial.
func (in *Inbound) Addr() string { return in.ln.Addr().String() }

func (in *Inbound) accept() {
	defer in.wg.Done()
	for {
		nc, err := in.ln.Accept()
		if err != nil {
			return
		}
		ss := &session{s: in.sim, nc: nc}
		in.mu.Lock()
		if time.Now().Before(in.refuseUntil) {
			in.mu.Unlock()
			_ = nc.Close()
			continue
		}
		in.sessions[ss] = struct{}{}
		in.stats.Connections++
		in.mu.Unlock()
		if in.opts.Reject {
			ss.send(eslwire.AppendFrame(nil, []eslwire.Header{{Name: "Content-Type", Value: eslwire.TypeRude}}, []byte("Access Denied, go away.\n")))
			ss.close()
			continue
		}
		ss.send([]byte("Content-Type: auth/request\n\n"))
		in.wg.Add(1)
		go func() {
			defer in.wg.Done()
			ss.serve(eslwire.NewReader(nc))
		}()
	}
}

// Close stops the simulator and drops every connection.
func (in *Inbound) Close() {
	select {
	case <-in.closed:
		return
	default:
		close(in.closed)
	}
	_ = in.ln.Close()
	in.DropConnections()
	in.stopDialplans()
	in.wg.Wait()
}

// DropConnections closes every client socket without a disconnect notice, as a
// crash or network cut would. Parked calls stay parked.
func (in *Inbound) DropConnections() {
	in.mu.Lock()
	ss := make([]*session, 0, len(in.sessions))
	for s := range in.sessions {
		ss = append(ss, s)
	}
	in.mu.Unlock()
	for _, s := range ss {
		s.close()
	}
}

// DropConnectionsFor drops every client socket, as DropConnections does, and
// closes new ones at once for d: a network cut that lasts, during which the
// calls go on and their events reach nobody.
func (in *Inbound) DropConnectionsFor(d time.Duration) {
	in.mu.Lock()
	in.refuseUntil = time.Now().Add(d)
	in.mu.Unlock()
	in.DropConnections()
}

// Shutdown sends what FreeSWITCH sends on SIGTERM: SHUTDOWN, then a
// disconnect notice, then closes every connection.
func (in *Inbound) Shutdown() {
	in.mu.Lock()
	ss := make([]*session, 0, len(in.sessions))
	for s := range in.sessions {
		ss = append(ss, s)
	}
	body := mustRecorded("shutdown.txt")
	in.broadcast("SHUTDOWN", "", body, nil)
	in.mu.Unlock()
	for _, s := range ss {
		s.disconnect(shutdownText)
	}
}

// OfferCall creates an inbound channel from c, parks it in its context and
// sends CHANNEL_CREATE and CHANNEL_PARK to subscribers. It returns the UUID.
func (in *Inbound) OfferCall(c Caller) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	ch := in.newChannel(c)
	in.add(ch)
	in.broadcast("CHANNEL_CREATE", "", in.eventBody(ch, "CHANNEL_CREATE"), nil)
	in.broadcast("CHANNEL_PARK", "", in.eventBody(ch, "CHANNEL_PARK"), nil)
	return ch.UUID
}

// OfferRecorded parks a channel described by a recorded CHANNEL_PARK event
// body and sends that body, byte for byte, to subscribers.
func (in *Inbound) OfferRecorded(body []byte) (string, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	ch, err := in.channelFromRecording(body)
	if err != nil {
		return "", err
	}
	in.add(ch)
	in.broadcast("CHANNEL_PARK", "", ch.parkBody, nil)
	return ch.UUID, nil
}

// EmitRaw sends a recorded event body to the subscribers of its Event-Name.
func (in *Inbound) EmitRaw(body []byte) {
	hs, _, _ := eslwire.ParseHeaderBlock(body)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.broadcast(hs.Get("Event-Name"), eslwire.Decode(hs.Get("Event-Subclass")), body, nil)
}

// ParkWithoutEvent parks a channel but sends no event: a call that arrived
// while callpop was disconnected, for reconcile tests.
func (in *Inbound) ParkWithoutEvent(c Caller) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	ch := in.newChannel(c)
	in.add(ch)
	return ch.UUID
}

func (s *sim) add(ch *channel) {
	s.channels[ch.UUID] = ch
	s.order = append(s.order, ch.UUID)
	s.stats.Offered++
}

// Hangup ends a call as if the caller hung up.
func (s *sim) Hangup(uuid string) bool { return s.hangup(uuid, "NORMAL_CLEARING") }

// Channel returns a snapshot of a channel.
func (s *sim) Channel(uuid string) (Channel, bool) { return s.snapshot(uuid) }

// Vars returns the channel's variables.
func (s *sim) Vars(uuid string) map[string]string {
	c, _ := s.snapshot(uuid)
	return c.Vars
}

// Released reports whether the call has gone on (transfer, exit, close,
// hangup) and when.
func (s *sim) Released(uuid string) (bool, time.Time) {
	c, ok := s.snapshot(uuid)
	return ok && c.ReleasedBy != "", c.Released
}

// Parked lists the calls still parked (not released, not hung up).
func (s *sim) Parked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range s.order {
		if ch := s.channels[id]; ch.Parked && !ch.Dead {
			out = append(out, id)
		}
	}
	return out
}

// Stats returns the counters.
func (s *sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Clients is the number of connected sessions.
func (s *sim) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// WaitReleased waits until the call is released or ctx ends.
func (s *sim) WaitReleased(ctx context.Context, uuid string) error {
	s.mu.Lock()
	ch := s.channels[uuid]
	s.mu.Unlock()
	if ch == nil {
		return errors.New("eslsim: no such channel")
	}
	select {
	case <-ch.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Outbound is a simulated FreeSWITCH running `socket <addr> async full`: each
// Call dials the target (callpop's listener), answers `connect` with the
// recorded channel data, and serves commands until `exit` or close.
type Outbound struct {
	*sim
	target string
	wg     sync.WaitGroup
}

// NewOutbound returns a dialer for target ("127.0.0.1:8084").
func NewOutbound(target string, opts Options) *Outbound {
	return &Outbound{sim: newSim(opts), target: target}
}

// Result is what happened to one outbound call.
type Result struct {
	Channel
	Connected time.Time // TCP connection made (the socket app started)
	Offered   time.Time // the connect reply (the channel data callpop reads) was written
	Exit      bool      // callpop sent exit (false: it closed the socket)
	// Resume is when the dialplan went on. In async mode FreeSWITCH notices the
	// end of the socket session at its next 20 ms wake-up unless the handler
	// finished within ~2 ms (the recorded measurement).
	Resume time.Time
}

// Call runs one call through the socket app and returns when the dialplan
// would go on, or ctx ends (the call is then counted as stuck).
func (o *Outbound) Call(ctx context.Context, c Caller) (Result, error) {
	o.mu.Lock()
	ch := o.newChannel(c)
	ch.Parked = true
	o.add(ch)
	o.mu.Unlock()
	return o.run(ctx, ch, nil)
}

// CallRecorded runs one call whose channel data is a recorded event body (the
// connect reply then carries exactly those headers).
func (o *Outbound) CallRecorded(ctx context.Context, body []byte) (Result, error) {
	o.mu.Lock()
	ch, err := o.channelFromRecording(body)
	if err != nil {
		o.mu.Unlock()
		return Result{}, err
	}
	o.add(ch)
	o.mu.Unlock()
	return o.run(ctx, ch, body)
}

func (o *Outbound) run(ctx context.Context, ch *channel, recordedBody []byte) (Result, error) {
	var d net.Dialer
	if o.opts.Source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.opts.Source)}
	}
	nc, err := d.DialContext(ctx, "tcp", o.target)
	start := time.Now()
	if err != nil {
		// the socket app fails: the dialplan's next action runs at once
		o.mu.Lock()
		o.release(ch, "close")
		o.mu.Unlock()
		c, _ := o.snapshot(ch.UUID)
		return Result{Channel: c, Connected: start, Resume: time.Now()}, fmt.Errorf("eslsim: dial: %w", err)
	}
	ss := &session{s: o.sim, nc: nc, bound: ch, authed: true}
	o.mu.Lock()
	o.sessions[ss] = struct{}{}
	o.stats.Connections++
	o.mu.Unlock()
	r := eslwire.NewReader(nc)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, err := r.ReadFrame()
		for first := true; err == nil && strings.TrimSpace(f.First) == "resume"; first = false {
			// accepted before connect; the first command's reply is not sent
			o.mu.Lock()
			ss.resume = true
			o.mu.Unlock()
			if !first {
				ss.reply("+OK")
			}
			f, err = r.ReadFrame()
		}
		if err != nil || f.First != "connect" {
			ss.close()
			return
		}
		o.mu.Lock()
		ch.connect = time.Now()
		o.mu.Unlock()
		reply := o.connectReply(ch, recordedBody)
		o.mu.Lock()
		ch.offered = time.Now()
		o.mu.Unlock()
		ss.send(reply)
		ss.serve(r)
	}()
	select {
	case <-ch.done:
	case <-ctx.Done():
		ss.close()
		<-done
		c, _ := o.snapshot(ch.UUID)
		return Result{Channel: c, Connected: start}, fmt.Errorf("eslsim: call %s stuck: %w", ch.UUID, ctx.Err())
	}
	c, _ := o.snapshot(ch.UUID)
	o.mu.Lock()
	offered := ch.offered
	o.mu.Unlock()
	res := Result{Channel: c, Connected: start, Offered: offered, Exit: c.ReleasedBy == "exit"}
	res.Resume = c.Released
	if held := c.Released.Sub(start); held > 2*time.Millisecond {
		// next 20 ms wake-up of the parked channel thread
		ticks := held/(20*time.Millisecond) + 1
		res.Resume = start.Add(ticks * 20 * time.Millisecond)
	}
	// the connection ends; let the session finish in the background
	go func() { <-done }()
	return res, nil
}

// connectReply renders the reply to `connect`: the whole channel, Content-Type
// near the end, no Content-Length (as recorded).
func (o *Outbound) connectReply(ch *channel, recordedBody []byte) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	var body []byte
	if recordedBody != nil {
		hs, _, _ := eslwire.ParseHeaderBlock(recordedBody)
		hs[0].Value = "CHANNEL_DATA"
		body = renderBlock(hs, nil)
	} else {
		body = o.connectData(ch)
	}
	body = body[:len(body)-1] // drop the blank line; the reply headers follow
	body = append(body, "Content-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\nControl: full\n\n"...)
	return body
}

// connectData renders a generated channel on the recorded connect reply's
// header set (the Channel-* copies of the caller profile included).
func (o *Outbound) connectData(ch *channel) []byte {
	templates()
	hs := eslwire.Headers{}
	for _, h := range tplConnect {
		if v, ok := ch.headers.Lookup(h.Name); ok {
			h.Value = v
		} else if rest, ok := strings.CutPrefix(h.Name, "Channel-"); ok {
			if v, ok := ch.headers.Lookup("Caller-" + rest); ok {
				h.Value = v
			}
		}
		hs = append(hs, h)
	}
	b := renderHeaders(nil, hs)
	b = append(b, ch.variableLines()...)
	return append(b, '\n')
}

// ParkCalls offers n calls at rate calls/s (caller i from gen) and returns
// their UUIDs; it stops early when ctx ends.
func (in *Inbound) ParkCalls(ctx context.Context, n int, rate float64, gen func(i int) Caller) []string {
	ids := make([]string, 0, n)
	if rate <= 0 {
		rate = 1
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i := 0; i < n; i++ {
		ids = append(ids, in.OfferCall(gen(i)))
		select {
		case <-ctx.Done():
			return ids
		case <-tick.C:
		}
	}
	return ids
}

// Load runs n calls through the socket app at rate calls/s, each in its own
// goroutine, and returns every result (in call order) once all are released.
func (o *Outbound) Load(ctx context.Context, n int, rate float64, gen func(i int) Caller) ([]Result, []error) {
	res := make([]Result, n)
	errs := make([]error, n)
	if rate <= 0 {
		rate = 1
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res[i], errs[i] = o.Call(ctx, gen(i))
		}(i)
		select {
		case <-ctx.Done():
			wg.Wait()
			return res[:i+1], errs[:i+1]
		case <-tick.C:
		}
	}
	wg.Wait()
	return res, errs
}
