package router

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

// asterisk plays Asterisk's side of a FastAGI session over a real TCP
// connection: it sends the agi_* environment block, then answers each
// command the way res_agi does (SET VARIABLE, GET VARIABLE, EXEC MSet as
// Asterisk 13+ parses it: asteriskParseArgs, appSeparateArgs, asteriskMSet),
// and records what it was asked.
type asterisk struct {
	env      map[string]string
	ani      string // CALLERID(ani); "" answers 200 result=0
	aniReply string // overrides the GET VARIABLE reply when set (e.g. a 520 usage block)
	// hangupAfter sends HANGUP instead of the reply to the n-th command that
	// sets variables (SET VARIABLE or EXEC, 1-based) and answers 511 from
	// then on; 0 = never.
	hangupAfter int
	closeAfter  int    // closes the socket instead of replying to the n-th command that sets variables; 0 = never
	source      string // the local address to connect from; "" = any
	noMSet      bool   // EXEC MSet answers 200 result=-2, as for an application Asterisk does not have
	noExec      bool   // EXEC answers 510, as for a command Asterisk does not have
	execFull    bool   // the channel has AGIEXECFULL=yes: EXEC substitutes ${…} and $[…] in its argument
}

// agiSession is what the fake Asterisk saw.
type agiSession struct {
	commands []string
	vars     []call.Var        // variables set (SET VARIABLE or one MSet pair each), in order
	chanvars map[string]string // the channel's variables after the session
	bad      []string          // commands Asterisk would not take as sent, or would misread
	closedBy string            // "server" when the server closed the connection
}

func defaultAGIEnv(script, cli, name, dnid string) map[string]string {
	return map[string]string{
		"agi_network": "yes", "agi_network_script": script, "agi_request": "agi://127.0.0.1:4573/" + script,
		"agi_channel": "PJSIP/trunk-00000001", "agi_language": "en", "agi_type": "PJSIP",
		"agi_uniqueid": "1763780000.42", "agi_version": "22.10.1", "agi_callerid": cli, "agi_calleridname": name,
		"agi_callingpres": "0", "agi_callingani2": "0", "agi_callington": "0", "agi_callingtns": "0",
		"agi_dnid": dnid, "agi_rdnis": "unknown", "agi_context": "from-pstn", "agi_extension": "0800123456",
		"agi_priority": "2", "agi_enhanced": "0.0", "agi_accountcode": "", "agi_threadid": "140234567890",
	}
}

var agiEnvOrder = []string{"agi_network", "agi_network_script", "agi_request", "agi_channel", "agi_language",
	"agi_type", "agi_uniqueid", "agi_version", "agi_callerid", "agi_calleridname", "agi_callingpres",
	"agi_callingani2", "agi_callington", "agi_callingtns", "agi_dnid", "agi_rdnis", "agi_context",
	"agi_extension", "agi_priority", "agi_enhanced", "agi_accountcode", "agi_threadid"}

