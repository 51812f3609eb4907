package ari

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
)

const cbNumber = "+442079460018"

// callbackDialplan queues an answered callback to agent 1002, who answers.
const callbackDialplan = "[callbacks]\nexten => cb,1,Set(SEEN=${QUEUE_PRIO})\n same => n,Queue(support)\n"

func callbackSim(t *testing.T) *arisim.Server {
	return newSim(t, arisim.Options{Dialplan: callbackDialplan, RingTime: 50 * time.Millisecond,
		Queues: map[string]arisim.Queue{"support": {Agents: []string{"PJSIP/1002"}, Answer: 0,
			RingFor: 50 * time.Millisecond, TalkFor: time.Minute}}})
}

// callback is an originate of number as callbacks would ask for it.
func callback(id string, d call.Decision) call.Originate {
	return call.Originate{ID: id, CallbackID: "req-" + id, Number: cbNumber, Endpoint: "PJSIP/" + cbNumber + "@trunk",
		Context: "callbacks", Extension: "cb", CallerIDName: "Acme Support", CallerIDNumber: "+31201234567",
		Timeout: 30 * time.Second, Call: call.Call{CLI: cbNumber, Channel: call.ChannelCallback, Received: time.Now()},
		Decision: d}
}

func originate(t *testing.T, a *Adapter, o call.Originate) call.OriginateResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := a.Originate(ctx, o)
	if err != nil {
		t.Fatalf("Originate %s: %v", o.ID, err)
	}
	return res
}

// status is the HTTP status of GET path on the simulator.
func status(t *testing.T, sim *arisim.Server, path string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, sim.URL()+"/ari"+path, nil)
	req.SetBasicAuth(testUser, testPass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// An answered callback: every variable of the decision is on the channel
// at creation, QUEUE_PRIO right; the call is reported enriched as a
// callback, and the agent leg Queue() rings reaches the sink ringing and
// answered for the callback's call id, as an incoming call's would.
func TestOriginateConnected(t *testing.T) {
	sim := callbackSim(t)
	h := start(t, sim, &fixedDecider{}, testBudget, nil)
	sim.ScriptOutcomes(cbNumber, arisim.Outcome{Answer: true, Watched: true})
	d := call.Decision{Match: call.MatchHit, E164: cbNumber, Source: call.SourceCLI, Priority: 5, QueuePrio: 7, Queue: "support",
		Customer: &call.Customer{ID: "C-42", Name: "Jane Doe", Tier: "gold"}, CallerName: "Jane Doe (gold)",
		InfoURL: "https://crm.example/c/42", Extra: map[string]string{"segment": "smb"}}
	before := counter(testM.originate.WithLabelValues("connected"))
	res := originate(t, h.a, callback("cb-1", d))
	if res.Outcome != call.OutcomeConnected || res.Channel != "cb-1" {
		t.Fatalf("result %+v", res)
	}
	if got := counter(testM.originate.WithLabelValues("connected")) - before; got != 1 {
		t.Errorf("originate_total{connected} grew by %v", got)
	}
	o := sim.Originates()
	if len(o) != 1 {
		t.Fatalf("originates %+v", o)
	}
	r := o[0]
	if r.ID != "cb-1" || r.Endpoint != "PJSIP/"+cbNumber+"@trunk" || r.Context != "callbacks" || r.Extension != "cb" ||
		r.Priority != 1 || r.Timeout != 30 || r.CallerID != `"Acme Support" <+31201234567>` {
		t.Errorf("request %+v", r)
	}
	want := map[string]string{
		"CALLPOP_MATCH": "hit", "CALLPOP_E164": cbNumber, "CALLPOP_SOURCE": "cli", "CALLPOP_CUSTOMER_ID": "C-42",
		"CALLPOP_NAME": "Jane Doe", "CALLPOP_TIER": "gold", "CALLPOP_PRIORITY": "5", "CALLPOP_QUEUE": "support",
		"CALLPOP_SEGMENT": "smb", "QUEUE_PRIO": "7", "__CALLPOP_CALL_ID": "cb-1", "CALLPOP_CALLBACK_ID": "req-cb-1",
		"CALLERID(name)": "Jane Doe (gold)", "CALLERID(num)": cbNumber, "CALLPOP_INFO_URL": "https://crm.example/c/42",
	}
	for k, v := range want {
		if r.Variables[k] != v {
			t.Errorf("variable %s = %q, want %q", k, r.Variables[k], v)
		}
	}
	// Set at creation: readable on the channel, and the dialplan saw it.
	for name, v := range map[string]string{"QUEUE_PRIO": "7", "SEEN": "7", "CALLPOP_CALL_ID": "cb-1", "CALLPOP_CALLBACK_ID": "req-cb-1", "CALLERID(num)": cbNumber} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := h.a.rest.getVar(ctx, "cb-1", name)
		cancel()
		if err != nil || got != v {
			t.Errorf("GET %s = %q, %v; want %q", name, got, err, v)
		}
	}
	waitFor(t, 10*time.Second, "agent leg answered", func() bool {
		_, legs, _ := h.sink.snapshot()
		return len(legs) >= 2
	})
	enriched, legs, _ := h.sink.snapshot()
	if len(enriched) != 1 || enriched[0].CallID != "cb-1" || enriched[0].Call.ID != "cb-1" || enriched[0].Call.Channel != call.ChannelCallback ||
		enriched[0].Call.PBX != "asterisk" || enriched[0].Decision.QueuePrio != 7 || enriched[0].Decision.CallID != "cb-1" {
		t.Errorf("enriched %+v", enriched)
	}
	if legs[0].State != call.LegRinging || legs[1].State != call.LegAnswered {
		t.Errorf("legs %+v", legs)
	}
	for _, l := range legs {
		if l.CallID != "cb-1" || l.CallerChannel != "cb-1" || !strings.HasPrefix(l.Endpoint, "PJSIP/1002-") {
			t.Errorf("leg %+v", l)
		}
	}
	sim.Hangup("cb-1")
	waitFor(t, 10*time.Second, "call ended", func() bool {
		_, _, ended := h.sink.snapshot()
		return len(ended) == 1 && ended[0].CallID == "cb-1"
	})
}

