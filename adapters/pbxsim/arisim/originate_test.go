package arisim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// event is the part of an event the originate tests read.
type event struct {
	Type       string
	Dialstatus string
	Cause      *int
	CauseTxt   string `json:"cause_txt"`
	Caller     *struct{ ID string }
	Peer       struct{ ID, Name string }
	Channel    struct {
		ID, State string
		Caller    struct{ Name, Number string }
		Connected struct{ Name, Number string }
	}
}

// events reads events until one of type last (at most 50).
func (sk *socket) until(t *testing.T, last string) []event {
	t.Helper()
	var out []event
	for range 50 {
		var e event
		if err := json.Unmarshal(sk.next(t), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
		if e.Type == last {
			return out
		}
	}
	t.Fatalf("no %s in %+v", last, out)
	return nil
}

func kinds(evs []event) []string {
	var out []string
	for _, e := range evs {
		k := e.Type
		if e.Type == "Dial" {
			k += ":" + e.Dialstatus
		}
		if e.Type == "ChannelStateChange" {
			k += ":" + e.Channel.State
		}
		out = append(out, k)
	}
	return out
}

// Originate's validation answers as ari_channels_handle_originate_with_id does.
func TestOriginateValidation(t *testing.T) {
	s := newServer(t, Options{})
	connect(t, s, "callpop")
	long := strings.Repeat("x", 150)
	for _, c := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/ari/channels?extension=cb", "", 400, "Endpoint must be specified"},
		{"/ari/channels?endpoint=PJSIP&extension=cb", "", 400, "Invalid endpoint specified"},
		{"/ari/channels?endpoint=PJSIP/%2B4420@trunk", "", 400, "Application or extension must be specified"},
		{"/ari/channels?endpoint=PJSIP/%2B4420@trunk&extension=cb&channelId=" + long, "", 400, "Uniqueid length exceeds maximum of 149"},
		{"/ari/channels?endpoint=PJSIP/%2B4420@trunk&extension=cb", `{"variables":{"A":1}}`, 400, "Only string values"},
		{"/ari/channels?endpoint=PJSIP/%2B4420@trunk&extension=cb&timeout=soon", "", 400, "timeout"},
	} {
		if got := do(t, s, "POST", c.path, c.body, c.code); !strings.Contains(got, c.want) {
			t.Errorf("%s: %s, want %q", c.path, got, c.want)
		}
	}
	s.ScriptOutcomes("+4420", Outcome{Cause: 0}) // rings until the timeout
	do(t, s, "POST", "/ari/channels?endpoint=PJSIP/%2B4420@trunk&extension=cb&channelId=cb-1", "", http.StatusOK)
	if got := do(t, s, "POST", "/ari/channels?endpoint=PJSIP/%2B4420@trunk&extension=cb&channelId=cb-1", "", http.StatusConflict); !strings.Contains(got, "Channel with given unique ID already exists") {
		t.Errorf("channelId in use: %s", got)
	}
	for _, r := range []string{"reason=nonsense", "reason=busy&reason_code=17", "reason_code=x"} {
		do(t, s, "DELETE", "/ari/channels/cb-1?"+r, "", http.StatusBadRequest)
	}
	do(t, s, "DELETE", "/ari/channels/cb-1?reason=no_answer", "", http.StatusNoContent)
	do(t, s, "DELETE", "/ari/channels/cb-1", "", http.StatusNotFound)
	if n := len(s.Originates()); n != 1 {
		t.Errorf("%d originates recorded, want 1", n)
	}
}