func (a *asterisk) run(t testing.TB, addr string) agiSession {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	if a.source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(a.source)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	for _, k := range agiEnvOrder {
		if v, ok := a.env[k]; ok {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	for k, v := range a.env { // agi_arg_N and anything extra
		if strings.HasPrefix(k, "agi_arg_") {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	b.WriteString("\n")
	if _, err := conn.Write([]byte(b.String())); err != nil {
		t.Fatalf("write env: %v", err)
	}
	s := agiSession{chanvars: map[string]string{}}
	set := func(name, value string) {
		s.vars = append(s.vars, call.Var{Name: name, Value: value})
		s.chanvars[name] = value
	}
	rd := bufio.NewReader(conn)
	sets, hungUp := 0, false
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			s.closedBy = "server"
			return s
		}
		line = strings.TrimSuffix(line, "\n")
		s.commands = append(s.commands, line)
		if len(line)+1 > asteriskAGIBuf-1 {
			// res_agi's fgets would cut it and read the rest as another command
			s.bad = append(s.bad, line)
		}
		args := asteriskParseArgs(line)
		reply := "200 result=1"
		setting := len(args) >= 2 && (strings.EqualFold(args[0], "EXEC") || strings.EqualFold(args[0], "SET") && strings.EqualFold(args[1], "VARIABLE"))
		if setting && !hungUp {
			sets++
			if a.closeAfter > 0 && sets == a.closeAfter {
				return s
			}
		}
		switch {
		case hungUp:
			reply = "511 Command Not Permitted on a dead channel or intercept routine"
		case len(args) == 3 && args[0] == "GET" && args[1] == "VARIABLE" && args[2] == "CALLERID(ani)":
			switch {
			case a.aniReply != "":
				reply = a.aniReply
			case a.ani == "":
				reply = "200 result=0"
			default:
				reply = "200 result=1 (" + a.ani + ")"
			}
		case len(args) == 3 && args[0] == "GET" && args[1] == "VARIABLE":
			if v, ok := s.chanvars[args[2]]; ok {
				reply = "200 result=1 (" + v + ")"
			} else {
				reply = "200 result=0"
			}
		case len(args) == 4 && args[0] == "SET" && args[1] == "VARIABLE":
			set(args[2], args[3])
		case len(args) >= 2 && args[0] == "EXEC":
			if a.noExec {
				reply = "510 Invalid or unknown command"
				break
			}
			if !strings.EqualFold(args[1], "MSet") || a.noMSet {
				reply = "200 result=-2" // pbx_findapp found nothing
				break
			}
			data := ""
			if len(args) > 2 {
				data = args[2]
			}
			if len(args) > 3 {
				s.bad = append(s.bad, line) // handle_exec would ignore the rest
			}
			if a.execFull && (strings.Contains(data, "${") || strings.Contains(data, "$[")) {
				s.bad = append(s.bad, line) // AGIEXECFULL would substitute it
			}
			pairs, ignored := asteriskMSet(data)
			if len(ignored) > 0 {
				s.bad = append(s.bad, line)
			}
			for _, v := range pairs {
				set(v.Name, v.Value)
			}
			reply = "200 result=0"
		default:
			s.bad = append(s.bad, line)
			reply = "510 Invalid or unknown command"
		}
		if setting && a.hangupAfter > 0 && sets == a.hangupAfter && !hungUp {
			reply, hungUp = "HANGUP", true
		}
		if _, err := conn.Write([]byte(reply + "\n")); err != nil {
			s.closedBy = "server"
			return s
		}
	}
}

// Asterisk's side of the parsing is the ARI simulator's model of res_agi,
// main/app.c and MSet (adapters/pbxsim/arisim/agiparse.go): one copy, which
// the simulator's AGI plays too.

// asteriskAGIBuf is res_agi's command buffer: fgets reads at most one byte
// less, so a longer line (with its newline) is cut in two commands.
const asteriskAGIBuf = arisim.AGIBufLen

// appSeparateArgs is main/app.c's __ast_app_separate_args.
var appSeparateArgs = arisim.AppSeparateArgs

// asteriskParseArgs is res_agi.c's parse_args.
var asteriskParseArgs = arisim.AGIParseArgs

// asteriskMSet is what the MSet application sets for data, and the pairs
// it ignores (no `=`).
func asteriskMSet(data string) (set []call.Var, ignored []string) {
	pairs, ignored := arisim.MSetPairs(data)
	for _, p := range pairs {
		set = append(set, call.Var{Name: p.Name, Value: p.Value})
	}
	return set, ignored
}

func TestAsteriskParseArgs(t *testing.T) {
	got := asteriskParseArgs(`SET VARIABLE X "a \"b\" c\\d"`)
	want := []string{"SET", "VARIABLE", "X", `a "b" c\d`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%q", got)
	}
	for _, v := range []string{``, `plain`, `a"b`, `back\slash\`, `"quoted"`, `sp  ace`, `tab	x`, `$ {x} ; , '`} {
		args := asteriskParseArgs("SET VARIABLE N " + agiQuote(v))
		if len(args) != 4 || args[3] != v {
			t.Errorf("agiQuote(%q) round trip: %q", v, args)
		}
	}
}

// startAGI serves FastAGI for r on a free loopback port until the test ends.
func startAGI(t testing.TB, r *Router) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.ServeFastAGIListener(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeFastAGIListener: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("FastAGI server did not stop within 5s of its context ending")
		}
	})
	return ln.Addr().String()
}

