package arisim

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Originate to a device (POST /ari/channels with an endpoint other than
// Local/…): the simulator plays the dialled party — a customer's phone
// behind a trunk — as Asterisk 22 reports it, and on an answer runs the
// requested context/extension of its dialplan (ari_originate_dial).
//
// The channel gets callerId (caller and connected line) and then the
// body's variables at creation, before it dials. Its events go to apps
// subscribed to it (POST /applications/{app}/subscription?eventSource=
// channel:{id}) and subscribeAll sockets only: originating into the
// dialplan puts no channel in Stasis. In order: ChannelCreated, Dial
// (no caller, dialstatus ""), then per the number's scripted Outcome
// ChannelStateChange Ringing and Dial RINGING, and either
// ChannelStateChange Up and Dial ANSWER (then the dialplan), or Dial
// BUSY/NOANSWER/CONGESTION/CHANUNAVAIL, ChannelHangupRequest and
// ChannelDestroyed with the cause. Asterisk's own dial timeout (the
// request's timeout, 30 s by default) destroys it with cause 0 "Unknown",
// as app_dial's timeout trip leaves no cause.

// Outcome is how a dialled number answers one originate.
type Outcome struct {
	// Answer picks up after Ring; otherwise the call ends with Cause.
	Answer bool
	// Cause is the hang-up cause (Q.850) of a call not answered: 17 user
	// busy, 21 rejected, 19 no answer, 1 unallocated number, 34 congestion…
	// 0 rings until the originate's timeout.
	Cause int
	// Ring is how long it rings before the answer or the hang-up; 0 =
	// Options.RingTime; negative = no ringing at all (answers or fails at
	// once, after Options.DialDelay).
	Ring time.Duration
	// Watched makes the outcome wait (up to 10 s) until an application has
	// subscribed to the channel: a test's way to show a failure that comes
	// at once without racing the subscription.
	Watched bool
	// LocalCause makes the channel end as an originate through a Local
	// channel does on Asterisk 22.10.1: the Dial event gives the status
	// Cause maps to (BUSY…), the ChannelDestroyed cause 0 "Unknown".
	LocalCause bool
	// DialStatus, when set, is the originate's last Dial status instead of
	// the one Cause maps to: through a Local channel Asterisk 22.10.1 ends
	// an unallocated number (cause 1) with Dial NOANSWER.
	DialStatus string
}

// Answered, Busy, NoAnswer and Failed are the common outcomes.
var (
	Answered = Outcome{Answer: true}
	Busy     = Outcome{Cause: 17}
	NoAnswer = Outcome{Cause: 19}
)

// Failed is an outcome ending at once (no ringing) with cause.
func Failed(cause int) Outcome { return Outcome{Cause: cause, Ring: -1} }

// Queue is how Queue(name) in the simulator's dialplan rings agents, like
// CallSpec's agent fields: all ring, the one at Answer answers (<0: none).
type Queue struct {
	Agents           []string
	Answer           int
	RingFor, TalkFor time.Duration
}

// DefaultQueue rings the demo's agents 1001–1003, one answering in turn,
// for a Queue() not in Options.Queues and for an answered originate when
// the simulator has no dialplan at all.
var DefaultQueue = Queue{Agents: []string{"PJSIP/1001", "PJSIP/1002", "PJSIP/1003"}, Answer: -1,
	RingFor: 1500 * time.Millisecond, TalkFor: 3 * time.Second}

// OriginateRequest is one POST /channels the simulator answered 200.
type OriginateRequest struct {
	ID        string // the channel created (channelId, or a generated id)
	Endpoint  string
	Number    string // the dialled number read from the endpoint
	Context   string
	Extension string
	Priority  int
	App       string
	CallerID  string
	Timeout   int // seconds as sent; 0 = not sent (30)
	Variables map[string]string
	At        time.Time
}

// ScriptOutcomes queues outcomes for number (the dialled number, e.g.
// "+442079460018", or a whole endpoint): each originate to it takes the
// next; once they are used up it is answered after Options.RingTime.
func (s *Server) ScriptOutcomes(number string, outcomes ...Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[number] = append(s.scripts[number], outcomes...)
}

// Originates returns the originate requests answered, in order.
func (s *Server) Originates() []OriginateRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]OriginateRequest, len(s.origs))
	for i, o := range s.origs {
		o.Variables = maps.Clone(o.Variables)
		out[i] = o
	}
	return out
}

// nextOutcomeLocked takes the scripted outcome for endpoint.
func (s *Server) nextOutcomeLocked(endpoint, number string) Outcome {
	for _, key := range []string{endpoint, number} {
		if q := s.scripts[key]; len(q) > 0 {
			s.scripts[key] = q[1:]
			return q[0]
		}
	}
	return Answered
}

// dialledNumber reads the number out of a dial string: PJSIP/+4420@trunk,
// PJSIP/trunk/sip:+4420@host, SIP/trunk/+4420, DAHDI/g1/+4420.
func dialledNumber(endpoint string) string {
	_, res, _ := strings.Cut(endpoint, "/")
	if i := strings.LastIndexByte(res, '/'); i >= 0 {
		res = res[i+1:]
	}
	for _, p := range []string{"sip:", "sips:", "tel:"} {
		res = strings.TrimPrefix(res, p)
	}
	num, _, _ := strings.Cut(res, "@")
	num, _, _ = strings.Cut(num, ";")
	return num
}

