package arisim

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// req sends one request to the simulator and returns status and body.
func req(t *testing.T, s *Server, method, path, ctype, body string) (int, string) {
	t.Helper()
	r, err := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// POST and GET /channels/{id}/variables answer as Asterisk 22.10's
// resource_channels.c does, in its order of checks.
func TestMultiVariables(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	connect(t, s, "callpop")
	id := s.OfferCall(CallSpec{CLI: "+14155550123", ANI: "0201234567"})
	p := "/ari/channels/" + id + "/variables"
	for _, tt := range []struct {
		name, path, ctype, body string
		code                    int
		msg                     string
	}{
		{"no body", p, "", "", 400, "The 'variables' field is required"},
		{"not JSON", p, "application/x-www-form-urlencoded", "variables=x", 400, "The 'variables' field is required"},
		{"bad JSON", p, "application/json", "{", 400, "Error parsing request body"},
		{"no channel", "/ari/channels/nope/variables", "application/json", `{"variables":{"A":"1"}}`, 404, "Provided channel was not found"},
		{"not an object", p, "application/json", `{"variables":"A"}`, 400, "The 'variables' field must be a JSON object"},
		{"set", p, "application/json", `{"variables":{"CALLPOP_MATCH":"hit","__CALLPOP_CALL_ID":"x","E":"","CALLERID(name)":"Ada","R":{"value":"v","report_events":true}}}`, 204, ""},
	} {
		code, body := req(t, s, http.MethodPost, tt.path, tt.ctype, tt.body)
		if code != tt.code || (tt.msg != "" && !strings.Contains(body, tt.msg)) {
			t.Errorf("%s: %d %s, want %d %q", tt.name, code, body, tt.code, tt.msg)
		}
	}
	r, _ := s.Record(id)
	if r.Vars["CALLPOP_MATCH"] != "hit" || r.Vars["__CALLPOP_CALL_ID"] != "x" || r.Vars["R"] != "v" {
		t.Errorf("vars %v", r.Vars)
	}
	if v, ok := r.Vars["E"]; !ok || v != "" {
		t.Errorf("empty value not set as empty: %v", r.Vars)
	}
	code, body := req(t, s, http.MethodGet, p+"?variables=CALLERID(ani),CALLERID(num-pres),CALLERID(name)", "", "")
	var got struct{ Variables map[string]string }
	json.Unmarshal([]byte(body), &got)
	if code != 200 || got.Variables["CALLERID(ani)"] != "0201234567" || got.Variables["CALLERID(num-pres)"] != "allowed_not_screened" || got.Variables["CALLERID(name)"] != "Ada" {
		t.Errorf("GET: %d %s", code, body)
	}
	if code, _ := req(t, s, http.MethodGet, p, "", ""); code != 400 {
		t.Errorf("GET without variables: %d", code)
	}
	if code, _ := req(t, s, http.MethodGet, p+"?variables=UNSET", "", ""); code != 404 {
		t.Errorf("GET of an unset variable: %d", code)
	}
	if code, _ := req(t, s, http.MethodPost, "/ari/channels/"+id+"/continue", "", ""); code != 204 {
		t.Fatalf("continue: %d", code)
	}
	if code, body := req(t, s, http.MethodPost, p, "application/json", `{"variables":{"A":"1"}}`); code != 409 {
		t.Errorf("after continue: %d %s, want 409", code, body)
	}
	_, docs := req(t, s, http.MethodGet, "/ari/api-docs/channels.json", "", "")
	if !strings.Contains(docs, `"/channels/{channelId}/variables"`) {
		t.Errorf("api-docs do not list /variables: %s", docs)
	}
}

// An older Asterisk has no /variables: api-docs does not list it, the route is 404.
func TestOldVersionHasNoMultiVariables(t *testing.T) {
	s, err := New(Options{Version: "22.9.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	connect(t, s, "callpop")
	id := s.OfferCall(CallSpec{CLI: "+14155550123"})
	if code, body := req(t, s, http.MethodPost, "/ari/channels/"+id+"/variables", "application/json", `{"variables":{"A":"1"}}`); code != 404 || !strings.Contains(body, "Resource not found") {
		t.Errorf("%d %s", code, body)
	}
	if _, docs := req(t, s, http.MethodGet, "/ari/api-docs/channels.json", "", ""); strings.Contains(docs, "/variables\"") {
		t.Errorf("api-docs list /variables: %s", docs)
	}
	if _, info := req(t, s, http.MethodGet, "/ari/asterisk/info", "", ""); !strings.Contains(info, "22.9.0") {
		t.Errorf("info %s", info)
	}
}

// Beyond SessionLimit open sessions a connection is accepted and closed
// unanswered, as Asterisk does past http.conf sessionlimit.
func TestSessionLimit(t *testing.T) {
	s, err := New(Options{SessionLimit: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := strings.TrimPrefix(s.URL(), "http://")
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
	}
	waitStat(t, func() bool { return s.Stats().Sessions == 2 })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("GET /ari/asterisk/ping HTTP/1.1\r\nHost: x\r\n\r\n"))
	if n, err := c.Read(make([]byte, 64)); n != 0 || err == nil {
		t.Errorf("third session answered: %d bytes, %v", n, err)
	}
	if st := s.Stats(); st.Refused != 1 || st.PeakSessions != 2 {
		t.Errorf("refused %d, peak %d", st.Refused, st.PeakSessions)
	}
	open[0].Close()
	waitStat(t, func() bool { return s.Stats().Sessions == 1 })
	if code, _ := req(t, s, http.MethodGet, "/ari/asterisk/ping", "", ""); code != 200 {
		t.Errorf("a session freed, yet %d", code)
	}
}

func waitStat(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out")
}