// expectedVars is what a session must set for c: the decision's variables,
// QUEUE_PRIO and the inherited call id.
func expectedVars(t *testing.T, r *Router, c call.Call) []call.Var {
	t.Helper()
	d := r.Decide(context.Background(), c)
	all := append(d.Vars(), call.Var{Name: "QUEUE_PRIO", Value: fmt.Sprint(d.QueuePrio)})
	all = append(all, call.Var{Name: "__CALLPOP_CALL_ID", Value: call.CleanToken(c.ID)})
	// CALLPOP_MATCH, the commit marker, comes last
	var vars []call.Var
	for _, v := range all {
		if v.Name != "CALLPOP_MATCH" {
			vars = append(vars, v)
		}
	}
	return append(vars, all[0])
}

// TestFastAGIAllowList: a peer outside router.fastagi.allow is closed
// before it gets a word; a listed one is served. A reload applies to the
// next connection.
func TestFastAGIAllowList(t *testing.T) {
	cfg := testConfig()
	cfg.FastAGI.Allow = []string{"127.0.0.2/32"}
	te := newTestEnv(t, cfg, nil, testBudget)
	addr := startAGI(t, te.router)
	env := defaultAGIEnv("route", "0201234567", "x", "0800123456")
	listed := asterisk{env: env, ani: "0201234567", source: "127.0.0.2"}
	if s := listed.run(t, addr); s.chanvars["CALLPOP_MATCH"] != "hit" {
		t.Fatalf("listed peer: %q", s.commands)
	}
	other := asterisk{env: env, ani: "0201234567", source: "127.0.0.3"}
	if s := other.run(t, addr); len(s.commands) != 0 || s.closedBy != "server" {
		t.Fatalf("unlisted peer got %q", s.commands)
	}
	cfg.FastAGI.Allow = []string{"127.0.0.2/32", "127.0.0.3"}
	if err := te.router.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if s := other.run(t, addr); len(s.vars) == 0 {
		t.Fatalf("peer listed by a reload: %q", s.commands)
	}
}

func TestFastAGIBindNeedsAllowList(t *testing.T) {
	cfg := testConfig()
	cfg.FastAGI.Listen = "0.0.0.0:4573"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "router.fastagi.allow") || !strings.Contains(err.Error(), "CALLPOP_ROUTER_FASTAGI_ALLOW") {
		t.Fatalf("beyond loopback with the default allow-list: %v", err)
	}
	cfg.FastAGI.Allow = []string{"10.0.0.5/32"}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with an allow-list: %v", err)
	}
	cfg.FastAGI.Allow = []string{"10.0.0.5/40"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "router.fastagi.allow[0]") {
		t.Fatalf("bad CIDR: %v", err)
	}
}

