package eslsim

import (
	"embed"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
)

// Recorded frames from FreeSWITCH 1.10.12 (recorded/README.md names each):
// the header sets every generated event and reply starts from.
//
//go:embed recorded/*.txt
var recorded embed.FS

func mustRecorded(name string) []byte {
	b, err := recorded.ReadFile("recorded/" + name)
	if err != nil {
		panic("eslsim: missing recorded frame " + name)
	}
	return b
}

// Texts FreeSWITCH sends, as recorded.
const (
	goodbye      = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
	shutdownText = "The system is being shut down.\n"
	// Version is what ${version()} expands to.
	Version = "FreeSWITCH Version 1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit (git a88d069 2024-08-02 21:02:27Z 64bit)\n"
)

// Options configure a simulated FreeSWITCH.
type Options struct {
	Password string // event socket password; "" = "ClueCon"
	Context  string // dialplan context calls are parked in; "" = "callpop"
	// ExecDelay is how long after `sendmsg` an `execute` runs (FreeSWITCH's
	// 20 ms wake-up in async outbound sockets); 0 = 20ms, negative = at once.
	ExecDelay time.Duration
	// APIDelay, when set, delays the reply to an api command (the connection
	// stays blocked meanwhile, as FreeSWITCH runs api commands one at a time).
	APIDelay func(cmd, args string) time.Duration
	// ParkDelay is how long after `connect` the socket app's channel thread
	// takes to park (it polls for connect with switch_cond_next). An outbound
	// session that ends sooner (exit or close), or closes before connect,
	// without `resume` leaves the call parked until it hangs up, as
	// mod_event_socket does; 0 = 1ms, negative = at once.
	ParkDelay time.Duration
	// Reject makes the inbound socket refuse every client as an ACL does
	// (text/rude-rejection, then close).
	Reject bool
	// Source is the local address an outbound socket app connects from ("" =
	// any): a FreeSWITCH on another host, for allow-list tests.
	Source string
	// Dialplan is a FreeSWITCH XML dialplan subset (see dialplan.go) that
	// loopback legs made by `originate` run; "" = none (NO_ROUTE_DESTINATION).
	Dialplan string
	// CIDLookupURL is cidlookup.conf.xml's url param, which the cidlookup
	// app of a dialplan GETs; "" = none (every look-up answers UNKNOWN).
	CIDLookupURL string
	// RingTime is how long an originated device rings before it answers
	// (or fails, ScriptDial) unless scripted otherwise; 0 = 1.5 s.
	RingTime time.Duration
	// Agents are the agents a dialplan's callcenter app (and, with no
	// Dialplan, an answered originate) rings; nil = 1001, 1002, 1003.
	Agents []string
	// AgentRing is how the agent legs of the dialplan's bridge and
	// callcenter apps go (RingAgents: Answer, RingFor (0 = 1 s), TalkFor
	// (0 = 10 s)); its Agents and Queue come from the app.
	AgentRing Ring
}

func (o Options) withDefaults() Options {
	if o.Password == "" {
		o.Password = "ClueCon"
	}
	if o.Context == "" {
		o.Context = "callpop"
	}
	if o.ExecDelay == 0 {
		o.ExecDelay = 20 * time.Millisecond
	}
	if o.ExecDelay < 0 {
		o.ExecDelay = 0
	}
	if o.ParkDelay == 0 {
		o.ParkDelay = time.Millisecond
	}
	if o.ParkDelay < 0 {
		o.ParkDelay = 0
	}
	if o.RingTime <= 0 {
		o.RingTime = 1500 * time.Millisecond
	}
	return o
}

// Caller describes a call to offer.
type Caller struct {
	Number     string // Caller-Caller-ID-Number
	Name       string // Caller-Caller-ID-Name
	ANI        string // Caller-ANI; "" = Number
	DNIS       string // Caller-Destination-Number; "" = "1000"
	HideNumber bool   // Caller-Privacy-Hide-Number
	HideName   bool   // Caller-Privacy-Hide-Name
	Context    string // "" = Options.Context
	Vars       map[string]string
}

// Set is one assignment of a channel variable the simulator executed.
type Set struct {
	Var    string
	Value  string // the value stored (after expansion for `execute set`)
	Method string // "uuid_setvar", "uuid_setvar_multi", "execute set", "execute export"
	At     time.Time
}

