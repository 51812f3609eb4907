package esl

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/fsvars"
)

// callbackDialplan queues an answered callback (mod_callcenter) as the
// admin's dialplan would.
const callbackDialplan = `<include>
  <context name="callbacks">
    <extension name="cb">
      <condition field="destination_number" expression="^callback$">
        <action application="callcenter" data="support@default"/>
      </condition>
    </extension>
  </context>
</include>`

type originateRig struct {
	sim  *eslsim.Inbound
	a    *Adapter
	sink *recSink
}

// newOriginateRig starts a simulated FreeSWITCH and an inbound-mode adapter
// whose decider answers incoming calls with incoming.
func newOriginateRig(t *testing.T, opts eslsim.Options, incoming call.Decision) originateRig {
	t.Helper()
	opts.Password = testPassword
	if opts.Dialplan == "" {
		opts.Dialplan = callbackDialplan
	}
	if opts.RingTime == 0 {
		opts.RingTime = 20 * time.Millisecond
	}
	sim, err := eslsim.NewInbound(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	sink := &recSink{}
	a := startAdapter(t, inboundConfig(sim.Addr()), adapters.Deps{Sink: sink, Budget: roomyBudget,
		Decider: call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision { d := incoming; d.CallID = c.ID; return d })})
	waitFor(t, 10*time.Second, "event connection", func() bool { return a.connected.Load() })
	return originateRig{sim, a, sink}
}

func testOriginate(number string) call.Originate {
	id := eslsim.NewUUID()
	return call.Originate{
		ID: id, CallbackID: "cb-" + id[:8], Number: number,
		Endpoint: "sofia/gateway/trunk/" + number, Extension: "callback", Context: "callbacks",
		CallerIDName: "Support Line", CallerIDNumber: "+492011234567", Timeout: 20 * time.Second,
		Call: call.Call{ID: id, Channel: call.ChannelCallback, CLI: number, Received: time.Now()},
		Decision: call.Decision{Match: call.MatchHit, E164: number, Source: "cli", BaseScore: 1234, Priority: 7,
			Customer: &call.Customer{ID: "C-42", Name: "Erika Mustermann", Tier: "gold"}, Queue: "support",
			PopURL: "https://crm.example/c/42?a=1&b=2", InfoURL: "https://crm.example/i/42",
			Extra: map[string]string{"segment": "b2b", "note": "call back, please"}},
	}
}

func originateCount(outcome string) float64 {
	return testutil.ToFloat64(testM.originate.WithLabelValues(outcome))
}

