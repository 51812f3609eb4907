package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callpop/callpop/internal/apiauth"
	"github.com/callpop/callpop/internal/testbrowser"
	"github.com/callpop/callpop/stats"
)

// The stats page in a real headless Chromium while `callpop demo` runs:
// agent 1002 (a supervisor in the demo) signs in with the panel URL the
// demo prints, opens /stats, and the page keeps updating as the simulated
// Asterisk's calls flow, never showing a whole number. With
// CALLPOP_ARTIFACTS set, the screenshot is written there as stats.png
// (`CALLPOP_ARTIFACTS=$PWD/docs go test ./cmd/callpop -run TestStatsPageInChromium`
// makes docs/stats.png).
func TestStatsPageInChromium(t *testing.T) {
	testbrowser.Find(t) // skips before anything starts when Chromium is absent
	var out, errOut syncBuf
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	demoDone := make(chan error, 1)
	go func() {
		demoDone <- runDemo(ctx, demoOptions{PBX: PBXAsterisk, Rate: 8, Listen: "127.0.0.1:0", Agents: true}, &out, &errOut)
	}()
	defer func() {
		cancel()
		if err := <-demoDone; err != nil {
			t.Errorf("demo: %v", err)
		}
	}()
	panelRE := regexp.MustCompile(`agent 1002's panel: (http://127\.0\.0\.1:\d+)(/agent\?token=\S+)`)
	var base, panel string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m := panelRE.FindStringSubmatch(out.String()); m != nil {
			base, panel = m[1], m[1]+m[2]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo printed no panel URL:\n%s\n%s", out.String(), errOut.String())
		}
	}
	if !strings.Contains(out.String(), "live stats (1002 is a supervisor; open the panel first): "+base+"/stats") {
		t.Errorf("the demo does not print the stats page:\n%s", out.String())
	}

	b, step, eval, wait := statsBrowser(t)
	step("sign in as 1002", chromedp.Navigate(panel))
	step("open the stats", chromedp.Navigate(base+"/stats"))
	wait("live", `document.getElementById("status").classList.contains("live")`)
	wait("calls listed", `document.querySelectorAll("#calls tbody tr").length >= 5`)
	wait("pbx connected", `document.getElementById("pbx").textContent === "connected"`)
	calls, err := strconv.ParseFloat(eval(`document.body.dataset.calls`), 64)
	if err != nil {
		t.Fatal(err)
	}
	updates := eval(`document.body.dataset.updates`)
	// updating while calls flow: more calls counted, more snapshots drawn
	wait("more calls", `Number(document.body.dataset.calls) > `+strconv.FormatFloat(calls, 'f', -1, 64)+
		` && Number(document.body.dataset.updates) > `+updates)
	wait("chart drawn", `[...document.querySelectorAll("#w-minute .chart rect")].some(r => Number(r.getAttribute("height")) > 0)`)
	wait("shares", `document.querySelector('#w-minute .share.hit .pct').textContent !== "0 %"`)
	wait("crm latency", `document.querySelectorAll("#w-hour .crm tbody tr").length >= 1`)
	// Contacts count by channel beside the calls (voice).
	for _, body := range []string{demoContact, `{"channel":"email","from":{"email":"anna@example.nl"},"subject":"Invoice"}`} {
		resp, err := http.Post(base+"/v1/contacts", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var ct struct{ ID, Channel, Match string }
		err = json.NewDecoder(resp.Body).Decode(&ct)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || ct.ID == "" || ct.Match == "" {
			t.Fatalf("/v1/contacts: %d %+v %v", resp.StatusCode, ct, err)
		}
		if ct.Channel == "chat" { // the demo's chat pops to agent 1002: end it
			resp, err := http.Post(base+"/v1/contacts/"+ct.ID+"/end", "application/json", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("end: %d", resp.StatusCode)
			}
		}
	}
	chanCount := func(ch string) string {
		return `Number(document.querySelector('#w-minute .chan[data-channel="` + ch + `"] .count').textContent)`
	}
	wait("contacts by channel", chanCount("chat")+` >= 1 && `+chanCount("email")+` >= 1 && `+chanCount("voice")+` >= 5 && `+chanCount("sms")+` === 0`)
	if got := eval(`[...document.querySelectorAll("#w-hour .chan .name")].map(e => e.textContent).join("|")`); got != "voice|chat|e-mail|SMS|social|callback" {
		t.Errorf("channels %q", got)
	}
	if cps := eval(`document.querySelector('#w-minute [data-f="cps"]').textContent`); cps == "–" || cps == "0.00" {
		t.Errorf("calls/s %q", cps)
	}
	text := eval(`document.body.innerText`)
	for _, n := range demoKnown {
		if strings.Contains(text, n) || strings.Contains(text, strings.TrimPrefix(n, "+")) {
			t.Errorf("the whole number %s on the page", n)
		}
	}
	if !strings.Contains(text, "***") {
		t.Errorf("no masked number on the page:\n%s", text)
	}
	if dir := os.Getenv("CALLPOP_ARTIFACTS"); dir != "" {
		// a chart worth showing: a quarter of a minute of calls
		wait("15 s of calls", `[...document.querySelectorAll("#w-minute .chart rect")].filter(r => Number(r.getAttribute("height")) > 0).length >= 15`)
		b.Screenshot(dir, "stats.png")
	}
}

