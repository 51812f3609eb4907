package popper

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/internal/testbrowser"
	"github.com/callpop/callpop/internal/testrouter"
	"github.com/callpop/callpop/router"
)

// artifactDir is where screenshots go: $CALLPOP_ARTIFACTS or a temp dir.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("CALLPOP_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.TempDir()
}

// browser is a real headless Chromium (internal/testbrowser) with the
// panel tests' window and timeouts.
type browser struct{ *testbrowser.Browser }

func newBrowser(t *testing.T) *browser { return &browser{testbrowser.New(t, 1100, 1000)} }

func (b *browser) step(name string, acts ...chromedp.Action[chromedp.Void]) {
	b.T.Helper()
	b.Step(name, acts...)
}

func (b *browser) eval(js string) string {
	b.T.Helper()
	return b.Eval(js)
}

func (b *browser) wait(name, js string) {
	b.T.Helper()
	b.Wait(name, js, 30*time.Second)
}

func (b *browser) shot(name string) {
	b.T.Helper()
	b.Screenshot(artifactDir(b.T), name)
}

// The panel in a real headless Chromium: a ring makes the card appear with
// the right name and badges, an answer elsewhere retracts it, a miss shows
// the new-customer link, and hostile CRM data stays text.
func TestPanelInChromium(t *testing.T) {
	br := newBrowser(t)
	step, eval, wait, shot := br.step, br.eval, br.wait, br.shot
	in := startInstance(t, Config{Links: []LinkConfig{
		{Name: "crm", Label: "Open in CRM", URL: "https://crm.example/customers/{customer_id}", When: "hit"},
		{Name: "ticket", Label: "Create ticket", URL: "https://crm.example/tickets/new?customer={customer_id}&call={call_id}", When: "hit"},
		{Name: "kb", Label: "Knowledge base", URL: "https://kb.example/search?q={topics}", When: "hit"},
		{Name: "new_customer", Label: "New customer", URL: "https://crm.example/customers/new?phone={e164}", When: "miss"},
	}}, Deps{})

	step("open panel", chromedp.Navigate(in.srv.URL+"/agent?token="+token(t, "1001")))
	wait("connected", `document.getElementById("conn").dataset.state === "live"`)
	// Exchanged for an HttpOnly cookie: not in the address, nor anything
	// the page's scripts can read.
	if got := eval(`location.search + "|" + document.cookie + "|" + JSON.stringify(sessionStorage)`); got != "||{}" {
		t.Errorf("token left in the address bar, history or page storage: %q", got)
	}

	// Earlier call today, for the recent list.
	earlier := hitDecision()
	earlier.Customer = &call.Customer{ID: "CRM-1002", Name: "Priya Raman", Tier: "silver", Language: "en"}
	enrich(in.p, "c0", earlier)
	ring(in.p, "c0", "1001")
	in.p.AgentLeg(call.LegEvent{CallID: "c0", Leg: "c0-1001", Endpoint: "PJSIP/1001-0000000a", State: call.LegAnswered})
	in.p.CallEnded(call.CallEnd{CallID: "c0"})
	wait("earlier call in the list", `document.querySelectorAll("#recent li").length === 1`)

	// Ring: the card with name and badges.
	d := hitDecision()
	d.Flags = []string{"vip", "fraud_suspect", "ani_verified", "region_mismatch"}
	d.Customer.Extra = map[string]any{
		"account":      "ACC-99812",
		"email":        "jan.devries@example.nl",
		"loyalty":      "12 years",
		"open_tickets": []any{map[string]any{"id": "T-5521", "subject": "Fibre modem drops at night", "status": "open"}, map[string]any{"id": "T-5490", "subject": "Invoice address change", "status": "waiting"}},
		"recent_interactions": []any{
			map[string]any{"channel": "email", "at": time.Now().Add(-26 * time.Hour).Format(time.RFC3339), "summary": "Asked about the outage credit"},
			map[string]any{"channel": "chat", "at": time.Now().Add(-72 * time.Hour).Format(time.RFC3339), "summary": "Modem reset walkthrough"},
		},
	}
	enrich(in.p, "c1", d)
	ring(in.p, "c1", "1001")
	ring(in.p, "c1", "1002")
	wait("card", `!!document.querySelector('.card[data-call="c1"]')`)
	if got := eval(`document.querySelector('.card[data-call="c1"] .pop-name').textContent`); got != "Jan de Vries" {
		t.Errorf("name %q", got)
	}
	badges := eval(`[...document.querySelectorAll('.card[data-call="c1"] .badge')].map(b => b.dataset.badge).join(",")`)
	if badges != "vip,tier,language,fraud_suspect,ani_verified,region_mismatch" {
		t.Errorf("badges %q", badges)
	}
	if got := eval(`[...document.querySelectorAll('.card[data-call="c1"] .links a')].map(a => a.dataset.link).join(",")`); got != "crm,ticket,kb" {
		t.Errorf("links %q", got)
	}
	if got := eval(`document.querySelector('.card[data-call="c1"] .tickets li').textContent`); got != "T-5521 · openFibre modem drops at night" {
		t.Errorf("ticket %q", got)
	}
	shot("panel-ringing.png")

	// Answered by agent 1002: the card goes from 1001's panel.
	in.p.AgentLeg(call.LegEvent{CallID: "c1", Leg: "c1-1002", Endpoint: "PJSIP/1002-0000000a", State: call.LegAnswered})
	wait("retracted", `!document.querySelector('.card[data-call="c1"]') && document.querySelector('#recent li[data-call="c1"] .r-state').textContent === "Answered by a colleague"`)

	// A miss: the new-customer link.
	enrich(in.p, "c2", call.Decision{Match: call.MatchMiss, E164: "+31301234567", Priority: 1})
	ring(in.p, "c2", "1001")
	wait("miss card", `!!document.querySelector('.card[data-call="c2"] a[data-link="new_customer"]')`)
	if got := eval(`document.querySelector('.card[data-call="c2"] a[data-link="new_customer"]').href`); got != "https://crm.example/customers/new?phone=%2B31301234567" {
		t.Errorf("new customer link %q", got)
	}
	shot("panel-miss.png")

	// The connection drops (proxy, restart): the page reconnects by itself,
	// resumes from its last event and shows the next pop.
	in.srv.CloseClientConnections()
	enrich(in.p, "c4", hitDecision())
	ring(in.p, "c4", "1001")
	wait("reconnected with the missed pop", `!!document.querySelector('.card[data-call="c4"]') && document.getElementById("conn").dataset.state === "live"`)
	if got := eval(`String(document.querySelectorAll('#recent li[data-call="c1"]').length)`); got != "1" {
		t.Errorf("replay duplicated the list: %s entries for c1", got)
	}

	// Hostile CRM data is text, and a javascript: URL never becomes a link.
	evil := call.Decision{Match: call.MatchHit, E164: "+31401234567", Customer: &call.Customer{
		ID: "x", Name: `<img src=x onerror="document.title='pwned'">`, URL: "javascript:alert(1)",
		Extra: map[string]any{"note": `<script>document.title='pwned'</script>`},
	}}
	enrich(in.p, "c3", evil)
	ring(in.p, "c3", "1001")
	wait("evil card", `!!document.querySelector('.card[data-call="c3"]')`)
	if got := eval(`document.querySelector('.card[data-call="c3"] .pop-name').textContent`); got != evil.Customer.Name {
		t.Errorf("name rendered as %q", got)
	}
	if n := eval(`String(document.querySelectorAll('.card img, .card script').length) + document.title + [...document.querySelectorAll('a')].filter(a => a.href.startsWith('javascript')).length`); n != "0callpop · agent0" {
		t.Errorf("hostile data became markup: %s", n)
	}
}

