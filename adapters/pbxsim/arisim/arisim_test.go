package arisim

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const (
	user = "ariuser"
	pass = "ariS3cret"
)

func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Username, opts.Password = user, pass
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type socket struct {
	c    *websocket.Conn
	msgs chan []byte
}

func connect(t *testing.T, s *Server, app string) *socket {
	t.Helper()
	u := strings.Replace(s.URL(), "http://", "ws://", 1) + "/ari/events?app=" + app
	h := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	sk := &socket{c: c, msgs: make(chan []byte, 1024)}
	go func() {
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				close(sk.msgs)
				return
			}
			sk.msgs <- b
		}
	}()
	t.Cleanup(func() { c.CloseNow() })
	return sk
}

func (sk *socket) next(t *testing.T) []byte {
	t.Helper()
	select {
	case b, ok := <-sk.msgs:
		if !ok {
			t.Fatal("socket closed")
		}
		return b
	case <-time.After(3 * time.Second):
		t.Fatal("no event")
	}
	return nil
}

// keys returns the object keys of a JSON object in order, with nested
// objects' keys as "parent.key".
func keys(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	var out []string
	var walk func(prefix string)
	walk = func(prefix string) {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		switch tok {
		case json.Delim('{'):
			for dec.More() {
				k, _ := dec.Token()
				out = append(out, prefix+k.(string))
				walk(prefix + k.(string) + ".")
			}
			dec.Token()
		case json.Delim('['):
			for dec.More() {
				walk(prefix)
			}
			dec.Token()
		}
	}
	walk("")
	return out
}

func firstLine(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return line
}

// The events the simulator sends have the recorded shapes, key for key.
func TestEventShapesMatchRecordings(t *testing.T) {
	s := newServer(t, Options{App: "crm-lookup"})
	sk := connect(t, s, "crm-lookup")
	ev, _ := os.ReadFile("testdata/a-national.events.jsonl")
	rest, _ := os.ReadFile("testdata/a-national.rest.json")
	spec, err := SpecFromRecording(ev, rest)
	if err != nil {
		t.Fatal(err)
	}
	if spec.CLI != "0201234567" || spec.CLIName != "Jan de Vries" || spec.NumPres != "allowed_not_screened" || spec.ANI != "" {
		t.Fatalf("spec %+v", spec)
	}
	id := s.OfferCall(spec)
	lines := bytes.Split(bytes.TrimSpace(ev), []byte("\n"))
	got := sk.next(t)
	if !slices.Equal(keys(t, got), keys(t, lines[0])) {
		t.Errorf("StasisStart keys\n got %v\nwant %v", keys(t, got), keys(t, lines[0]))
	}
	// a set produces a ChannelVarset like the recorded one
	do(t, s, "POST", "/ari/channels/"+id+"/variable?variable=CRM_PRIO&value=7", "", http.StatusNoContent)
	if got := sk.next(t); !slices.Equal(keys(t, got), keys(t, lines[1])) {
		t.Errorf("ChannelVarset keys\n got %v\nwant %v", keys(t, got), keys(t, lines[1]))
	}
	do(t, s, "POST", "/ari/channels/"+id+"/continue", "", http.StatusNoContent)
	if got := sk.next(t); !slices.Equal(keys(t, got), keys(t, lines[len(lines)-1])) || !bytes.Contains(got, []byte(`"StasisEnd"`)) {
		t.Errorf("StasisEnd %s", got)
	}
	if _, ok := s.Continued(id); !ok {
		t.Error("not recorded as continued")
	}
}

func do(t *testing.T, s *Server, method, path, body string, want int) string {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
	req.SetBasicAuth(user, pass)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Errorf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	return string(b)
}

