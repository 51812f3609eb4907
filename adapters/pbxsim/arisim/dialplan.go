package arisim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The dialplan part: an extensions.conf subset (Options.Dialplan) that
// channels originated over ARI (POST /channels with a Local/<exten>@<context>
// endpoint) run, as chan_local's ;2 half does. The applications are the ones
// `callpop bench` documents: Set, NoOp, Stasis, AGI, Hangup, and Queue(name)
// (its agents ring as Options.Queues says, until the caller is gone); the functions
// STRFTIME (%s and %[n]q), CURL, URIENCODE, CALLERID(...), and ${UNIQUEID},
// ${EPOCH}. An unknown application hangs the channel up, as pbx.c does.

type dpStep struct{ app, data string }

// dialplan is context → extension → priorities, in order.
type dialplan map[string]map[string][]dpStep

// parseDialplan reads `[context]`, `exten => name,prio,App(data)` and
// `same => n,App(data)` lines; `;` starts a comment (`\;` is a semicolon).
func parseDialplan(text string) (dialplan, error) {
	dp := dialplan{}
	var ctx, exten string
	for i, line := range strings.Split(text, "\n") {
		line = stripComment(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			ctx = strings.Trim(strings.SplitN(line, "]", 2)[0], "[ ")
			if dp[ctx] == nil {
				dp[ctx] = map[string][]dpStep{}
			}
			continue
		}
		key, val, ok := strings.Cut(line, "=>")
		if !ok || ctx == "" {
			return nil, fmt.Errorf("arisim: dialplan line %d: %q is not `exten =>` or `same =>` in a [context]", i+1, line)
		}
		fields := strings.SplitN(strings.TrimSpace(val), ",", 3)
		switch strings.TrimSpace(key) {
		case "exten":
			if len(fields) != 3 {
				return nil, fmt.Errorf("arisim: dialplan line %d: want exten => name,priority,App(data)", i+1)
			}
			exten, fields = strings.TrimSpace(fields[0]), fields[1:]
		case "same":
			if exten == "" || len(fields) < 2 {
				return nil, fmt.Errorf("arisim: dialplan line %d: `same =>` needs an exten before it and n,App(data)", i+1)
			}
			fields = []string{fields[0], strings.Join(fields[1:], ",")}
		default:
			return nil, fmt.Errorf("arisim: dialplan line %d: unknown key %q", i+1, key)
		}
		app, data, _ := strings.Cut(strings.TrimSpace(fields[1]), "(")
		data = strings.TrimSuffix(strings.TrimSpace(data), ")")
		dp[ctx][exten] = append(dp[ctx][exten], dpStep{app: strings.TrimSpace(app), data: data})
	}
	return dp, nil
}

func stripComment(line string) string {
	for i := 0; i < len(line); i++ {
		if line[i] == ';' && (i == 0 || line[i-1] != '\\') {
			line = line[:i]
			break
		}
	}
	return strings.TrimSpace(strings.ReplaceAll(line, `\;`, ";"))
}

