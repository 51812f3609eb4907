package ari

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ariv5 "github.com/CyCoreSystems/ari/v5"
	"github.com/coder/websocket"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

const recordings = "../pbxsim/arisim/testdata"

// dialRaw opens a plain WebSocket for app (a second process with the same
// app name) and returns a func that closes it.
func dialRaw(t testing.TB, sim *arisim.Server, app string) func() {
	t.Helper()
	u := strings.Replace(sim.URL(), "http://", "ws://", 1) + "/ari/events?app=" + app
	h := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPass))}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := c.Read(rctx); err != nil {
				return
			}
		}
	}()
	closed := false
	closeFn := func() {
		if closed {
			return
		}
		closed = true
		stop()
		c.CloseNow()
		<-done
		waitFor(t, 2*time.Second, "raw socket gone", func() bool { return !sim.Connected(app) })
	}
	t.Cleanup(closeFn)
	return closeFn
}

func readLines(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recordings, name))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
	}
	return out
}

func TestDecodeRecordedEvents(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(recordings, "*.jsonl"))
	if len(files) == 0 {
		t.Fatal("no recordings")
	}
	for _, f := range files {
		for i, line := range readLines(t, filepath.Base(f)) {
			ev, unknown, err := decodeEvent(line)
			if err != nil || unknown {
				t.Errorf("%s:%d: err %v unknown %v", filepath.Base(f), i+1, err, unknown)
			}
			_ = ev
		}
	}
	tests := []struct {
		name    string
		raw     string
		unknown bool
		err     bool
	}{
		{"asterisk 22 type", `{"type":"ApplicationRegistered","application":"callpop"}`, true, false},
		{"tone detected", `{"type":"ChannelToneDetected","channel":{"id":"1"}}`, true, false},
		{"known but skipped", `{"type":"DeviceStateChanged"}`, false, false},
		{"no type", `{"application":"callpop"}`, false, true},
		{"not json", `hello`, false, true},
		{"bad field", `{"type":"StasisStart","args":"x"}`, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, unknown, err := decodeEvent([]byte(tt.raw))
			if unknown != tt.unknown || (err != nil) != tt.err || (ev != nil) {
				t.Errorf("ev %v unknown %v err %v", ev, unknown, err)
			}
		})
	}
}

// Unknown event types in the stream are skipped and counted; the socket stays.
func TestUnknownEventNoReconnect(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchMiss}}, testBudget, nil)
	before := counter(testM.unknownEvents)
	sim.Inject(sim.App(), []byte(`{"type":"ApplicationRegistered","timestamp":"2026-11-22T01:44:50.561+0000","application":"callpop","asterisk_id":"02:fc:00:00:00:01"}`))
	sim.Inject(sim.App(), []byte(`{"type":"ChannelToneDetected","timestamp":"2026-11-22T01:44:50.561+0000","channel":{"id":"x"},"application":"callpop"}`))
	sim.Inject(sim.App(), []byte(`{"type":"ChannelTransfer","application":"callpop"}`))
	id := sim.OfferCall(arisim.CallSpec{CLI: "0201234567"})
	waitSettled(t, sim, []string{id}, 3*time.Second)
	if got := counter(testM.unknownEvents) - before; got != 3 {
		t.Errorf("unknown counted %v, want 3", got)
	}
	if c := sim.Stats().Connections; c != 1 {
		t.Errorf("connections %d, want 1 (no reconnect)", c)
	}
}

// A second connection with the same app name takes it over: this instance
// gets ApplicationReplaced, turns unready with a reason, and does not fight back.
func TestApplicationReplaced(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchMiss}}, testBudget, nil)
	before := counter(testM.replaced)
	dialRaw(t, sim, sim.App())
	waitFor(t, 3*time.Second, "unready", func() bool { ok, _ := h.a.Ready(); return !ok })
	_, reason := h.a.Ready()
	if !strings.Contains(reason, "replaced") {
		t.Errorf("reason %q", reason)
	}
	if got := counter(testM.replaced) - before; got != 1 {
		t.Errorf("replaced metric +%v", got)
	}
	time.Sleep(300 * time.Millisecond)
	if c := sim.Stats().Connections; c != 2 {
		t.Errorf("connections %d, want 2: the replaced adapter must not reconnect", c)
	}
	if h.logs.count("ERROR") == 0 {
		t.Errorf("no loud log")
	}
}