// Channel is a snapshot of one simulated channel.
type Channel struct {
	UUID       string
	Context    string
	Vars       map[string]string
	Sets       []Set
	Expansions []string // every ${...} the simulator expanded or that a dialplan would expand later
	Parked     bool
	Dead       bool
	Created    time.Time
	Released   time.Time // transfer, exit, socket close or hangup
	ReleasedBy string    // "transfer", "exit", "close", "hangup"
	// Stuck: the outbound socket session ended before the socket app parked,
	// without resume; the call stays parked until it hangs up.
	Stuck      bool
	TransferTo string // "dest dialplan context"
}

type channel struct {
	Channel
	headers  eslwire.Headers // non-variable headers of the channel, raw (encoded)
	varOrder []string
	varLines []byte    // "variable_<n>: <encoded>\n" for varOrder, rendered once per change; nil = stale
	parkBody []byte    // the recorded CHANNEL_PARK, when offered from a recording
	offered  time.Time // outbound: when the connect reply was written
	connect  time.Time // outbound: when connect arrived (the socket app then parks)
	done     chan struct{}
	// hangupCause is why the channel ended (uuid_kill's cause, the scripted one)
	hangupCause string
}

// Stats counts what the simulator saw.
type Stats struct {
	Connections   int
	AuthFailures  int
	Commands      int
	APICommands   int
	BGAPICommands int
	Sendmsgs      int
	Sets          int
	Expansions    int
	DeadUUID      int // commands on channels that do not exist
	Transfers     int
	Exits         int
	Stuck         int // outbound calls left parked by a socket session that ended too early without resume
	Offered       int
	Released      int
}

// sim is the state shared by the inbound server and the outbound dialer.
type sim struct {
	opts Options

	mu       sync.Mutex
	channels map[string]*channel
	order    []string
	sessions map[*session]struct{}
	stats    Stats
	seq      int
	dpRuns   dialplanRuns
	globals  map[string]string // global_setvar
	dials    map[string][]Dial // ScriptDial: number → answers to come
	origs    []*OriginateRequest
}

func newSim(opts Options) *sim {
	return &sim{opts: opts.withDefaults(), channels: map[string]*channel{}, sessions: map[*session]struct{}{}}
}

// NewUUID returns a random RFC 4122 UUID.
func NewUUID() string { return eslwire.NewUUID() }

var (
	templateOnce sync.Once
	tplPark      eslwire.Headers // CHANNEL_PARK of an inbound loopback leg
	tplVars      eslwire.Headers
	tplConnect   eslwire.Headers // connect reply (CHANNEL_DATA), without variables and reply headers
)

func templates() {
	templateOnce.Do(func() {
		hs, _, _ := eslwire.ParseHeaderBlock(mustRecorded("channel_park.txt"))
		for _, h := range hs {
			if strings.HasPrefix(h.Name, "variable_") {
				tplVars = append(tplVars, h)
			} else {
				tplPark = append(tplPark, h)
			}
		}
		cs, _, _ := eslwire.ParseHeaderBlock(mustRecorded("connect_reply.txt"))
		for _, h := range cs {
			if strings.HasPrefix(h.Name, "variable_") || h.Name == "Content-Type" {
				break
			}
			tplConnect = append(tplConnect, h)
		}
	})
}

// newChannel builds a channel from c on the recorded header set.
func (s *sim) newChannel(c Caller) *channel {
	templates()
	id := NewUUID()
	if c.ANI == "" {
		c.ANI = c.Number
	}
	if c.DNIS == "" {
		c.DNIS = "1000"
	}
	if c.Context == "" {
		c.Context = s.opts.Context
	}
	name := "loopback/" + c.DNIS + "-b"
	over := map[string]string{
		"Unique-ID":                    id,
		"Channel-Call-UUID":            id,
		"Caller-Unique-ID":             id,
		"Channel-Name":                 name,
		"Caller-Channel-Name":          name,
		"Caller-Caller-ID-Number":      c.Number,
		"Caller-Caller-ID-Name":        c.Name,
		"Caller-Orig-Caller-ID-Number": c.Number,
		"Caller-Orig-Caller-ID-Name":   c.Name,
		"Caller-ANI":                   c.ANI,
		"Caller-Destination-Number":    c.DNIS,
		"Caller-Context":               c.Context,
		"Caller-Privacy-Hide-Number":   strconv.FormatBool(c.HideNumber),
		"Caller-Privacy-Hide-Name":     strconv.FormatBool(c.HideName),
	}
	ch := &channel{Channel: Channel{UUID: id, Context: c.Context, Vars: map[string]string{}, Parked: true, Created: time.Now()}, done: make(chan struct{})}
	for _, h := range tplPark {
		v, ok := over[h.Name]
		if !ok && strings.HasPrefix(h.Name, "Channel-") {
			v, ok = over["Caller-"+strings.TrimPrefix(h.Name, "Channel-")]
		}
		if ok {
			h.Value = eslwire.Encode(v)
		}
		ch.headers = append(ch.headers, h)
	}
	vover := map[string]string{
		"uuid": id, "call_uuid": id, "channel_name": name,
		"origination_caller_id_number": c.Number, "origination_caller_id_name": c.Name,
		"origination_uuid": NewUUID(), "other_loopback_leg_uuid": "",
	}
	vover["other_loopback_leg_uuid"] = vover["origination_uuid"]
	for _, h := range tplVars {
		n := strings.TrimPrefix(h.Name, "variable_")
		v := eslwire.Decode(h.Value)
		if o, ok := vover[n]; ok {
			v = o
		}
		ch.setVar(n, v)
	}
	if c.HideNumber || c.HideName {
		ch.setVar("origination_privacy", "hide_name:hide_number")
	}
	keys := make([]string, 0, len(c.Vars))
	for k := range c.Vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ch.setVar(k, c.Vars[k])
	}
	return ch
}

