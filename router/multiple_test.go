package router

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/fsvars"
)

// TestDecideMultiple: several customers on one number decide for the best
// (highest tier priority, then the most recent), list every candidate, set
// CALLPOP_MATCH=multiple and CALLPOP_CANDIDATES, and rules see match,
// candidates and the best one's lists.
func TestDecideMultiple(t *testing.T) {
	cfg := testConfig()
	cfg.TierPriority = map[string]int{"vip": 10, "gold": 5, "standard": 1}
	cfg.Rules = append([]Rule{
		{Name: "many-tickets", When: `len(customer.lists.tickets) > 2`, Then: Then{Flags: []string{"many_tickets"}}},
		{Name: "no-history", When: `len(customer.lists.history) == 0`, Then: Then{Vars: map[string]string{"NO_HISTORY": "yes"}}},
		{Name: "switchboard", When: `match == "multiple" && len(candidates) == 3 && candidates[0].id == customer.id`, Then: Then{Queue: "switchboard"}, Stop: true},
	}, cfg.Rules...)
	te := newTestEnv(t, cfg, nil, testBudget)
	tickets := []map[string]any{{"at": "2026-01-03", "status": "open"}, {"at": "2026-01-02", "status": "open"}, {"at": "2026-01-01", "status": "solved"}}
	te.fake.addAll("+31207771111",
		map[string]any{"id": "A", "name": "Ann Standard", "tier": "standard", "history": []map[string]any{{"at": "2026-06-01T10:00:00Z"}}},
		map[string]any{"id": "B", "name": "Bob Gold", "tier": "gold", "url": "https://crm.example/c/B", "history": []map[string]any{{"at": "2026-01-01T10:00:00Z"}}},
		map[string]any{"id": "C", "name": "Cy \"Gold\" ${x}\n", "tier": "gold", "url": "https://crm.example/c/C", "tickets": tickets,
			"history": []map[string]any{{"at": "2026-03-01T10:00:00Z", "summary": "line\nbreak ${SHELL(id)}"}}},
	)
	d := te.router.Decide(context.Background(), call.Call{ID: "m1", CLI: "020 777 1111", DNIS: "0800123456"})
	if d.Match != call.MatchMultiple || d.Customer == nil || d.Customer.ID != "C" {
		t.Fatalf("decision: match %q customer %+v err %q", d.Match, d.Customer, d.Err)
	}
	if len(d.Candidates) != 3 || d.Candidates[0].ID != "C" || d.Candidates[1].ID != "A" || d.Candidates[2].ID != "B" {
		t.Fatalf("candidates %+v", d.Candidates)
	}
	if c := d.Candidates[0]; strings.ContainsAny(c.Name, "\"${}\n") || c.URL != "https://crm.example/c/C" || c.Tier != "gold" {
		t.Fatalf("candidate not sanitised: %+v", c)
	}
	if s := d.Customer.Lists["history"][0]["summary"].(string); strings.ContainsAny(s, "\n${}") {
		t.Fatalf("list item not sanitised: %q", s)
	}
	if d.Queue != "switchboard" || !slices.Contains(d.Flags, "many_tickets") || d.Priority != 5 || d.PopURL != "https://crm.example/c/C" {
		t.Fatalf("rules: queue %q flags %v priority %d pop %q rules %v", d.Queue, d.Flags, d.Priority, d.PopURL, d.Rules)
	}
	vars := map[string]string{}
	for _, v := range d.Vars() {
		vars[v.Name] = v.Value
	}
	if vars["CALLPOP_MATCH"] != "multiple" || vars["CALLPOP_CANDIDATES"] != "3" || vars["CALLPOP_CUSTOMER_ID"] != "C" || vars["CALLPOP_TIER"] != "gold" {
		t.Fatalf("vars %v", vars)
	}
	fs := map[string]string{}
	for _, v := range fsvars.Vars(d, "m1", fsvars.Text, func(string, []string) string { return "" }) {
		fs[v.Name] = v.Value
	}
	if fs["callpop_candidates"] != "3" || fs["callpop_match"] != "multiple" {
		t.Fatalf("FreeSWITCH vars %v", fs)
	}

	// Equal tiers, one dated: the most recent wins; none dated: the source's first.
	te.fake.addAll("+31207772222",
		map[string]any{"id": "D", "name": "Dee", "tier": "gold"},
		map[string]any{"id": "E", "name": "Eve", "tier": "gold", "history": []map[string]any{{"at": "2025-05-05"}}})
	if d := te.router.Decide(context.Background(), call.Call{CLI: "020 777 2222"}); d.Customer == nil || d.Customer.ID != "E" || d.Candidates[1].ID != "D" {
		t.Fatalf("most recent: %+v %+v", d.Customer, d.Candidates)
	}
	te.fake.addAll("+31207773333", map[string]any{"id": "F", "name": "Fay"}, map[string]any{"id": "G", "name": "Gus"})
	if d := te.router.Decide(context.Background(), call.Call{CLI: "020 777 3333"}); d.Customer == nil || d.Customer.ID != "F" {
		t.Fatalf("source order: %+v", d.Customer)
	}

	// A plain hit: no candidates, no CALLPOP_CANDIDATES; rules over lists it lacks do not fail.
	d = te.router.Decide(context.Background(), call.Call{CLI: "0201234567"})
	if d.Match != call.MatchHit || d.Candidates != nil || slices.Contains(d.Flags, "many_tickets") || d.Extra["NO_HISTORY"] != "yes" {
		t.Fatalf("hit: match %q candidates %v flags %v extra %v", d.Match, d.Candidates, d.Flags, d.Extra)
	}
	for _, v := range d.Vars() {
		if v.Name == "CALLPOP_CANDIDATES" {
			t.Fatal("CALLPOP_CANDIDATES on a hit")
		}
	}
	// And on a miss.
	if d := te.router.Decide(context.Background(), call.Call{CLI: "+31 6 1111 2222"}); d.Match != call.MatchMiss || d.Extra["NO_HISTORY"] != "yes" {
		t.Fatalf("miss: %+v", d)
	}
}

