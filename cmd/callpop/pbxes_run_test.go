package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/popper"
)

// counterSum adds up the samples of a counter (or gauge) family whose
// labels include match, from the process's registry (callpop run runs in this process).
func counterSum(t *testing.T, name string, match map[string]string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// twoPBXs is one `callpop run` with an Asterisk (ast-a, the ARI simulator)
// and a FreeSWITCH (fs-b, the ESL simulator) side by side, and an HTTP CRM
// that counts its requests.
type twoPBXs struct {
	base     string
	logs     *syncBuffer
	stop     func() error
	ari      *arisim.Server
	ariAddr  string
	esl      *eslsim.Inbound
	crmCalls atomic.Int64
}

func startTwoPBXs(t *testing.T) *twoPBXs {
	t.Helper()
	tp := &twoPBXs{}
	crmSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.crmCalls.Add(1)
		phone := r.URL.Query().Get("phone")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"C%s","name":"Caller %s","tier":"gold","language":"en"}`, phone[len(phone)-4:], phone[len(phone)-4:])
	}))
	t.Cleanup(crmSrv.Close)
	var err error
	tp.ari, err = arisim.New(arisim.Options{Username: "callpop", Password: "test-ari-secret", App: "callpop-test",
		ChannelVars: []string{"CALLPOP_CALL_ID"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.ari.Close() })
	tp.ariAddr = strings.TrimPrefix(tp.ari.URL(), "http://")
	tp.esl, err = eslsim.NewInbound(eslsim.Options{Password: "test-esl-secret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.esl.Close() })
	// Each entry's password from its own variable.
	t.Setenv("CALLPOP_PBXES_AST_A_PASSWORD", "test-ari-secret")
	t.Setenv("CALLPOP_PBXES_FS_B_PASSWORD", "test-esl-secret")
	t.Setenv("CALLPOP_POPPER_TOKEN_SECRET", popSecret)
	cfg := testConfig + `
call: {budget: 2s}
crm:
  sources:
    - {name: main, kind: http, url: "` + crmSrv.URL + `/customers?phone={e164}", timeout: 1s}
pbxes:
  - name: ast-a
    kind: asterisk
    asterisk: {url: "` + tp.ari.URL() + `", username: callpop, app: callpop-test, reconnect_min: 20ms, reconnect_max: 200ms}
  - name: fs-b
    kind: freeswitch
    freeswitch: {mode: inbound, address: "` + tp.esl.Addr() + `", reconnect_min: 20ms, reconnect_max: 200ms}
`
	tp.base, tp.logs, tp.stop = startRun(t, writeConfig(t, cfg))
	t.Cleanup(func() { _ = tp.stop() })
	return tp
}

// waitPBXes polls /readyz until each PBX named in want reports as want says
// ("ready", or a prefix of the reason) and ready is as asked.
func waitPBXes(t *testing.T, base string, ready bool, want map[string]string) readyJSON {
	t.Helper()
	var st readyJSON
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		st = waitReadyOnce(t, base)
		ok := st.Ready == ready
		for name, w := range want {
			if got, found := st.Pbxes[name]; !found || !strings.HasPrefix(got, w) {
				ok = false
			}
		}
		if ok {
			return st
		}
	}
	t.Fatalf("/readyz never reported ready=%v with %v: last %+v", ready, want, st)
	return st
}

func waitReadyOnce(t *testing.T, base string) readyJSON {
	t.Helper()
	code, body := get(t, base+"/readyz")
	var st readyJSON
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/readyz %d %q: %v", code, body, err)
	}
	if st.Ready != (code == 200) {
		t.Fatalf("/readyz %d with ready=%v", code, st.Ready)
	}
	return st
}

// ariCall offers a Stasis call on the ARI simulator ringing agent and
// waits for callpop to continue it.
func (tp *twoPBXs) ariCall(t *testing.T, spec arisim.CallSpec) string {
	t.Helper()
	id := tp.ari.OfferCall(spec)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, ok := tp.ari.Continued(id); ok {
			return id
		}
	}
	t.Fatalf("ARI call %s not continued:\n%s", id, tp.logs.String())
	return ""
}

// eslCall parks a call on the ESL simulator and waits for its release.
func (tp *twoPBXs) eslCall(t *testing.T, c eslsim.Caller) string {
	t.Helper()
	uuid := tp.esl.OfferCall(c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tp.esl.WaitReleased(ctx, uuid); err != nil {
		t.Fatalf("ESL call %s not released: %v\n%s", uuid, err, tp.logs.String())
	}
	return uuid
}

// nextPop reads the next pop of a stream, or fails after a generous wait.
func nextPop(t *testing.T, pops <-chan streamedPop, what string) streamedPop {
	t.Helper()
	select {
	case p := <-pops:
		return p
	case <-time.After(10 * time.Second):
		t.Fatalf("no pop: %s", what)
	}
	return streamedPop{}
}

// Both simulators under one `callpop run`: calls on each enriched and
// popped to their agents with call ids and pops named after their PBX;
// the Asterisk killed and restarted while the FreeSWITCH keeps its calls
// flowing, none of them released past its budget.
func TestRunTwoPBXs(t *testing.T) {
	tp := startTwoPBXs(t)
	waitPBXes(t, tp.base, true, map[string]string{"ast-a": "ready", "fs-b": "ready"})
	pops1002 := openPops(t, tp.base, popSecret, "1002")
	pops2001 := openPops(t, tp.base, popSecret, "2001")

	id := tp.ariCall(t, arisim.CallSpec{CLI: "+14155550123", DNIS: "1000",
		Agents: []string{"PJSIP/1002"}, Answer: 0, RingFor: 20 * time.Millisecond, TalkFor: 20 * time.Millisecond})
	if v := tp.ari.Vars(id); v["CALLPOP_MATCH"] != "hit" || v["CALLPOP_NAME"] != "Caller 0123" || v["__CALLPOP_CALL_ID"] != "ast-a/"+id {
		t.Fatalf("ast-a call variables: %v", v)
	}
	for _, st := range []string{popper.StateRinging, popper.StateAnswered, popper.StateEnded} {
		p := nextPop(t, pops1002, "ast-a "+st)
		if p.CallID != "ast-a/"+id || p.PBX != "ast-a" || p.State != st || p.Customer["name"] != "Caller 0123" {
			t.Fatalf("ast-a pop %+v, want %s", p, st)
		}
	}

	uuid := tp.eslCall(t, eslsim.Caller{Number: "+14155550199", DNIS: "1000"})
	if v := tp.esl.Vars(uuid); v["callpop_match"] != "hit" || v["callpop_name"] != "Caller 0199" || v["callpop_call_id"] != "fs-b/"+uuid {
		t.Fatalf("fs-b call variables: %v", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tp.esl.RingAgents(ctx, uuid, eslsim.Ring{Agents: []string{"2001"}, Answer: 0, RingFor: 20 * time.Millisecond, TalkFor: 20 * time.Millisecond})
	for _, st := range []string{popper.StateRinging, popper.StateAnswered, popper.StateEnded} {
		p := nextPop(t, pops2001, "fs-b "+st)
		if p.CallID != "fs-b/"+uuid || p.PBX != "fs-b" || p.State != st || p.Customer["name"] != "Caller 0199" {
			t.Fatalf("fs-b pop %+v, want %s", p, st)
		}
	}

	// ast-a goes away: /readyz says which (required: not ready), fs-b goes on.
	late := func() float64 {
		return counterSum(t, "callpop_esl_calls_total", map[string]string{"pbx": "fs-b", "outcome": "late"})
	}
	lateBefore := late()
	released := counterSum(t, "callpop_esl_calls_total", map[string]string{"pbx": "fs-b", "outcome": "released"})
	_ = tp.ari.Close()
	st := waitPBXes(t, tp.base, false, map[string]string{"fs-b": "ready"})
	if st.Pbxes["ast-a"] == "ready" {
		t.Fatalf("ast-a down, /readyz %+v", st)
	}
	if a, f := counterSum(t, "callpop_pbx_ready", map[string]string{"pbx": "ast-a"}), counterSum(t, "callpop_pbx_ready", map[string]string{"pbx": "fs-b"}); a != 0 || f != 1 {
		t.Fatalf("callpop_pbx_ready: ast-a %v, fs-b %v", a, f)
	}
	if c := counterSum(t, "callpop_ari_connected", map[string]string{"pbx": "ast-a"}); c != 0 {
		t.Fatalf("callpop_ari_connected{pbx=\"ast-a\"} %v with ast-a down", c)
	}
	const calls = 20
	for i := range calls {
		u := tp.eslCall(t, eslsim.Caller{Number: fmt.Sprintf("+1415555%04d", 1000+i), DNIS: "1000"})
		if v := tp.esl.Vars(u); v["callpop_match"] != "hit" {
			t.Fatalf("fs-b call %d while ast-a is down: %v", i, v)
		}
	}
	// the adapter counts a call just after the simulator saw it released
	var got float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = counterSum(t, "callpop_esl_calls_total", map[string]string{"pbx": "fs-b", "outcome": "released"}) - released; got >= calls {
			break
		}
	}
	if got < calls {
		t.Fatalf("fs-b counted %v calls of %d released while ast-a was down", got, calls)
	}
	if l := late() - lateBefore; l != 0 {
		t.Fatalf("fs-b released %v calls past their budget while ast-a was down", l)
	}

	// ast-a comes back on its address: ready again, its calls flow.
	var err error
	tp.ari, err = arisim.New(arisim.Options{Addr: tp.ariAddr, Username: "callpop", Password: "test-ari-secret", App: "callpop-test",
		ChannelVars: []string{"CALLPOP_CALL_ID"}})
	if err != nil {
		t.Fatal(err)
	}
	waitPBXes(t, tp.base, true, map[string]string{"ast-a": "ready", "fs-b": "ready"})
	id = tp.ariCall(t, arisim.CallSpec{CLI: "+14155550123", DNIS: "1000"})
	if v := tp.ari.Vars(id); v["CALLPOP_MATCH"] != "hit" {
		t.Fatalf("ast-a call after the restart: %v", v)
	}
}

// The same channel id on both PBXs at once: two calls, each popped to its
// own agent with its own caller.
func TestRunTwoPBXsSameChannelID(t *testing.T) {
	tp := startTwoPBXs(t)
	waitPBXes(t, tp.base, true, map[string]string{"ast-a": "ready", "fs-b": "ready"})
	pops1002 := openPops(t, tp.base, popSecret, "1002")
	pops2001 := openPops(t, tp.base, popSecret, "2001")

	uuid := tp.eslCall(t, eslsim.Caller{Number: "+14155550199", DNIS: "1000"})
	tp.ariCall(t, arisim.CallSpec{ID: uuid, CLI: "+14155550123", DNIS: "1000",
		Agents: []string{"PJSIP/1002"}, Answer: 0, RingFor: 20 * time.Millisecond, TalkFor: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tp.esl.RingAgents(ctx, uuid, eslsim.Ring{Agents: []string{"2001"}, Answer: 0, RingFor: 20 * time.Millisecond, TalkFor: 20 * time.Millisecond})
	for _, st := range []string{popper.StateRinging, popper.StateAnswered, popper.StateEnded} {
		a := nextPop(t, pops1002, "ast-a "+st)
		if a.CallID != "ast-a/"+uuid || a.PBX != "ast-a" || a.State != st || a.Customer["name"] != "Caller 0123" {
			t.Fatalf("ast-a pop %+v, want %s", a, st)
		}
		f := nextPop(t, pops2001, "fs-b "+st)
		if f.CallID != "fs-b/"+uuid || f.PBX != "fs-b" || f.State != st || f.Customer["name"] != "Caller 0199" {
			t.Fatalf("fs-b pop %+v, want %s", f, st)
		}
	}
}

// A call transferred from ast-a to fs-b over a trunk that carries its call
// id (X-Callpop-Call-Id, which the trunk's dialplan context sets as
// callpop_call_id; FreeSWITCH also keeps it as sip_h_X-Callpop-Call-Id):
// fs-b's channel gets the first decision (the caller's record although the
// trunk presents another number), the CRM is asked once, and the pops
// follow the call to the agent on fs-b.
func TestRunTransferAcrossPBXs(t *testing.T) {
	tp := startTwoPBXs(t)
	waitPBXes(t, tp.base, true, map[string]string{"ast-a": "ready", "fs-b": "ready"})
	pops1002 := openPops(t, tp.base, popSecret, "1002")
	pops2001 := openPops(t, tp.base, popSecret, "2001")

	id := tp.ariCall(t, arisim.CallSpec{CLI: "+14155550123", DNIS: "1000",
		Agents: []string{"PJSIP/1002"}, Answer: 0, RingFor: 20 * time.Millisecond, TalkFor: time.Hour})
	callID := "ast-a/" + id
	for _, st := range []string{popper.StateRinging, popper.StateAnswered} {
		if p := nextPop(t, pops1002, "ast-a "+st); p.CallID != callID || p.State != st || p.PBX != "ast-a" {
			t.Fatalf("ast-a pop %+v, want %s", p, st)
		}
	}
	if n := tp.crmCalls.Load(); n != 1 {
		t.Fatalf("CRM asked %d times for the call on ast-a", n)
	}

	// The agent transfers the call to site B: the trunk's INVITE carries
	// the call id; the trunk presents site A's own number.
	uuid := tp.eslCall(t, eslsim.Caller{Number: "+14155550777", DNIS: "2000",
		Vars: map[string]string{"sip_h_X-Callpop-Call-Id": callID, "callpop_call_id": callID}})
	v := tp.esl.Vars(uuid)
	if v["callpop_call_id"] != callID || v["callpop_e164"] != "+14155550123" || v["callpop_name"] != "Caller 0123" || v["callpop_match"] != "hit" {
		t.Fatalf("fs-b channel of the transferred call: %v", v)
	}
	if n := tp.crmCalls.Load(); n != 1 {
		t.Fatalf("CRM asked %d times: the transferred call was looked up again", n)
	}
	if n := counterSum(t, "callpop_pbx_calls_total", map[string]string{"pbx": "fs-b", "result": "inherited"}); n < 1 {
		t.Fatalf("callpop_pbx_calls_total{pbx=fs-b,result=inherited} = %v", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tp.esl.RingAgents(ctx, uuid, eslsim.Ring{Agents: []string{"2001"}, Answer: 0, RingFor: 20 * time.Millisecond, TalkFor: 20 * time.Millisecond})
	for _, st := range []string{popper.StateRinging, popper.StateAnswered, popper.StateEnded} {
		p := nextPop(t, pops2001, "fs-b "+st)
		if p.CallID != callID || p.PBX != "fs-b" || p.State != st || p.Customer["name"] != "Caller 0123" {
			t.Fatalf("fs-b pop %+v, want %s of the transferred call", p, st)
		}
	}
	// A call from any SIP peer with the header alone (no trunk context
	// copying it into callpop_call_id) is a call of its own: looked up, not
	// given another call's record.
	u := tp.eslCall(t, eslsim.Caller{Number: "+14155550188", DNIS: "2000",
		Vars: map[string]string{"sip_h_X-Callpop-Call-Id": callID}})
	if v := tp.esl.Vars(u); v["callpop_call_id"] != "fs-b/"+u || v["callpop_e164"] != "+14155550188" {
		t.Fatalf("a bare X-Callpop-Call-Id header was honoured: %v", v)
	}
}