// testRouter is the real router over the sample CSV CRM (Jane Doe
// +14155550123 is gold, Anna de Vries +31201234567 vip), with
// router.flags.vip_tiers set to vipTiers.
func testRouter(t *testing.T, vipTiers []string) *router.Router {
	t.Helper()
	cfg := router.DefaultConfig()
	cfg.FastAGI.Listen = ""
	cfg.Flags.VIPTiers = vipTiers
	cfg.TierPriority = map[string]int{"vip": 10, "gold": 5}
	return testrouter.New(t, "US", crm.DefaultConfig(), cfg, 300*time.Millisecond)
}

// routerDecision is what testRouter decides for cli.
func routerDecision(t *testing.T, vipTiers []string, callID, cli string) call.Decision {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := testRouter(t, vipTiers).Decide(ctx, call.Call{ID: callID, PBX: "asterisk", CLI: cli})
	if d.Match != call.MatchHit {
		t.Fatalf("router: %s for %s: %+v", d.Match, cli, d)
	}
	return d
}

// The VIP badge follows the router's vip flag (router.flags.vip_tiers), and
// the tier shows as the CRM has it: a gold customer is "gold", and VIP only
// where gold is a VIP tier. Both for pops replayed to a fresh page and for
// pops arriving live.
func TestPanelVIPFollowsRouter(t *testing.T) {
	br := newBrowser(t)
	in := startInstance(t, Config{}, Deps{})
	// Jane Doe (gold) and Anna de Vries (vip) in the sample CRM.
	gold := routerDecision(t, []string{"vip"}, "g1", "+14155550123")
	if slices.Contains(gold.Flags, "vip") || gold.Customer.Tier != "gold" || gold.Priority != 5 {
		t.Fatalf("router decided %+v", gold)
	}
	badges := func(callID string) string {
		t.Helper()
		return br.eval(`[...document.querySelectorAll('.card[data-call="` + callID + `"] .badges .badge')].map(b => b.dataset.badge + "=" + b.textContent).join(",") +
			(document.querySelector('.card[data-call="` + callID + `"]').classList.contains("vip") ? " (vip card)" : "")`)
	}

	// Rung before the page opens: the stream replays it.
	enrich(in.p, "g1", gold)
	ring(in.p, "g1", "1001")
	br.step("open panel", chromedp.Navigate(in.srv.URL+"/agent?token="+token(t, "1001")))
	br.wait("replayed gold card", `!!document.querySelector('.card[data-call="g1"]')`)
	if got := badges("g1"); got != "tier=gold,language=EN" {
		t.Errorf("gold, vip_tiers [vip]: badges %q", got)
	}

	// Live pops: a vip-tier customer, and gold where the router counts gold as VIP.
	enrich(in.p, "v1", routerDecision(t, []string{"vip"}, "v1", "+31201234567"))
	ring(in.p, "v1", "1001")
	enrich(in.p, "g2", routerDecision(t, []string{"vip", "gold"}, "g2", "+14155550123"))
	ring(in.p, "g2", "1001")
	br.wait("live cards", `!!document.querySelector('.card[data-call="v1"]') && !!document.querySelector('.card[data-call="g2"]')`)
	want := map[string]string{
		"g1": "tier=gold,language=EN",
		"v1": "vip=VIP,tier=vip,language=NL (vip card)",
		"g2": "vip=VIP,tier=gold,language=EN (vip card)",
	}
	for _, id := range []string{"v1", "g2"} {
		if got := badges(id); got != want[id] {
			t.Errorf("%s: badges %q, want %q", id, got, want[id])
		}
	}
	br.shot("panel-vip.png")

	// A reload replays today's pops with the same badges.
	br.step("reload", chromedp.Reload())
	br.wait("replayed cards", `document.querySelectorAll('.card').length === 3`)
	for _, id := range []string{"g1", "v1", "g2"} {
		if got := badges(id); got != want[id] {
			t.Errorf("after reload %s: badges %q, want %q", id, got, want[id])
		}
	}
}

