package eslsim

import (
	"encoding/json"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
)

// session is one event socket connection (an inbound client, or an outbound
// socket bound to one channel).
type session struct {
	s     *sim
	nc    net.Conn
	wmu   sync.Mutex
	bound *channel // outbound: the channel this socket controls

	// guarded by s.mu
	authed  bool
	events  map[string]bool // event names subscribed ("ALL" = everything)
	subs    map[string]bool // CUSTOM subclasses
	linger  bool
	resume  bool // outbound: the dialplan goes on when the session ends
	exited  bool
	closed  bool
	handled time.Time // outbound: when the first command after connect arrived
}

func (ss *session) wants(name, subclass string) bool {
	if ss.closed || ss.events == nil {
		return false
	}
	if ss.bound != nil {
		return true // myevents: everything about the bound channel is sent by the caller
	}
	if ss.events["ALL"] {
		return true
	}
	if name == "CUSTOM" {
		return ss.events["CUSTOM"] && (subclass == "" || ss.subs[subclass])
	}
	return ss.events[name]
}

// send writes a frame; a peer that stops reading for 5 s is dropped.
func (ss *session) send(frame []byte) {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	_ = ss.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := ss.nc.Write(frame); err != nil {
		go ss.close()
	}
}

func (ss *session) reply(text string, extra ...eslwire.Header) {
	hs := append([]eslwire.Header{{Name: "Content-Type", Value: eslwire.TypeReply}, {Name: "Reply-Text", Value: text}}, extra...)
	ss.send(eslwire.AppendFrame(nil, hs, nil))
}

func (ss *session) apiResponse(body string) {
	// api/response puts Content-Type first, then Content-Length (as recorded)
	var b []byte
	b = append(b, "Content-Type: api/response\nContent-Length: "...)
	b = append(b, []byte(itoa(len(body)))...)
	b = append(b, "\n\n"...)
	b = append(b, body...)
	ss.send(b)
}

func itoa(n int) string { return strconv.Itoa(n) }

func (ss *session) close() {
	ss.s.mu.Lock()
	if ss.closed {
		ss.s.mu.Unlock()
		return
	}
	ss.closed = true
	delete(ss.s.sessions, ss)
	ss.s.endSocket(ss, "close")
	ss.s.mu.Unlock()
	_ = ss.nc.Close()
}

func (ss *session) disconnect(body string) {
	ss.send(eslwire.AppendFrame(nil, []eslwire.Header{
		{Name: "Content-Type", Value: eslwire.TypeDisconnect},
		{Name: "Content-Disposition", Value: "disconnect"},
	}, []byte(body)))
	ss.close()
}

// serve runs the command loop until the peer goes away.
func (ss *session) serve(r *eslwire.Reader) {
	defer ss.close()
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return
		}
		if !ss.command(f) {
			return
		}
	}
}