func TestFastAGISession(t *testing.T) {
	cfg := testConfig()
	cfg.RuleSets = map[string][]Rule{"vipline": {{Name: "vip-line", Then: Then{Queue: "vip-line", Priority: 9}}}}
	cfg.Profiles = []Profile{{Name: "vip-line", RuleSet: "vipline"}}
	te := newTestEnv(t, cfg, nil, testBudget)
	addr := startAGI(t, te.router)

	hostileCLI := `+31 (0)20-123 4567 ext.12 ABC#*;x=1"q'%&<>`
	tests := []struct {
		name      string
		ast       asterisk
		call      call.Call // the call the session must decide
		wantMatch string
		wantQueue string
	}{
		{"national caller with ani", asterisk{env: defaultAGIEnv("route", "0201234567", "Jan de Vries", "0800123456"), ani: "0201234567"},
			call.Call{ID: "1763780000.42", CLI: "0201234567", ANI: "0201234567", DNIS: "0800123456"}, "hit", "vip"},
		{"no ani", asterisk{env: defaultAGIEnv("route", "+14155550123", "ACME Corp", "0800123456")},
			call.Call{ID: "1763780000.42", CLI: "+14155550123", DNIS: "0800123456"}, "hit", "support"},
		{"unknown caller id uses ani", asterisk{env: defaultAGIEnv("route", "unknown", "unknown", "unknown"), ani: "0301112233"},
			call.Call{ID: "1763780000.42", CLI: "", ANI: "0301112233", DNIS: "0800123456"}, "hit", "support-de"},
		{"hostile caller id", asterisk{env: defaultAGIEnv("route", hostileCLI, `Zoë "Ünïcode" \ ${SHELL(id)} O'Brien`, "0800123456"), ani: `0201234567" EXEC System "rm -rf /`},
			call.Call{ID: "1763780000.42", CLI: hostileCLI, ANI: `0201234567" EXEC System "rm -rf /`, DNIS: "0800123456"}, "", ""},
		{"hostile crm record", asterisk{env: defaultAGIEnv("route", "0209999999", "x", "0800123456"), ani: "0209999999"},
			call.Call{ID: "1763780000.42", CLI: "0209999999", ANI: "0209999999", DNIS: "0800123456"}, "hit", "support-nl"},
		{"profile in path", asterisk{env: defaultAGIEnv("route/vip-line", "0201234567", "x", "0800123456"), ani: "0201234567"},
			call.Call{ID: "1763780000.42", CLI: "0201234567", ANI: "0201234567", DNIS: "0800123456", Profile: "vip-line"}, "hit", "vip-line"},
		{"profile in query", asterisk{env: defaultAGIEnv("route?profile=vip-line", "0201234567", "x", "0800123456"), ani: "0201234567"},
			call.Call{ID: "1763780000.42", CLI: "0201234567", ANI: "0201234567", DNIS: "0800123456", Profile: "vip-line"}, "hit", "vip-line"},
		{"withheld by presentation", asterisk{env: func() map[string]string {
			e := defaultAGIEnv("route", "", "", "0800123456")
			e["agi_callingpres"] = "35" // prohib_passed_screen
			return e
		}(), ani: "0201234567"},
			call.Call{ID: "1763780000.42", CLI: "", ANI: "0201234567", DNIS: "0800123456", Privacy: true}, "hit", "vip"},
		{"get variable answered with usage", asterisk{env: defaultAGIEnv("route", "0201234567", "x", "0800123456"),
			aniReply: "520-Invalid command syntax.  Proper usage follows:\nUsage: GET VARIABLE <variableName>\n520 End of proper usage."},
			call.Call{ID: "1763780000.42", CLI: "0201234567", DNIS: "0800123456"}, "hit", "vip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := expectedVars(t, te.router, tt.call)
			s := tt.ast.run(t, addr)
			if s.closedBy != "server" {
				t.Fatalf("server did not end the session")
			}
			if len(s.bad) > 0 {
				t.Fatalf("commands Asterisk would not take: %q", s.bad)
			}
			if len(s.commands) != 2 || s.commands[0] != "GET VARIABLE CALLERID(ani)" || !strings.HasPrefix(s.commands[1], "EXEC MSet ") {
				t.Fatalf("got %d commands, want GET VARIABLE + one EXEC MSet: %q", len(s.commands), s.commands)
			}
			if fmt.Sprint(s.vars) != fmt.Sprint(want) {
				t.Fatalf("variables differ\n got  %q\n want %q", s.vars, want)
			}
			got := map[string]string{}
			for _, v := range s.vars {
				if strings.ContainsAny(v.Value, "\r\n\x00\"\\$") && v.Name != "CALLPOP_POP_URL" {
					t.Errorf("%s carries unsafe characters: %q", v.Name, v.Value)
				}
				got[v.Name] = v.Value
			}
			if tt.wantMatch != "" && got["CALLPOP_MATCH"] != tt.wantMatch {
				t.Errorf("CALLPOP_MATCH = %q, want %q", got["CALLPOP_MATCH"], tt.wantMatch)
			}
			if tt.wantQueue != "" && got["CALLPOP_QUEUE"] != tt.wantQueue {
				t.Errorf("CALLPOP_QUEUE = %q, want %q", got["CALLPOP_QUEUE"], tt.wantQueue)
			}
			if got["__CALLPOP_CALL_ID"] != "1763780000.42" {
				t.Errorf("__CALLPOP_CALL_ID = %q", got["__CALLPOP_CALL_ID"])
			}
		})
	}
}

