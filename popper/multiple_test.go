package popper

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/callpop/callpop/call"
)

func sharedNumberDecision() call.Decision {
	return call.Decision{
		Match: call.MatchMultiple, E164: "+442079460018", Source: call.SourceCLI, Priority: 5, Queue: "support",
		Customer: &call.Customer{ID: "C1022", Name: "Siobhan O'Brien", Tier: "gold", Language: "en", URL: "https://crm.example/customers/C1022",
			Lists: map[string][]map[string]any{
				"history": {{"at": "2026-12-02T09:05:00Z", "channel": "phone", "summary": "Called about the open order"}},
				"tickets": {{"at": "2026-12-02T09:10:00Z", "status": "open", "summary": "Order 88120", "url": "https://crm.example/tickets/T-4733"}},
			}},
		Candidates: []call.Candidate{{ID: "C1022", Name: "Siobhan O'Brien", Tier: "gold", URL: "https://crm.example/customers/C1022"},
			{ID: "C1003", Name: "Liam O'Brien", Tier: "standard", URL: "javascript:alert(1)"}},
	}
}

// TestPopAndWebhookMultiple: the pop JSON (and so the webhook body) of a
// multiple match carries match, customer.lists and candidates; a candidate's
// link that is not http(s) is dropped.
func TestPopAndWebhookMultiple(t *testing.T) {
	r := newReceiver(t)
	in := startInstance(t, Config{Webhooks: []WebhookConfig{{URL: r.srv.URL, Secret: hookSecret, Events: []string{"ringing"}}}}, Deps{})
	enrich(in.p, "c1", sharedNumberDecision())
	ring(in.p, "c1", "1001")
	waitFor(t, func() bool { return r.count() == 1 })
	r.mu.Lock()
	body := r.bodies[0]
	r.mu.Unlock()
	var got struct {
		Match    string `json:"match"`
		Customer struct {
			ID    string                      `json:"id"`
			Lists map[string][]map[string]any `json:"lists"`
		} `json:"customer"`
		Candidates []call.Candidate `json:"candidates"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := []call.Candidate{{ID: "C1022", Name: "Siobhan O'Brien", Tier: "gold", URL: "https://crm.example/customers/C1022"},
		{ID: "C1003", Name: "Liam O'Brien", Tier: "standard"}}
	if got.Match != "multiple" || got.Customer.ID != "C1022" || !reflect.DeepEqual(got.Candidates, want) {
		t.Fatalf("webhook body %s", body)
	}
	if tk := got.Customer.Lists["tickets"]; len(tk) != 1 || tk[0]["status"] != "open" || len(got.Customer.Lists["history"]) != 1 {
		t.Fatalf("lists in %s", body)
	}

	// A pop crosses Redis as JSON: the lists come back as they went.
	var p Pop
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Customer.Lists["history"][0]["summary"] != "Called about the open order" || p.Customer.Extra["lists"] != nil || len(p.Candidates) != 2 {
		t.Fatalf("round trip: %+v", p.Customer)
	}
}

// TestPopListsPrivacy: with privacy, list fields holding the number are dropped.
func TestPopListsPrivacy(t *testing.T) {
	d := sharedNumberDecision()
	d.Privacy = true
	d.Customer.Lists["history"][0]["from"] = "+44 20 7946 0018"
	_, pops := run(t, Config{}, []step{enriched("c1", d), leg("c1", "l1", "user/1001", call.LegRinging)})
	b, _ := json.Marshal(pops[0])
	if strings.Contains(strings.ReplaceAll(string(b), " ", ""), "442079460018") || pops[0].Customer.Lists["history"][0]["summary"] == nil {
		t.Fatalf("privacy: %s", b)
	}
	if d.Customer.Lists["history"][0]["from"] == nil {
		t.Fatal("the decision's record was changed")
	}
}