// statsBrowser starts a headless Chromium for the test and returns it with
// its step, eval and wait (a minute; a failure says the page's status).
func statsBrowser(t *testing.T) (b *testbrowser.Browser, step func(string, ...chromedp.Action[chromedp.Void]), eval func(string) string, wait func(string, string)) {
	b = testbrowser.New(t, 1600, 1000)
	b.Hint = func() string {
		return "status " + strconv.Quote(b.Eval(`document.getElementById("status").textContent`))
	}
	wait = func(name, js string) {
		t.Helper()
		b.Wait(name, js, 60*time.Second)
	}
	return b, b.Step, b.Eval, wait
}

// A wall screen with an API key: /stats#key=<key> streams with the key in
// the Authorization header; a key without the scope stats is told why.
func TestStatsPageWithKeyInChromium(t *testing.T) {
	testbrowser.Find(t) // skips before anything starts when Chromium is absent
	const statsKey, metricsKey, routeKey = "wall-key-0123456789abcdef", "prom-key-0123456789abcdef", "pbx-key-0123456789abcdef"
	t.Setenv(apiauth.EnvName("wall"), statsKey)
	t.Setenv(apiauth.EnvName("prom"), metricsKey)
	t.Setenv(apiauth.EnvName("pbx"), routeKey)
	cfg := DefaultConfig()
	cfg.API.Keys = []apiauth.KeyConfig{{Name: "wall", Scopes: []string{apiauth.ScopeStats}},
		{Name: "prom", Scopes: []string{apiauth.ScopeMetrics}}, {Name: "pbx", Scopes: []string{apiauth.ScopeRoute}}}
	srv := newTestServer(t, cfg)
	route := func() {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/route?number=%2B31201234567", nil)
		req.Header.Set("Authorization", "Bearer "+routeKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/v1/route: %d", resp.StatusCode)
		}
	}
	_, step, eval, wait := statsBrowser(t)
	step("wrong scope", chromedp.Navigate(srv.URL+"/stats#key="+metricsKey))
	wait("refused", `document.getElementById("status").textContent.includes("refused (403)")`)
	step("open with the key", chromedp.Navigate(srv.URL+"/stats#key="+statsKey))
	step("reload", chromedp.Reload())
	wait("live", `document.getElementById("status").classList.contains("live")`)
	route()
	wait("the call listed", `document.querySelectorAll("#calls tbody tr").length >= 1`)
	if got := eval(`document.querySelector("#calls tbody tr td:nth-child(2)").textContent`); got != stats.Mask("+31201234567") {
		t.Errorf("number %q", got)
	}
}