// originate is POST /ari/channels for a Local/<exten>@<context>[/n]
// endpoint: 200 with the ;1 half, whose ;2 half runs the dialplan; the ;1
// half waits to be answered (never, here) and goes with the ;2 one.
func (s *Server) originate(w http.ResponseWriter, r *http.Request, q url.Values) {
	p := url.Values{}
	for k, v := range q {
		p[k] = v
	}
	vars := map[string]string{}
	if raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16)); len(raw) > 0 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var body map[string]json.RawMessage
		if json.Unmarshal(raw, &body) != nil {
			writeMsg(w, http.StatusBadRequest, "Error parsing request body")
			return
		}
		for k, v := range body {
			var str string
			if k == "variables" {
				if json.Unmarshal(v, &vars) != nil {
					writeMsg(w, http.StatusBadRequest, "Only string values in the 'variables' object allowed")
					return
				}
			} else if json.Unmarshal(v, &str) == nil {
				p.Set(k, str)
			}
		}
	}
	// Checked in ari_channels_handle_originate_with_id's order.
	if len(p.Get("channelId")) > maxUniqueID || len(p.Get("otherChannelId")) > maxUniqueID {
		writeMsg(w, http.StatusBadRequest, fmt.Sprintf("Uniqueid length exceeds maximum of %d", maxUniqueID))
		return
	}
	endpoint := p.Get("endpoint")
	if endpoint == "" {
		writeMsg(w, http.StatusBadRequest, "Endpoint must be specified")
		return
	}
	if tech, dev, _ := strings.Cut(endpoint, "/"); tech == "" || dev == "" {
		writeMsg(w, http.StatusBadRequest, "Invalid endpoint specified")
		return
	}
	if p.Get("app") == "" && p.Get("extension") == "" {
		writeMsg(w, http.StatusBadRequest, "Application or extension must be specified")
		return
	}
	if !strings.HasPrefix(endpoint, "Local/") {
		s.dialOut(w, p, vars, endpoint)
		return
	}
	dest := strings.TrimPrefix(endpoint, "Local/")
	exten, dctx, hasCtx := strings.Cut(strings.TrimSuffix(dest, "/n"), "@")
	if !hasCtx || exten == "" || dctx == "" {
		writeMsg(w, http.StatusBadRequest, "Invalid endpoint: a Local channel is Local/<exten>@<context>")
		return
	}
	num, name := parseCallerID(p.Get("callerId"))
	base := fmt.Sprintf("Local/%s@%s-%08x", exten, dctx, s.seq.Add(1))
	now := time.Now()
	mk := func(id, suffix string) *channel {
		if id == "" {
			id = s.newID()
		}
		ch := &channel{id: id, name: base + suffix, state: "Down", channelVars: s.opts.ChannelVars,
			callerNum: num, callerName: name, context: dctx, exten: exten, priority: 1, created: now,
			vars: map[string]string{}, subs: map[string]bool{}, inherit: map[string]bool{}, gone: make(chan struct{})}
		ch.linkedid = id
		for k, v := range vars {
			ch.vars[strings.TrimLeft(k, "_")] = v
		}
		return ch
	}
	one, two := mk(p.Get("channelId"), ";1"), mk(p.Get("otherChannelId"), ";2")
	two.linkedid = one.id
	one.app, one.appData = "AppDial2", "(Outgoing Line)"
	two.state = "Ring"
	s.mu.Lock()
	if s.channels[one.id] != nil || s.channels[two.id] != nil {
		s.mu.Unlock()
		writeMsg(w, http.StatusConflict, "Channel with given unique ID already exists")
		return
	}
	s.channels[one.id], s.channels[two.id] = one, two
	s.addRecordLocked(two.id, CallSpec{ID: two.id, Name: two.name, CLI: num, CLIName: name, DNIS: exten, Context: dctx})
	j := one.json()
	s.mu.Unlock()
	s.stats.originated.Add(1)
	writeJSON(w, http.StatusOK, j)
	s.wg.Add(1)
	go func() { // the ;2 half's pbx thread: ends with its dialplan or Close
		defer s.wg.Done()
		s.runDialplan(two, dctx, exten)
		s.Hangup(two.id)
		s.Hangup(one.id)
	}()
}

// parseCallerID reads `"Name" <num>`, `Name <num>` or `num`.
func parseCallerID(s string) (num, name string) {
	if i := strings.LastIndexByte(s, '<'); i >= 0 && strings.HasSuffix(s, ">") {
		return s[i+1 : len(s)-1], strings.Trim(strings.TrimSpace(s[:i]), `"`)
	}
	return strings.TrimSpace(s), ""
}

// addRecordLocked starts the record of channel id (the oldest dropped past MaxRecords).
func (s *Server) addRecordLocked(id string, spec CallSpec) *Record {
	rec := &Record{ID: id, Spec: spec, Vars: map[string]string{}}
	s.records[id] = rec
	s.order = append(s.order, id)
	if len(s.order) > s.opts.MaxRecords {
		delete(s.records, s.order[0])
		s.order = s.order[1:]
	}
	return rec
}