// channelFromRecording registers a channel from a recorded event body.
func (s *sim) channelFromRecording(body []byte) (*channel, error) {
	hs, _, err := eslwire.ParseHeaderBlock(body)
	if err != nil {
		return nil, err
	}
	id := eslwire.Decode(hs.Get("Unique-ID"))
	if id == "" {
		return nil, fmt.Errorf("eslsim: recording has no Unique-ID")
	}
	ch := &channel{Channel: Channel{UUID: id, Context: eslwire.Decode(hs.Get("Caller-Context")), Vars: map[string]string{}, Parked: true, Created: time.Now()}, done: make(chan struct{})}
	for _, h := range hs {
		if n, ok := strings.CutPrefix(h.Name, "variable_"); ok {
			ch.setVar(n, eslwire.Decode(h.Value))
			continue
		}
		if h.Name == "Event-Name" || strings.HasPrefix(h.Name, "Event-") {
			continue
		}
		ch.headers = append(ch.headers, h)
	}
	ch.parkBody = append([]byte(nil), body...)
	return ch, nil
}

func (ch *channel) setVar(name, value string) {
	if _, ok := ch.Vars[name]; !ok {
		ch.varOrder = append(ch.varOrder, name)
	}
	ch.Vars[name] = value
	ch.varLines = nil
}

func (ch *channel) unsetVar(name string) {
	if _, ok := ch.Vars[name]; !ok {
		return
	}
	delete(ch.Vars, name)
	ch.varLines = nil
	for i, n := range ch.varOrder {
		if n == name {
			ch.varOrder = append(ch.varOrder[:i], ch.varOrder[i+1:]...)
			break
		}
	}
}

// eventBody renders an event of this channel: recorded header order, the
// channel's current values and variables, URL-encoded like plain events.
func (s *sim) eventBody(ch *channel, name string, extra ...eslwire.Header) []byte {
	s.seq++
	now := time.Now()
	hs := make(eslwire.Headers, 0, 14+len(ch.headers)+len(extra))
	hs = append(hs, eslwire.Headers{
		{Name: "Event-Name", Value: name},
		{Name: "Core-UUID", Value: "63eb0755-dbf9-411a-8281-e27daafb4b5b"},
		{Name: "FreeSWITCH-Hostname", Value: "vm"},
		{Name: "FreeSWITCH-Switchname", Value: "vm"},
		{Name: "FreeSWITCH-IPv4", Value: "192.0.2.2"},
		{Name: "FreeSWITCH-IPv6", Value: "fd00%3A%3A2"},
		{Name: "Event-Date-Local", Value: eslwire.Encode(now.Format("2006-01-02 15:04:05"))},
		{Name: "Event-Date-GMT", Value: eslwire.Encode(now.UTC().Format(time.RFC1123))},
		{Name: "Event-Date-Timestamp", Value: strconv.FormatInt(now.UnixMicro(), 10)},
		{Name: "Event-Calling-File", Value: "switch_channel.c"},
		{Name: "Event-Calling-Function", Value: "eslsim"},
		{Name: "Event-Calling-Line-Number", Value: "1"},
		{Name: "Event-Sequence", Value: strconv.Itoa(s.seq)},
	}...)
	for _, h := range ch.headers {
		if strings.HasPrefix(h.Name, "Event-") || h.Name == "Core-UUID" || strings.HasPrefix(h.Name, "FreeSWITCH-") {
			continue
		}
		hs = append(hs, h)
	}
	hs = append(hs, extra...)
	b := renderHeaders(make([]byte, 0, 1024+len(ch.varLines)), hs)
	b = append(b, ch.variableLines()...)
	return append(b, '\n')
}

