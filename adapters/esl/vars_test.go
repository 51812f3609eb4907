package esl

import (
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/fsvars"
)

func TestVariablesPrivacyAndCallInfo(t *testing.T) {
	c := callFromCaller()
	d := call.Decision{Match: call.MatchHit, CallerName: "VIP Erika", BaseScore: 1000, InfoURL: "https://crm.example/c/1?a=b;c"}
	names := map[string]string{}
	for _, a := range variables(c, d, func(string) string { return "" }) {
		names[a.Name] = a.Value
	}
	if names["effective_caller_id_name"] != "VIP Erika" || names["cc_base_score"] != "1000" || names["callpop_call_id"] != c.ID {
		t.Fatalf("%v", names)
	}
	if names["callpop_info_url"] != "https://crm.example/c/1?a=b%3Bc" || names["export_vars"] != "callpop_call_id,sip_h_Call-Info" {
		t.Fatalf("info url %q, export_vars %q", names["callpop_info_url"], names["export_vars"])
	}
	d.Privacy = true
	for _, a := range variables(c, d, func(string) string { return "" }) {
		if a.Name == "effective_caller_id_name" {
			t.Fatal("caller name rewritten for a withheld number")
		}
	}
	ci, ok := fsvars.CallInfo(d)
	if !ok || ci.Value != "<https://crm.example/c/1?a=b%3Bc>;purpose=info" {
		t.Fatalf("call info %q", ci.Value)
	}
}

func TestCallFrom(t *testing.T) {
	tests := []struct {
		name    string
		headers eslwire.Headers
		want    call.Call
	}{
		{"plain", eslwire.Headers{{Name: "Unique-ID", Value: "u1"}, {Name: "Caller-Caller-ID-Number", Value: "%2B14155550123"}, {Name: "Caller-Caller-ID-Name", Value: "John%20Doe"}, {Name: "Caller-ANI", Value: "%2B14155550123"}, {Name: "Caller-Destination-Number", Value: "1000"}},
			call.Call{ID: "u1", CLI: "+14155550123", CLIName: "John Doe", ANI: "+14155550123", DNIS: "1000"}},
		{"hide number", eslwire.Headers{{Name: "Unique-ID", Value: "u2"}, {Name: "Caller-Privacy-Hide-Number", Value: "true"}},
			call.Call{ID: "u2", Privacy: true}},
		{"SIP Privacy: id", eslwire.Headers{{Name: "Unique-ID", Value: "u3"}, {Name: "variable_sip_Privacy", Value: "id"}},
			call.Call{ID: "u3", Privacy: true}},
		{"SIP Privacy: none", eslwire.Headers{{Name: "Unique-ID", Value: "u4"}, {Name: "variable_sip_Privacy", Value: "none"}},
			call.Call{ID: "u4"}},
		{"PAI fills a missing ANI", eslwire.Headers{{Name: "Unique-ID", Value: "u5"}, {Name: "Caller-Caller-ID-Number", Value: "anonymous"}, {Name: "variable_sip_P-Asserted-Identity", Value: "%3Csip%3A%2B31201234567%40carrier%3E"}},
			call.Call{ID: "u5", CLI: "anonymous", ANI: "+31201234567"}},
		{"profile", eslwire.Headers{{Name: "Unique-ID", Value: "u6"}, {Name: "variable_callpop_profile", Value: "vip-line"}},
			call.Call{ID: "u6", Profile: "vip-line"}},
	}
	now := time.Now()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := callFrom(frameHeaders{tt.headers}, now)
			tt.want.PBX, tt.want.Received = "freeswitch", now
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