// hangupChannel is DELETE /ari/channels/{id}[?reason=|reason_code=]: 204,
// 404, or 400 for a reason Asterisk does not know.
func (s *Server) hangupChannel(w http.ResponseWriter, id string, q url.Values) {
	s.mu.Lock()
	ch := s.channels[id]
	s.mu.Unlock()
	if ch == nil {
		writeMsg(w, http.StatusNotFound, "Channel not found")
		return
	}
	cause := 16
	reason, code := q.Get("reason"), q.Get("reason_code")
	switch {
	case reason != "" && code != "":
		writeMsg(w, http.StatusBadRequest, "The reason and reason_code can't both be specified")
		return
	case code != "":
		n, err := strconv.Atoi(code)
		if err != nil {
			writeMsg(w, http.StatusBadRequest, "Invalid reason for hangup reason code provided")
			return
		}
		cause = n
	case reason != "":
		c, ok := hangupReasons[reason]
		if !ok {
			writeMsg(w, http.StatusBadRequest, "Invalid reason for hangup reason provided")
			return
		}
		cause = c
	}
	s.hangup(id, cause)
	writeNoContent(w)
}

// maxUniqueID is AST_MAX_PUBLIC_UNIQUEID: the longest channel id accepted.
const maxUniqueID = 149

// runDialplan runs exten@ctx on ch until it hangs up, falls off the end,
// or a continue sends it elsewhere.
func (s *Server) runDialplan(ch *channel, ctx, exten string) {
	steps := s.dialplan[ctx][exten]
	for i := 0; i < len(steps); i++ {
		select {
		case <-ch.gone:
			return
		case <-s.ctx.Done():
			return
		default:
		}
		s.mu.Lock()
		ch.priority = i + 1
		s.mu.Unlock()
		data := s.expand(ch, steps[i].data)
		switch strings.ToLower(steps[i].app) {
		case "noop", "wait":
		case "set":
			name, val, _ := strings.Cut(data, "=")
			s.mu.Lock()
			ch.setDialplanVar(strings.TrimSpace(name), val)
			s.mu.Unlock()
		case "hangup":
			return
		case "queue":
			name, _, _ := strings.Cut(data, ",")
			s.queue(ch, strings.TrimSpace(name))
			return
		case "agi":
			u, err := url.Parse(data)
			if err != nil || u.Scheme != "agi" {
				s.log.Warn("dialplan AGI: not agi://host:port/script", "data", data)
				s.setDialplanVar(ch, "AGISTATUS", "FAILURE")
				continue
			}
			status := "SUCCESS"
			script := strings.TrimPrefix(u.EscapedPath(), "/")
			if u.RawQuery != "" || u.ForceQuery {
				script += "?" + u.RawQuery // res_agi hands the script on with its query, as written
			}
			if _, err := s.agiSession(s.ctx, ch, u.Host, script); err != nil {
				status = "FAILURE"
			}
			s.setDialplanVar(ch, "AGISTATUS", status)
		case "stasis":
			to, ok := s.stasis(ch, strings.Split(data, ","))
			if !ok {
				return
			}
			if to.Extension != "" || to.Context != "" {
				if to.Context != "" {
					ctx = to.Context
				}
				if to.Extension != "" {
					exten = to.Extension
				}
				steps, i = s.dialplan[ctx][exten], max(to.Priority, 1)-2
			}
		default:
			s.log.Warn("dialplan: no application", "app", steps[i].app)
			return
		}
	}
}

func (s *Server) setDialplanVar(ch *channel, name, val string) {
	s.mu.Lock()
	ch.setDialplanVar(name, val)
	s.mu.Unlock()
}

// setDialplanVar is Set(): plain variables and CALLERID(num|name).
func (ch *channel) setDialplanVar(name, val string) {
	switch name {
	case "CALLERID(num)":
		ch.callerNum = val
	case "CALLERID(name)":
		ch.callerName = val
	default:
		if !strings.Contains(name, "(") {
			ch.vars[strings.TrimLeft(name, "_")] = val
		}
	}
}

