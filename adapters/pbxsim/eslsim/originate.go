package eslsim

import (
	"strconv"
	"strings"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
)

// The `originate` of a device (sofia/…, user/…: anything but loopback), as
// mod_commands' originate_function and switch_ivr_originate do it in
// FreeSWITCH 1.10: the argument split on blanks (SeparateString: quotes,
// `\s` and the other escapes), 2 to 7 arguments (`undef` = none), a dial
// string containing ":_:" is an enterprise originate (recorded, refused
// here), the {…} lists parsed by CreateBrackets, originate_timeout (else the
// 7th argument, else 60 s) bounding the ring. The new channel (its uuid
// origination_uuid when given) has every variable of the list; subscribers
// see CHANNEL_CREATE and CHANNEL_PROGRESS, then, per the number's script
// (ScriptDial; default: answer after Options.RingTime):
//   - answer: CHANNEL_ANSWER, the reply `+OK <uuid>`, and the channel goes
//     to `<exten> XML <context>`: Options.Dialplan's extension (its bridge
//     and callcenter apps ring agents as RingAgents does), or with no
//     Dialplan at all, queued to Options.Agents (the demo);
//   - any cause: CHANNEL_HANGUP_COMPLETE with it and the reply `-ERR <cause>`;
//     NO_ANSWER rings until the originate timeout.
//
// uuid_kill of the ringing channel ends it at once (`-ERR` with the kill's cause).

// Dial is one scripted answer to an originate of a number.
type Dial struct {
	// Cause is "" to answer, else how the call fails: "USER_BUSY",
	// "CALL_REJECTED", "NO_ANSWER" (rings until the originate timeout),
	// "UNALLOCATED_NUMBER", "NORMAL_TEMPORARY_FAILURE"…
	Cause string
	// RingFor is how long it rings first; 0 = Options.RingTime.
	RingFor time.Duration
}

// OriginateRequest is one originate of a device as the simulator parsed it.
type OriginateRequest struct {
	Arg        string   // the api argument as received
	Args       []string // as split on blanks
	DialString string   // the dial string after the {…} lists
	Endpoint   string   // the endpoint dialled ("sofia/gateway/trunk/+44…")
	Number     string   // its user part (ScriptDial's key)
	Extension  string
	Dialplan   string
	Context    string
	Vars       []Var // the {…} variables in order, as FreeSWITCH parsed them
	Enterprise bool  // the dial string held ":_:" (an enterprise originate)
	Endpoints  int   // dial strings in the list (`,` `|` split)
	UUID       string
	Timeout    time.Duration
	Result     string // the api reply ("+OK <uuid>\n", "-ERR USER_BUSY\n"…), once known
	At         time.Time
}

// Var returns the value of the request's variable name ("" when unset).
func (r OriginateRequest) Var(name string) string {
	v := ""
	for _, x := range r.Vars {
		if x.Name == name {
			v = x.Value
		}
	}
	return v
}

// ScriptDial queues the answers to the next originates of number (the user
// part of the endpoint: "+442079460018" of "sofia/gateway/trunk/+442079460018").
// An originate with nothing queued answers after Options.RingTime.
func (s *sim) ScriptDial(number string, answers ...Dial) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dials == nil {
		s.dials = map[string][]Dial{}
	}
	s.dials[number] = append(s.dials[number], answers...)
}

// Originates returns the device originates received so far, in order.
func (s *sim) Originates() []OriginateRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]OriginateRequest, len(s.origs))
	for i, r := range s.origs {
		out[i] = *r
		out[i].Vars = append([]Var(nil), r.Vars...)
		out[i].Args = append([]string(nil), r.Args...)
	}
	return out
}

const originateSyntax = "<call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]"

// originateCmd is the originate api command; it returns when the
// originate does (a device rings first). Caller does not hold s.mu.
func (s *sim) originateCmd(args string) string {
	args = strings.TrimSpace(args)
	if strings.Contains(args, "loopback/") && !strings.Contains(args, ":_:") {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.originate(args)
	}
	req := &OriginateRequest{Arg: args, At: time.Now()}
	s.mu.Lock()
	s.origs = append(s.origs, req)
	s.mu.Unlock()
	out := s.originateDevice(req)
	s.mu.Lock()
	req.Result = out
	s.mu.Unlock()
	return out
}

