package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/internal/netallow"
)

// FastAGI limits.
const (
	agiMaxLine    = 4096 // bytes in one line from Asterisk
	agiMaxEnvVars = 256  // lines in the environment block
)

// errHangup ends a session whose channel hung up (HANGUP or 511).
var errHangup = errors.New("router/fastagi: channel hung up")

// ServeFastAGI listens on router.fastagi.listen and serves Asterisk FastAGI
// sessions (`AGI(agi://127.0.0.1:4573/route)`) until ctx ends. With an empty
// listen address it returns nil at once.
func (r *Router) ServeFastAGI(ctx context.Context) error {
	addr := r.state.Load().cfg.FastAGI.Listen
	if addr == "" {
		r.log.Info("fastagi disabled (router.fastagi.listen is empty)")
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("router/fastagi: listen %s: %w", addr, err)
	}
	r.log.Info("fastagi listening", "addr", ln.Addr().String())
	return r.ServeFastAGIListener(ctx, ln)
}

// ServeFastAGIListener serves FastAGI sessions on ln until ctx ends, then
// closes ln and every open session and waits for them. Peers outside
// router.fastagi.allow (as the rules last loaded say) are closed at once.
func (r *Router) ServeFastAGIListener(ctx context.Context, ln net.Listener) error {
	ln = netallow.Wrap(ln, func() netallow.List { return r.state.Load().fastagiAllow }, "fastagi", r.log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var wg sync.WaitGroup
	defer wg.Wait()
	maxSessions := r.state.Load().cfg.FastAGI.MaxSessions
	if maxSessions <= 0 {
		maxSessions = 256
	}
	sem := make(chan struct{}, maxSessions)
	backoff := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				r.log.Warn("fastagi accept failed; retrying", "err", err)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			return fmt.Errorf("router/fastagi: accept: %w", err)
		}
		backoff = 5 * time.Millisecond
		select {
		case sem <- struct{}{}:
		default:
			agiSessions.WithLabelValues("refused").Inc()
			r.log.Warn("fastagi session refused: router.fastagi.max_sessions reached")
			conn.Close()
			continue
		}
		wg.Add(1)
		go func() { // owned by this server; ends with the session or ctx
			defer wg.Done()
			defer func() { <-sem }()
			r.serveAGI(ctx, conn)
		}()
	}
}

// agiConn is one FastAGI session.
type agiConn struct {
	conn    net.Conn
	rd      *bufio.Reader
	timeout time.Duration
}

func (a *agiConn) readLine() (string, error) {
	if err := a.conn.SetReadDeadline(time.Now().Add(a.timeout)); err != nil {
		return "", err
	}
	line, err := a.rd.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("router/fastagi: line longer than %d bytes", agiMaxLine)
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return strings.TrimRight(string(line), "\r\n"), nil
		}
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// readEnv reads the agi_* environment block up to the blank line.
func (a *agiConn) readEnv() (map[string]string, error) {
	env := make(map[string]string, 24)
	for range agiMaxEnvVars {
		line, err := a.readLine()
		if err != nil {
			return nil, err
		}
		if line == "" {
			return env, nil
		}
		// The first occurrence of a key wins: a caller-supplied value that
		// smuggled a line break cannot override what Asterisk sent before it.
		if k, v, ok := strings.Cut(line, ":"); ok {
			k = strings.TrimSpace(k)
			if _, dup := env[k]; !dup {
				env[k] = strings.TrimPrefix(v, " ")
			}
		}
	}
	return nil, fmt.Errorf("router/fastagi: environment block longer than %d lines", agiMaxEnvVars)
}

// agiReply is one parsed response to a command.
type agiReply struct {
	code   int
	result string
	data   string // the "(…)" part
}