// An answered callback: every variable on the originated channel as
// FreeSWITCH parsed them (the incoming-call path's values), the call enriched
// for the LegSink as a callback, and the agent legs mod_callcenter rings for
// it reported for its call id; the customer's own leg is no agent leg.
func TestOriginateConnected(t *testing.T) {
	r := newOriginateRig(t, eslsim.Options{Agents: []string{"1001", "1002"},
		AgentRing: eslsim.Ring{Answer: 1, RingFor: 50 * time.Millisecond, TalkFor: 300 * time.Millisecond}}, call.Decision{})
	o := testOriginate("+442079460018")
	before := originateCount("connected")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := r.a.Originate(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != call.OutcomeConnected || res.Channel != o.ID {
		t.Fatalf("result %+v", res)
	}
	reqs := r.sim.Originates()
	if len(reqs) != 1 {
		t.Fatalf("%d originates", len(reqs))
	}
	req := reqs[0]
	if req.Endpoint != o.Endpoint || req.Number != o.Number || req.Extension != "callback" || req.Dialplan != "XML" ||
		req.Context != "callbacks" || req.UUID != o.ID || len(req.Args) != 4 || req.Enterprise || req.Endpoints != 1 {
		t.Errorf("request %+v", req)
	}
	want := map[string]string{
		"origination_uuid": o.ID, "callpop_call_id": o.ID, "callpop_callback_id": o.CallbackID,
		"callpop_match": "hit", "callpop_e164": o.Number, "callpop_customer_id": "C-42", "callpop_name": "Erika Mustermann",
		"callpop_tier": "gold", "callpop_priority": "7", "callpop_queue": "support",
		"callpop_pop_url": "https://crm.example/c/42?a=1&b=2", "callpop_info_url": "https://crm.example/i/42",
		"callpop_segment": "b2b", "callpop_note": "call back please", "cc_base_score": "1234",
		"export_vars": "callpop_call_id,sip_h_Call-Info", "cc_export_vars": "callpop_call_id,sip_h_Call-Info",
		"origination_caller_id_name": "Support Line", "origination_caller_id_number": "+492011234567",
		"originate_timeout": "20",
	}
	for n, v := range want {
		if got := req.Var(n); got != v {
			t.Errorf("parsed %s = %q, want %q", n, got, v)
		}
	}
	// the same list the adapter meant to send, nothing more
	sent := originateVars(o)
	if len(req.Vars) != len(sent) {
		t.Errorf("%d variables parsed, %d sent", len(req.Vars), len(sent))
	}
	for i := range sent {
		if i < len(req.Vars) && (req.Vars[i].Name != sent[i].Name || req.Vars[i].Value != sent[i].Value) {
			t.Errorf("variable %d: parsed %v, sent %v", i, req.Vars[i], sent[i])
		}
	}
	vars := r.sim.Vars(o.ID)
	for n, v := range want {
		if n != "origination_uuid" && vars[n] != v {
			t.Errorf("channel %s = %q, want %q", n, vars[n], v)
		}
	}
	if got := vars["sip_h_Call-Info"]; got != "<https://crm.example/i/42>;purpose=info" {
		t.Errorf("Call-Info after the answer: %q", got)
	}
	if originateCount("connected")-before != 1 {
		t.Error("callpop_esl_originate_total{outcome=connected} not counted")
	}

	waitFor(t, 10*time.Second, "agent legs and the end of the call", func() bool {
		r.sink.mu.Lock()
		defer r.sink.mu.Unlock()
		return len(r.sink.ended) == 1 && len(r.sink.legs) >= 5
	})
	r.sink.mu.Lock()
	defer r.sink.mu.Unlock()
	if len(r.sink.enriched) != 1 {
		t.Fatalf("enriched %d", len(r.sink.enriched))
	}
	e := r.sink.enriched[0]
	if e.CallID != o.ID || e.Call.ID != o.ID || e.Call.Channel != call.ChannelCallback || e.PBX != "freeswitch" || e.Decision.CallID != o.ID {
		t.Errorf("enriched %+v", e)
	}
	count := map[string]int{}
	for _, l := range r.sink.legs {
		count[l.Endpoint+" "+string(l.State)]++
		if l.CallID != o.ID || l.CallerChannel != o.ID || l.Leg == o.ID {
			t.Errorf("leg %+v", l)
		}
	}
	for _, k := range []string{"user/1001 ringing", "user/1002 ringing", "user/1002 answered", "user/1001 stopped", "user/1002 ended"} {
		if count[k] != 1 {
			t.Errorf("%s: %d (all %v)", k, count[k], count)
		}
	}
	if r.sink.ended[0].CallID != o.ID {
		t.Errorf("ended %+v", r.sink.ended[0])
	}
}

// Busy, rejected, rung out, a wrong number: the outcome and FreeSWITCH's
// cause, the channel ended with it, the call ended for the LegSink.
func TestOriginateNotConnected(t *testing.T) {
	r := newOriginateRig(t, eslsim.Options{}, call.Decision{})
	number := "+442079460019"
	r.sim.ScriptDial(number, eslsim.Dial{Cause: "USER_BUSY"}, eslsim.Dial{Cause: "CALL_REJECTED"},
		eslsim.Dial{Cause: "NO_ANSWER"}, eslsim.Dial{Cause: "UNALLOCATED_NUMBER"}, eslsim.Dial{Cause: "RECOVERY_ON_TIMER_EXPIRE"})
	for i, w := range []call.OriginateResult{
		{Outcome: call.OutcomeBusy, Cause: "USER_BUSY"}, {Outcome: call.OutcomeBusy, Cause: "CALL_REJECTED"},
		{Outcome: call.OutcomeNoAnswer, Cause: "NO_ANSWER"}, {Outcome: call.OutcomeFailed, Cause: "UNALLOCATED_NUMBER"},
		{Outcome: call.OutcomeNoAnswer, Cause: "RECOVERY_ON_TIMER_EXPIRE"},
	} {
		o := testOriginate(number)
		o.Timeout = time.Second // NO_ANSWER rings until originate_timeout
		before := originateCount(string(w.Outcome))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err := r.a.Originate(ctx, o)
		cancel()
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if res.Outcome != w.Outcome || res.Cause != w.Cause {
			t.Errorf("%d: %+v, want %+v", i, res, w)
		}
		if originateCount(string(w.Outcome))-before != 1 {
			t.Errorf("%d: outcome %s not counted", i, w.Outcome)
		}
		ch, ok := r.sim.Channel(o.ID)
		if !ok || !ch.Dead {
			t.Errorf("%d: channel %v %+v", i, ok, ch)
		}
		waitFor(t, 5*time.Second, "call ended", func() bool {
			r.sink.mu.Lock()
			defer r.sink.mu.Unlock()
			return len(r.sink.ended) == i+1 && r.sink.ended[i].CallID == o.ID
		})
	}
	if got := r.sim.Originates()[2].Timeout; got != time.Second {
		t.Errorf("originate_timeout parsed as %v", got)
	}
}

// ctx ending while the customer's phone rings: uuid_kill with
// ORIGINATOR_CANCEL, no_answer.
func TestOriginateContextEndKills(t *testing.T) {
	r := newOriginateRig(t, eslsim.Options{}, call.Decision{})
	o := testOriginate("+442079460020")
	r.sim.ScriptDial(o.Number, eslsim.Dial{RingFor: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, 10*time.Second, "ringing", func() bool { _, ok := r.sim.Channel(o.ID); return ok })
		cancel()
	}()
	res, err := r.a.Originate(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != call.OutcomeNoAnswer || res.Cause != "ORIGINATOR_CANCEL" {
		t.Errorf("result %+v", res)
	}
	waitFor(t, 10*time.Second, "the channel killed", func() bool {
		ch, _ := r.sim.Channel(o.ID)
		reqs := r.sim.Originates()
		return ch.Dead && len(reqs) == 1 && reqs[0].Result == "-ERR ORIGINATOR_CANCEL\n"
	})
}

// hostileDecision carries what a CRM or a web form could put in a callback.
func hostileDecision(number string) call.Decision {
	big := strings.Repeat("A,b }c ", 1500) // ~10 KB
	return call.Decision{Match: call.MatchHit, E164: number, Source: "cli", BaseScore: 5,
		Customer: &call.Customer{ID: "id:_:sofia/gateway/evil/0900", Name: "${system(id)}", Tier: "a}b,c'd\ne\r\nf"},
		Queue:    "q' ,x=y}{z", Skill: big, Language: "^^;de", CallerName: "Bob ${x} 'O,Brien'\nX",
		PopURL: "https://crm.example/p?x=1,2&y='3' ${z}", InfoURL: "https://crm.example/i?a=b,c",
		Extra: map[string]string{"evil": "ARRAY::a|b", "t": "a\\sb\\,c :_: d", "u": "x:_:_:y"}}
}

// Hostile values reach the command only in the escaped form, split nothing
// (no enterprise originate, one endpoint, four arguments) and come out on
// the channel exactly as the incoming-call path stores them.
func TestOriginateHostileValues(t *testing.T) {
	number := "+442079460021"
	d := hostileDecision(number)
	r := newOriginateRig(t, eslsim.Options{}, d)

	// the incoming-call path (uuid_setvar_multi) with the same decision
	in := r.sim.OfferCall(eslsim.Caller{Number: "0201234567"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.sim.WaitReleased(ctx, in); err != nil {
		t.Fatal(err)
	}
	incoming := r.sim.Vars(in)

	o := testOriginate(number)
	o.Decision = d
	o.CallerIDName = "Support ${x}, 'quoted'\n"
	res, err := r.a.Originate(ctx, o)
	if err != nil || res.Outcome != call.OutcomeConnected {
		t.Fatalf("%+v %v", res, err)
	}
	req := r.sim.Originates()[0]
	if req.Enterprise || req.Endpoints != 1 || len(req.Args) != 4 || req.Endpoint != o.Endpoint || req.Context != "callbacks" {
		t.Fatalf("the command was split: %+v", req)
	}
	if strings.ContainsAny(req.Arg, "\n\r$\"") || strings.Contains(req.Arg, ":_:") || strings.Count(req.Arg, "'") != strings.Count(req.Arg, `\'`) {
		t.Errorf("raw command holds an unescaped character: %q", req.Arg)
	}
	compared := 0
	for _, v := range req.Vars {
		if strings.ContainsAny(v.Value, "${}\n\r") || strings.HasPrefix(v.Value, "^") || strings.HasPrefix(v.Value, "ARRAY::") {
			t.Errorf("%s = %q", v.Name, v.Value)
		}
		if !strings.HasPrefix(v.Name, "callpop_") && v.Name != "cc_base_score" && v.Name != "effective_caller_id_name" {
			continue
		}
		if v.Name == "callpop_call_id" || v.Name == "callpop_callback_id" {
			continue
		}
		compared++
		if want, ok := incoming[v.Name]; !ok || want != v.Value {
			t.Errorf("%s: originate %q, incoming %q", v.Name, v.Value, want)
		}
	}
	if compared < 12 {
		t.Errorf("only %d variables compared", compared)
	}
	for n, v := range map[string]string{"callpop_name": "system(id)", "callpop_customer_id": "id:_:sofia/gateway/evil/0900",
		"callpop_tier": "ab cd e f", "callpop_u": "x:_:_:y", "origination_caller_id_name": "Support x quoted"} {
		if got := req.Var(n); got != v {
			t.Errorf("%s = %q, want %q", n, got, v)
		}
	}
	if got := len(req.Var("callpop_skill")); got == 0 || got > 4*call.MaxValueLen {
		t.Errorf("10 KB value: %d bytes", got)
	}
}

// The escaping round trip, over the parser modelled on FreeSWITCH's: any
// value in its safe form comes out of originate's two splits as it went in.
func TestBraceValueRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("ab :_,;='\"\\{}$^|&<>[]%\n\t\r~!?#*@/+-.éß€\x00")
	values := []string{"", " ", "a b", ",", ":_:", "::__::", ":_:_:", "a\\sb", "x='y'", "^^:a:b", "ARRAY::x|y", "${x}", "}", "{", "a=b=c"}
	for i := 0; i < 2000; i++ {
		n := rng.IntN(40)
		var b strings.Builder
		for j := 0; j < n; j++ {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		values = append(values, b.String())
	}
	for _, raw := range values {
		for _, v := range []string{fsvars.Text(raw), fsvars.URL("https://x.example/" + raw)} {
			o := call.Originate{ID: "id-1", Endpoint: "sofia/gateway/t/+1", Extension: "cb", Context: "callbacks",
				Decision: call.Decision{Queue: "q", Extra: map[string]string{"v": v}}}
			cmd, err := originateCommand(o)
			if err != nil {
				t.Fatal(err)
			}
			arg := strings.TrimPrefix(cmd, "originate ")
			if strings.Contains(arg, ":_:") || strings.ContainsAny(arg, "\n\r") {
				t.Fatalf("%q: command %q", v, cmd)
			}
			argv := eslsim.SeparateString(arg, ' ', 10)
			if len(argv) != 4 || argv[1] != "cb" || argv[2] != "XML" || argv[3] != "callbacks" {
				t.Fatalf("%q: arguments %q", v, argv)
			}
			vars, rest, ok := eslsim.CreateBrackets(argv[0], '{', '}', ',')
			if !ok || rest != "sofia/gateway/t/+1" {
				t.Fatalf("%q: brackets ok=%v rest %q", v, ok, rest)
			}
			got := map[string]string{}
			for _, x := range vars {
				got[x.Name] = x.Value
			}
			wantV := fsvars.Text(v)
			if strings.HasPrefix(v, "https://") {
				wantV = v
			}
			if wantV != "" && !strings.HasPrefix(v, "https://") && got["callpop_v"] != wantV {
				t.Errorf("%q: came out %q", wantV, got["callpop_v"])
			}
			if got["callpop_queue"] != "q" || got["origination_uuid"] != "id-1" {
				t.Errorf("%q: neighbours %v", v, got)
			}
		}
	}
}

// What originate cannot carry is refused before anything is sent.
func TestOriginateRefusesBadRequest(t *testing.T) {
	r := newOriginateRig(t, eslsim.Options{}, call.Decision{})
	for _, mod := range []func(*call.Originate){
		func(o *call.Originate) { o.Endpoint = "sofia/gateway/t/1 &park()" },
		func(o *call.Originate) { o.Endpoint = "sofia/gateway/t/1,user/1000" },
		func(o *call.Originate) { o.Endpoint = "sofia/gateway/t/1|user/1000" },
		func(o *call.Originate) { o.Endpoint = "sofia/gateway/t/1:_:user/1000" },
		func(o *call.Originate) { o.Endpoint = "{x=y}sofia/gateway/t/1" },
		func(o *call.Originate) { o.Endpoint = "sofia/gateway/t/${x}" },
		func(o *call.Originate) { o.Endpoint = "" },
		func(o *call.Originate) { o.Extension = "cb XML other" },
		func(o *call.Originate) { o.Extension = "&park()" },
		func(o *call.Originate) { o.Extension = "undef" },
		func(o *call.Originate) { o.Context = "ctx\nbgapi x" },
		func(o *call.Originate) { o.Context = "" },
		func(o *call.Originate) { o.ID = "a b" },
		func(o *call.Originate) { o.ID = "" },
	} {
		o := testOriginate("+442079460022")
		mod(&o)
		before := originateCount("error")
		_, err := r.a.Originate(context.Background(), o)
		if err == nil {
			t.Errorf("%+v accepted", o)
		}
		if originateCount("error")-before != 1 {
			t.Error("error not counted")
		}
	}
	if n := len(r.sim.Originates()); n != 0 {
		t.Errorf("%d originates sent", n)
	}
	r.sink.mu.Lock()
	defer r.sink.mu.Unlock()
	if len(r.sink.enriched) != 0 {
		t.Errorf("refused attempts enriched: %d", len(r.sink.enriched))
	}
}

// Outbound mode without the event connection cannot originate.
func TestOriginateNeedsEventConnection(t *testing.T) {
	a := startAdapter(t, outboundConfig(), adapters.Deps{Decider: call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision { return call.Decision{} })})
	if _, err := a.Originate(context.Background(), testOriginate("+442079460023")); !errors.Is(err, ErrNoEvents) {
		t.Errorf("err %v", err)
	}
}

// The event connection lost while the phone rings: the job's result, sent
// to every subscriber, comes in on the new connection.
func TestOriginateAcrossReconnect(t *testing.T) {
	r := newOriginateRig(t, eslsim.Options{}, call.Decision{})
	o := testOriginate("+442079460024")
	r.sim.ScriptDial(o.Number, eslsim.Dial{RingFor: 700 * time.Millisecond})
	type out struct {
		res call.OriginateResult
		err error
	}
	done := make(chan out, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, err := r.a.Originate(ctx, o)
		done <- out{res, err}
	}()
	waitFor(t, 10*time.Second, "ringing", func() bool { _, ok := r.sim.Channel(o.ID); return ok })
	r.sim.DropConnections()
	got := <-done
	if got.err != nil || got.res.Outcome != call.OutcomeConnected || got.res.Channel != o.ID {
		t.Fatalf("%+v %v", got.res, got.err)
	}
}

// FreeSWITCH's causes, sorted into outcomes; replies that are no cause are errors.
func TestJobOutcome(t *testing.T) {
	for body, want := range map[string]string{
		"+OK 4d0f\n": "connected ", "-ERR USER_BUSY\n": "busy USER_BUSY", "-ERR NO_USER_RESPONSE\n": "no_answer NO_USER_RESPONSE",
		"-ERR SUBSCRIBER_ABSENT\n": "no_answer SUBSCRIBER_ABSENT", "-ERR NO_ROUTE_DESTINATION\n": "failed NO_ROUTE_DESTINATION",
		"-ERR NORMAL_TEMPORARY_FAILURE\n": "failed NORMAL_TEMPORARY_FAILURE", "-ERR INVALID_NUMBER_FORMAT\n": "failed INVALID_NUMBER_FORMAT",
	} {
		r, err := jobOutcome(body)
		if err != nil || fmt.Sprintf("%s %s", r.Outcome, r.Cause) != want {
			t.Errorf("%q: %+v %v, want %s", body, r, err, want)
		}
	}
	for _, body := range []string{"-ERR originate Command not found!\n", "-USAGE: <call url> …\n", "INVALID COMMAND!", "-ERR permission denied"} {
		if _, err := jobOutcome(body); err == nil {
			t.Errorf("%q: no error", body)
		}
	}
}

// The event connection down while the attempt ends, and back only after:
// the job's result went to nobody. An answered channel is found answered
// (connected); a channel gone with nothing heard of it is no_answer with
// cause OUTCOME_UNKNOWN, and its call ends for the LegSink.
func TestOriginateResultLostInGap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dial  eslsim.Dial
		want  call.Outcome
		cause string
	}{
		{"answered", eslsim.Dial{RingFor: time.Second}, call.OutcomeConnected, ""},
		{"gone", eslsim.Dial{Cause: "USER_BUSY", RingFor: time.Second}, call.OutcomeNoAnswer, OutcomeUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword, Dialplan: callbackDialplan,
				AgentRing: eslsim.Ring{Answer: -1, RingFor: 20 * time.Second}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sim.Close)
			cfg := inboundConfig(sim.Addr())
			sink := &recSink{}
			a := startAdapter(t, cfg, adapters.Deps{Sink: sink, Budget: roomyBudget,
				Decider: call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision { return call.Decision{} })})
			waitFor(t, 10*time.Second, "event connection", func() bool { return a.connected.Load() })
			o := testOriginate("+442079460025")
			sim.ScriptDial(o.Number, tc.dial)
			type out struct {
				res call.OriginateResult
				err error
			}
			done := make(chan out, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				res, err := a.Originate(ctx, o)
				done <- out{res, err}
			}()
			waitFor(t, 10*time.Second, "ringing", func() bool { _, ok := sim.Channel(o.ID); return ok })
			sim.DropConnectionsFor(3 * time.Second) // the ring ends during the cut
			waitFor(t, 10*time.Second, "the originate's end", func() bool {
				r := sim.Originates()
				return len(r) == 1 && r[0].Result != ""
			})
			got := <-done
			if got.err != nil || got.res.Outcome != tc.want || got.res.Cause != tc.cause {
				t.Fatalf("%+v %v", got.res, got.err)
			}
			if tc.want != call.OutcomeConnected {
				sink.mu.Lock()
				defer sink.mu.Unlock()
				if len(sink.ended) != 1 || sink.ended[0].CallID != o.ID {
					t.Errorf("ended %+v", sink.ended)
				}
			}
		})
	}
}