// command executes one command; false ends the session.
func (ss *session) command(f *eslwire.Frame) bool {
	line := strings.TrimSpace(f.First)
	verb, rest, _ := strings.Cut(line, " ")
	s := ss.s
	s.mu.Lock()
	s.stats.Commands++
	authed := ss.authed
	s.mu.Unlock()
	if !authed {
		if verb == "auth" {
			if rest == s.opts.Password {
				s.mu.Lock()
				ss.authed = true
				s.mu.Unlock()
				ss.reply("+OK accepted")
				return true
			}
			s.mu.Lock()
			s.stats.AuthFailures++
			s.mu.Unlock()
			ss.reply("-ERR invalid")
			ss.disconnect(goodbye)
			return false
		}
		ss.reply("-ERR command not found")
		return true
	}
	switch verb {
	case "event":
		format, names, _ := strings.Cut(rest, " ")
		s.mu.Lock()
		if ss.events == nil {
			ss.events, ss.subs = map[string]bool{}, map[string]bool{}
		}
		custom := false
		for _, n := range strings.Fields(names) {
			switch {
			case n == "CUSTOM":
				custom = true
				ss.events[n] = true
			case custom:
				ss.subs[n] = true
			default:
				ss.events[n] = true
			}
		}
		s.mu.Unlock()
		ss.reply("+OK event listener enabled " + format)
	case "myevents":
		s.mu.Lock()
		if ss.events == nil {
			ss.events, ss.subs = map[string]bool{}, map[string]bool{}
		}
		ss.events["ALL"] = true
		s.mu.Unlock()
		ss.reply("+OK Events Enabled")
	case "noevents":
		s.mu.Lock()
		ss.events = nil
		s.mu.Unlock()
		ss.reply("+OK no longer listening for events")
	case "filter":
		ss.reply("+OK filter added. [" + rest + "]")
	case "linger":
		s.mu.Lock()
		ss.linger = true
		s.mu.Unlock()
		ss.reply("+OK will linger")
	case "nolinger":
		s.mu.Lock()
		ss.linger = false
		s.mu.Unlock()
		ss.reply("+OK will not linger")
	case "resume":
		if ss.bound == nil {
			ss.reply("-ERR command not found")
			break
		}
		s.mu.Lock()
		ss.resume = true
		s.mu.Unlock()
		ss.reply("+OK")
	case "getvar":
		v := "_undef_"
		s.mu.Lock()
		if ss.bound != nil {
			if x, ok := ss.bound.Vars[strings.TrimSpace(rest)]; ok {
				v = x
			}
		}
		s.mu.Unlock()
		ss.reply(v)
	case "exit":
		s.mu.Lock()
		s.stats.Exits++
		ss.exited = true
		s.endSocket(ss, "exit")
		s.mu.Unlock()
		ss.reply("+OK bye")
		hs := []eslwire.Header{{Name: "Content-Type", Value: eslwire.TypeDisconnect}}
		if ss.bound != nil {
			hs = append(hs, eslwire.Header{Name: "Controlled-Session-UUID", Value: ss.bound.UUID})
		}
		hs = append(hs, eslwire.Header{Name: "Content-Disposition", Value: "disconnect"})
		ss.send(eslwire.AppendFrame(nil, hs, []byte(goodbye)))
		return false
	case "api":
		cmd, args, _ := strings.Cut(rest, " ")
		s.mu.Lock()
		s.stats.APICommands++
		s.mu.Unlock()
		if s.opts.APIDelay != nil {
			if d := s.opts.APIDelay(cmd, args); d > 0 {
				time.Sleep(d)
			}
		}
		ss.apiResponse(s.api(cmd, args))
	case "bgapi":
		job := f.Headers.Get("Job-UUID")
		if job == "" {
			job = NewUUID()
		}
		s.mu.Lock()
		s.stats.BGAPICommands++
		s.mu.Unlock()
		ss.reply("+OK Job-UUID: "+job, eslwire.Header{Name: "Job-UUID", Value: job})
		cmd, args, _ := strings.Cut(rest, " ")
		go s.bgapi(job, cmd, args)
	case "sendmsg":
		ss.sendmsg(strings.TrimSpace(rest), f)
	default:
		ss.reply("-ERR command not found")
	}
	return true
}