// command sends one command line and reads its reply. A HANGUP notice or a
// 511 (dead channel) ends the session with errHangup.
func (a *agiConn) command(line string) (agiReply, error) {
	if strings.ContainsAny(line, "\r\n\x00") {
		// Values are CleanValue'd before they get here; this is the last guard.
		return agiReply{}, fmt.Errorf("router/fastagi: refusing to send a command with a line break")
	}
	if len(line) > agiMaxCommand {
		// res_agi would cut it and run the rest as another command.
		return agiReply{}, fmt.Errorf("router/fastagi: refusing to send a command of %d bytes", len(line))
	}
	if err := a.conn.SetWriteDeadline(time.Now().Add(a.timeout)); err != nil {
		return agiReply{}, err
	}
	if _, err := io.WriteString(a.conn, line+"\n"); err != nil {
		return agiReply{}, fmt.Errorf("router/fastagi: write: %w", err)
	}
	for range 100 { // blank lines before a reply are skipped, but not forever
		resp, err := a.readLine()
		if err != nil {
			return agiReply{}, fmt.Errorf("router/fastagi: read: %w", err)
		}
		switch {
		case resp == "":
			continue
		case resp == "HANGUP":
			return agiReply{}, errHangup
		case strings.HasPrefix(resp, "511"):
			return agiReply{}, errHangup
		case strings.HasPrefix(resp, "520-"):
			// Multi-line usage text up to "520 End of proper usage."
			for range 100 {
				l, err := a.readLine()
				if err != nil {
					return agiReply{}, fmt.Errorf("router/fastagi: read: %w", err)
				}
				if strings.HasPrefix(l, "520 ") {
					break
				}
			}
			return agiReply{code: 520}, nil
		}
		return parseAGIReply(resp)
	}
	return agiReply{}, errors.New("router/fastagi: no reply, only blank lines")
}

// parseAGIReply parses "200 result=1 (value)" and friends.
func parseAGIReply(s string) (agiReply, error) {
	codeStr, rest, _ := strings.Cut(s, " ")
	code, err := strconv.Atoi(codeStr)
	if err != nil || len(codeStr) != 3 {
		return agiReply{}, fmt.Errorf("router/fastagi: unexpected reply %q", call.CleanValueN(s, 64))
	}
	rep := agiReply{code: code}
	if code != 200 {
		return rep, nil
	}
	res, ok := strings.CutPrefix(rest, "result=")
	if !ok {
		return agiReply{}, fmt.Errorf("router/fastagi: unexpected reply %q", call.CleanValueN(s, 64))
	}
	val, data, hasData := strings.Cut(res, " ")
	rep.result = val
	if hasData {
		data = strings.TrimSpace(data)
		if strings.HasPrefix(data, "(") {
			if i := strings.LastIndexByte(data, ')'); i > 0 {
				rep.data = data[1:i]
			}
		}
	}
	return rep, nil
}

// agiQuote quotes a value for an AGI command argument the way Asterisk's
// argument parser reads it: inside double quotes, `\` escapes the next
// character. A line break cannot be quoted; callers guarantee there is none.
func agiQuote(v string) string {
	var b strings.Builder
	b.Grow(len(v) + 2)
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}

// How res_agi reads a command line and MSet its argument (Asterisk 13 and
// later; docs/dialplan-routing.md, "How FastAGI sets the decision"):
//
//  1. res_agi reads a line into an 8192-byte buffer; a longer line is cut
//     and its rest read as the next command. Then it splits it into words:
//     outside double quotes a space or tab ends a word, `"` toggles quoting,
//     `\` makes the next byte literal (agiQuote).
//  2. EXEC hands its third word to the application as it is, unless the
//     channel variable AGIEXECFULL is true: then `${…}` and `$[…]` in it are
//     substituted first. Nothing else is.
//  3. MSet separates the argument at commas into at most 99 pairs; `\`
//     makes the next byte literal and is removed, `"` is removed and
//     toggles quoting, and a comma inside quotes, ( ) or [ ] does not
//     separate. The 99th pair is what is left, unparsed.
//  4. Each pair is separated at its first `=` by the same rules, and only the
//     name is parsed: the value is what follows that `=`, as it is. Each goes
//     to pbx_builtin_setvar_helper, as SET VARIABLE's does.
//
// So a value with `\` before each of \ " , ( ) [ ] { } $ comes out of step 3
// as it went in, and carries no `${` or `$[` for step 2; names are checked
// (agiVarName) and need nothing.
const (
	agiMaxCommand   = 8190 // bytes in one command line, without its newline
	agiMSetMaxPairs = 98   // MSet parses 98 pairs; the 99th would keep its escapes
)