// dialOut is POST /channels to a device: 200 with the new channel, whose
// dial then plays out on a goroutine of its own.
func (s *Server) dialOut(w http.ResponseWriter, p url.Values, vars map[string]string, endpoint string) {
	timeout := 30 * time.Second
	if t := p.Get("timeout"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil {
			writeMsg(w, http.StatusBadRequest, "timeout: invalid integer")
			return
		}
		switch {
		case n > 0:
			timeout = time.Duration(n) * time.Second
		case n == -1:
			timeout = -1
		}
	}
	dctx := p.Get("context")
	if dctx == "" {
		dctx = "default"
	}
	exten, app := p.Get("extension"), p.Get("app")
	prio, _ := strconv.Atoi(p.Get("priority"))
	if prio <= 0 {
		prio = 1
	}
	num, name := parseCallerID(p.Get("callerId"))
	tech, res, _ := strings.Cut(endpoint, "/")
	dev := res
	if _, host, ok := strings.Cut(res, "@"); ok {
		dev = host
	} else if i := strings.IndexByte(res, '/'); i >= 0 {
		dev = res[:i]
	}
	id := p.Get("channelId")
	if id == "" {
		id = s.newID()
	}
	now := time.Now()
	ch := &channel{id: id, linkedid: id, name: fmt.Sprintf("%s/%s-%08x", tech, dev, s.seq.Add(1)), state: "Down",
		channelVars: s.opts.ChannelVars, callerNum: num, callerName: name, connNum: num, connName: name,
		context: "default", exten: "s", priority: 1, created: now,
		vars: map[string]string{}, subs: map[string]bool{}, inherit: map[string]bool{}, gone: make(chan struct{})}
	// callerId first, then the variables (ast_set_variables): a
	// CALLERID(...) among them changes the caller, not the connected line.
	for k, v := range vars {
		ch.setDialplanVar(k, v)
		if strings.HasPrefix(k, "_") && !strings.Contains(k, "(") {
			ch.inherit[strings.TrimLeft(k, "_")] = true
		}
	}
	number := dialledNumber(endpoint)
	s.mu.Lock()
	if s.channels[id] != nil {
		s.mu.Unlock()
		writeMsg(w, http.StatusConflict, "Channel with given unique ID already exists")
		return
	}
	s.channels[id] = ch
	out := s.nextOutcomeLocked(endpoint, number)
	if out.Watched {
		ch.watched = make(chan struct{})
	}
	s.recordOriginateLocked(OriginateRequest{ID: id, Endpoint: endpoint, Number: number, Context: p.Get("context"),
		Extension: exten, Priority: prio, App: app, CallerID: p.Get("callerId"), Timeout: atoi(p.Get("timeout")),
		Variables: maps.Clone(vars), At: now})
	j := ch.json()
	s.emitLocked(ch, func(a string) []byte {
		return mustJSON(channelEventJSON{Type: "ChannelCreated", Timestamp: stamp(now), Channel: j, AsteriskID: asteriskID, Application: a})
	})
	s.mu.Unlock()
	s.stats.originated.Add(1)
	writeJSON(w, http.StatusOK, j)
	target := ContinueTarget{Context: dctx, Extension: exten, Priority: prio}
	var args []string
	if app != "" {
		args = append([]string{app}, strings.Split(p.Get("appArgs"), ",")...)
		if p.Get("appArgs") == "" {
			args = args[:1]
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.dial(ch, res, out, timeout, target, args)
	}()
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// recordOriginateLocked keeps r (the oldest dropped past MaxRecords).
func (s *Server) recordOriginateLocked(r OriginateRequest) {
	s.origs = append(s.origs, r)
	if len(s.origs) > s.opts.MaxRecords {
		s.origs = s.origs[1:]
	}
}

// dial plays an originated channel's dial: ringing, then the outcome.
func (s *Server) dial(ch *channel, dialstring string, out Outcome, timeout time.Duration, target ContinueTarget, stasisArgs []string) {
	s.originDial(ch, "", dialstring)
	if !s.waitGone(ch, s.opts.DialDelay) {
		return
	}
	if out.Watched {
		s.mu.Lock()
		watched := ch.watched
		s.mu.Unlock()
		if watched != nil {
			t := time.NewTimer(10 * time.Second)
			select {
			case <-watched:
			case <-t.C:
			case <-ch.gone:
			case <-s.ctx.Done():
			}
			t.Stop()
		}
	}
	ring := out.Ring
	if ring == 0 {
		ring = s.opts.RingTime
	}
	ringsOut := !out.Answer && out.Cause == 0 // rings until Asterisk's dial gives up
	if ring >= 0 || ringsOut {
		s.setState(ch, "Ringing")
		s.originDial(ch, "RINGING", "")
		left, giveUp := ring, ringsOut
		if ringsOut || timeout > 0 && ring > timeout {
			left, giveUp = timeout, true // -1: never
		}
		if !s.waitGone(ch, left) {
			return
		}
		if giveUp {
			s.originDial(ch, "NOANSWER", "")
			s.hangup(ch.id, 0)
			return
		}
	}
	if !out.Answer {
		status := dialStatus(out.Cause)
		if out.DialStatus != "" {
			status = out.DialStatus
		}
		s.originDial(ch, status, "")
		if out.LocalCause {
			s.hangup(ch.id, 0)
			return
		}
		s.hangup(ch.id, out.Cause)
		return
	}
	s.mu.Lock()
	if ch.hungUp {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.setState(ch, "Up")
	s.originDial(ch, "ANSWER", "")
	s.mu.Lock()
	ch.context, ch.exten, ch.priority = target.Context, target.Extension, target.Priority
	s.mu.Unlock()
	ctx, exten := target.Context, target.Extension
	if len(stasisArgs) > 0 { // app=: the answered channel enters Stasis, then the continue's target
		to, ok := s.stasis(ch, stasisArgs)
		if !ok {
			s.hangup(ch.id, 16)
			return
		}
		if to.Context != "" {
			ctx = to.Context
		}
		if to.Extension != "" {
			exten = to.Extension
		}
	}
	switch {
	case len(s.dialplan) == 0:
		// No dialplan at all (callpop demo): the callback queues to the
		// default agents.
		s.queue(ch, "")
	case s.dialplan[ctx][exten] != nil:
		s.runDialplan(ch, ctx, exten)
	}
	s.hangup(ch.id, 16) // the dialplan ended (or had no such extension): Asterisk hangs up
}

// waitGone sleeps d (d < 0: until the channel goes) and reports whether
// the channel is still there.
func (s *Server) waitGone(ch *channel, d time.Duration) bool {
	var tc <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-tc:
		return true
	case <-ch.gone:
	case <-s.ctx.Done():
	}
	return false
}

// queue is Queue(name): the agents of Options.Queues[name] (DefaultQueue
// when it has none) ring as for an incoming call; it returns when the
// caller's channel is gone.
func (s *Server) queue(ch *channel, name string) {
	q, ok := s.opts.Queues[name]
	if !ok {
		q = DefaultQueue
		if q.Answer < 0 {
			q.Answer = int(s.queueTurn.Add(1)-1) % len(q.Agents)
		}
	}
	s.ringAgents(ch.id, q)
	select {
	case <-ch.gone:
	case <-s.ctx.Done():
	}
}

// setState changes the channel's state with its ChannelStateChange.
func (s *Server) setState(ch *channel, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch.hungUp {
		return
	}
	ch.state = state
	j, now := ch.json(), time.Now()
	s.emitLocked(ch, func(a string) []byte {
		return mustJSON(channelEventJSON{Type: "ChannelStateChange", Timestamp: stamp(now), Channel: j, AsteriskID: asteriskID, Application: a})
	})
}

// originDial is the originate's own Dial event: no caller, the new channel as peer.
func (s *Server) originDial(ch *channel, status, dialstring string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch.hungUp {
		return
	}
	j, now := ch.json(), time.Now()
	s.emitLocked(ch, func(a string) []byte {
		return mustJSON(originDialJSON{Type: "Dial", Timestamp: stamp(now), Dialstatus: status, Forward: "", Dialstring: dialstring,
			Peer: j, AsteriskID: asteriskID, Application: a})
	})
}

// dialStatus is the DIALSTATUS a hang-up cause gives.
func dialStatus(cause int) string {
	switch cause {
	case 17, 21:
		return "BUSY"
	case 18, 19:
		return "NOANSWER"
	case 34, 38, 41, 42:
		return "CONGESTION"
	}
	return "CHANUNAVAIL"
}

// causeText is ast_cause2str's text for a cause.
func causeText(cause int) string {
	switch cause {
	case 0:
		return "Unknown"
	case 1:
		return "Unallocated (unassigned) number"
	case 3:
		return "No route to destination"
	case 16:
		return "Normal Clearing"
	case 17:
		return "User busy"
	case 18:
		return "No user responding"
	case 19:
		return "User alerting, no answer"
	case 20:
		return "Subscriber absent"
	case 21:
		return "Call Rejected"
	case 22:
		return "Number changed"
	case 26:
		return "Answered elsewhere"
	case 27:
		return "Destination out of order"
	case 28:
		return "Invalid number format"
	case 31:
		return "Normal, unspecified"
	case 34:
		return "Circuit/channel congestion"
	case 38:
		return "Network out of order"
	case 41:
		return "Temporary failure"
	case 42:
		return "Switching equipment congestion"
	case 127:
		return "Interworking, unspecified"
	}
	return "Unknown"
}

// hangupReasons are DELETE /channels/{id}'s reason values and their causes.
var hangupReasons = map[string]int{
	"normal": 16, "busy": 17, "congestion": 34, "no_answer": 19, "timeout": 18, "rejected": 21,
	"unallocated": 1, "normal_unspecified": 31, "number_incomplete": 28, "codec_mismatch": 58,
	"interworking": 127, "failure": 38, "answered_elsewhere": 26,
}