// The recorded first-connection stream (only ApplicationReplaced) has the same effect.
func TestApplicationReplacedRecorded(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	h := start(t, sim, &fixedDecider{}, testBudget, nil)
	for _, l := range readLines(t, "app-replaced.first-connection.events.jsonl") {
		sim.Inject(sim.App(), l)
	}
	waitFor(t, 3*time.Second, "unready", func() bool { ok, _ := h.a.Ready(); return !ok })
}

// Replays of the callpop-* recordings: the enriched call is offered with the
// recorded channel id, callpop enriches, subscribes and continues it, then the
// recorded channel-subscription stream arrives on the socket.
func TestAgentLegsFromRecordings(t *testing.T) {
	type leg struct {
		endpoint string
		state    call.LegState
	}
	tests := []struct {
		file string
		want []leg // in order, by endpoint prefix
	}{
		{"callpop-queue-ringall.self-channel-subscription.events.jsonl", []leg{
			{"Local/1003@agents", call.LegRinging}, {"Local/1002@agents", call.LegRinging}, {"Local/1001@agents", call.LegRinging},
			{"Local/1002@agents", call.LegAnswered}, {"Local/1003@agents", call.LegStopped}, {"Local/1001@agents", call.LegStopped},
			{"Local/1002@agents", call.LegEnded},
		}},
		{"callpop-queue-linear-hunt.watch-channel-subscription.events.jsonl", []leg{
			{"Local/1001@agents", call.LegRinging}, {"Local/1001@agents", call.LegStopped},
			{"Local/1002@agents", call.LegRinging}, {"Local/1002@agents", call.LegAnswered}, {"Local/1002@agents", call.LegEnded},
		}},
		{"callpop-caller-hangup-while-ringing.watch-channel-subscription.events.jsonl", []leg{
			{"Local/100", call.LegRinging}, {"Local/100", call.LegRinging}, {"Local/100", call.LegRinging},
			{"Local/100", call.LegStopped}, {"Local/100", call.LegStopped}, {"Local/100", call.LegStopped},
		}},
		{"callpop-dial-answer-caller-hangup.watch-channel-subscription.events.jsonl", []leg{
			{"Local/1002@agents", call.LegRinging}, {"Local/1002@agents", call.LegAnswered}, {"Local/1002@agents", call.LegEnded},
		}},
		{"callpop-transfer-cli-redirect.watch-channel-subscription.events.jsonl", []leg{
			{"Local/1002@agents", call.LegRinging}, {"Local/1002@agents", call.LegAnswered}, {"Local/1002@agents", call.LegEnded},
			{"Local/1003@agents", call.LegRinging}, {"Local/1003@agents", call.LegAnswered}, {"Local/1003@agents", call.LegEnded},
		}},
		{"callpop-transfer-blind-dtmf.watch-channel-subscription.events.jsonl", []leg{
			{"Local/1002@agents-blindxfer", call.LegRinging}, {"Local/1002@agents-blindxfer", call.LegAnswered},
			{"Local/1002@agents-blindxfer", call.LegEnded},
			{"Local/1003@agents", call.LegRinging}, {"Local/1003@agents", call.LegAnswered}, {"Local/1003@agents", call.LegEnded},
		}},
		{"callpop-transfer-attended-dtmf.watch-channel-subscription.events.jsonl", []leg{
			{"Local/1002@agents-atxfer", call.LegRinging}, {"Local/1002@agents-atxfer", call.LegAnswered},
			{"Local/1002@agents-atxfer", call.LegEnded}, {"Local/1003@xfer-targets", call.LegAnswered},
			{"Local/1003@xfer-targets", call.LegEnded},
		}},
	}
	for _, tt := range tests {
		t.Run(strings.SplitN(tt.file, ".", 2)[0], func(t *testing.T) {
			lines := readLines(t, tt.file)
			spec, err := arisim.SpecFromRecording(bytes.Join(lines, []byte("\n")), nil)
			if err != nil {
				// watch files have no StasisStart: take the caller from the callpop stream
				spec = callerFromWatch(t, lines)
			}
			sim := newSim(t, arisim.Options{})
			h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchHit}}, testBudget, nil)
			id := sim.OfferCall(arisim.CallSpec{ID: spec.ID, Name: spec.Name, CLI: spec.CLI, CLIName: spec.CLIName})
			waitSettled(t, sim, []string{id}, 3*time.Second)
			waitFor(t, 5*time.Second, "followed", func() bool { return h.a.follow.following(id) })
			for _, l := range lines {
				if !bytes.Contains(l, []byte(`"type":"StasisStart"`)) {
					sim.Inject(sim.App(), l)
				}
			}
			waitFor(t, 3*time.Second, "call ended", func() bool { _, _, e := h.sink.snapshot(); return len(e) == 1 })
			_, legs, ended := h.sink.snapshot()
			if ended[0].CallerChannel != id || ended[0].CallID != id {
				t.Errorf("ended %+v", ended[0])
			}
			var got []leg
			for _, l := range legs {
				got = append(got, leg{l.Endpoint, l.State})
				if l.CallID != id || l.CallerChannel != id || l.Leg == "" {
					t.Errorf("leg event ids: %+v", l)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("legs:\n got %v\nwant %v", got, tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i].endpoint, tt.want[i].endpoint) || got[i].state != tt.want[i].state {
					t.Errorf("leg %d: got %v want %v\n all: %v", i, got[i], tt.want[i], got)
				}
			}
			waitFor(t, 2*time.Second, "forgotten after ChannelDestroyed", func() bool { return !h.a.follow.following(id) })
		})
	}
}