func TestFastAGIHangup(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	addr := startAGI(t, te.router)
	env := defaultAGIEnv("route", "0201234567", "Jan", "0800123456")

	t.Run("HANGUP on the MSet", func(t *testing.T) {
		s := (&asterisk{env: env, ani: "0201234567", hangupAfter: 1}).run(t, addr)
		if s.closedBy != "server" || len(s.commands) != 2 || s.chanvars["CALLPOP_MATCH"] != "hit" {
			t.Fatalf("after HANGUP: commands %q, closed by %q", s.commands, s.closedBy)
		}
	})
	t.Run("HANGUP mid-session, one by one", func(t *testing.T) {
		// the EXEC MSet refused, then HANGUP on the third SET VARIABLE
		s := (&asterisk{env: env, ani: "0201234567", noMSet: true, hangupAfter: 4}).run(t, addr)
		if s.closedBy != "server" || len(s.vars) != 3 {
			t.Fatalf("after HANGUP: %d variables set, closed by %q; want 3 and the server to close", len(s.vars), s.closedBy)
		}
		if _, ok := s.chanvars["CALLPOP_MATCH"]; ok {
			t.Fatalf("a torn decision carries CALLPOP_MATCH: %q", s.vars)
		}
	})
	t.Run("HANGUP before the ani reply", func(t *testing.T) {
		s := (&asterisk{env: env, aniReply: "HANGUP"}).run(t, addr)
		if s.closedBy != "server" || len(s.commands) != 1 {
			t.Fatalf("commands %q closed by %q", s.commands, s.closedBy)
		}
	})
	t.Run("dead channel 511", func(t *testing.T) {
		s := (&asterisk{env: env, aniReply: "511 Command Not Permitted on a dead channel or intercept routine"}).run(t, addr)
		if s.closedBy != "server" || len(s.commands) != 1 {
			t.Fatalf("commands %q closed by %q", s.commands, s.closedBy)
		}
	})
	t.Run("socket closed mid-session", func(t *testing.T) {
		(&asterisk{env: env, ani: "0201234567", closeAfter: 1}).run(t, addr)
		(&asterisk{env: env, ani: "0201234567", noMSet: true, closeAfter: 3}).run(t, addr)
		// The server must still serve the next session.
		s := (&asterisk{env: env, ani: "0201234567"}).run(t, addr)
		if len(s.vars) < 13 {
			t.Fatalf("next session set %d variables", len(s.vars))
		}
	})
	t.Run("unknown script", func(t *testing.T) {
		s := (&asterisk{env: defaultAGIEnv("other", "0201234567", "Jan", "0800123456")}).run(t, addr)
		if s.closedBy != "server" || len(s.commands) != 0 {
			t.Fatalf("commands %q", s.commands)
		}
	})
}

func TestFastAGIReadDeadline(t *testing.T) {
	cfg := testConfig()
	cfg.FastAGI.ReadTimeout = 100 * time.Millisecond
	te := newTestEnv(t, cfg, nil, testBudget)
	addr := startAGI(t, te.router)
	tests := []struct {
		name string
		send string
	}{
		{"silent client", ""},
		{"half an environment block", "agi_network: yes\nagi_network_script: route\n"},
		{"no reply to GET VARIABLE", "agi_network: yes\nagi_network_script: route\nagi_callerid: 0201234567\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte(tt.send)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			rd := bufio.NewReader(conn)
			for range 10 {
				if _, err := rd.ReadString('\n'); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("server kept a silent session open for 5s")
					}
					return // server closed: good
				}
			}
			t.Fatal("server kept talking to a silent client")
		})
	}
}

func TestFastAGIServeStopsWithContext(t *testing.T) {
	cfg := testConfig()
	cfg.FastAGI.Listen = "127.0.0.1:0"
	te := newTestEnv(t, cfg, nil, testBudget)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- te.router.ServeFastAGI(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeFastAGI did not return after its context ended")
	}
	cfg.FastAGI.Listen = ""
	te2 := newTestEnv(t, cfg, nil, testBudget)
	if err := te2.router.ServeFastAGI(context.Background()); err != nil {
		t.Fatalf("disabled FastAGI: %v", err)
	}
}

func TestAGIScript(t *testing.T) {
	tests := []struct {
		script, profile string
		ok              bool
	}{
		{"route", "", true}, {"/route", "", true}, {"route/", "", true}, {"route/vip-line", "vip-line", true},
		{"route?profile=tenant-b", "tenant-b", true}, {"route?x=1&profile=a", "a", true},
		{"route/a b\"c", "abc", true}, {"lookup", "", false}, {"", "", false}, {"router", "", false},
	}
	for _, tt := range tests {
		p, ok := agiScript(tt.script)
		if p != tt.profile || ok != tt.ok {
			t.Errorf("agiScript(%q) = %q, %v; want %q, %v", tt.script, p, ok, tt.profile, tt.ok)
		}
	}
}