func (s *sim) originateDevice(req *OriginateRequest) string {
	argv := SeparateString(req.Arg, ' ', 10)
	s.mu.Lock()
	req.Args = argv
	s.mu.Unlock()
	if len(argv) < 2 || len(argv) > 7 {
		return "-USAGE: " + originateSyntax + "\n"
	}
	for i, a := range argv {
		if strings.EqualFold(a, "undef") {
			argv[i] = ""
		}
	}
	arg := func(i string, n int) string {
		if n < len(argv) && argv[n] != "" {
			return argv[n]
		}
		return i
	}
	aleg, exten := argv[0], argv[1]
	dp, dctx := arg("XML", 2), arg("default", 3)
	timeout := 60
	if n, err := strconv.Atoi(arg("", 6)); err == nil {
		timeout = n
	}
	if exten == "" {
		return "-USAGE: " + originateSyntax + "\n"
	}
	if strings.Contains(aleg, ":_:") {
		// switch_ivr_enterprise_originate: several originates at once.
		// The simulator records it and places none.
		s.mu.Lock()
		req.Enterprise = true
		s.mu.Unlock()
		return "-ERR CHAN_NOT_IMPLEMENTED\n"
	}
	var vars []Var
	data := strings.TrimLeft(aleg, " ")
	for strings.HasPrefix(data, "{") || strings.HasPrefix(data, "<") {
		open, close := byte('{'), byte('}')
		if data[0] == '<' {
			open, close = '<', '>'
		}
		v, rest, ok := CreateBrackets(data, open, close, ',')
		if !ok {
			return "-ERR NORMAL_CLEARING\n" // "Parse Error!": SWITCH_STATUS_GENERR, no cause set
		}
		vars = append(vars, v...)
		data = strings.TrimLeft(rest, " ")
	}
	endpoints := 0
	for _, p := range strings.Split(data, "|") {
		endpoints += len(SeparateString(p, ',', 1024))
	}
	endpoint := data
	if strings.HasPrefix(endpoint, "[") {
		v, rest, ok := CreateBrackets(endpoint, '[', ']', ',')
		if !ok {
			return "-ERR NORMAL_CLEARING\n"
		}
		vars = append(vars, v...)
		endpoint = rest
	}
	get := func(name string) string {
		val := ""
		for _, v := range vars {
			if v.Name == name {
				val = v.Value
			}
		}
		return val
	}
	if n, err := strconv.Atoi(get("originate_timeout")); err == nil && n > 0 {
		timeout = n
	}
	number := endpoint
	if i := strings.LastIndexByte(number, '/'); i >= 0 {
		number = number[i+1:]
	}
	if i := strings.IndexAny(number, "@;"); i >= 0 {
		number = number[:i]
	}
	id := get("origination_uuid")
	if id == "" {
		id = NewUUID()
	}
	s.mu.Lock()
	req.DialString, req.Endpoint, req.Number = data, endpoint, number
	req.Extension, req.Dialplan, req.Context = exten, dp, dctx
	req.Vars, req.Endpoints, req.UUID = vars, endpoints, id
	req.Timeout = time.Duration(timeout) * time.Second
	if endpoints != 1 || endpoint == "" {
		s.mu.Unlock()
		return "-ERR CHAN_NOT_IMPLEMENTED\n" // the simulator dials one device at a time
	}
	if old, ok := s.channels[id]; ok && !old.Dead {
		s.mu.Unlock()
		return "-ERR DESTINATION_OUT_OF_ORDER\n" // a uuid in use: the new session cannot be created
	}
	answer := Dial{}
	if q := s.dials[number]; len(q) > 0 {
		answer, s.dials[number] = q[0], q[1:]
	}
	ch := s.newDeviceChannel(id, endpoint, number, vars)
	s.add(ch)
	s.broadcast("CHANNEL_CREATE", "", s.eventBody(ch, "CHANNEL_CREATE"), nil)
	s.broadcast("CHANNEL_PROGRESS", "", s.eventBody(ch, "CHANNEL_PROGRESS"), nil)
	s.mu.Unlock()

	ring := answer.RingFor
	if ring <= 0 {
		ring = s.opts.RingTime
	}
	if answer.Cause == "NO_ANSWER" || ring > req.Timeout {
		ring, answer.Cause = req.Timeout, "NO_ANSWER"
	}
	t := time.NewTimer(ring)
	defer t.Stop()
	s.dialplan() // dpRuns' context
	select {
	case <-ch.done: // uuid_kill, Hangup
		s.mu.Lock()
		cause := ch.hangupCause
		s.mu.Unlock()
		if cause == "" {
			cause = "NORMAL_CLEARING"
		}
		return "-ERR " + cause + "\n"
	case <-s.dpRuns.ctx.Done():
		s.hangup(id, "SYSTEM_SHUTDOWN")
		return "-ERR SYSTEM_SHUTDOWN\n"
	case <-t.C:
	}
	if answer.Cause != "" {
		if !s.hangup(id, answer.Cause) {
			return "-ERR NORMAL_CLEARING\n"
		}
		return "-ERR " + answer.Cause + "\n"
	}
	s.mu.Lock()
	if ch.Dead {
		s.mu.Unlock()
		return "-ERR NORMAL_CLEARING\n"
	}
	ch.headers = withHeader(ch.headers, "Answer-State", "answered")
	ch.headers = withHeader(ch.headers, "Channel-Call-State", "ACTIVE")
	s.broadcast("CHANNEL_ANSWER", "", s.eventBody(ch, "CHANNEL_ANSWER"), nil)
	// switch_ivr_session_transfer, then the reply
	ch.TransferTo = exten + " " + dp + " " + dctx
	ch.headers = withHeader(ch.headers, "Caller-Destination-Number", eslwire.Encode(exten))
	ch.headers = withHeader(ch.headers, "Caller-Context", eslwire.Encode(dctx))
	ch.Context = dctx
	s.mu.Unlock()
	if app, ok := strings.CutPrefix(exten, "&"); ok {
		// originate_function: the application alone, no dialplan
		name, arg, _ := strings.Cut(strings.TrimSuffix(app, ")"), "(")
		s.runActions(ch, []fsAction{{name, arg}})
		return "+OK " + id + "\n"
	}
	s.runTransferred(ch, exten, dctx)
	return "+OK " + id + "\n"
}

