package router

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/realpbx"
)

// TestMSetOnRealAsterisk checks the escaping of EXEC MSet against a real
// Asterisk instead of the stand-in. It runs only when
// CALLPOP_TEST_ASTERISK_ARI is set (a loopback ARI base such as
// http://127.0.0.1:8088; user CALLPOP_TEST_ASTERISK_ARI_USER, default
// callpop-bench, password CALLPOP_PBX_ASTERISK_PASSWORD) and Asterisk has
// this context (docs/dialplan-routing.md, "How FastAGI sets the decision"):
//
//	[callpop-agicheck]
//	exten => agicheck,1,AGI(${CALLPOP_AGICHECK}/plain)
//	 same => n,AGI(${CALLPOP_AGIROUTE}/route)
//	 same => n,AGI(${CALLPOP_AGICHECK}/readback)
//	 same => n,Set(AGIEXECFULL=yes)
//	 same => n,AGI(${CALLPOP_AGICHECK}/full)
//	 same => n,Hangup()
//	exten => hold,1,Wait(10)
//	 same => n,Hangup()
//
// On one channel: every hostile value set by MSet and by SET VARIABLE reads
// back (GET VARIABLE) as sent, without and with AGIEXECFULL; an unknown
// application answers 200 result=-2; MSet leaves the 99th pair unparsed;
// and callpop's own session (the hostile CRM record) leaves exactly its
// decision on the channel.
func TestMSetOnRealAsterisk(t *testing.T) {
	real := realpbx.ARI(t, "callpop-bench")
	base, user := real.URL, real.User

	te := newTestEnv(t, testConfig(), nil, testBudget)
	route := startAGI(t, te.router)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	q := url.Values{"endpoint": {"Local/agicheck@callpop-agicheck"}, "context": {"callpop-agicheck"},
		"extension": {"hold"}, "priority": {"1"}, "callerId": {"0209999999"}}
	body, _ := json.Marshal(map[string]any{"variables": map[string]string{
		"CALLPOP_AGICHECK": "agi://" + ln.Addr().String(), "CALLPOP_AGIROUTE": "agi://" + route}})
	req, _ := http.NewRequest(http.MethodPost, strings.TrimSuffix(base, "/")+"/ari/channels?"+q.Encode(), bytes.NewReader(body))
	req.SetBasicAuth(user, real.Password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("originate: %s", resp.Status)
	}

	for _, script := range []string{"plain", "readback", "full"} {
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
		conn, err := ln.Accept()
		if err != nil {
			t.Fatalf("waiting for the %s session: %v", script, err)
		}
		t.Run(script, func(t *testing.T) {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			a := &agiConn{conn: conn, rd: bufio.NewReaderSize(conn, agiMaxLine), timeout: 10 * time.Second}
			env, err := a.readEnv()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimPrefix(env["agi_network_script"], "/"); got != script {
				t.Fatalf("session %q, want %q", got, script)
			}
			get := func(name string) (string, bool) { // the reply as it is: parseAGIReply trims spaces
				if _, err := conn.Write([]byte("GET VARIABLE " + name + "\n")); err != nil {
					t.Fatal(err)
				}
				line, err := a.readLine()
				if err != nil {
					t.Fatal(err)
				}
				if line == "200 result=0" {
					return "", false
				}
				v, ok := strings.CutPrefix(line, "200 result=1 (")
				if v, ok = strings.CutSuffix(v, ")"); !ok {
					t.Fatalf("GET VARIABLE %s: %q", name, line)
				}
				return v, true
			}
			if script == "readback" {
				ani, _ := get("CALLERID(ani)")
				dnis := agiUnknown(env["agi_dnid"])
				c := call.Call{ID: env["agi_uniqueid"], CLI: "0209999999", ANI: ani, DNIS: dnis}
				for _, v := range expectedVars(t, te.router, c) {
					// __NAME (inherited) is read back as NAME
					if got, _ := get(strings.TrimLeft(v.Name, "_")); got != v.Value {
						t.Errorf("%s = %q after callpop's session, want %q", v.Name, got, v.Value)
					}
				}
				return
			}
			mustExec := func(line, want string) {
				rep, err := a.command(line)
				if err != nil || fmt.Sprintf("%d %s", rep.code, rep.result) != want {
					t.Fatalf("%.80q: %+v %v, want %s", line, rep, err, want)
				}
			}
			var vars []call.Var
			for i, v := range msetHostile {
				vars = append(vars, call.Var{Name: fmt.Sprintf("CHK_M%d", i), Value: v})
			}
			for rest := vars; len(rest) > 0; {
				line, n := agiMSetCommand(rest)
				mustExec(line, "200 0")
				rest = rest[n:]
			}
			for i, v := range msetHostile {
				if _, err := a.command(fmt.Sprintf("SET VARIABLE CHK_S%d %s", i, agiQuote(v))); err != nil {
					t.Fatal(err)
				}
				m, _ := get(fmt.Sprintf("CHK_M%d", i))
				s, _ := get(fmt.Sprintf("CHK_S%d", i))
				if m != v || s != v {
					t.Errorf("value %q: MSet stored %q, SET VARIABLE %q", v, m, s)
				}
			}
			for _, v := range []string{`Zoë "O'Brien", (a) [b] ${SHELL(id)} \x`, ""} { // a function, as for the softphone's name
				line, _ := agiMSetCommand([]call.Var{{Name: "CALLERID(name)", Value: v}})
				mustExec(line, "200 0")
				m, _ := get("CALLERID(name)")
				if _, err := a.command("SET VARIABLE CALLERID(name) " + agiQuote(v)); err != nil {
					t.Fatal(err)
				}
				if s, _ := get("CALLERID(name)"); m != v || s != v {
					t.Errorf("CALLERID(name) %q: MSet stored %q, SET VARIABLE %q", v, m, s)
				}
			}
			mustExec(`EXEC CallpopNoSuchApplication "x"`, "200 -2")
			var pairs []string
			for i := range 99 {
				pairs = append(pairs, fmt.Sprintf(`CHK_P%d=a\,b`, i))
			}
			mustExec("EXEC MSet "+agiQuote(strings.Join(pairs, ",")), "200 0")
			if p97, _ := get("CHK_P97"); p97 != "a,b" {
				t.Errorf("98th pair %q", p97)
			}
			if p98, _ := get("CHK_P98"); p98 != `a\,b` {
				t.Errorf("99th pair %q: not as app.c reads", p98)
			}
		})
	}
}
