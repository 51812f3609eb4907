package esl

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/realpbx"
)

// TestOriginateOnRealFreeSWITCH checks Originate against a real FreeSWITCH
// instead of eslsim. It runs only when CALLPOP_TEST_FREESWITCH_ESL is set
// (a loopback event socket such as 127.0.0.1:8021; password
// CALLPOP_PBX_FREESWITCH_PASSWORD), with mod_loopback loaded and these
// contexts in the XML dialplan (docs/freeswitch.md, "Callbacks (originate)"):
//
//	<context name="callpop-customers">
//	  <extension name="answer"><condition field="destination_number" expression="^answer$">
//	    <action application="answer"/><action application="sleep" data="20000"/></condition></extension>
//	  <extension name="busy"><condition field="destination_number" expression="^busy$">
//	    <action application="respond" data="486"/><action application="hangup" data="USER_BUSY"/></condition></extension>
//	  <extension name="noanswer"><condition field="destination_number" expression="^noanswer$">
//	    <action application="ring_ready"/><action application="sleep" data="60000"/></condition></extension>
//	  <extension name="unalloc"><condition field="destination_number" expression="^unalloc$">
//	    <action application="hangup" data="UNALLOCATED_NUMBER"/></condition></extension>
//	</context>
//	<context name="callpop-callbacks">
//	  <extension name="cb"><condition field="destination_number" expression="^cb$">
//	    <action application="sleep" data="15000"/></condition></extension>
//	</context>
//
// Each outcome must be the one the dialplan gives; the answered channel
// must carry every variable an incoming call with the same (hostile)
// decision gets, as FreeSWITCH stored them (uuid_getvar): the customer id
// holding ":_:" among them, stored whole (an enterprise originate would have
// split the dial string, and the {…} list with it).
func TestOriginateOnRealFreeSWITCH(t *testing.T) {
	real := realpbx.ESL(t)
	cfg := inboundConfig(real.Addr)
	cfg.Password = real.Password
	sink := &recSink{}
	a := startAdapter(t, cfg, adapters.Deps{Sink: sink, Budget: roomyBudget,
		Decider: call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision { return call.Decision{} })})
	waitFor(t, 10*time.Second, "event connection", func() bool { return a.connected.Load() })

	number := "+442079460021"
	for _, tt := range []struct {
		exten string
		want  call.Outcome
	}{
		{"answer", call.OutcomeConnected},
		{"busy", call.OutcomeBusy},
		{"noanswer", call.OutcomeNoAnswer},
		{"unalloc", call.OutcomeFailed},
	} {
		o := testOriginate(number)
		o.Decision = hostileDecision(number)
		o.Endpoint = "loopback/" + tt.exten + "/callpop-customers"
		o.Extension, o.Context, o.Timeout = "cb", "callpop-callbacks", 3*time.Second
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := a.Originate(ctx, o)
		cancel()
		if err != nil || res.Outcome != tt.want {
			t.Errorf("%s: %+v, %v; want %s", tt.exten, res, err, tt.want)
			continue
		}
		t.Logf("%s: %s %q", tt.exten, res.Outcome, res.Cause)
		if tt.want != call.OutcomeConnected {
			continue
		}
		// Every variable of the {…} list as callpop meant it (the
		// incoming-call path's values, before the list's escaping), read
		// back one by one: the escaping round-trips through FreeSWITCH.
		for _, v := range originateVars(o) {
			if v.Name == "origination_uuid" || strings.HasPrefix(v.Name, "origination_caller_id_") || v.Name == "originate_timeout" {
				continue // consumed by originate, not stored as sent
			}
			got, err := a.bgapi(context.Background(), "uuid_getvar "+o.ID+" "+v.Name)
			if err != nil {
				t.Fatalf("uuid_getvar %s: %v", v.Name, err)
			}
			got = strings.TrimSpace(got)
			if got == "_undef_" {
				got = ""
			}
			if got != v.Value {
				t.Errorf("%s = %q, want %q", v.Name, got, v.Value)
			}
		}
		_, _ = a.bgapi(context.Background(), "uuid_kill "+o.ID)
	}
}