func TestParseAGIReply(t *testing.T) {
	tests := []struct {
		in     string
		code   int
		result string
		data   string
		err    bool
	}{
		{"200 result=1 (0201234567)", 200, "1", "0201234567", false},
		{"200 result=1 (a (nested) value)", 200, "1", "a (nested) value", false},
		{"200 result=0", 200, "0", "", false},
		{"510 Invalid or unknown command", 510, "", "", false},
		{"garbage", 0, "", "", true},
		{"200 nothing", 0, "", "", true},
	}
	for _, tt := range tests {
		r, err := parseAGIReply(tt.in)
		if (err != nil) != tt.err || r.code != tt.code || r.result != tt.result || r.data != tt.data {
			t.Errorf("parseAGIReply(%q) = %+v, %v", tt.in, r, err)
		}
	}
}

// A slow CRM does not hold the dialplan: the variables come within the
// budget, with CALLPOP_MATCH=timeout and the rules' default routing.
func TestFastAGISlowCRM(t *testing.T) {
	const crmDelay = 2 * time.Second
	te := newTestEnv(t, testConfig(), nil, 200*time.Millisecond)
	te.fake.setDelay(crmDelay)
	addr := startAGI(t, te.router)
	start := time.Now()
	s := (&asterisk{env: defaultAGIEnv("route", "0201234567", "Jan", "0800123456"), ani: "0201234567"}).run(t, addr)
	took := time.Since(start)
	got := map[string]string{}
	for _, v := range s.vars {
		got[v.Name] = v.Value
	}
	if got["CALLPOP_MATCH"] != "timeout" || got["CALLPOP_QUEUE"] != "general" || got["QUEUE_PRIO"] != "1" {
		t.Fatalf("vars %v", got)
	}
	// The budget, not the CRM, ended the wait: the CRM answers after 2 s.
	// (No bound nearer the budget: a loaded machine breaks it.)
	if took >= crmDelay {
		t.Fatalf("session took %v with a 200ms budget: it waited for the CRM", took)
	}
}

// Beyond router.fastagi.max_sessions a connection is closed at once, so a
// flood cannot exhaust the process; the held session still completes.
func TestFastAGIMaxSessions(t *testing.T) {
	cfg := testConfig()
	cfg.FastAGI.MaxSessions = 1
	cfg.FastAGI.ReadTimeout = 2 * time.Second
	te := newTestEnv(t, cfg, nil, testBudget)
	addr := startAGI(t, te.router)
	held, err := net.Dial("tcp", addr) // a session that has not sent its environment yet
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	time.Sleep(50 * time.Millisecond) // let the server accept it
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection beyond max_sessions was served")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection beyond max_sessions left open")
	}
	held.Close()
	time.Sleep(50 * time.Millisecond)
	s := (&asterisk{env: defaultAGIEnv("route", "0201234567", "Jan", "0800123456"), ani: "0201234567"}).run(t, addr)
	if len(s.vars) < 13 {
		t.Fatalf("after the slot was freed: %d variables", len(s.vars))
	}
}

