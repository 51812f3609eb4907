package ari

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/realpbx"
)

// TestOriginateOnRealAsterisk checks Originate against a real Asterisk
// instead of arisim. It runs only when CALLPOP_TEST_ASTERISK_ARI is set (a
// loopback ARI base such as http://127.0.0.1:8088; user
// CALLPOP_TEST_ASTERISK_ARI_USER, default callpop, password
// CALLPOP_PBX_ASTERISK_PASSWORD) and Asterisk has these contexts
// (docs/asterisk.md, "Callbacks (originate)"):
//
//	[callpop-customers]
//	exten => answer,1,Answer()
//	 same => n,Wait(10)
//	 same => n,Hangup()
//	exten => busy,1,Ringing()
//	 same => n,Wait(1)
//	 same => n,Busy(5)
//	exten => noanswer,1,Ringing()
//	 same => n,Wait(60)
//	exten => unalloc,1,Ringing()
//	 same => n,Wait(1)
//	 same => n,Hangup(1)
//	exten => congestion,1,Ringing()
//	 same => n,Wait(1)
//	 same => n,Congestion(5)
//	[callpop-callbacks]
//	exten => s,1,Set(GLOBAL(CALLPOP_CB_${CALLPOP_CALL_ID})=${QUEUE_PRIO}|${CALLPOP_NAME}|${CALLPOP_CALLBACK_ID}|${CALLPOP_MATCH})
//	 same => n,Wait(5)
//	 same => n,Hangup()
//
// The customers ring for a second before they answer or fail, as a trunk's
// far end does, so the subscription is in place when the outcome comes.
// Each outcome must be the one the dialplan gives, and the answered
// channel's dialplan must have read the decision's variables, set at
// creation and sanitised (a CRM name with ${SHELL(id)} and a newline).
func TestOriginateOnRealAsterisk(t *testing.T) {
	real := realpbx.ARI(t, "callpop")
	cfg := DefaultConfig()
	cfg.URL, cfg.Username, cfg.Password = real.URL, real.User, real.Password
	cfg.App = "callpop-originate-check"
	sink := &recSink{}
	a, err := New(cfg, adapters.Deps{Decider: &fixedDecider{}, Sink: sink,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Budget: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 10*time.Second, "connected to Asterisk", func() bool { ok, _ := a.Ready(); return ok })

	stamp := time.Now().Format("150405.000000")
	hostile := call.Decision{Match: call.MatchHit, QueuePrio: 7,
		Customer: &call.Customer{ID: "C-1", Name: "Ann ${SHELL(id)}\nx"}}
	for _, tt := range []struct {
		exten   string
		want    call.Outcome
		timeout time.Duration
	}{
		{"answer", call.OutcomeConnected, 10 * time.Second},
		{"busy", call.OutcomeBusy, 10 * time.Second},
		{"noanswer", call.OutcomeNoAnswer, 3 * time.Second},
		{"unalloc", call.OutcomeFailed, 10 * time.Second},
		{"congestion", call.OutcomeFailed, 10 * time.Second},
	} {
		o := callback("cb-real-"+tt.exten+"-"+stamp, hostile)
		o.Endpoint = "Local/" + tt.exten + "@callpop-customers"
		o.Context, o.Extension, o.Timeout = "callpop-callbacks", "s", tt.timeout
		octx, ocancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := a.Originate(octx, o)
		ocancel()
		if err != nil || res.Outcome != tt.want {
			t.Errorf("%s: %+v, %v; want %s", tt.exten, res, err, tt.want)
			continue
		}
		t.Logf("%s: %s %q", tt.exten, res.Outcome, res.Cause)
		if tt.want != call.OutcomeConnected {
			continue
		}
		var got string
		waitFor(t, 10*time.Second, "the callback context ran", func() bool {
			got = globalVar(t, cfg, "CALLPOP_CB_"+o.ID)
			return got != ""
		})
		if want := "7|Ann SHELL(id) x|" + o.CallbackID + "|hit"; got != want {
			t.Errorf("the dialplan read %q, want %q", got, want)
		}
	}
}

// globalVar reads a global variable over ARI ("" when unset).
func globalVar(t *testing.T, cfg Config, name string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, cfg.URL+"/ari/asterisk/variable?variable="+url.QueryEscape(name), nil)
	req.SetBasicAuth(cfg.Username, cfg.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Value string `json:"value"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		return ""
	}
	return v.Value
}