// Busy (17), no answer (19) and a failure at once (1 unallocated) are
// told by the hang-up cause.
func TestOriginateNotAnswered(t *testing.T) {
	sim := callbackSim(t)
	h := start(t, sim, &fixedDecider{}, testBudget, nil)
	f := arisim.Failed(1)
	f.Watched = true
	sim.ScriptOutcomes(cbNumber, arisim.Outcome{Cause: 17, Watched: true}, arisim.Outcome{Cause: 19, Watched: true}, f,
		arisim.Outcome{Cause: 21, Watched: true}, arisim.Outcome{Cause: 34, Watched: true})
	for i, want := range []call.OriginateResult{
		{Outcome: call.OutcomeBusy, Cause: "17 User busy"},
		{Outcome: call.OutcomeNoAnswer, Cause: "19 User alerting no answer"},
		{Outcome: call.OutcomeFailed, Cause: "1 Unallocated (unassigned) number"},
		{Outcome: call.OutcomeBusy, Cause: "21 Call Rejected"},
		{Outcome: call.OutcomeFailed, Cause: "34 Circuit/channel congestion"},
	} {
		id := "cb-n" + string(rune('a'+i))
		res := originate(t, h.a, callback(id, call.Decision{Match: call.MatchMiss}))
		want.Channel = id
		if res != want {
			t.Errorf("attempt %d: %+v, want %+v", i, res, want)
		}
	}
	waitFor(t, 10*time.Second, "every attempt ended", func() bool {
		_, _, ended := h.sink.snapshot()
		return len(ended) == 5
	})
	// Forgotten at their ChannelDestroyed (the end came with the hang-up request).
	waitFor(t, 10*time.Second, "every attempt forgotten", func() bool { return h.a.Following() == 0 })
}