func (s *sim) bgapi(job, cmd, args string) {
	if s.opts.APIDelay != nil {
		if d := s.opts.APIDelay(cmd, args); d > 0 {
			time.Sleep(d)
		}
	}
	out := s.api(cmd, args)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	hs := eslwire.Headers{
		{Name: "Event-Name", Value: "BACKGROUND_JOB"},
		{Name: "Core-UUID", Value: "63eb0755-dbf9-411a-8281-e27daafb4b5b"},
		{Name: "FreeSWITCH-Hostname", Value: "vm"},
		{Name: "Event-Calling-File", Value: "mod_event_socket.c"},
		{Name: "Event-Calling-Function", Value: "api_exec"},
		{Name: "Event-Sequence", Value: itoa(s.seq)},
		{Name: "Job-UUID", Value: job},
		{Name: "Job-Command", Value: cmd},
		{Name: "Job-Command-Arg", Value: eslwire.Encode(args)},
	}
	s.broadcast("BACKGROUND_JOB", "", renderBlock(hs, []byte(out)), nil)
}

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F-]{8,64}$`)

// sendmsg queues an application; it runs ExecDelay later, like FreeSWITCH.
func (ss *session) sendmsg(id string, f *eslwire.Frame) {
	s := ss.s
	s.mu.Lock()
	s.stats.Sendmsgs++
	var ch *channel
	if id == "" {
		ch = ss.bound
	} else {
		ch = s.channels[id]
	}
	if ch == nil || ch.Dead {
		s.stats.DeadUUID++
		s.mu.Unlock()
		ss.reply("-ERR invalid session id [" + id + "]")
		return
	}
	s.mu.Unlock()
	app := f.Headers.Get("execute-app-name")
	arg := f.Headers.Get("execute-app-arg")
	if len(f.Body) > 0 {
		arg = string(f.Body)
	}
	cc := f.Headers.Get("call-command")
	ss.reply("+OK")
	if cc != "execute" {
		return
	}
	run := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ch.Dead {
			return
		}
		expanded := s.expand(ch, arg)
		switch app {
		case "set", "export":
			name, val, _ := strings.Cut(expanded, "=")
			s.assign(ch, name, val, "execute "+app)
			if app == "export" {
				ex := ch.Vars["export_vars"]
				if ex != "" {
					ex += ","
				}
				ch.setVar("export_vars", ex+name)
			}
		case "hangup":
			ch.Dead = true
			s.release(ch, "hangup")
		}
		body := s.eventBody(ch, "CHANNEL_EXECUTE_COMPLETE",
			eslwire.Header{Name: "Application", Value: eslwire.Encode(app)},
			eslwire.Header{Name: "Application-Data", Value: eslwire.Encode(expanded)},
			eslwire.Header{Name: "Application-Response", Value: "_none_"},
			eslwire.Header{Name: "Application-UUID", Value: NewUUID()})
		if ss.bound == ch {
			s.broadcast("CHANNEL_EXECUTE_COMPLETE", "", body, ss)
		} else {
			s.broadcast("CHANNEL_EXECUTE_COMPLETE", "", body, nil)
		}
	}
	if s.opts.ExecDelay > 0 {
		time.AfterFunc(s.opts.ExecDelay, run)
	} else {
		run()
	}
}

// assign stores a variable; an empty value unsets it. Caller holds s.mu.
func (s *sim) assign(ch *channel, name, value, method string) {
	s.stats.Sets++
	ch.Sets = append(ch.Sets, Set{Var: name, Value: value, Method: method, At: time.Now()})
	if strings.Contains(value, "${") || strings.Contains(value, "$${") {
		// stored literally, but the dialplan expands it when it uses the variable
		ch.Expansions = append(ch.Expansions, "deferred:"+name+"="+value)
		s.stats.Expansions++
	}
	if value == "" {
		ch.unsetVar(name)
		return
	}
	ch.setVar(name, value)
}

var expRe = regexp.MustCompile(`\$\$?\{([^{}]*)\}`)

// expand does what FreeSWITCH does to an application argument: ${var},
// $${global}, ${api(args)}; every expansion is recorded. Caller holds s.mu.
func (s *sim) expand(ch *channel, arg string) string {
	for i := 0; i < 8 && expRe.MatchString(arg); i++ {
		arg = expRe.ReplaceAllStringFunc(arg, func(m string) string {
			ch.Expansions = append(ch.Expansions, m)
			s.stats.Expansions++
			inner := expRe.FindStringSubmatch(m)[1]
			if fn, a, ok := strings.Cut(inner, "("); ok {
				a = strings.TrimSuffix(a, ")")
				switch fn {
				case "version":
					return Version
				case "strmicroepoch":
					return strconv.FormatInt(time.Now().UnixMicro(), 10)
				case "system":
					ch.Expansions = append(ch.Expansions, "system:"+a)
					return ""
				}
				return ""
			}
			return s.lookup(ch, inner)
		})
	}
	return arg
}

// lookup resolves ${name} as FreeSWITCH does: the channel's variable, its
// caller profile's field, then the global variable.
func (s *sim) lookup(ch *channel, name string) string {
	if v, ok := ch.Vars[name]; ok {
		return v
	}
	if h, ok := profileFields[name]; ok {
		if v := ch.headers.Get(h); v != "" {
			return eslwire.Decode(v)
		}
	}
	return s.globals[name]
}

// globalSetvar is mod_commands' global_setvar `<var>=<value> [=<value2>]`:
// an empty value deletes the variable; with value2, the variable is set only
// when it holds value2 now (so a value cannot hold "=").
func (s *sim) globalSetvar(args string) string {
	a := separate(args, '=', 3)
	if len(a) == 0 || a[0] == "" {
		return "-USAGE: <var>=<value> [=<value2>]\n"
	}
	if s.globals == nil {
		s.globals = map[string]string{}
	}
	name, val, cond := a[0], "", ""
	if len(a) > 1 {
		val = a[1]
	}
	if len(a) > 2 {
		cond = a[2]
	}
	old, had := s.globals[name]
	switch {
	case cond != "" && (!had || old != cond): // switch_core_set_var_conditional refuses
	case val == "":
		delete(s.globals, name)
	default:
		s.globals[name] = val
	}
	return "+OK"
}

// profileFields are the caller profile fields ${…} reads, by their event header.
var profileFields = map[string]string{
	"caller_id_number":   "Caller-Caller-ID-Number",
	"caller_id_name":     "Caller-Caller-ID-Name",
	"destination_number": "Caller-Destination-Number",
}

// api runs one api command and returns its reply body.
func (s *sim) api(cmd, args string) string {
	if cmd == "originate" {
		return s.originateCmd(args) // rings without holding s.mu
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dead := func() string { s.stats.DeadUUID++; return "-ERR No such channel!\n" }
	live := func(id string) *channel {
		ch := s.channels[id]
		if ch == nil || ch.Dead {
			return nil
		}
		return ch
	}
	switch cmd {
	case "uuid_setvar":
		a := separate(args, ' ', 3)
		if len(a) < 2 {
			return "-USAGE: <uuid> <var> [value]\n"
		}
		ch := live(a[0])
		if ch == nil {
			return dead()
		}
		v := ""
		if len(a) == 3 {
			v = a[2]
		}
		s.assign(ch, a[1], v, "uuid_setvar")
		return "+OK\n"
	case "uuid_setvar_multi":
		a := separate(args, ' ', 2)
		if len(a) < 2 {
			return "-USAGE: <uuid> <var>=<value>;<var>=<value>...\n"
		}
		ch := live(a[0])
		if ch == nil {
			return dead()
		}
		for _, kv := range separate(a[1], ';', 64) { // argv[64] in mod_commands.c: the rest stays in the 64th
			n, v, _ := strings.Cut(kv, "=")
			if n == "" {
				return "-ERR No variable specified\n"
			}
			s.assign(ch, n, v, "uuid_setvar_multi")
		}
		return "+OK\n"
	case "uuid_getvar":
		a := strings.Fields(args)
		if len(a) < 2 {
			return "-USAGE: <uuid> <var>\n"
		}
		ch := live(a[0])
		if ch == nil {
			return dead()
		}
		if v, ok := ch.Vars[a[1]]; ok {
			return v
		}
		return "_undef_"
	case "uuid_transfer":
		a := strings.Fields(args)
		if len(a) < 2 {
			return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
		}
		ch := live(a[0])
		if ch == nil {
			return dead()
		}
		dest := a[1:]
		if strings.HasPrefix(dest[0], "-") && len(dest) > 1 {
			dest = dest[1:]
		}
		ch.TransferTo = strings.Join(dest, " ")
		s.stats.Transfers++
		s.release(ch, "transfer")
		return "+OK\n"
	case "uuid_kill":
		a := strings.Fields(args)
		if len(a) == 0 {
			return "-USAGE: <uuid> [cause]\n"
		}
		ch := live(a[0])
		if ch == nil {
			return dead()
		}
		cause := "NORMAL_CLEARING"
		if len(a) > 1 {
			cause = strings.ToUpper(a[1])
		}
		s.mu.Unlock()
		s.hangup(ch.UUID, cause)
		s.mu.Lock()
		return "+OK\n"
	case "uuid_dump":
		ch := live(strings.TrimSpace(args))
		if ch == nil {
			return dead()
		}
		return string(s.eventBody(ch, "CHANNEL_DATA"))
	case "show":
		if strings.TrimSpace(args) == "channels as json" {
			return s.showChannelsJSON()
		}
		return "-USAGE: show channels as json\n"
	case "global_setvar":
		return s.globalSetvar(args)
	case "global_getvar":
		return s.globals[strings.TrimSpace(args)]
	case "status":
		return "UP 0 years, 0 days, 0 hours, 0 minutes, 1 second\nFreeSWITCH (Version 1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit) is ready (eslsim)\n"
	}
	return "-ERR " + cmd + " Command not found!\n"
}

func (s *sim) showChannelsJSON() string {
	type row struct {
		UUID        string `json:"uuid"`
		Direction   string `json:"direction"`
		Created     string `json:"created"`
		Name        string `json:"name"`
		State       string `json:"state"`
		CIDName     string `json:"cid_name"`
		CIDNum      string `json:"cid_num"`
		Dest        string `json:"dest"`
		Application string `json:"application"`
		AppData     string `json:"application_data"`
		Dialplan    string `json:"dialplan"`
		Context     string `json:"context"`
		Callstate   string `json:"callstate"`
		CallUUID    string `json:"call_uuid"`
	}
	var rows []row
	for _, id := range s.order {
		ch := s.channels[id]
		if ch == nil || ch.Dead {
			continue
		}
		app := ""
		if ch.Parked {
			app = "park"
		}
		dir := eslwire.Decode(ch.headers.Get("Call-Direction"))
		if dir == "" {
			dir = "inbound"
		}
		rows = append(rows, row{UUID: id, Direction: dir, Created: ch.Created.Format("2006-01-02 15:04:05"),
			Name: eslwire.Decode(ch.headers.Get("Channel-Name")), State: "CS_EXECUTE",
			CIDName: eslwire.Decode(ch.headers.Get("Caller-Caller-ID-Name")), CIDNum: eslwire.Decode(ch.headers.Get("Caller-Caller-ID-Number")),
			Dest: eslwire.Decode(ch.headers.Get("Caller-Destination-Number")), Application: app, Dialplan: "XML",
			Context: ch.Context, Callstate: "ACTIVE", CallUUID: id})
	}
	if len(rows) == 0 {
		return "{\"row_count\":0}\n"
	}
	b, _ := json.Marshal(map[string]any{"row_count": len(rows), "rows": rows})
	return string(b) + "\n"
}

// separate splits s on sep into at most max fields the way FreeSWITCH's
// switch_separate_string does for api arguments: a pair of single quotes is
// removed (its content kept whole), `\s` is a space, `\t` `\n` `\\` are
// unescaped, and fields are trimmed.
func separate(s string, sep byte, max int) []string {
	var out []string
	var cur strings.Builder
	inQuote := false
	flush := func() {
		out = append(out, strings.TrimSpace(cur.String()))
		cur.Reset()
	}
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if len(out) == max-1 {
			// the last field takes the rest, unescaped
			cur.WriteString(unescapeRest(s[i:]))
			break
		}
		switch {
		case c == '\'':
			inQuote = !inQuote
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(unesc(s[i]))
		case c == sep && !inQuote:
			if sep == ' ' && cur.Len() == 0 {
				continue
			}
			flush()
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 || len(out) > 0 {
		flush()
	}
	return out
}

func unescapeRest(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			// pairs of quotes are dropped
			if strings.IndexByte(s[i+1:], '\'') >= 0 || strings.Count(s, "'")%2 == 0 {
				continue
			}
			b.WriteByte(c)
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(unesc(s[i]))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func unesc(c byte) byte {
	switch c {
	case 's':
		return ' '
	case 't':
		return '\t'
	case 'n':
		return '\n'
	}
	return c
}