// A dialplan that bridges the callback to agents (ring-all): the agent legs,
// linked by originating_leg_uuid and the exported callpop_call_id, pop for it.
func TestOriginateBridgeAgents(t *testing.T) {
	r := newOriginateRig(t, eslsim.Options{Dialplan: `<include><context name="callbacks">
  <extension name="cb"><condition field="destination_number" expression="^callback$">
    <action application="bridge" data="{leg_timeout=20}user/1001@example,user/1003@example"/>
  </condition></extension>
</context></include>`, AgentRing: eslsim.Ring{Answer: 1, RingFor: 30 * time.Millisecond, TalkFor: 50 * time.Millisecond}}, call.Decision{})
	o := testOriginate("+442079460026")
	res, err := r.a.Originate(context.Background(), o)
	if err != nil || res.Outcome != call.OutcomeConnected {
		t.Fatalf("%+v %v", res, err)
	}
	waitFor(t, 10*time.Second, "agent legs", func() bool {
		r.sink.mu.Lock()
		defer r.sink.mu.Unlock()
		return len(r.sink.ended) == 1 && len(r.sink.legs) == 5
	})
	r.sink.mu.Lock()
	defer r.sink.mu.Unlock()
	count := map[string]int{}
	for _, l := range r.sink.legs {
		if l.CallID != o.ID {
			t.Errorf("leg %+v", l)
		}
		count[l.Endpoint+" "+string(l.State)]++
	}
	for _, k := range []string{"user/1001 ringing", "user/1003 ringing", "user/1003 answered", "user/1001 stopped", "user/1003 ended"} {
		if count[k] != 1 {
			t.Errorf("%s: %d (all %v)", k, count[k], count)
		}
	}
}