func TestRecency(t *testing.T) {
	c := &call.Customer{Extra: map[string]any{"last_contact": "2025-05-05", "updated_at": "not a date"},
		Lists: map[string][]map[string]any{"history": {{"at": "2024-01-01T10:00:00Z"}, {"at": 3}}}}
	if got := recency(c); got.Format("2006-01-02") != "2025-05-05" {
		t.Fatalf("recency %v", got)
	}
	if !recency(&call.Customer{}).IsZero() {
		t.Fatal("undated record dated")
	}
}

// TestRouteFieldCandidates: /v1/route?field=match,candidates answers a
// multiple match's count (a hit has none); /v1/lookup's JSON carries the
// candidates and the best one's lists.
func TestRouteFieldCandidates(t *testing.T) {
	cfg := testConfig()
	cfg.TierPriority = map[string]int{"vip": 10}
	te := newTestEnv(t, cfg, nil, testBudget)
	te.fake.addAll("+31207771111", map[string]any{"id": "A", "name": "Ann"},
		map[string]any{"id": "B", "name": "Bob", "tier": "vip", "tickets": []map[string]any{{"status": "open"}}})
	srv := startHTTP(t, te.router)
	for _, tt := range []struct{ number, want string }{
		{"0207771111", "match=multiple&candidates=2"},
		{"0201234567", "match=hit&candidates="},
	} {
		code, body, _ := get(t, srv, "/v1/route?number="+tt.number+"&field=match,candidates")
		if code != 200 || body != tt.want {
			t.Fatalf("%s: %d %q, want %q", tt.number, code, body, tt.want)
		}
	}
	code, body, _ := get(t, srv, "/v1/lookup?number=0207771111")
	var got struct {
		Match    string `json:"match"`
		Customer struct {
			ID    string                      `json:"id"`
			Lists map[string][]map[string]any `json:"lists"`
		} `json:"customer"`
		Candidates []call.Candidate `json:"candidates"`
	}
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil {
		t.Fatalf("lookup: %d %v %s", code, err, body)
	}
	if got.Match != "multiple" || got.Customer.ID != "B" || got.Customer.Lists["tickets"][0]["status"] != "open" ||
		len(got.Candidates) != 2 || got.Candidates[0].ID != "B" || got.Candidates[1].Name != "Ann" {
		t.Fatalf("lookup JSON: %s", body)
	}
}