type exchange struct {
	Label   string `json:"label"`
	Request struct {
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Query   string            `json:"query"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	} `json:"request"`
	Response struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	} `json:"response"`
}

// The recorded REST battery, replayed against the simulator: same status
// codes and bodies (where the simulator models the resource).
func TestRESTBatteryMatchesRecording(t *testing.T) {
	b, err := os.ReadFile("testdata/rest-battery.rest.json")
	if err != nil {
		t.Fatal(err)
	}
	var xs []exchange
	if err := json.Unmarshal(b, &xs); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, Options{App: "crm-lookup", Labels: []string{"after", "crm-vip"}})
	connect(t, s, "crm-lookup")
	const recID = "1795311919.77"
	id := s.OfferCall(CallSpec{Name: "Local/rest@sim-00000026;2", CLI: "0201234567", CLIName: "REST Test", ANI: "0301112233"})
	skip := []string{"asterisk info", "get channel", "list channels", ";1 side", "1 s after", "get hung-up channel", "api_key"}
	checked := 0
	for _, x := range xs {
		if slices.ContainsFunc(skip, func(s string) bool { return strings.Contains(x.Label, s) }) {
			continue
		}
		path := strings.ReplaceAll(x.Request.Path, recID, id)
		if x.Request.Query != "" {
			path += "?" + x.Request.Query
		}
		req, _ := http.NewRequest(x.Request.Method, s.URL()+path, strings.NewReader(x.Request.Body))
		for k, v := range x.Request.Headers {
			if k == "Authorization" || k == "Content-Type" {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != x.Response.Status || string(body) != x.Response.Body {
			t.Errorf("%s: got %d %s, recorded %d %s", x.Label, resp.StatusCode, body, x.Response.Status, x.Response.Body)
		}
		checked++
	}
	if checked < 35 {
		t.Errorf("only %d exchanges checked", checked)
	}
}

func TestApplicationReplacedAndSubscriptions(t *testing.T) {
	s := newServer(t, Options{})
	first := connect(t, s, "callpop")
	id := s.OfferCall(CallSpec{CLI: "+14155550123"})
	first.next(t) // StasisStart
	second := connect(t, s, "callpop")
	got := first.next(t)
	rec := firstLine(t, "app-replaced.first-connection.events.jsonl")
	if !slices.Equal(keys(t, got), keys(t, rec)) || !bytes.Contains(got, []byte(`"ApplicationReplaced"`)) {
		t.Errorf("first socket got %s", got)
	}
	// later calls go to the second socket only
	id2 := s.OfferCall(CallSpec{CLI: "+14155550123"})
	if got := second.next(t); !bytes.Contains(got, []byte(id2)) {
		t.Errorf("second socket got %s", got)
	}
	select {
	case m := <-first.msgs:
		t.Errorf("replaced socket still gets events: %s", m)
	case <-time.After(50 * time.Millisecond):
	}
	// subscriptions: recorded answers
	body := do(t, s, "POST", "/ari/applications/callpop/subscription?eventSource=channel%3A"+id, "", http.StatusOK)
	var app struct {
		Name       string   `json:"name"`
		ChannelIDs []string `json:"channel_ids"`
	}
	json.Unmarshal([]byte(body), &app)
	if app.Name != "callpop" || !slices.Contains(app.ChannelIDs, id) {
		t.Errorf("subscription answer %s", body)
	}
	if got := do(t, s, "POST", "/ari/applications/callpop/subscription?eventSource=channel%3Ano-such-channel", "", 422); got != `{"message":"Event source does not exist"}` {
		t.Errorf("422 body %s", got)
	}
	do(t, s, "GET", "/ari/applications/nobody", "", http.StatusNotFound)
	do(t, s, "GET", "/ari/applications/callpop", "", http.StatusOK)
}

func TestNoAppStasisFails(t *testing.T) {
	s := newServer(t, Options{})
	ids := s.Generate(context.Background(), 500, 10, Mix([]string{"+31201234567"}, ""))
	if len(ids) != 10 {
		t.Fatalf("generated %d", len(ids))
	}
	st := s.Stats()
	if st.Failed != 10 || st.Waiting != 0 {
		t.Errorf("stats %+v: with no app connected Stasis() fails at once", st)
	}
}

func TestHangupAndAgents(t *testing.T) {
	s := newServer(t, Options{})
	sk := connect(t, s, "callpop")
	id := s.OfferCall(CallSpec{CLI: "0201234567", Agents: []string{"PJSIP/1001", "PJSIP/1002"}, Answer: 0,
		RingFor: 10 * time.Millisecond, TalkFor: 10 * time.Millisecond})
	sk.next(t)
	do(t, s, "POST", "/ari/applications/callpop/subscription?eventSource=channel%3A"+id, "", http.StatusOK)
	do(t, s, "POST", "/ari/channels/"+id+"/continue", "", http.StatusNoContent)
	var types []string
	for {
		m := sk.next(t)
		var ev struct {
			Type       string `json:"type"`
			Dialstatus string `json:"dialstatus"`
		}
		json.Unmarshal(m, &ev)
		types = append(types, ev.Type+":"+ev.Dialstatus)
		if ev.Type == "ChannelDestroyed" {
			break
		}
	}
	want := []string{"StasisEnd:", "Dial:", "Dial:", "Dial:RINGING", "Dial:RINGING", "Dial:ANSWER", "Dial:CANCEL", "Dial:CANCEL",
		"ChannelHangupRequest:", "ChannelDestroyed:"}
	if !slices.Equal(types, want) {
		t.Errorf("events %v\nwant %v", types, want)
	}
	// after the hang-up: 404 like Asterisk once the channel is destroyed
	do(t, s, "POST", "/ari/channels/"+id+"/variable?variable=X&value=1", "", http.StatusNotFound)
}

// A caller hanging up in Stasis sends what the recording shows, in its
// order and shapes: ChannelHangupRequest, StasisEnd, ChannelDestroyed.
func TestHangupMatchesRecording(t *testing.T) {
	b, err := os.ReadFile("testdata/caller-hangs-up-during-lookup.events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	rec := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	s := newServer(t, Options{App: "crm-lookup"})
	sk := connect(t, s, "crm-lookup")
	id := s.OfferCall(CallSpec{CLI: "0201234567", CLIName: "Jan de Vries", Args: []string{"inbound"}})
	sk.next(t) // StasisStart
	s.Hangup(id)
	for i, want := range rec[1:] {
		got := sk.next(t)
		var g, w struct{ Type string }
		json.Unmarshal(got, &g)
		json.Unmarshal(want, &w)
		if g.Type != w.Type || !slices.Equal(keys(t, got), keys(t, want)) {
			t.Errorf("event %d: got %s\nwant shape of %s", i+1, got, want)
		}
	}
	do(t, s, "POST", "/ari/channels/"+id+"/continue", "", http.StatusNotFound)
}

// OnContinue reports each continue once, with the time Continued reports.
func TestOnContinueHook(t *testing.T) {
	type hit struct {
		id string
		at time.Time
	}
	got := make(chan hit, 4)
	s := newServer(t, Options{App: "callpop", OnContinue: func(id string, at time.Time) { got <- hit{id, at} }})
	connect(t, s, "callpop")
	id := s.OfferCall(CallSpec{CLI: "0201234567", DNIS: "100"})
	do(t, s, "POST", "/ari/channels/"+id+"/continue", "", http.StatusNoContent)
	h := <-got
	at, ok := s.Continued(id)
	if h.id != id || !ok || !h.at.Equal(at) {
		t.Fatalf("hook %v %v, Continued %v %v", h.id, h.at, at, ok)
	}
	do(t, s, "POST", "/ari/channels/"+id+"/continue", "", http.StatusConflict)
	select {
	case h := <-got:
		t.Fatalf("second hook call for %s", h.id)
	case <-time.After(50 * time.Millisecond):
	}
}

// With ChannelVars every snapshot carries "channelvars" in the configured
// order, as the callpop-* recordings show; functions are evaluated and unset
// names are "".
func TestChannelVarsMatchRecording(t *testing.T) {
	rec := bytes.Split(bytes.TrimSpace(mustRead(t, "testdata/callpop-queue-ringall.default.events.jsonl")), []byte("\n"))
	s := newServer(t, Options{App: "crm-lookup",
		ChannelVars: []string{"CALLPOP_CALL_ID", "CALLPOP_CRM_ID", "QUEUE_PRIO", "CHANNEL(linkedid)"}})
	sk := connect(t, s, "crm-lookup")
	id := s.OfferCall(CallSpec{CLI: "0201234567", CLIName: "Jan de Vries", Args: []string{"callpop"}})
	got := sk.next(t)
	if !slices.Equal(keys(t, got), keys(t, rec[0])) {
		t.Errorf("StasisStart keys\n got %v\nwant %v", keys(t, got), keys(t, rec[0]))
	}
	want := `"channelvars":{"CALLPOP_CALL_ID":"","CALLPOP_CRM_ID":"","QUEUE_PRIO":"","CHANNEL(linkedid)":"` + id + `"}`
	if !bytes.Contains(got, []byte(want)) {
		t.Errorf("StasisStart %s\nwant %s", got, want)
	}
	do(t, s, "POST", "/ari/channels/"+id+"/variable?variable=QUEUE_PRIO&value=5", "", http.StatusNoContent)
	got = sk.next(t)
	if !slices.Equal(keys(t, got), keys(t, rec[1])) || !bytes.Contains(got, []byte(`"QUEUE_PRIO":"5"`)) {
		t.Errorf("ChannelVarset %s\nwant the shape of %s", got, rec[1])
	}
	if body := do(t, s, "GET", "/ari/channels/"+id, "", http.StatusOK); !strings.Contains(body, `"QUEUE_PRIO":"5"`) {
		t.Errorf("GET channel %s", body)
	}
}

// CALLERID(ani) and CALLERID(num-pres) in channelvars carry what a GET reads.
func TestChannelVarsCallerID(t *testing.T) {
	s := newServer(t, Options{ChannelVars: []string{"CALLPOP_CALL_ID", "CALLERID(ani)", "CALLERID(num-pres)"}})
	sk := connect(t, s, "callpop")
	tests := []struct {
		spec CallSpec
		want string
	}{
		{CallSpec{CLI: "0201234567"}, `"channelvars":{"CALLPOP_CALL_ID":"","CALLERID(ani)":"","CALLERID(num-pres)":"allowed_not_screened"}`},
		{CallSpec{CLI: "", ANI: "0201234567", NumPres: "prohib_passed_screen"},
			`"channelvars":{"CALLPOP_CALL_ID":"","CALLERID(ani)":"0201234567","CALLERID(num-pres)":"prohib_passed_screen"}`},
		{CallSpec{CLI: `a"<b>&`, ANI: `x\y`}, `"CALLERID(ani)":"x\\y"`},
	}
	for _, tt := range tests {
		s.OfferCall(tt.spec)
		if got := sk.next(t); !bytes.Contains(got, []byte(tt.want)) {
			t.Errorf("%+v: StasisStart %s\nwant %s", tt.spec, got, tt.want)
		}
	}
	if st := s.Stats(); st.VarGets != 0 {
		t.Errorf("VarGets %d", st.VarGets)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The application's channel_ids follow channels into Stasis, through
// subscriptions, and out at hang-up; the answer keeps the recorded keys.
func TestApplicationChannelIDs(t *testing.T) {
	s := newServer(t, Options{Linger: -1})
	sk := connect(t, s, "callpop")
	ids := func() []string {
		var app struct {
			ChannelIDs []string `json:"channel_ids"`
		}
		body := do(t, s, "GET", "/ari/applications/callpop", "", http.StatusOK)
		want := `{"name":"crm-watch","channel_ids":[],"bridge_ids":[],"endpoint_ids":[],"device_names":[],"events_allowed":[],"events_disallowed":[]}`
		if !slices.Equal(keys(t, []byte(body)), keys(t, []byte(want))) {
			t.Errorf("answer %s\nwant the shape of %s", body, want)
		}
		json.Unmarshal([]byte(body), &app)
		slices.Sort(app.ChannelIDs)
		return app.ChannelIDs
	}
	a := s.OfferCall(CallSpec{ID: "1.1", CLI: "1"})
	b := s.OfferCall(CallSpec{ID: "1.2", CLI: "2"})
	c := s.OfferCall(CallSpec{ID: "1.3", CLI: "3"})
	for range 3 {
		sk.next(t)
	}
	if got := ids(); !slices.Equal(got, []string{a, b, c}) {
		t.Errorf("in Stasis: %v", got)
	}
	do(t, s, "POST", "/ari/applications/callpop/subscription?eventSource=channel%3A"+a, "", http.StatusOK)
	do(t, s, "POST", "/ari/channels/"+a+"/continue", "", http.StatusNoContent)
	do(t, s, "POST", "/ari/channels/"+b+"/continue", "", http.StatusNoContent)
	if got := ids(); !slices.Equal(got, []string{a, c}) {
		t.Errorf("after continues (a subscribed): %v", got)
	}
	s.Hangup(a)
	if got := ids(); !slices.Equal(got, []string{c}) {
		t.Errorf("after a's hang-up: %v", got)
	}
	do(t, s, "DELETE", "/ari/applications/callpop/subscription?eventSource=channel%3A"+c, "", http.StatusOK)
	s.Hangup(c)
	if got := ids(); len(got) != 0 {
		t.Errorf("after c's hang-up: %v", got)
	}
}
