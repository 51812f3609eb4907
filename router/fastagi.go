package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

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

// serveAGI runs one session: environment → ANI → Decide → SET VARIABLE …
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
	rep, err := a.command("GET VARIABLE CALLERID(ani)")
	if err != nil {
		result = r.agiEnded(err)
		return
	}
	if rep.code == 200 && rep.result == "1" {
		c.ANI = rep.data
	}

	dctx, cancel := context.WithDeadline(ctx, c.Received.Add(r.deps.Budget))
	d := r.endpointDecide(dctx, c)
	cancel()
	r.follow("fastagi", c, d) // before the SETs: the subscription gets a head start on the Dial
	if err := r.agiSetVars(a, agiVars(c, d)); err != nil {
		result = r.agiEnded(err)
	}
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

// agiSetVars sets vars one SET VARIABLE each; an unsafe one is skipped
// (logged), a refused one logged. The error is the session's end.
func (r *Router) agiSetVars(a *agiConn, vars []call.Var) error {
	for _, v := range vars {
		if strings.ContainsAny(v.Value, "\r\n") || strings.ContainsAny(v.Name, " \t\"\\\r\n") {
			r.log.Error("fastagi: unsafe variable skipped", "name", call.CleanToken(v.Name))
			continue
		}
		rep, err := a.command("SET VARIABLE " + v.Name + " " + agiQuote(v.Value))
		if err != nil {
			return err
		}
		if rep.code != 200 {
			r.log.Warn("fastagi: SET VARIABLE refused", "name", v.Name, "code", rep.code)
		}
	}
	return nil
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
