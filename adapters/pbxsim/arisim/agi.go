package arisim

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// NewDialplanChannel creates an inbound channel that runs the dialplan
// without entering Stasis (the FastAGI and dialplan-HTTP ways in): no app
// hears of it until one subscribes to channel:<id>. It returns the id; the
// channel lives until Hangup (or, with spec.Agents, the end of RunAgents).
func (s *Server) NewDialplanChannel(spec CallSpec) string {
	id, name := s.specDefaults(&spec)
	ch := &channel{
		id: id, linkedid: id, name: name, state: "Ring", channelVars: s.opts.ChannelVars,
		callerNum: spec.CLI, callerName: spec.CLIName, ani: spec.ANI, numPres: spec.NumPres, rdnis: spec.RDNIS,
		context: spec.Context, exten: spec.DNIS, priority: 1, created: time.Now(),
		vars: map[string]string{}, subs: map[string]bool{}, inherit: map[string]bool{}, spec: spec,
	}
	s.mu.Lock()
	s.channels[id] = ch
	s.records[id] = &Record{ID: id, Spec: spec, Vars: map[string]string{}}
	s.mu.Unlock()
	return id
}

// RunAGI plays `AGI(agi://addr/<script>)` on channel id as res_agi does: it
// connects, sends the agi_* environment block, answers GET VARIABLE from
// the channel (200 result=1 (value), or result=0 when unset) and stores SET
// VARIABLE (a ChannelVarset to the apps subscribed to the channel, as for
// any variable), until callpop ends the session. The dialplan then goes on
// (RunAgents plays its Dial). It returns what was set, by the name used.
func (s *Server) RunAGI(ctx context.Context, id, addr, script string) (map[string]string, error) {
	s.mu.Lock()
	ch := s.channels[id]
	s.mu.Unlock()
	if ch == nil {
		return nil, fmt.Errorf("arisim: no channel %s", id)
	}
	return s.agiSession(ctx, ch, addr, script)
}

// agiSession is one AGI() application on ch (RunAGI's, or a dialplan's).
func (s *Server) agiSession(ctx context.Context, ch *channel, addr, script string) (map[string]string, error) {
	s.mu.Lock()
	ch.app, ch.appData = "AGI", "agi://"+addr+"/"+script
	env := agiEnv(ch, addr, script)
	s.mu.Unlock()

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("arisim: agi: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := conn.Write([]byte(env)); err != nil {
		return nil, fmt.Errorf("arisim: agi: %w", err)
	}
	set := map[string]string{}
	rd := bufio.NewReader(conn)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			if ctx.Err() != nil {
				return set, ctx.Err()
			}
			return set, nil // callpop ended the session: the dialplan goes on
		}
		args := agiArgs(strings.TrimRight(line, "\r\n"))
		reply := "510 Invalid or unknown command"
		switch {
		case len(args) == 3 && args[0] == "GET" && args[1] == "VARIABLE":
			s.mu.Lock()
			v, found, _ := ch.read(args[2])
			s.mu.Unlock()
			reply = "200 result=0"
			if found {
				reply = "200 result=1 (" + v + ")"
			}
		case len(args) == 4 && args[0] == "SET" && args[1] == "VARIABLE":
			s.mu.Lock()
			s.setLocked(ch, args[2], args[3], true)
			s.mu.Unlock()
			set[args[2]] = args[3]
			reply = "200 result=1"
		}
		if _, err := conn.Write([]byte(reply + "\n")); err != nil {
			return set, nil
		}
	}
}

// RunAgents plays the agent legs of spec.Agents for channel id (the
// dialplan's Queue after AGI), as after a continue.
func (s *Server) RunAgents(id string) {
	s.mu.Lock()
	if ch := s.channels[id]; ch != nil {
		ch.app, ch.appData = "Queue", "support"
	}
	s.mu.Unlock()
	s.runAgents(id)
}

// agiPres is agi_callingpres: the presentation as res_agi prints it, a number.
var agiPres = map[string]int{
	"": 0, "allowed_not_screened": 0, "allowed_passed_screen": 1, "allowed_failed_screen": 2, "allowed": 3,
	"prohib_not_screened": 32, "prohib_passed_screen": 33, "prohib_failed_screen": 34, "prohib": 35, "unavailable": 67,
}

// agiEnv is the environment block res_agi sends for a network script.
func agiEnv(ch *channel, addr, script string) string {
	unknown := func(v string) string {
		if v == "" {
			return "unknown"
		}
		return v
	}
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s: %s\n", k, v) }
	kv("agi_network", "yes")
	kv("agi_network_script", script)
	kv("agi_request", "agi://"+addr+"/"+script)
	kv("agi_channel", ch.name)
	kv("agi_language", "en")
	kv("agi_type", strings.SplitN(ch.name, "/", 2)[0])
	kv("agi_uniqueid", ch.id)
	kv("agi_version", "22.10.1")
	kv("agi_callerid", unknown(ch.callerNum))
	kv("agi_calleridname", unknown(ch.callerName))
	kv("agi_callingpres", fmt.Sprint(agiPres[ch.numPres]))
	kv("agi_callingani2", "0")
	kv("agi_callington", "0")
	kv("agi_callingtns", "0")
	kv("agi_dnid", unknown(ch.exten))
	kv("agi_rdnis", unknown(ch.rdnis))
	kv("agi_context", ch.context)
	kv("agi_extension", ch.exten)
	kv("agi_priority", fmt.Sprint(ch.priority))
	kv("agi_enhanced", "0.0")
	kv("agi_accountcode", "")
	kv("agi_threadid", "140234567890")
	b.WriteString("\n")
	return b.String()
}

// agiArgs splits a command line as res_agi's parse_args does: white space
// separates arguments outside double quotes, a backslash escapes the next
// character.
func agiArgs(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, escaped, started := false, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			cur.WriteByte(c)
			escaped, started = false, true
		case c == '\\':
			escaped = true
		case c == '"':
			quoted, started = !quoted, true
		case (c == ' ' || c == '\t') && !quoted:
			if started {
				out = append(out, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteByte(c)
			started = true
		}
	}
	if started {
		out = append(out, cur.String())
	}
	return out
}
