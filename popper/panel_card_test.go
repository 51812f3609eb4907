package popper

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callpop/callpop/call"
)

// updateScreenshots writes the card screenshots of TestPanelCardInChromium
// to docs/ (the README names the command).
var updateScreenshots = flag.Bool("update-screenshots", false, "write the panel card screenshots to docs/")

// cardShot saves the card of callID as name: into docs/ under
// -update-screenshots, else into the test's artifacts.
func (b *browser) cardShot(callID, name string) {
	b.T.Helper()
	sctx, scancel := context.WithTimeout(b.Ctx, 20*time.Second)
	defer scancel()
	// Still, so the ringing animation does not move the shadow between runs.
	_, _ = chromedp.Run(sctx, chromedp.Evaluate[bool](`(() => { document.querySelectorAll(".card").forEach(c => c.style.animation = "none"); return true })()`))
	png, err := chromedp.Run(sctx, chromedp.Screenshot(chromedp.CSS(`.card[data-call="`+callID+`"]`)))
	if err != nil {
		b.T.Fatalf("screenshot %s: %v", name, err)
	}
	dir := artifactDir(b.T)
	if *updateScreenshots {
		dir = filepath.Join("..", "docs")
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.T.Fatal(err)
	}
	b.T.Logf("screenshot: %s (%d bytes)", p, len(png))
}