// callerFromWatch finds the enriched channel of a watch-channel stream: the
// caller of its first Dial that has one.
func callerFromWatch(t testing.TB, lines [][]byte) arisim.CallSpec {
	t.Helper()
	for _, l := range lines {
		// the first varset is on the caller (the enrichment's sets)
		var e ariv5.ChannelVarset
		if typ, _ := scanType(l); typ == "ChannelVarset" && json.Unmarshal(l, &e) == nil && e.Channel.ID != "" {
			return arisim.CallSpec{ID: e.Channel.ID, Name: e.Channel.Name, CLI: callerNumber(e.Channel.Caller)}
		}
	}
	t.Fatal("no caller channel in recording")
	return arisim.CallSpec{}
}

// Agent legs the simulator plays (Queue ringall: 3 ring, one answers).
func TestAgentLegsSimulated(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	h := start(t, sim, &fixedDecider{d: call.Decision{Match: call.MatchHit}}, testBudget, nil)
	id := sim.OfferCall(arisim.CallSpec{CLI: "0201234567", Agents: []string{"PJSIP/1001", "PJSIP/1002", "PJSIP/1003"},
		Answer: 1, RingFor: 30 * time.Millisecond, TalkFor: 30 * time.Millisecond})
	waitFor(t, 3*time.Second, "ended", func() bool { _, _, e := h.sink.snapshot(); return len(e) == 1 })
	_, legs, _ := h.sink.snapshot()
	count := map[call.LegState]int{}
	for _, l := range legs {
		count[l.State]++
		if l.CallID != id {
			t.Errorf("leg %+v", l)
		}
		if l.State == call.LegAnswered && !strings.HasPrefix(l.Endpoint, "PJSIP/1002") {
			t.Errorf("answered by %s", l.Endpoint)
		}
	}
	want := map[call.LegState]int{call.LegRinging: 3, call.LegAnswered: 1, call.LegStopped: 2, call.LegEnded: 1}
	for k, v := range want {
		if count[k] != v {
			t.Errorf("%s: %d, want %d (all %v)", k, count[k], v, legs)
		}
	}
}

// Only a varset of CALLPOP_CALL_ID itself is decoded, not every varset whose
// snapshot carries it in channelvars.
func TestIsCallIDVarset(t *testing.T) {
	snap := `"channel":{"id":"1.2","channelvars":{"CALLPOP_CALL_ID":"cp-1.2","QUEUE_PRIO":""}}`
	tests := []struct {
		raw  string
		want bool
	}{
		{`{"variable":"__CALLPOP_CALL_ID","value":"cp-1.2","type":"ChannelVarset",` + snap + `}`, true},
		{`{"variable":"CALLPOP_CALL_ID","value":"cp-1.2","type":"ChannelVarset",` + snap + `}`, true},
		{`{"variable":"QUEUE_PRIO","value":"5","type":"ChannelVarset",` + snap + `}`, false},
		{`{"variable":"CALLPOP_CALL_IDX","value":"5","type":"ChannelVarset"}`, false},
		{`{"variable": "CALLPOP_CALL_ID", "value": "x", "type": "ChannelVarset"}`, true}, // not compact: decoded
	}
	for _, tt := range tests {
		if got := isCallIDVarset([]byte(tt.raw)); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.raw, got, tt.want)
		}
	}
}