// stasis is Stasis(app[,args]) on a dialplan channel: StasisStart to the
// app, then wait for a continue (ok, and where to) or the hang-up (not ok).
// No app connected: STASISSTATUS=FAILED and the dialplan goes on.
func (s *Server) stasis(ch *channel, args []string) (ContinueTarget, bool) {
	app := strings.TrimSpace(args[0])
	args = args[1:]
	s.mu.Lock()
	a := s.apps[app]
	if a == nil || a.conn == nil {
		ch.vars["STASISSTATUS"] = "FAILED"
		s.mu.Unlock()
		return ContinueTarget{}, true
	}
	resume := make(chan ContinueTarget, 1)
	ch.stasisApp, ch.app, ch.appData, ch.args, ch.resume = app, "Stasis", strings.Join(append([]string{app}, args...), ","), args, resume
	s.indexLocked(ch)
	if rec := s.records[ch.id]; rec != nil {
		rec.Offered, rec.Continued = time.Now(), time.Time{}
	}
	now := time.Now()
	j := ch.json()
	// To the app alone, as res_stasis sends it: apps subscribed to the
	// channel hear of its other apps' Stasis only through channel events.
	a.conn.send(mustJSON(stasisStartJSON{Type: "StasisStart", Timestamp: stamp(now), Args: append([]string{}, args...),
		Channel: j, AsteriskID: asteriskID, Application: app}))
	s.mu.Unlock()
	select {
	case to := <-resume:
		s.mu.Lock()
		ch.vars["STASISSTATUS"] = "SUCCESS"
		s.mu.Unlock()
		return to, true
	case <-ch.gone:
	case <-s.ctx.Done():
	}
	return ContinueTarget{}, false
}

// expand substitutes ${...} (nested ones first), as pbx_substitute_variables does.
func (s *Server) expand(ch *channel, in string) string {
	var b strings.Builder
	for {
		i := strings.Index(in, "${")
		if i < 0 {
			b.WriteString(in)
			return b.String()
		}
		b.WriteString(in[:i])
		depth, j := 1, i+2
		for ; j < len(in) && depth > 0; j++ {
			switch {
			case in[j] == '{' && in[j-1] == '$':
				depth++
			case in[j] == '}':
				depth--
			}
		}
		if depth > 0 { // unterminated: literal, as Asterisk leaves it
			b.WriteString(in[i:])
			return b.String()
		}
		b.WriteString(s.evaluate(ch, s.expand(ch, in[i+2:j-1])))
		in = in[j:]
	}
}

// evaluate reads a variable or calls one of the functions the simulator knows.
func (s *Server) evaluate(ch *channel, expr string) string {
	fn, arg, isFn := strings.Cut(expr, "(")
	arg = strings.TrimSuffix(arg, ")")
	switch {
	case expr == "UNIQUEID":
		return ch.id
	case expr == "EPOCH":
		return strconv.FormatInt(time.Now().Unix(), 10)
	case isFn && fn == "STRFTIME":
		parts := strings.SplitN(arg, ",", 3)
		at := time.Now()
		if sec, err := strconv.ParseInt(parts[0], 10, 64); err == nil {
			at = time.Unix(sec, 0)
		}
		f := "%c"
		if len(parts) == 3 {
			f = parts[2]
		}
		return strftime(at, f)
	case isFn && fn == "URIENCODE":
		return uriEncode(arg)
	case isFn && fn == "CURL":
		return s.curl(arg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, _, _ := ch.read(expr)
	return v
}

// strftime knows %s, %[n]q (fractions of a second, n = 1..6, default 3) and %%;
// other conversions stay as written.
func strftime(t time.Time, f string) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 == len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		n := 3
		if f[i] >= '1' && f[i] <= '6' && i+1 < len(f) && f[i+1] == 'q' {
			n = int(f[i] - '0')
			i++
		}
		switch f[i] {
		case 's':
			b.WriteString(strconv.FormatInt(t.Unix(), 10))
		case 'q':
			frac := fmt.Sprintf("%06d", t.Nanosecond()/1000)
			b.WriteString(frac[:n])
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(f[i])
		}
	}
	return b.String()
}

// curl is func_curl's GET: the body (empty on a failure), within 10 s.
func (s *Server) curl(u string) string {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(body)
}

// uriEncode is Asterisk's URIENCODE (ast_uri_encode with ast_uri_http):
// letters, digits and - _ . ! ~ * ' ( ) stay, every other byte becomes %XX
// (a space %20, not +).
func uriEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