// A token the server refuses in the address: the sign-in form with the
// server's reason, the token gone from the address bar; a good token pasted
// into the form then connects.
func TestPanelRefusedTokenInChromium(t *testing.T) {
	br := newBrowser(t)
	in := startInstance(t, Config{}, Deps{})
	expired, _ := IssueToken([]byte(testSecret), "1001", time.Minute, time.Now().Add(-time.Hour))
	forged, _ := IssueToken([]byte("another-secret-of-16-bytes"), "1001", time.Hour, time.Now())
	for _, tc := range []struct{ name, token, reason string }{
		{"expired", expired, "token expired"},
		{"forged", forged, "token invalid"},
	} {
		br.step("open "+tc.name, chromedp.Navigate(in.srv.URL+"/agent?token="+tc.token))
		br.wait("sign-in form", `!document.getElementById("login").hidden`)
		got := br.eval(`[document.getElementById("login-error").textContent, document.getElementById("login-error").hidden,
			document.getElementById("workspace").hidden, location.search, !!document.getElementById("token-input")].join("|")`)
		if want := tc.reason + "|false|true||true"; got != want {
			t.Errorf("%s: page %q, want %q", tc.name, got, want)
		}
	}
	br.shot("panel-refused.png")
	br.step("sign in", chromedp.SendKeys("#token-input", token(t, "1001")), chromedp.Click("#login-form button[type=submit]"))
	br.wait("connected", `document.getElementById("conn").dataset.state === "live"`)
	// The pasted token went in a POST body: not in the address, not readable
	// by the page (an HttpOnly cookie holds it).
	if got := br.eval(`location.pathname + location.search + "|" + document.cookie`); got != "/agent|" {
		t.Errorf("after sign-in: %q, want /agent and no script-readable cookie", got)
	}
	br.step("sign out", chromedp.Click("#logout"))
	br.wait("signed out", `document.readyState === "complete" && !document.getElementById("login").hidden && document.body.dataset.agent === ""`)
	br.step("reload", chromedp.Reload())
	br.wait("still signed out", `document.readyState === "complete" && !document.getElementById("login").hidden`)
}