// A busy number: the variables are on the channel at creation, its events
// reach only the app subscribed to it, and it ends with cause 17.
func TestOriginateBusy(t *testing.T) {
	s := newServer(t, Options{RingTime: 50 * time.Millisecond})
	app, other := connect(t, s, "callpop"), connect(t, s, "other")
	s.ScriptOutcomes("+442079460018", Outcome{Cause: 17, Watched: true})
	q := url.Values{"endpoint": {"PJSIP/+442079460018@trunk"}, "context": {"callbacks"}, "extension": {"cb"},
		"priority": {"1"}, "channelId": {"cb-busy"}, "callerId": {`"Acme Support" <+31201234567>`}, "timeout": {"20"}}
	body := do(t, s, "POST", "/ari/channels?"+q.Encode(), `{"variables":{"QUEUE_PRIO":"7","__CALLPOP_CALL_ID":"cb-busy","CALLERID(num)":"+442079460018"}}`, http.StatusOK)
	var ch struct {
		ID, Name, State string
		Caller          struct{ Name, Number string }
		Connected       struct{ Name, Number string }
	}
	if err := json.Unmarshal([]byte(body), &ch); err != nil || ch.ID != "cb-busy" || !strings.HasPrefix(ch.Name, "PJSIP/trunk-") || ch.State != "Down" {
		t.Fatalf("answer %s", body)
	}
	// callerId first, then the variables: CALLERID(num) changed the
	// caller, the connected line (what the customer sees) kept callerId.
	if ch.Caller.Number != "+442079460018" || ch.Caller.Name != "Acme Support" || ch.Connected.Number != "+31201234567" || ch.Connected.Name != "Acme Support" {
		t.Errorf("caller %+v connected %+v", ch.Caller, ch.Connected)
	}
	for name, want := range map[string]string{"QUEUE_PRIO": "7", "CALLPOP_CALL_ID": "cb-busy"} {
		if got := do(t, s, "GET", "/ari/channels/cb-busy/variable?variable="+name, "", http.StatusOK); !strings.Contains(got, `"`+want+`"`) {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	do(t, s, "POST", "/ari/applications/callpop/subscription?eventSource=channel:cb-busy", "", http.StatusOK)
	evs := app.until(t, "ChannelDestroyed")
	want := []string{"ChannelStateChange:Ringing", "Dial:RINGING", "Dial:BUSY", "ChannelHangupRequest", "ChannelDestroyed"}
	if got := kinds(evs); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events %v, want %v", got, want)
	}
	last := evs[len(evs)-1]
	if last.Cause == nil || *last.Cause != 17 || last.CauseTxt != "User busy" {
		t.Errorf("destroyed %+v", last)
	}
	for _, e := range evs {
		if e.Type == "Dial" && (e.Caller != nil || e.Peer.ID != "cb-busy") {
			t.Errorf("the originate's Dial has a caller or another peer: %+v", e)
		}
	}
	// The unsubscribed app heard nothing of it: its first event is this marker.
	s.Inject("other", []byte(`{"type":"Marker"}`))
	if got := string(other.next(t)); got != `{"type":"Marker"}` {
		t.Errorf("unsubscribed app got %s", got)
	}
	o := s.Originates()
	if len(o) != 1 || o[0].Number != "+442079460018" || o[0].Context != "callbacks" || o[0].Extension != "cb" || o[0].Priority != 1 ||
		o[0].Timeout != 20 || o[0].Variables["QUEUE_PRIO"] != "7" || o[0].CallerID != `"Acme Support" <+31201234567>` {
		t.Errorf("originate record %+v", o)
	}
}

// Answered, the channel runs its context/extension: Queue() rings the
// queue's agents with the callback as the caller, as an incoming call's.
func TestOriginateAnswerQueues(t *testing.T) {
	dp := "[callbacks]\nexten => cb,1,Set(SEEN=${QUEUE_PRIO})\n same => n,Queue(support)\n"
	s := newServer(t, Options{Dialplan: dp, RingTime: 50 * time.Millisecond,
		Queues: map[string]Queue{"support": {Agents: []string{"PJSIP/1002"}, Answer: 0, RingFor: 50 * time.Millisecond, TalkFor: 100 * time.Millisecond}}})
	app := connect(t, s, "callpop")
	s.ScriptOutcomes("PJSIP/+4420@trunk", Outcome{Answer: true, Watched: true})
	do(t, s, "POST", "/ari/channels?endpoint=PJSIP/%2B4420@trunk&context=callbacks&extension=cb&channelId=cb-ans", `{"variables":{"QUEUE_PRIO":"9"}}`, http.StatusOK)
	do(t, s, "POST", "/ari/applications/callpop/subscription?eventSource=channel:cb-ans", "", http.StatusOK)
	evs := app.until(t, "ChannelDestroyed")
	got := strings.Join(kinds(evs), " ")
	want := "ChannelStateChange:Ringing Dial:RINGING ChannelStateChange:Up Dial:ANSWER Dial: Dial:RINGING Dial:ANSWER ChannelHangupRequest ChannelDestroyed"
	if got != want {
		t.Errorf("events\n%s\nwant\n%s", got, want)
	}
	for _, e := range evs[4:7] {
		if e.Caller == nil || e.Caller.ID != "cb-ans" || !strings.HasPrefix(e.Peer.Name, "PJSIP/1002-") {
			t.Errorf("agent Dial %+v", e)
		}
	}
	if c := evs[len(evs)-1].Cause; c == nil || *c != 16 {
		t.Errorf("hang-up cause %v", c)
	}
}

// A number that rings out: Asterisk's dial timeout ends it with cause 0.
func TestOriginateRingsOut(t *testing.T) {
	s := newServer(t, Options{})
	app := connect(t, s, "callpop")
	s.ScriptOutcomes("+4420", Outcome{Watched: true})
	do(t, s, "POST", "/ari/channels?endpoint=PJSIP/%2B4420@trunk&extension=cb&channelId=cb-out&timeout=1", "", http.StatusOK)
	do(t, s, "POST", "/ari/applications/callpop/subscription?eventSource=channel:cb-out", "", http.StatusOK)
	evs := app.until(t, "ChannelDestroyed")
	if got := strings.Join(kinds(evs), " "); got != "ChannelStateChange:Ringing Dial:RINGING Dial:NOANSWER ChannelHangupRequest ChannelDestroyed" {
		t.Errorf("events %s", got)
	}
	if last := evs[len(evs)-1]; last.Cause == nil || *last.Cause != 0 || last.CauseTxt != "Unknown" {
		t.Errorf("destroyed %+v", last)
	}
}

// A failure at once: no ringing, the cause straight away; scripted
// outcomes are used in order, then the number answers.
func TestOriginateScriptOrder(t *testing.T) {
	s := newServer(t, Options{RingTime: 20 * time.Millisecond})
	app := connect(t, s, "callpop")
	f := Failed(1)
	f.Watched = true
	s.ScriptOutcomes("+4420", f, Outcome{Cause: 19, Watched: true})
	for i, want := range []string{
		"Dial:CHANUNAVAIL ChannelHangupRequest ChannelDestroyed",
		"ChannelStateChange:Ringing Dial:RINGING Dial:NOANSWER ChannelHangupRequest ChannelDestroyed",
	} {
		id := "cb-" + string(rune('a'+i))
		do(t, s, "POST", "/ari/channels?endpoint=PJSIP/%2B4420@trunk&extension=cb&channelId="+id, "", http.StatusOK)
		do(t, s, "POST", "/ari/applications/callpop/subscription?eventSource=channel:"+id, "", http.StatusOK)
		// The originate's first Dial (status "") goes out as the channel is
		// made: an app whose subscription lands first sees it (as on a real
		// Asterisk), one whose subscription lands after does not.
		got := strings.TrimPrefix(strings.Join(kinds(app.until(t, "ChannelDestroyed")), " "), "Dial: ")
		if got != want {
			t.Errorf("attempt %d: %s, want %s", i, got, want)
		}
	}
	// Scripts used up: answered (and, with no dialplan, queued to DefaultQueue).
	do(t, s, "POST", "/ari/channels?endpoint=PJSIP/%2B4420@trunk&extension=cb&channelId=cb-c", "", http.StatusOK)
	do(t, s, "POST", "/ari/applications/callpop/subscription?eventSource=channel:cb-c", "", http.StatusOK)
	evs := app.until(t, "ChannelStateChange")
	for evs[len(evs)-1].Channel.State != "Up" {
		evs = app.until(t, "ChannelStateChange")
	}
	evs = app.until(t, "Dial")
	for evs[len(evs)-1].Caller == nil {
		evs = app.until(t, "Dial")
	}
	if e := evs[len(evs)-1]; e.Caller.ID != "cb-c" || !strings.HasPrefix(e.Peer.Name, "PJSIP/100") {
		t.Errorf("default queue's Dial %+v", e)
	}
	do(t, s, "DELETE", "/ari/channels/cb-c", "", http.StatusNoContent)
}
