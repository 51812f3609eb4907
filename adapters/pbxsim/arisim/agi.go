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
	for k, v := range spec.Vars { // set earlier in the dialplan (e.g. AGIEXECFULL)
		ch.vars[k] = v
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
// VARIABLE and EXEC MSet's pairs (a ChannelVarset each to the apps
// subscribed to the channel, as for any variable), reading and parsing each
// command as Asterisk 22 does (agiparse.go), until callpop ends the session. The dialplan then goes on
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
		line, err := readAGILine(rd)
		if err != nil {
			if ctx.Err() != nil {
				return set, ctx.Err()
			}
			return set, nil // callpop ended the session: the dialplan goes on
		}
		s.mu.Lock()
		if rec := s.records[ch.id]; rec != nil {
			rec.AGI = append(rec.AGI, line)
		}
		s.mu.Unlock()
		reply := s.agiCommand(ch, AGIParseArgs(strings.TrimSuffix(line, "\r")), set)
		if _, err := conn.Write([]byte(reply + "\n")); err != nil {
			return set, nil
		}
	}
}

// agiCommand runs one AGI command on ch as res_agi does and returns the
// reply. Command words match in any case (find_command's strcasecmp). It
// knows GET VARIABLE, SET VARIABLE and EXEC of the applications MSet, Set
// and NoOp; EXEC of any other application answers 200 result=-2, as
// Asterisk does for one it does not have, and any other command 510.
// Variables set are added to set, by the name used.
func (s *Server) agiCommand(ch *channel, args []string, set map[string]string) string {
	is := func(i int, w string) bool { return len(args) > i && strings.EqualFold(args[i], w) }
	switch {
	case is(0, "GET") && is(1, "VARIABLE"):
		if len(args) != 3 {
			return agiUsage("GET VARIABLE <variablename>")
		}
		s.mu.Lock()
		v, found, _ := ch.read(args[2])
		s.mu.Unlock()
		if found {
			return "200 result=1 (" + v + ")"
		}
		return "200 result=0"
	case is(0, "SET") && is(1, "VARIABLE"):
		if len(args) != 4 {
			return agiUsage("SET VARIABLE <variablename> <value>")
		}
		s.agiSet(ch, args[2], args[3], set)
		return "200 result=1"
	case is(0, "EXEC"):
		if len(args) < 2 {
			return agiUsage("EXEC <application> <options>")
		}
		// handle_exec: the application gets argv[2] ("" without one; any
		// further word is ignored), with ${…} substituted only when the
		// channel's AGIEXECFULL is true.
		data := ""
		if len(args) > 2 {
			data = args[2]
			s.mu.Lock()
			full, _, _ := ch.read("AGIEXECFULL")
			s.mu.Unlock()
			if agiTrue(full) {
				data = s.expand(ch, data)
			}
		}
		switch strings.ToLower(args[1]) {
		case "mset": // pbx_builtin_setvar_multiple
			pairs, _ := MSetPairs(data) // a pair without = is ignored, with a warning in Asterisk's log
			for _, p := range pairs {
				s.agiSet(ch, p.Name, p.Value, set)
			}
			return "200 result=0"
		case "set": // pbx_builtin_setvar: the name up to the first =, the value all the rest
			if name, value, ok := strings.Cut(data, "="); ok {
				s.agiSet(ch, name, value, set)
			}
			return "200 result=0"
		case "noop":
			return "200 result=0"
		}
		return "200 result=-2" // pbx_findapp found nothing
	}
	return "510 Invalid or unknown command"
}

// agiSet is pbx_builtin_setvar_helper on ch, as SET VARIABLE and MSet call it.
func (s *Server) agiSet(ch *channel, name, value string, set map[string]string) {
	s.mu.Lock()
	s.setLocked(ch, name, value, true)
	s.mu.Unlock()
	set[name] = value
}

// agiUsage is res_agi's answer to a command with the wrong number of words.
func agiUsage(usage string) string {
	return "520-Invalid command syntax.  Proper usage follows:\n Usage: " + usage + "\n520 End of proper usage."
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