// The card in a real headless Chromium: the customer's lists as a short
// timeline, the network's name on a miss (never under privacy), the pick
// list of a shared number with the agent's choice reaching the webhook,
// and one-click actions with their results, a failing CRM's included.
// Everything from the CRM or the caller stays text.
func TestPanelCardInChromium(t *testing.T) {
	br := newBrowser(t)
	const key = "action-signing-key-0123456789"
	var mu sync.Mutex
	var crmBodies []string
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !VerifySignature([]byte(key), r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), b) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		crmBodies = append(crmBodies, r.URL.Path+" "+string(b))
		mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/api/tickets") {
			w.WriteHeader(http.StatusInternalServerError) // the ticket desk is down
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(crm.Close)
	hook := newReceiver(t)
	u, _ := url.Parse(crm.URL)
	secretFile := filepath.Join(t.TempDir(), "crm-actions")
	if err := os.WriteFile(secretFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	in := startInstance(t, Config{
		Links: []LinkConfig{
			{Name: "crm", Label: "Open in CRM", URL: "https://crm.example/customers/{customer_id}", When: "hit"},
			{Name: "new_customer", Label: "New customer", URL: "https://crm.example/customers/new?phone={e164}&name={network_name}", When: "miss"},
		},
		ActionHosts: []string{u.Host},
		Actions: []ActionConfig{
			{Name: "log_call", Label: "Log call", URL: crm.URL + "/api/calls", Body: map[string]string{"customer": "{customer_id}", "agent": "{agent}", "call": "{call_id}"}, SecretFile: secretFile},
			{Name: "open_ticket", Label: "Open ticket", URL: crm.URL + "/api/tickets", Body: map[string]string{"customer": "{customer_id}"}, SecretFile: secretFile},
		},
		Webhooks: []WebhookConfig{{URL: hook.srv.URL, Secret: hookSecret, Events: []string{StateChosen}}},
	}, Deps{})
	br.step("open panel", chromedp.Navigate(in.srv.URL+"/agent?token="+token(t, "1001")))
	br.wait("connected", `document.getElementById("conn").dataset.state === "live"`)
	card := func(id string) string { return `document.querySelector('.card[data-call="` + id + `"]')` }
	texts := func(sel string) string {
		t.Helper()
		return br.eval(`[...document.querySelectorAll('` + sel + `')].map(e => e.textContent).join("|")`)
	}
	ago := func(h int) string { return time.Now().Add(-time.Duration(h) * time.Hour).UTC().Format(time.RFC3339) }

	// 1. The timeline: history and tickets, newest first, status badges,
	// a link only where the item has an http(s) one.
	d := hitDecision()
	d.Customer.Lists = map[string][]map[string]any{
		"history": {
			{"at": ago(72), "channel": "chat", "summary": "Modem reset walkthrough"},
			{"at": ago(2), "channel": "phone", "summary": "Called about the outage credit", "url": "https://crm.example/i/9"},
			{"at": ago(26), "channel": "email", "summary": "Asked for a copy of the invoice"},
		},
		"tickets": {
			{"id": "T-5490", "at": ago(240), "summary": "Invoice address change", "status": "closed", "url": "javascript:alert(1)"},
			{"id": "T-5521", "at": ago(30), "summary": "Fibre modem drops at night", "status": "open", "url": "https://crm.example/t/5521"},
		},
	}
	enrich(in.p, "t1", d)
	ring(in.p, "t1", "1001")
	br.wait("timeline", card("t1")+` && `+card("t1")+`.querySelectorAll(".tl-item").length === 5`)
	if got := texts(`.card[data-call="t1"] .tl[data-list="history"] .tl-text`); got != "Called about the outage credit|Asked for a copy of the invoice|Modem reset walkthrough" {
		t.Errorf("history, newest first: %q", got)
	}
	if got := texts(`.card[data-call="t1"] .tl h4`); got != "History|Tickets" {
		t.Errorf("lists %q", got)
	}
	if got := br.eval(`[...document.querySelectorAll('.card[data-call="t1"] .tl[data-list="tickets"] .tl-item')].map(li => li.querySelector(".tl-status").dataset.status + ":" + li.querySelector(".tl-status").className + ":" + (li.querySelector(".tl-link") ? li.querySelector(".tl-link").href : "-")).join("|")`); got != "open:badge tl-status warn:https://crm.example/t/5521|closed:badge tl-status good:-" {
		t.Errorf("tickets %q", got)
	}
	br.cardShot("t1", "panel-timeline.png")

	// 2. Actions: callpop sends them signed; the card shows how the CRM
	// answered, a failure included.
	br.eval(card("t1") + `.querySelector('button[data-action="log_call"]').click(); "ok"`)
	br.wait("log_call done", card("t1")+`.querySelector('.action-result.ok[data-action="log_call"]') !== null`)
	br.eval(card("t1") + `.querySelector('button[data-action="open_ticket"]').click(); "ok"`)
	br.wait("open_ticket failed", card("t1")+`.querySelector('.action-result.failed[data-action="open_ticket"]') !== null`)
	if got := texts(`.card[data-call="t1"] .action-result`); got != "Log calldone (201)|Open ticketfailed: the CRM answered 500 Internal Server Error" {
		t.Errorf("action results %q", got)
	}
	mu.Lock()
	if len(crmBodies) != 2 || crmBodies[0] != `/api/calls {"agent":"1001","call":"t1","customer":"CRM-4711"}` {
		t.Errorf("CRM got %q", crmBodies)
	}
	mu.Unlock()
	if got := br.eval(`document.body.innerHTML.includes("` + key + `") + "|" + document.cookie`); got != "false|" {
		t.Errorf("the page holds a CRM key or a readable cookie: %s", got)
	}
	br.cardShot("t1", "panel-action.png")

	// 3. The network's name on a miss, and in the new-customer link.
	enrichCall(in.p, "n1", call.Decision{Match: call.MatchMiss, E164: "+31301234567", Priority: 1}, call.Call{CLI: "+31301234567", CLIName: "Bakkerij Jansen"})
	ring(in.p, "n1", "1001")
	br.wait("miss card", card("n1")+` !== null`)
	if got := br.eval(card("n1") + `.querySelector(".pop-name").textContent + "|" + ` + card("n1") + `.querySelector(".network").textContent + "|" + ` + card("n1") + `.querySelector('a[data-link="new_customer"]').href`); got != "Bakkerij Jansen|Name from the network (not in the CRM)|https://crm.example/customers/new?phone=%2B31301234567&name=Bakkerij+Jansen" {
		t.Errorf("miss card %q", got)
	}
	br.cardShot("n1", "panel-network-name.png")
	// No name from the network: "Unknown caller"; privacy: never the name.
	enrichCall(in.p, "n2", call.Decision{Match: call.MatchMiss, E164: "+31301234568"}, call.Call{CLI: "+31301234568"})
	enrichCall(in.p, "n3", call.Decision{Match: call.MatchAnonymous, E164: "+31301234569", Privacy: true}, call.Call{CLI: "anonymous", CLIName: "Piet Geheim", Privacy: true})
	ring(in.p, "n2", "1001")
	ring(in.p, "n3", "1001")
	br.wait("more cards", card("n2")+` !== null && `+card("n3")+` !== null`)
	if got := texts(`.card[data-call="n2"] .pop-name`) + "|" + texts(`.card[data-call="n3"] .pop-name`); got != "Unknown caller|Withheld number" {
		t.Errorf("names %q", got)
	}
	if got := br.eval(`String(document.body.textContent.includes("Piet Geheim"))`); got != "false" {
		t.Error("the network name of a caller who asked for privacy is on the page")
	}

	// 4. A shared number: the best candidate with a pick list; the pick
	// goes to the webhook as a chosen event and the card follows it.
	enrichCall(in.p, "m1", multipleDecision(), call.Call{CLI: "+31201234567", CLIName: "DE VRIES"})
	ring(in.p, "m1", "1001")
	br.wait("pick list", card("m1")+` && !`+card("m1")+`.querySelector(".pick").hidden`)
	if got := texts(`.card[data-call="m1"] .cand-name`); got != "Jan de Vries|Els de Vries|De Vries Bakery" {
		t.Errorf("candidates %q", got)
	}
	if got := br.eval(card("m1") + `.querySelector(".pop-name").textContent + "|" + ` + card("m1") + `.querySelector(".network").textContent + "|" + ` + card("m1") + `.querySelector(".pick h4").textContent + "|" + ` + card("m1") + `.querySelectorAll(".cand-link").length`); got != "Jan de Vries|Network name: DE VRIES|3 customers share this number|2" {
		t.Errorf("multiple card %q", got)
	}
	br.cardShot("m1", "panel-pick.png")
	br.eval(card("m1") + `.querySelector('.cand[data-candidate="CRM-2"] .pick-btn').click(); "ok"`)
	br.wait("chosen", card("m1")+`.querySelector(".pop-name").textContent === "Els de Vries"`)
	waitFor(t, func() bool { return hook.count() == 1 })
	hook.mu.Lock()
	var ev Pop
	err := json.Unmarshal(hook.bodies[0], &ev)
	hdr := hook.got[0].Header
	hook.mu.Unlock()
	if err != nil || ev.State != StateChosen || ev.Chosen == nil || ev.Chosen.ID != "CRM-2" || ev.CallID != "m1" || hdr.Get(HeaderEvent) != StateChosen {
		t.Errorf("chosen event %+v %v", ev, err)
	}
	if got := texts(`.card[data-call="m1"] .cand.current .cand-name`) + "|" + br.eval(card("m1")+`.querySelector('a[data-link="crm"]').href`); got != "Els de Vries|https://crm.example/c/CRM-2" {
		t.Errorf("current candidate and CRM link %q", got)
	}
	// The call's action now acts on the chosen customer.
	br.eval(card("m1") + `.querySelector('button[data-action="log_call"]').click(); "ok"`)
	br.wait("m1 logged", card("m1")+`.querySelector('.action-result.ok[data-action="log_call"]') !== null`)
	mu.Lock()
	if last := crmBodies[len(crmBodies)-1]; !strings.Contains(last, `"customer":"CRM-2"`) {
		t.Errorf("action after the choice sent %q", last)
	}
	mu.Unlock()
	br.cardShot("m1", "panel-pick-chosen.png")

	// 5. Hostile lists, candidates and network names stay text.
	const evil = `<img src=x onerror="document.title='pwned'">`
	md := multipleDecision()
	md.Customer.Lists = map[string][]map[string]any{"tickets": {{"summary": evil, "status": evil, "url": "javascript:alert(1)"}}}
	md.Candidates[1].Name = evil
	enrichCall(in.p, "x1", md, call.Call{CLI: "+31201234567", CLIName: evil})
	ring(in.p, "x1", "1001")
	br.wait("evil card", card("x1")+` !== null`)
	if got := br.eval(`String(document.querySelectorAll('.card img, .card script').length) + document.title + [...document.querySelectorAll('a')].filter(a => !a.href.startsWith('http')).length`); got != "0callpop · agent0" {
		t.Errorf("hostile data became markup: %s", got)
	}
	if got := texts(`.card[data-call="x1"] .tl-text`); got != evil {
		t.Errorf("ticket text %q", got)
	}

	// 6. A chat contact: its channel and subject on the card; a hostile
	// subject and name stay text. Its end takes the card off "Now".
	cd := hitDecision()
	cd.CallID = "ct-chat1"
	if err := in.p.OfferContact(context.Background(), call.Enriched{CallID: "ct-chat1", PBX: "http", Decision: cd, Call: call.Call{ID: "ct-chat1",
		Channel: call.ChannelChat, CLI: "+31201234567", Email: "jan@example.nl", Subject: "Where is my order 4711? It was due on Friday."}}, "1001"); err != nil {
		t.Fatal(err)
	}
	br.wait("chat card", card("ct-chat1")+` !== null`)
	if got := br.eval(card("ct-chat1") + `.querySelector('.badge[data-badge="channel"]').textContent + "|" + ` + card("ct-chat1") + `.querySelector(".subject-text").textContent + "|" + ` + card("ct-chat1") + `.querySelector(".state").textContent + "|" + ` + card("ct-chat1") + `.querySelector(".number").textContent + "|" + ` + card("ct-chat1") + `.dataset.channel`); got != "Chat|Where is my order 4711? It was due on Friday.|Assigned to you|+31201234567 · jan@example.nl|chat" {
		t.Errorf("chat card %q", got)
	}
	br.cardShot("ct-chat1", "panel-contact.png")
	const evilSubject = `<img src=x onerror="document.title='pwned'"> ${system(id)} <script>document.title='pwned'</script>`
	if err := in.p.OfferContact(context.Background(), call.Enriched{CallID: "ct-evil", PBX: "http", Decision: call.Decision{Match: call.MatchMiss},
		Call: call.Call{ID: "ct-evil", Channel: call.ChannelEmail, CLIName: evil, Subject: evilSubject}}, "1001"); err != nil {
		t.Fatal(err)
	}
	br.wait("evil contact", card("ct-evil")+` !== null`)
	if got := br.eval(`String(document.querySelectorAll('.card img, .card script').length) + document.title`); got != "0callpop · agent" {
		t.Errorf("hostile subject became markup: %s", got)
	}
	if got := texts(`.card[data-call="ct-evil"] .subject-text`) + "|" + texts(`.card[data-call="ct-evil"] .badge[data-badge="channel"]`); got != `<img src=x onerror=document.title='pwned'> system(id) <script>document.title='pwned'</script>|E-mail` {
		t.Errorf("hostile subject %q", got)
	}
	if ok, err := in.p.EndContact(context.Background(), "ct-chat1"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	br.wait("chat ended", card("ct-chat1")+` === null && document.querySelector('.recent-item[data-call="ct-chat1"] .r-state').textContent === "Chat · Ended"`)
}
