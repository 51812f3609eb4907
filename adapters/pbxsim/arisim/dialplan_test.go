package arisim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

const testDialplan = `
[bench] ; a comment
exten => s,1,Set(T0=${STRFTIME(,,%s.%6q)})
 same => n,Set(CALLERID(name)=Bench \; caller)
 same => n,Stasis(${APP},${CALLERID(num)},${UNIQUEID})
 same => n,Set(AFTER=${STASISSTATUS})
 same => n,Stasis(report,${AFTER},${CALLERID(name)},${T0})
 same => n,Hangup()
`

// POST /channels with a Local endpoint runs the ;2 half through the
// dialplan: Set, Stasis (StasisStart to that app alone, the dialplan goes on
// after continue), expansions of variables and functions; DELETE hangs up.
func TestOriginateRunsDialplan(t *testing.T) {
	s := newServer(t, Options{Dialplan: testDialplan})
	app, report := connect(t, s, "callpop"), connect(t, s, "report")
	for _, c := range []struct{ path, body, want string }{
		{"/ari/channels?app=report", "", "Endpoint must be specified"},
		{"/ari/channels?endpoint=Local/s@bench", "", "Application or extension must be specified"},
		{"/ari/channels?endpoint=PJSIP&app=report", "", "Invalid endpoint specified"},
	} {
		if got := do(t, s, "POST", c.path, c.body, http.StatusBadRequest); !strings.Contains(got, c.want) {
			t.Errorf("%s: %s, want %q", c.path, got, c.want)
		}
	}
	body := do(t, s, "POST", "/ari/channels?endpoint=Local/s@bench&app=report&appArgs=sink&callerId=%2B15550001111", `{"variables":{"APP":"callpop"}}`, http.StatusOK)
	var one struct{ ID, Name string }
	if err := json.Unmarshal([]byte(body), &one); err != nil || !strings.HasSuffix(one.Name, ";1") {
		t.Fatalf("originate answer %s", body)
	}
	var start struct {
		Args    []string
		Channel struct{ ID, Name string }
	}
	if err := json.Unmarshal(app.next(t), &start); err != nil || !strings.HasSuffix(start.Channel.Name, ";2") {
		t.Fatalf("StasisStart: %+v %v", start, err)
	}
	if len(start.Args) != 2 || start.Args[0] != "+15550001111" || start.Args[1] != start.Channel.ID {
		t.Errorf("Stasis args %v", start.Args)
	}
	do(t, s, "POST", "/ari/channels/"+start.Channel.ID+"/continue", "", http.StatusNoContent)
	var rep struct{ Args []string }
	if err := json.Unmarshal(report.next(t), &rep); err != nil || len(rep.Args) != 3 {
		t.Fatalf("report StasisStart: %+v %v", rep, err)
	}
	if rep.Args[0] != "SUCCESS" || rep.Args[1] != "Bench ; caller" {
		t.Errorf("report args %v", rep.Args)
	}
	if sec, frac, ok := strings.Cut(rep.Args[2], "."); !ok || len(frac) != 6 || len(sec) < 10 {
		t.Errorf("STRFTIME(,,%%s.%%6q) = %q", rep.Args[2])
	}
	do(t, s, "DELETE", "/ari/channels/"+start.Channel.ID, "", http.StatusNoContent)
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Waiting()) > 0 || strings.Contains(do(t, s, "GET", "/ari/channels", "", http.StatusOK), one.ID) {
		if time.Now().After(deadline) {
			t.Fatal("the hang-up of ;2 left channels behind")
		}
		time.Sleep(10 * time.Millisecond)
	}
	do(t, s, "DELETE", "/ari/channels/"+start.Channel.ID, "", http.StatusNotFound)
	if st := s.Stats(); st.Originated != 1 {
		t.Errorf("originated %d", st.Originated)
	}
}

// A Stasis() whose app is not connected fails at once and the dialplan goes on.
func TestDialplanStasisWithoutApp(t *testing.T) {
	s := newServer(t, Options{Dialplan: testDialplan})
	report := connect(t, s, "report")
	do(t, s, "POST", "/ari/channels?endpoint=Local/s@bench&app=report", `{"variables":{"APP":"nobody"}}`, http.StatusOK)
	var rep struct{ Args []string }
	if err := json.Unmarshal(report.next(t), &rep); err != nil || len(rep.Args) != 3 || rep.Args[0] != "FAILED" {
		t.Fatalf("report: %+v %v", rep, err)
	}
}

func TestDialplanParseErrors(t *testing.T) {
	for _, dp := range []string{"exten => s,1,NoOp()", "[c]\nsame => n,NoOp()", "[c]\nexten => s,NoOp()", "[c]\nfoo => bar"} {
		if _, err := New(Options{Dialplan: dp}); err == nil {
			t.Errorf("%q: no error", dp)
		}
	}
}

// URIENCODE as Asterisk 22.10.1's answered `dialplan eval function`.
func TestURIEncode(t *testing.T) {
	for in, want := range map[string]string{
		"+3120(1)ä;x=1&y": "%2B3120(1)%C3%A4%3Bx%3D1%26y",
		"abc-_.!~*'x%":    "abc-_.!~*'x%25",
		"a b\n":           "a%20b%0A",
	} {
		if got := uriEncode(in); got != want {
			t.Errorf("URIENCODE(%q) = %q, want %q", in, got, want)
		}
	}
}