// variableLines renders the channel's variables as header lines, in the
// order they were first set; the rendering is kept until a variable changes
// (a channel's events repeat them all, as FreeSWITCH's do).
func (ch *channel) variableLines() []byte {
	if ch.varLines == nil {
		b := make([]byte, 0, 64*len(ch.varOrder)+1)
		for _, n := range ch.varOrder {
			b = append(b, "variable_"...)
			b = append(b, n...)
			b = append(b, ": "...)
			b = append(b, eslwire.Encode(ch.Vars[n])...)
			b = append(b, '\n')
		}
		ch.varLines = b
	}
	return ch.varLines
}

func renderHeaders(b []byte, hs eslwire.Headers) []byte {
	for _, h := range hs {
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, '\n')
	}
	return b
}

func renderBlock(hs eslwire.Headers, inner []byte) []byte {
	b := renderHeaders(nil, hs)
	if len(inner) > 0 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(inner)), 10)
		b = append(b, "\n\n"...)
		return append(b, inner...)
	}
	return append(b, '\n')
}

// broadcast sends an event to every session subscribed to it. Caller holds s.mu.
func (s *sim) broadcast(name, subclass string, body []byte, only *session) {
	frame := eslwire.AppendFrame(nil, []eslwire.Header{{Name: "Content-Type", Value: eslwire.TypeEventPlain}}, body)
	for ss := range s.sessions {
		if only != nil && ss != only {
			continue
		}
		if ss.wants(name, subclass) {
			ss.send(frame)
		}
	}
}

// release marks a channel released. Caller holds s.mu.
func (s *sim) release(ch *channel, by string) {
	if ch.ReleasedBy != "" {
		return
	}
	ch.Parked = false
	ch.Released = time.Now()
	ch.ReleasedBy = by
	s.stats.Released++
	close(ch.done)
}

// endSocket is the end of an outbound socket session (exit or close):
// mod_event_socket's listener thread clears CF_CONTROLLED, which ends the
// socket app's park, and with resume sets CS_RESET first. If the channel
// thread has not parked yet (no connect, or connect less than ParkDelay ago),
// park sets CF_CONTROLLED afterwards and, without resume, nothing clears it.
// Caller holds s.mu.
func (s *sim) endSocket(ss *session, by string) {
	ch := ss.bound
	if ch == nil || ch.Dead || ch.ReleasedBy != "" || ch.Stuck {
		return
	}
	if !ss.resume && (ch.connect.IsZero() || time.Since(ch.connect) < s.opts.ParkDelay) {
		ch.Stuck = true
		s.stats.Stuck++
		return
	}
	s.release(ch, by)
}

func (s *sim) snapshot(id string) (Channel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.channels[id]
	if !ok {
		return Channel{}, false
	}
	c := ch.Channel
	c.Vars = make(map[string]string, len(ch.Vars))
	for k, v := range ch.Vars {
		c.Vars[k] = v
	}
	c.Sets = append([]Set(nil), ch.Sets...)
	c.Expansions = append([]string(nil), ch.Expansions...)
	return c, true
}

// hangup ends a channel as the caller hanging up would.
func (s *sim) hangup(id, cause string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.channels[id]
	if !ok || ch.Dead {
		return false
	}
	ch.Dead = true
	ch.hangupCause = cause
	s.release(ch, "hangup")
	body := s.eventBody(ch, "CHANNEL_HANGUP_COMPLETE", eslwire.Header{Name: "Hangup-Cause", Value: cause})
	s.broadcast("CHANNEL_HANGUP_COMPLETE", "", body, nil)
	for ss := range s.sessions {
		if ss.bound != ch {
			continue
		}
		if ss.linger {
			// as recorded (outbound-2001): a linger notice, the socket stays for the remaining events
			ss.send(eslwire.AppendFrame(nil, []eslwire.Header{
				{Name: "Content-Type", Value: eslwire.TypeDisconnect},
				{Name: "Controlled-Session-UUID", Value: ch.UUID},
				{Name: "Content-Disposition", Value: "linger"},
				{Name: "Channel-Name", Value: ch.headers.Get("Channel-Name")},
				{Name: "Linger-Time", Value: "2"},
				{Name: "Content-Length", Value: "0"},
			}, nil))
			continue
		}
		ss.send(eslwire.AppendFrame(nil, []eslwire.Header{
			{Name: "Content-Type", Value: eslwire.TypeDisconnect},
			{Name: "Controlled-Session-UUID", Value: ch.UUID},
			{Name: "Content-Disposition", Value: "disconnect"},
		}, []byte(goodbye)))
		go ss.close()
	}
	return true
}
