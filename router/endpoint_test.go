package router

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/callpop/callpop/call"
)

// softphoneLike decorates the router's decision the way the popper's
// softphone settings do: a caller name (hostile on purpose) and an info URL.
func softphoneLike(r *Router) call.Decider {
	return call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		d := r.Decide(ctx, c)
		if d.Customer != nil {
			d.CallerName = "VIP " + d.Customer.Name + " ${SHELL(id)}\n"
			d.InfoURL = "https://crm.example/c?id=" + d.Customer.ID
		}
		return d
	})
}

// With an endpoint decider, /v1/route and FastAGI answer with what it adds
// (sanitised), so a dialplan asking directly gets the softphone name too.
func TestEndpointDecider(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	te.router.SetEndpointDecider(softphoneLike(te.router))
	srv := startHTTP(t, te.router)

	code, body, _ := get(t, srv, "/v1/route?number=0201234567&field=caller_name")
	if code != 200 || body != "VIP Jan de Vries SHELL(id)" {
		t.Fatalf("field=caller_name: %d %q", code, body)
	}
	code, body, _ = get(t, srv, "/v1/route?number=0201234567")
	var d struct {
		CallerName string `json:"caller_name"`
		InfoURL    string `json:"info_url"`
	}
	if err := json.Unmarshal([]byte(body), &d); code != 200 || err != nil || d.CallerName != "VIP Jan de Vries SHELL(id)" || d.InfoURL == "" {
		t.Fatalf("json: %d %s", code, body)
	}

	addr := startAGI(t, te.router)
	ast := asterisk{env: defaultAGIEnv("route", "0201234567", "Jan de Vries", "0800123456"), ani: "0201234567"}
	s := ast.run(t, addr)
	if len(s.bad) > 0 {
		t.Fatalf("commands Asterisk would not take: %q", s.bad)
	}
	got := map[string]string{}
	for _, v := range s.vars {
		got[v.Name] = v.Value
	}
	if got["CALLERID(name)"] != "VIP Jan de Vries SHELL(id)" || got["CALLPOP_INFO_URL"] == "" || got["CALLPOP_QUEUE"] != "vip" {
		t.Fatalf("FastAGI variables %q", s.vars)
	}
}