// Through a Local channel, Asterisk 22.10.1 ends a busy originate with
// Dial BUSY and ChannelDestroyed cause 0: the Dial status decides; a
// cause, when there is one, wins over it.
func TestOriginateBusyByDialStatus(t *testing.T) {
	sim := callbackSim(t)
	h := start(t, sim, &fixedDecider{}, testBudget, nil)
	sim.ScriptOutcomes(cbNumber,
		arisim.Outcome{Cause: 17, Watched: true, LocalCause: true},
		arisim.Outcome{Cause: 34, Watched: true, LocalCause: true},
		arisim.Outcome{Cause: 1, Watched: true, DialStatus: "NOANSWER"}) // a cause wins over the coarser status
	for i, want := range []call.OriginateResult{
		{Outcome: call.OutcomeBusy, Cause: "BUSY (0 Unknown)"},
		{Outcome: call.OutcomeFailed, Cause: "CONGESTION (0 Unknown)"},
		{Outcome: call.OutcomeFailed, Cause: "1 Unallocated (unassigned) number"},
	} {
		id := "cb-l" + string(rune('a'+i))
		res := originate(t, h.a, callback(id, call.Decision{Match: call.MatchMiss}))
		want.Channel = id
		if res != want {
			t.Errorf("attempt %d: %+v, want %+v", i, res, want)
		}
	}
}

// ctx ends while the customer's phone still rings: the channel is hung up
// (nothing is left ringing) and the outcome is no_answer.
func TestOriginateTimeoutHangsUp(t *testing.T) {
	sim := callbackSim(t)
	h := start(t, sim, &fixedDecider{}, testBudget, nil)
	sim.ScriptOutcomes(cbNumber, arisim.Outcome{}) // rings until Asterisk's timeout (30 s)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := h.a.Originate(ctx, callback("cb-t", call.Decision{Match: call.MatchMiss}))
	if err != nil || res.Outcome != call.OutcomeNoAnswer || res.Cause != "timeout" {
		t.Fatalf("result %+v, %v", res, err)
	}
	if got := status(t, sim, "/channels/cb-t"); got != http.StatusNotFound {
		t.Errorf("the channel is still there after Originate returned: GET %d", got)
	}
	waitFor(t, 10*time.Second, "call ended", func() bool {
		_, _, ended := h.sink.snapshot()
		return len(ended) == 1
	})
}

// A channel that ends before the subscription reaches Asterisk (422 Event
// source does not exist): its cause is lost with it, the outcome is
// no_answer (a retry stays possible), and the call is ended for the popper.
func TestOriginateEndedBeforeSubscription(t *testing.T) {
	sim := callbackSim(t)
	h := start(t, sim, &fixedDecider{}, testBudget, nil)
	sim.ScriptOutcomes(cbNumber, arisim.Failed(17))
	release := sim.HoldSubscriptions()
	defer release()
	done := make(chan call.OriginateResult, 1)
	go func() { done <- originate(t, h.a, callback("cb-r", call.Decision{Match: call.MatchMiss})) }()
	waitFor(t, 10*time.Second, "subscription held, channel gone", func() bool {
		return sim.HeldSubscriptions() == 1 && len(sim.Originates()) == 1 && status(t, sim, "/channels/cb-r") == http.StatusNotFound
	})
	release()
	select {
	case res := <-done:
		if res.Outcome != call.OutcomeNoAnswer || !strings.HasPrefix(res.Cause, "unknown") || res.Channel != "cb-r" {
			t.Errorf("result %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Originate did not return")
	}
	_, _, ended := h.sink.snapshot()
	if len(ended) != 1 || ended[0].CallID != "cb-r" {
		t.Errorf("ended %+v", ended)
	}
	if n := h.a.Following(); n != 0 {
		t.Errorf("%d calls still followed", n)
	}
}

// What ARI or the dialplan cannot take safely is refused before any
// request; a request Asterisk refuses (409: the channel id is in use) is
// an error, with no result, counted as such.
func TestOriginateRefused(t *testing.T) {
	sim := callbackSim(t)
	h := start(t, sim, &fixedDecider{}, testBudget, nil)
	for name, edit := range map[string]func(*call.Originate){
		"empty id":          func(o *call.Originate) { o.ID = "" },
		"id with a slash":   func(o *call.Originate) { o.ID = "a/b" },
		"newline endpoint":  func(o *call.Originate) { o.Endpoint = "PJSIP/+4420\n@trunk" },
		"no tech":           func(o *call.Originate) { o.Endpoint = "+442079460018" },
		"expansion":         func(o *call.Originate) { o.Endpoint = "PJSIP/${SHELL(id)}@trunk" },
		"comma endpoint":    func(o *call.Originate) { o.Endpoint = "PJSIP/1,2@trunk" },
		"context with ${":   func(o *call.Originate) { o.Context = "cb${X}" },
		"extension space":   func(o *call.Originate) { o.Extension = "c b" },
		"control character": func(o *call.Originate) { o.Context = "cb\x00" },
		"long context":      func(o *call.Originate) { o.Context = strings.Repeat("c", 80) },
		"negative timeout":  func(o *call.Originate) { o.Timeout = -time.Second },
	} {
		o := callback("cb-x", call.Decision{Match: call.MatchMiss})
		edit(&o)
		if res, err := h.a.Originate(context.Background(), o); err == nil {
			t.Errorf("%s: accepted: %+v", name, res)
		}
	}
	if o := sim.Originates(); len(o) != 0 {
		t.Fatalf("refused originates reached Asterisk: %+v", o)
	}
	taken := sim.NewDialplanChannel(arisim.CallSpec{ID: "cb-dup", CLI: cbNumber})
	before := counter(testM.originate.WithLabelValues("error"))
	_, err := h.a.Originate(context.Background(), callback(taken, call.Decision{Match: call.MatchMiss}))
	if err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("an id in use: %v", err)
	}
	if got := counter(testM.originate.WithLabelValues("error")) - before; got != 1 {
		t.Errorf("originate_total{error} grew by %v", got)
	}
	if enriched, _, _ := h.sink.snapshot(); len(enriched) != 0 {
		t.Errorf("a refused originate was reported: %+v", enriched)
	}
}