// agiVarName reports whether name can stand unquoted and unescaped in SET
// VARIABLE and in an MSet pair: letters, digits and _, optionally one
// function argument list of the same and - (CALLERID(name)).
func agiVarName(name string) bool {
	base, arg, fn := strings.Cut(name, "(")
	if fn {
		var ok bool
		if arg, ok = strings.CutSuffix(arg, ")"); !ok || arg == "" {
			return false
		}
	}
	word := func(s string, dash bool) bool {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || dash && c == '-') {
				return false
			}
		}
		return s != ""
	}
	return word(base, false) && (!fn || word(arg, true))
}

// msetEscape appends v so that MSet's separation gives back v exactly.
func msetEscape(b *strings.Builder, v string) {
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\', '"', ',', '(', ')', '[', ']', '{', '}', '$':
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
}

// agiMSetCommand builds one `EXEC MSet "…"` line for as many of vars (from
// the first, in order) as fit in agiMSetMaxPairs pairs and agiMaxCommand
// bytes, and returns it with how many it carries (0: the first alone does
// not fit). Names must pass agiVarName; values must carry no line break.
func agiMSetCommand(vars []call.Var) (string, int) {
	var arg, pair strings.Builder
	n, size := 0, len(`EXEC MSet ""`)
	for _, v := range vars[:min(len(vars), agiMSetMaxPairs)] {
		pair.Reset()
		if n > 0 {
			pair.WriteByte(',')
		}
		pair.WriteString(v.Name)
		pair.WriteByte('=')
		msetEscape(&pair, v.Value)
		p := pair.String()
		quoted := len(p) + strings.Count(p, `"`) + strings.Count(p, `\`) // what agiQuote makes of it
		if size+quoted > agiMaxCommand {
			break
		}
		arg.WriteString(p)
		size += quoted
		n++
	}
	if n == 0 {
		return "", 0
	}
	return "EXEC MSet " + agiQuote(arg.String()), n
}

// agiMSetSafe reports whether the Asterisk that sent agi_version passes
// EXEC's argument on untouched. Before 13, `res_agi = 1.4` compatibility in
// asterisk.conf rewrote it (`|` became `,` and `,` became `\,`); a version
// that does not say is not trusted either.
func agiMSetSafe(version string) bool {
	v := strings.TrimSpace(version)
	for _, p := range []string{"certified/", "certified-", "GIT-"} {
		v = strings.TrimPrefix(v, p)
	}
	if strings.HasPrefix(v, "master") {
		return true
	}
	i := 0
	for i < len(v) && i < 4 && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	major, err := strconv.Atoi(v[:i])
	return err == nil && major >= 13
}

// agiScript reads the profile from the network script: "route",
// "route?profile=x" or "route/x". ok is false for anything else.
func agiScript(script string) (profile string, ok bool) {
	script = strings.TrimPrefix(script, "/")
	path, query, _ := strings.Cut(script, "?")
	path = strings.TrimSuffix(path, "/")
	switch {
	case path == "route":
	case strings.HasPrefix(path, "route/"):
		profile = strings.TrimPrefix(path, "route/")
	default:
		return "", false
	}
	for _, kv := range strings.Split(query, "&") {
		if k, v, _ := strings.Cut(kv, "="); k == "profile" && v != "" {
			profile = v
		}
	}
	return call.CleanToken(profile), true
}

// agiMaxANI bounds the ANI a FastAGI script carries (ani=), decoded: an
// E.164 number has at most 15 digits; room for a national format and a few
// separators, not for a payload.
const agiMaxANI = 32

// agiScriptANI reads `ani=` from the network script ("route?ani=%2B3120…",
// the dialplan's ${URIENCODE(${CALLERID(ani)})}): given is false without
// one (then callpop asks with GET VARIABLE). The value is the caller's, so
// it is percent-decoded and refused (the ANI taken as absent, with the
// reason) when the encoding is broken, it is given twice, it is longer than
// agiMaxANI, or it carries invalid UTF-8 or control characters. An empty
// ani= means "no ANI", not "ask".
func agiScriptANI(script string) (ani string, given bool, refused string) {
	_, query, _ := strings.Cut(script, "?")
	var raw string
	for _, kv := range strings.Split(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if k != "ani" {
			continue
		}
		if given {
			return "", true, "given twice"
		}
		raw, given = v, true
	}
	if !given {
		return "", false, ""
	}
	if len(raw) > 3*agiMaxANI {
		return "", true, "too long"
	}
	// PathUnescape keeps a "+" that was not encoded; URIENCODE sends %2B.
	v, err := url.PathUnescape(raw)
	switch {
	case err != nil:
		return "", true, "bad percent-encoding"
	case len(v) > agiMaxANI:
		return "", true, "too long"
	case !utf8.ValidString(v):
		return "", true, "not UTF-8"
	case strings.ContainsFunc(v, unicode.IsControl):
		return "", true, "control characters"
	}
	return v, true, ""
}

// agiPrivacy reads agi_callingpres: Asterisk's presentation number, where
// bits 0x60 = 0x20 (restricted) means the caller withheld the number.
func agiPrivacy(pres string) bool {
	n, err := strconv.Atoi(strings.TrimSpace(pres))
	if err != nil {
		return false
	}
	return n&0x60 == 0x20
}

// agiUnknown maps Asterisk's placeholder for an absent value to "". A
// withheld number is told by agi_callingpres, not by this placeholder.
func agiUnknown(v string) string {
	if v == "unknown" {
		return ""
	}
	return v
}

// serveAGI runs one session: environment → ANI (ani= or GET VARIABLE) →
// Decide → EXEC MSet (or SET VARIABLE …).
func (r *Router) serveAGI(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	a := &agiConn{conn: conn, rd: bufio.NewReaderSize(conn, agiMaxLine), timeout: r.state.Load().cfg.FastAGI.ReadTimeout}
	if a.timeout <= 0 {
		a.timeout = 5 * time.Second
	}
	result := "ok"
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("fastagi session panicked", "panic", fmt.Sprint(p))
			result = "error"
		}
		agiSessions.WithLabelValues(result).Inc()
	}()

	env, err := a.readEnv()
	if err != nil {
		result = "closed"
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("fastagi: no environment block", "remote", conn.RemoteAddr().String(), "err", err)
		}
		return
	}
	c, ok := r.agiCall(env, time.Now())
	if !ok {
		result = "error"
		return
	}
	if err := r.agiReadANI(a, env, &c); err != nil {
		result = r.agiEnded(err)
		return
	}

	d := r.endpointDecide(ctx, c)
	ready := r.follow("fastagi", c, d) // before the SETs: the subscription gets a head start on the Dial
	result = r.agiSetVars(a, agiSafeVars(r.log, agiVars(c, d)), agiMSetSafe(env["agi_version"]))
	if result == "ok" {
		// The dialplan goes on when the session ends: not before a Dial
		// after AGI() would be seen, nor past the budget.
		r.awaitFollow(ctx, "fastagi", ready, c)
	}
}

// agiReadANI sets c.ANI: from the script when the dialplan passed it
// (ani=), else with one GET VARIABLE (the error ends the session).
// Presentation needs no command: agi_callingpres has it.
func (r *Router) agiReadANI(a *agiConn, env map[string]string, c *call.Call) error {
	if ani, given, refused := agiScriptANI(env["agi_network_script"]); given {
		if refused != "" {
			agiANI.WithLabelValues("refused").Inc()
			r.aniWarn.Warn(r.log, "fastagi: ani= in the script refused; deciding without the ANI", "reason", refused)
		} else {
			agiANI.WithLabelValues("script").Inc()
		}
		c.ANI = ani
		return nil
	}
	agiANI.WithLabelValues("get").Inc()
	rep, err := a.command("GET VARIABLE CALLERID(ani)")
	if err != nil {
		return err
	}
	if rep.code == 200 && rep.result == "1" {
		c.ANI = rep.data
	}
	return nil
}

// agiCall is the call an AGI session's environment describes, received at
// received; ok=false (logged) when the script is not callpop's.
func (r *Router) agiCall(env map[string]string, received time.Time) (c call.Call, ok bool) {
	profile, ok := agiScript(env["agi_network_script"])
	if !ok {
		r.log.Warn("fastagi: unknown script; use agi://host:port/route", "script", call.CleanValueN(env["agi_network_script"], 64))
		return call.Call{}, false
	}
	if profile == "" {
		profile = call.CleanToken(env["agi_arg_1"])
	}
	dnis := agiUnknown(env["agi_dnid"])
	if dnis == "" {
		if ext := env["agi_extension"]; callerid.Digits(ext) != "" {
			dnis = ext
		}
	}
	c = call.Call{
		ID: env["agi_uniqueid"], PBX: "agi", CLI: agiUnknown(env["agi_callerid"]), CLIName: agiUnknown(env["agi_calleridname"]),
		DNIS: dnis, Privacy: agiPrivacy(env["agi_callingpres"]), Profile: profile, Received: received,
	}
	if profile != "" && !r.state.Load().hasProfile(profile) {
		r.log.Warn("fastagi: unknown profile; choosing by DNIS", "profile", profile)
		c.Profile = ""
	}
	return c, true
}

// agiVars are the variables an AGI session sets: the decision's, QUEUE_PRIO,
// the call id for the dialplan's agent legs, and the softphone's caller name
// and info URL, as the ARI adapter sets them.
func agiVars(c call.Call, d call.Decision) []call.Var {
	vars := d.Vars()
	vars = append(vars, call.Var{Name: "QUEUE_PRIO", Value: strconv.Itoa(d.QueuePrio)})
	if id := call.CleanToken(c.ID); id != "" {
		vars = append(vars, call.Var{Name: "__CALLPOP_CALL_ID", Value: id})
	}
	if n := call.CleanValue(d.CallerName); n != "" {
		vars = append(vars, call.Var{Name: "CALLERID(name)", Value: n})
	}
	if u := call.CleanURL(d.InfoURL); u != "" {
		vars = append(vars, call.Var{Name: "CALLPOP_INFO_URL", Value: u})
	}
	return vars
}

// agiSafeVars drops what no command can carry safely (a name Asterisk would
// misread, a value with a line break) and moves CALLPOP_MATCH last: it is
// the commit marker, written only after everything else went through.
func agiSafeVars(log *slog.Logger, vars []call.Var) []call.Var {
	out := make([]call.Var, 0, len(vars))
	var match *call.Var
	for i, v := range vars {
		if !agiVarName(v.Name) || strings.ContainsAny(v.Value, "\r\n\x00") {
			log.Error("fastagi: unsafe variable skipped", "name", call.CleanToken(v.Name))
			continue
		}
		if v.Name == "CALLPOP_MATCH" {
			match = &vars[i]
			continue
		}
		out = append(out, v)
	}
	if match != nil {
		out = append(out, *match)
	}
	return out
}

// agiSetVars sets vars on the channel: a few EXEC MSet commands when mset
// is true, else (or once Asterisk refuses MSet) one SET VARIABLE each. It
// returns the session's result for the metric.
func (r *Router) agiSetVars(a *agiConn, vars []call.Var, mset bool) string {
	if mset {
		for len(vars) > 0 {
			line, n := agiMSetCommand(vars)
			if n == 0 {
				break // a pair too long for one line: the rest goes one by one
			}
			rep, err := a.command(line)
			if err != nil {
				return r.agiEnded(err)
			}
			if rep.code == 200 && rep.result == "0" {
				vars = vars[n:]
				continue
			}
			// 200 result=-2: no such application; 510/520: no EXEC. Nothing
			// of this command was set: SET VARIABLE sets the same values.
			r.msetWarn.Warn(r.log, "fastagi: Asterisk refused EXEC MSet; setting variables one by one",
				"code", rep.code, "result", call.CleanValueN(rep.result, 16))
			break
		}
	}
	for _, v := range vars {
		rep, err := a.command("SET VARIABLE " + v.Name + " " + agiQuote(v.Value))
		if err != nil {
			return r.agiEnded(err)
		}
		if rep.code != 200 {
			r.log.Warn("fastagi: SET VARIABLE refused", "name", v.Name, "code", rep.code)
		}
	}
	return "ok"
}

// agiEnded is the session's result for the error that ended it: hangup, or
// closed (logged at debug).
func (r *Router) agiEnded(err error) string {
	if errors.Is(err, errHangup) {
		return "hangup"
	}
	r.log.Debug("fastagi: session ended", "err", err)
	return "closed"
}