// Asterisk without MSet (200 result=-2) or without EXEC (510), and an
// Asterisk before 13, whose res_agi may rewrite EXEC's argument, get one
// SET VARIABLE per variable, CALLPOP_MATCH last; the values are the same.
// AGIEXECFULL on the channel changes nothing.
func TestFastAGIMSetFallback(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	addr := startAGI(t, te.router)
	c := call.Call{ID: "1763780000.42", CLI: "0209999999", ANI: "0209999999", DNIS: "0800123456"} // the hostile CRM record
	want := expectedVars(t, te.router, c)
	env := func(version string) map[string]string {
		e := defaultAGIEnv("route", "0209999999", "x", "0800123456")
		e["agi_version"] = version
		return e
	}
	tests := []struct {
		name  string
		ast   asterisk
		execs int // EXEC commands sent before the SET VARIABLEs
		sets  int
	}{
		{"MSet", asterisk{env: env("22.10.1"), ani: "0209999999"}, 1, 0},
		{"MSet with AGIEXECFULL", asterisk{env: env("22.10.1"), ani: "0209999999", execFull: true}, 1, 0},
		{"no MSet application", asterisk{env: env("22.10.1"), ani: "0209999999", noMSet: true}, 1, len(want)},
		{"no EXEC command", asterisk{env: env("22.10.1"), ani: "0209999999", noExec: true}, 1, len(want)},
		{"Asterisk 11", asterisk{env: env("11.25.3"), ani: "0209999999"}, 0, len(want)},
		{"no version", asterisk{env: env(""), ani: "0209999999"}, 0, len(want)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.ast.run(t, addr)
			if len(s.bad) > 0 {
				t.Fatalf("commands Asterisk would not take as sent: %q", s.bad)
			}
			execs, sets := 0, 0
			for _, cmd := range s.commands[1:] {
				switch {
				case strings.HasPrefix(cmd, "EXEC MSet "):
					execs++
				case strings.HasPrefix(cmd, "SET VARIABLE "):
					sets++
				default:
					t.Errorf("unexpected command %q", cmd)
				}
			}
			if execs != tt.execs || sets != tt.sets {
				t.Fatalf("%d EXEC MSet and %d SET VARIABLE, want %d and %d: %q", execs, sets, tt.execs, tt.sets, s.commands)
			}
			if fmt.Sprint(s.vars) != fmt.Sprint(want) {
				t.Fatalf("variables differ\n got  %q\n want %q", s.vars, want)
			}
		})
	}
}