// newDeviceChannel is the outbound channel of an originate. Caller holds s.mu.
func (s *sim) newDeviceChannel(id, endpoint, number string, vars []Var) *channel {
	get := func(name, def string) string {
		val := def
		for _, v := range vars {
			if v.Name == name {
				val = v.Value
			}
		}
		return val
	}
	ch := s.newChannel(Caller{Number: get("origination_caller_id_number", "0000000000"),
		Name: get("origination_caller_id_name", "FreeSWITCH"), DNIS: number})
	ch.UUID = id
	ch.Parked = false
	for _, h := range []string{"Unique-ID", "Channel-Call-UUID", "Caller-Unique-ID"} {
		ch.headers = withHeader(ch.headers, h, id)
	}
	for _, h := range []string{"Channel-Name", "Caller-Channel-Name"} {
		ch.headers = withHeader(ch.headers, h, eslwire.Encode(endpoint))
	}
	for _, h := range []string{"Call-Direction", "Presence-Call-Direction", "Caller-Direction", "Caller-Logical-Direction"} {
		ch.headers = withHeader(ch.headers, h, "outbound")
	}
	ch.headers = withHeader(ch.headers, "Answer-State", "ringing")
	ch.headers = withHeader(ch.headers, "Channel-Call-State", "RINGING")
	ch.headers = withHeader(ch.headers, "Channel-State", "CS_ROUTING")
	ch.setVar("uuid", id)
	ch.setVar("call_uuid", id)
	ch.setVar("channel_name", endpoint)
	ch.unsetVar("other_loopback_leg_uuid")
	ch.unsetVar("origination_uuid")
	for _, v := range vars {
		if v.Value == "" {
			continue
		}
		ch.setVar(v.Name, v.Value)
	}
	return ch
}

// runTransferred runs an answered originated channel in its dialplan
// extension on a goroutine of its own (the channel's session thread).
func (s *sim) runTransferred(ch *channel, exten, dctx string) {
	dp, _ := s.dialplan()
	var actions []fsAction
	for _, e := range dp[dctx] {
		if e.match.MatchString(exten) {
			actions = e.actions
			break
		}
	}
	if actions == nil && strings.TrimSpace(s.opts.Dialplan) == "" {
		// no dialplan at all (the demo): a queue of Options.Agents
		actions = []fsAction{{"callcenter", exten + "@default"}}
	}
	s.runActions(ch, actions)
}

// runActions runs actions on ch on a goroutine of its own (the channel's
// session thread); park keeps the channel until it is hung up.
func (s *sim) runActions(ch *channel, actions []fsAction) {
	if len(actions) == 1 && actions[0].app == "park" {
		s.mu.Lock()
		ch.Parked = true
		s.mu.Unlock()
		return
	}
	s.dpRuns.wg.Add(1)
	go func() {
		defer s.dpRuns.wg.Done()
		if actions == nil {
			s.hangup(ch.UUID, "NO_ROUTE_DESTINATION")
			return
		}
		s.runFSDialplan(s.dpRuns.ctx, ch, actions)
		s.hangup(ch.UUID, "NORMAL_CLEARING")
	}()
}

// ringFromDialplan is the bridge (a ring-all of `user/<agent>@…` dial
// strings) and callcenter (a queue of Options.Agents) apps: the agent legs
// RingAgents plays, with Options.AgentRing's answer and times.
func (s *sim) ringFromDialplan(ch *channel, app, data string) {
	r := s.opts.AgentRing
	r.Agents = nil
	switch app {
	case "bridge":
		for _, d := range strings.FieldsFunc(data, func(r rune) bool { return r == ',' || r == '|' }) {
			if i := strings.LastIndexByte(d, '}'); i >= 0 {
				d = d[i+1:]
			}
			d = d[strings.LastIndexByte(d, '/')+1:]
			if i := strings.IndexByte(d, '@'); i >= 0 {
				d = d[:i]
			}
			if d != "" {
				r.Agents = append(r.Agents, d)
			}
		}
		r.Queue = ""
	case "callcenter":
		r.Queue = strings.TrimSpace(data)
		r.Agents = s.opts.Agents
		if len(r.Agents) == 0 {
			r.Agents = []string{"1001", "1002", "1003"}
		}
		s.mu.Lock()
		for _, n := range strings.Split(ch.Vars["cc_export_vars"], ",") {
			if strings.TrimSpace(n) == "callpop_call_id" {
				r.ExportCallID = true
			}
		}
		s.mu.Unlock()
	}
	if r.RingFor <= 0 {
		r.RingFor = time.Second
	}
	if r.TalkFor <= 0 {
		r.TalkFor = 10 * time.Second
	}
	s.RingAgents(s.dpRuns.ctx, ch.UUID, r)
}