// A CRM's hostile values reach the callback's channel exactly as they
// reach an incoming call's: the same names, the same sanitised values.
func TestOriginateSanitisedAsIncoming(t *testing.T) {
	sim := callbackSim(t)
	hostile := "Robert ${SHELL(id)}\n\"; Hangup()`\\" + strings.Repeat("x", 10<<10)
	d := call.Decision{Match: call.MatchHit, E164: cbNumber, Source: call.SourceCLI, QueuePrio: 3,
		Customer: &call.Customer{ID: "C-1${X}", Name: hostile, Tier: "gold\r\nX-Evil: 1"},
		Queue:    "sup,port;x", Skill: hostile, Language: "en${Y}", Flags: []string{"vip", "${Z}", "a b"},
		PopURL: "https://crm.example/p?x=${SHELL(id)}&y=\n", CallerName: hostile, InfoURL: "https://crm.example/\"><script>",
		Extra: map[string]string{"note": hostile, "bad name!": "v"},
	}
	h := start(t, sim, &fixedDecider{d: d}, testBudget, nil)
	in := sim.OfferCall(arisim.CallSpec{CLI: cbNumber})
	waitSettled(t, sim, []string{in}, 10*time.Second)
	incoming := sim.Vars(in)
	if len(incoming) < 10 {
		t.Fatalf("incoming call's variables %v", incoming)
	}

	sim.ScriptOutcomes(cbNumber, arisim.Outcome{Cause: 17, Watched: true})
	originate(t, h.a, callback("cb-h", d))
	got := sim.Originates()[0].Variables
	for k, v := range incoming {
		if k == "__CALLPOP_CALL_ID" {
			if got[k] != "cb-h" {
				t.Errorf("%s = %q", k, got[k])
			}
			continue
		}
		if got[k] != v {
			t.Errorf("%s: callback %q, incoming %q", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := incoming[k]; !ok && k != "CALLPOP_CALLBACK_ID" && k != "CALLERID(num)" {
			t.Errorf("callback-only variable %s=%q", k, v)
		}
		if strings.ContainsAny(v, "${}\\\"`\n\r") || utf8.RuneCountInString(v) > call.MaxURLLen {
			t.Errorf("%s = %q is not sanitised", k, v)
		}
	}
}

// A customer who answers before the subscription reaches Asterisk: the
// ChannelStateChange went to nobody; the read after the subscription
// tells the channel is up.
func TestOriginateAnsweredBeforeSubscription(t *testing.T) {
	sim := callbackSim(t)
	h := start(t, sim, &fixedDecider{}, testBudget, nil)
	sim.ScriptOutcomes(cbNumber, arisim.Outcome{Answer: true, Ring: -1})
	release := sim.HoldSubscriptions()
	defer release()
	done := make(chan call.OriginateResult, 1)
	go func() { done <- originate(t, h.a, callback("cb-u", call.Decision{Match: call.MatchMiss})) }()
	waitFor(t, 10*time.Second, "subscription held, channel answered", func() bool {
		if sim.HeldSubscriptions() != 1 {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		body, err := h.a.rest.doWith(h.a.rest.ctl, ctx, http.MethodGet, "/channels/cb-u", "", nil, true)
		return err == nil && strings.Contains(string(body), `"state":"Up"`)
	})
	release()
	select {
	case res := <-done:
		if res.Outcome != call.OutcomeConnected {
			t.Errorf("result %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Originate did not return")
	}
	sim.Hangup("cb-u")
}

// The simulator as callpop demo runs it (no dialplan, no script): the
// customer answers after a short ring and the callback queues to the demo
// agents, one of whom gets the pop.
func TestOriginateDemoDefaults(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	h := start(t, sim, &fixedDecider{}, testBudget, nil)
	res := originate(t, h.a, callback("cb-demo", call.Decision{Match: call.MatchHit, QueuePrio: 2}))
	if res.Outcome != call.OutcomeConnected {
		t.Fatalf("result %+v", res)
	}
	waitFor(t, 10*time.Second, "an agent answered", func() bool {
		_, legs, _ := h.sink.snapshot()
		for _, l := range legs {
			if l.State == call.LegAnswered && l.CallID == "cb-demo" && strings.HasPrefix(l.Endpoint, "PJSIP/100") {
				return true
			}
		}
		return false
	})
	sim.Hangup("cb-demo")
}

// A subscription Asterisk refuses (500) leaves the outcome unseeable: the
// channel is hung up at once, not left ringing unfollowed.
func TestOriginateSubscriptionFails(t *testing.T) {
	sim := callbackSim(t)
	h := start(t, sim, &fixedDecider{}, testBudget, nil)
	sim.ScriptOutcomes(cbNumber, arisim.Outcome{}) // would ring for 30 s
	sim.FailNext("subscribe", 1)
	res := originate(t, h.a, callback("cb-s", call.Decision{Match: call.MatchMiss}))
	if res.Outcome != call.OutcomeNoAnswer || !strings.HasPrefix(res.Cause, "not followed") {
		t.Errorf("result %+v", res)
	}
	if got := status(t, sim, "/channels/cb-s"); got != http.StatusNotFound {
		t.Errorf("the channel is still there: GET %d", got)
	}
	if n := h.a.Following(); n != 0 {
		t.Errorf("%d calls still followed", n)
	}
}

// callerId is `"name" <number>`, the name sanitised without its quotes
// and angle brackets, the number digits + * # only.
func TestOriginCallerID(t *testing.T) {
	for _, c := range []struct{ name, number, want string }{
		{"Acme Support", "+31201234567", `"Acme Support" <+31201234567>`},
		{"", "+31 (0)20-123 4567", "+310201234567"},
		{`Evil" <+1999> ${SHELL(id)}` + "\n", "+3120\n;x", `"Evil +1999 SHELL(id)" <+3120>`},
		{"Name only", "", `"Name only" <>`},
		{"", "", ""},
	} {
		if got := originCallerID(c.name, c.number); got != c.want {
			t.Errorf("originCallerID(%q, %q) = %q, want %q", c.name, c.number, got, c.want)
		}
	}
}

// Dial strings an admin configures are accepted as they are.
func TestCheckOriginateAccepts(t *testing.T) {
	for _, ep := range []string{"PJSIP/+442079460018@trunk", "PJSIP/trunk/sip:+442079460018@192.0.2.1;transport=tcp",
		"SIP/trunk/+442079460018", "DAHDI/g1/0044207946", "IAX2/provider/442079460018", "Local/+4420@outbound"} {
		o := callback("cb-ok", call.Decision{})
		o.Endpoint = ep
		if err := checkOriginate(o); err != nil {
			t.Errorf("%s: %v", ep, err)
		}
	}
}