// The dialplan may pass the ANI in the script
// (`agi://…/route?ani=${URIENCODE(${CALLERID(ani)})}`): callpop then sends
// one command per call, the EXEC MSet, and no GET VARIABLE. The value is
// the caller's: one that is malformed, oversized, doubled or carries
// control characters is refused (decided as without an ANI), one with
// quotes and spaces decides like the same ANI read by GET VARIABLE; either
// way the whole decision goes out. An empty ani= means "no ANI".
func TestFastAGIScriptANI(t *testing.T) {
	cfg := testConfig()
	cfg.RuleSets = map[string][]Rule{"vipline": {{Name: "vip-line", Then: Then{Queue: "vip-line", Priority: 9}}}}
	cfg.Profiles = []Profile{{Name: "vip-line", RuleSet: "vipline"}}
	te := newTestEnv(t, cfg, nil, testBudget)
	addr := startAGI(t, te.router)
	withheld := func(script string) map[string]string {
		e := defaultAGIEnv(script, "", "", "0800123456")
		e["agi_callingpres"] = "35" // prohib_passed_screen
		return e
	}
	const id = "1763780000.42"
	tests := []struct {
		name       string
		env        map[string]string
		call       call.Call // the call the session must decide
		wantMatch  string
		wantSource string
	}{
		{"known customer", defaultAGIEnv("route?ani=0201234567", "0201234567", "Jan", "0800123456"),
			call.Call{ID: id, CLI: "0201234567", ANI: "0201234567", DNIS: "0800123456"}, "hit", "cli"},
		{"withheld caller, known ani", withheld("route?ani=0201234567"),
			call.Call{ID: id, ANI: "0201234567", DNIS: "0800123456", Privacy: true}, "hit", "ani"},
		{"withheld caller, encoded E.164 ani", withheld("route?ani=%2B31201234567"),
			call.Call{ID: id, ANI: "+31201234567", DNIS: "0800123456", Privacy: true}, "hit", "ani"},
		// as Asterisk 22.10.1 sent AGI(…/route?ani=${URIENCODE(${CALLERID(ani)})})
		{"spaces, URIENCODE'd", withheld("route?ani=%2B31%2020%20123%204567"),
			call.Call{ID: id, ANI: "+31 20 123 4567", DNIS: "0800123456", Privacy: true}, "hit", "ani"},
		{"no profile smuggled in, URIENCODE'd", withheld("route?ani=0201234567%3Bx%26profile%3Dvip-line"),
			call.Call{ID: id, ANI: "0201234567;x&profile=vip-line", DNIS: "0800123456", Privacy: true}, "", ""},
		{"plus not encoded", withheld("route?ani=+31201234567"),
			call.Call{ID: id, ANI: "+31201234567", DNIS: "0800123456", Privacy: true}, "hit", "ani"},
		{"profile in path", withheld("route/vip-line?ani=0201234567"),
			call.Call{ID: id, ANI: "0201234567", DNIS: "0800123456", Privacy: true, Profile: "vip-line"}, "hit", "ani"},
		{"profile in query", withheld("route?profile=vip-line&ani=0201234567"),
			call.Call{ID: id, ANI: "0201234567", DNIS: "0800123456", Privacy: true, Profile: "vip-line"}, "hit", "ani"},
		{"empty ani is no ani", withheld("route?ani="),
			call.Call{ID: id, DNIS: "0800123456", Privacy: true}, "anonymous", ""},
		{"bare ani is no ani", withheld("route?ani"),
			call.Call{ID: id, DNIS: "0800123456", Privacy: true}, "anonymous", ""},
		{"quotes and spaces", withheld("route?ani=0201234567%22%20EXEC%20System%20%22rm%20-rf%20%2F"),
			call.Call{ID: id, ANI: `0201234567" EXEC System "rm -rf /`, DNIS: "0800123456", Privacy: true}, "", ""},
		{"line break refused", withheld("route?ani=0201234567%0AEXEC%20System%20id"),
			call.Call{ID: id, DNIS: "0800123456", Privacy: true}, "anonymous", ""},
		{"NUL refused", withheld("route?ani=0201234567%00"),
			call.Call{ID: id, DNIS: "0800123456", Privacy: true}, "anonymous", ""},
		{"oversized refused", withheld("route?ani=" + strings.Repeat("0201234567", 10)),
			call.Call{ID: id, DNIS: "0800123456", Privacy: true}, "anonymous", ""},
		{"oversized encoded refused", withheld("route?ani=" + strings.Repeat("%41", 1000)),
			call.Call{ID: id, DNIS: "0800123456", Privacy: true}, "anonymous", ""},
		{"broken encoding refused", withheld("route?ani=020%zz1234567"),
			call.Call{ID: id, DNIS: "0800123456", Privacy: true}, "anonymous", ""},
		{"invalid UTF-8 refused", withheld("route?ani=020%FF1234567"),
			call.Call{ID: id, DNIS: "0800123456", Privacy: true}, "anonymous", ""},
		{"given twice refused", withheld("route?ani=0201234567&ani=0301112233"),
			call.Call{ID: id, DNIS: "0800123456", Privacy: true}, "anonymous", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := expectedVars(t, te.router, tt.call)
			// Asterisk's CALLERID(ani) differs from ani=: a GET would show.
			s := (&asterisk{env: tt.env, ani: "0301112233"}).run(t, addr)
			if s.closedBy != "server" || len(s.bad) > 0 {
				t.Fatalf("closed by %q; commands Asterisk would not take: %q", s.closedBy, s.bad)
			}
			if len(s.commands) != 1 || !strings.HasPrefix(s.commands[0], "EXEC MSet ") {
				t.Fatalf("got %d commands, want one EXEC MSet: %q", len(s.commands), s.commands)
			}
			if fmt.Sprint(s.vars) != fmt.Sprint(want) {
				t.Fatalf("variables differ\n got  %q\n want %q", s.vars, want)
			}
			if tt.wantMatch != "" && s.chanvars["CALLPOP_MATCH"] != tt.wantMatch {
				t.Errorf("CALLPOP_MATCH = %q, want %q", s.chanvars["CALLPOP_MATCH"], tt.wantMatch)
			}
			if tt.wantSource != "" && s.chanvars["CALLPOP_SOURCE"] != tt.wantSource {
				t.Errorf("CALLPOP_SOURCE = %q, want %q", s.chanvars["CALLPOP_SOURCE"], tt.wantSource)
			}
			if (tt.call.Profile == "vip-line") != (s.chanvars["CALLPOP_QUEUE"] == "vip-line") {
				t.Errorf("CALLPOP_QUEUE = %q with profile %q", s.chanvars["CALLPOP_QUEUE"], tt.call.Profile)
			}
			for _, v := range s.vars {
				if strings.ContainsAny(v.Value, "\r\n\x00\"\\$") && v.Name != "CALLPOP_POP_URL" {
					t.Errorf("%s carries unsafe characters: %q", v.Name, v.Value)
				}
			}
		})
	}
}
