package popper

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/internal/testredis"
	"github.com/callpop/callpop/internal/testrouter"
	"github.com/callpop/callpop/router"
)

// contactEnriched is a chat contact as the router hands it over.
func contactEnriched(id, subject string) call.Enriched {
	d := hitDecision()
	d.CallID = id
	return call.Enriched{CallID: id, PBX: "http", Decision: d, Call: call.Call{ID: id, PBX: "http", Channel: call.ChannelChat,
		CLI: "+31201234567", CLIName: "Jan", Email: "jan@example.nl", Subject: subject}}
}

func popOf(t *testing.T, m sseMsg) Pop {
	t.Helper()
	var p Pop
	if err := json.Unmarshal([]byte(m.Data), &p); err != nil {
		t.Fatalf("%s: %v", m.Data, err)
	}
	return p
}

// TestContactOfferAndEnd: an offered contact reaches the agent's stream at
// once (state offered, its channel, subject and e-mail, the customer card)
// and the webhooks; its end sends ended once; a second end finds nothing.
func TestContactOfferAndEnd(t *testing.T) {
	var mu sync.Mutex
	var hooked []Pop
	var events []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p Pop
		_ = json.Unmarshal(b, &p)
		mu.Lock()
		hooked = append(hooked, p)
		events = append(events, r.Header.Get(HeaderEvent))
		mu.Unlock()
	}))
	defer hook.Close()
	in := startInstance(t, Config{Webhooks: []WebhookConfig{{URL: hook.URL, Events: []string{StateOffered, StateEnded}}}}, Deps{})
	s := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	hostile := "<img src=x onerror=alert(1)> ${system(id)}\r\nHANGUP"
	if err := in.p.OfferContact(context.Background(), contactEnriched("ct-abc", hostile), "1001"); err != nil {
		t.Fatal(err)
	}
	p := popOf(t, s.next(t, 10*time.Second))
	if p.State != StateOffered || p.CallID != "ct-abc" || p.Agent != "1001" || p.Channel != "chat" || p.Email != "jan@example.nl" ||
		p.Customer == nil || p.Customer.Name != "Jan de Vries" || p.Number != "+31201234567" || p.NetworkName != "Jan" {
		t.Fatalf("offered %+v", p)
	}
	if strings.ContainsAny(p.Subject, "${}\r\n") || !strings.Contains(p.Subject, "<img src=x onerror=alert(1)>") {
		t.Errorf("subject %q: cleaned like every value, markup left for the panel to show as text", p.Subject)
	}
	ok, err := in.p.EndContact(context.Background(), "ct-abc")
	if !ok || err != nil {
		t.Fatalf("end: %v %v", ok, err)
	}
	e := popOf(t, s.next(t, 10*time.Second))
	if e.State != StateEnded || e.CallID != "ct-abc" || e.Cause != causeContactEnded || e.Channel != "chat" || e.ID == p.ID || cmpPopID(e.ID, p.ID) <= 0 {
		t.Fatalf("ended %+v after %+v", e, p)
	}
	if ok, err := in.p.EndContact(context.Background(), "ct-abc"); ok || err != nil {
		t.Fatalf("second end: %v %v", ok, err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(hooked) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if events[0] != "offered" || events[1] != "ended" || hooked[0].Channel != "chat" || hooked[0].Subject != p.Subject {
		t.Errorf("webhook %v %+v", events, hooked)
	}
	if in.p.contacts.Len() != 0 {
		t.Errorf("%d contacts kept", in.p.contacts.Len())
	}
	if err := in.p.OfferContact(context.Background(), contactEnriched("ct-x", ""), "not an agent!"); err == nil {
		t.Error("bad agent taken")
	}
}

// TestCallPopChannel: a call's pops say voice, a callback's callback with
// its note as the subject.
func TestCallPopChannel(t *testing.T) {
	in := startInstance(t, Config{}, Deps{})
	s := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	enrich(in.p, "c1", hitDecision())
	ring(in.p, "c1", "1001")
	if p := popOf(t, s.next(t, 10*time.Second)); p.Channel != "voice" || p.Subject != "" || p.Email != "" {
		t.Fatalf("call: %+v", p)
	}
	d := hitDecision()
	d.CallID = "cb1"
	in.p.CallEnriched(call.Enriched{CallID: "cb1", Decision: d, Call: call.Call{ID: "cb1", PBX: "asterisk", Channel: call.ChannelCallback, Subject: "Call me about my\ninvoice"}})
	ring(in.p, "cb1", "1001")
	if p := popOf(t, s.next(t, 10*time.Second)); p.Channel != "callback" || p.Subject != "Call me about my invoice" {
		t.Fatalf("callback: %+v", p)
	}
}

// TestContactStoreExpires: contacts kept in-process expire after ContactTTL
// and are swept; their number is bounded.
func TestContactStoreExpires(t *testing.T) {
	var cs contacts
	now := time.Now()
	for i := range 10 {
		cs.put("ct-"+itoa(i), Pop{CallID: "ct-" + itoa(i)}, now)
	}
	if _, ok := cs.take("ct-3", now.Add(time.Hour)); !ok {
		t.Fatal("ct-3 not found within its TTL")
	}
	if _, ok := cs.take("ct-4", now.Add(ContactTTL+time.Second)); ok {
		t.Fatal("ct-4 found after its TTL")
	}
	cs.Sweep(now.Add(ContactTTL + time.Second))
	if cs.Len() != 0 || len(cs.order) != 0 {
		t.Fatalf("%d kept, order %d", cs.Len(), len(cs.order))
	}
	for i := range maxLocalContacts + 10 {
		cs.put("ct-"+itoa(i), Pop{}, now)
	}
	if cs.Len() != maxLocalContacts {
		t.Fatalf("%d kept", cs.Len())
	}
	if _, ok := cs.take("ct-0", now); ok {
		t.Fatal("the oldest was not dropped")
	}
}

// contactRouter is the real decision path (the sample CSV) behind the
// contact endpoints, popping through p.
func contactRouter(t *testing.T, p *Popper) *httptest.Server {
	t.Helper()
	cfg := router.DefaultConfig()
	cfg.FastAGI.Listen = ""
	r := testrouter.New(t, "NL", crm.DefaultConfig(), cfg, 2*time.Second)
	r.SetContactPops(p)
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func postJSON(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestContactThroughRouter: POST /v1/contacts with an agent, through the
// real router and CRM, pops the customer card to the agent's stream; its
// end ends it.
func TestContactThroughRouter(t *testing.T) {
	in := startInstance(t, Config{}, Deps{})
	api := contactRouter(t, in.p)
	s := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	code, out := postJSON(t, api.URL+"/v1/contacts", `{"channel":"chat","from":{"phone":"+31 20 123 4567","name":"Anna"},"subject":"Delivery in December","agent":"1001"}`)
	if code != http.StatusOK || out["match"] != "hit" {
		t.Fatalf("%d %v", code, out)
	}
	id := out["id"].(string)
	p := popOf(t, s.next(t, 10*time.Second))
	if p.State != StateOffered || p.CallID != id || p.Channel != "chat" || p.Subject != "Delivery in December" || p.Customer == nil || p.Customer.ID != "C1001" {
		t.Fatalf("%+v", p)
	}
	if code, out := postJSON(t, api.URL+"/v1/contacts/"+id+"/end", ``); code != http.StatusOK || out["ended"] != true {
		t.Fatalf("end: %d %v", code, out)
	}
	if p := popOf(t, s.next(t, 10*time.Second)); p.State != StateEnded || p.CallID != id {
		t.Fatalf("%+v", p)
	}
	if code, _ := postJSON(t, api.URL+"/v1/contacts/"+id+"/end", ``); code != http.StatusNotFound {
		t.Fatalf("second end: %d", code)
	}
}

// TestContactAcrossInstances: with Redis, a contact offered through one
// instance reaches the agent's stream on another, and any instance ends it
// (once).
func TestContactAcrossInstances(t *testing.T) {
	srv := testredis.Start(t)
	a := startInstance(t, Config{}, Deps{Redis: newRedis(t, srv.Addr)})
	b := startInstance(t, Config{}, Deps{Redis: newRedis(t, srv.Addr)})
	apiA, apiB := contactRouter(t, a.p), contactRouter(t, b.p)
	onB := openStream(t, b.srv.URL, "1001", token(t, "1001"), nil)
	code, out := postJSON(t, apiA.URL+"/v1/contacts", `{"channel":"social","from":{"phone":"+1 415 555 0123"},"agent":"1001"}`)
	if code != http.StatusOK || out["match"] != "hit" {
		t.Fatalf("%d %v", code, out)
	}
	id := out["id"].(string)
	if p := popOf(t, onB.next(t, 10*time.Second)); p.State != StateOffered || p.CallID != id || p.Channel != "social" {
		t.Fatalf("%+v", p)
	}
	if a.p.contacts.Len() != 0 {
		t.Fatal("kept in-process although Redis took it")
	}
	if code, _ := postJSON(t, apiB.URL+"/v1/contacts/"+id+"/end", ``); code != http.StatusOK {
		t.Fatalf("end on B: %d", code)
	}
	if p := popOf(t, onB.next(t, 10*time.Second)); p.State != StateEnded || p.CallID != id {
		t.Fatalf("%+v", p)
	}
	if code, _ := postJSON(t, apiA.URL+"/v1/contacts/"+id+"/end", ``); code != http.StatusNotFound {
		t.Fatalf("end again on A: %d", code)
	}
	rdb := newRedis(t, srv.Addr)
	// A contact left open expires in Redis by itself.
	code, out = postJSON(t, apiA.URL+"/v1/contacts", `{"channel":"chat","agent":"1002"}`)
	if code != http.StatusOK {
		t.Fatalf("%d %v", code, out)
	}
	ttl, err := rdb.PTTL(context.Background(), a.p.contactKey(out["id"].(string))).Result()
	if err != nil || ttl <= ContactTTL-time.Hour || ttl > ContactTTL {
		t.Fatalf("ttl %v, %v", ttl, err)
	}
}

// TestContactRedisDown: when Redis does not take the contact, the pop is
// still offered and this instance can end it.
func TestContactRedisDown(t *testing.T) {
	srv := testredis.Start(t)
	a := startInstance(t, Config{}, Deps{Redis: newRedis(t, srv.Addr)})
	s := openStream(t, a.srv.URL, "1001", token(t, "1001"), nil)
	srv.Stop()
	if err := a.p.OfferContact(context.Background(), contactEnriched("ct-down", "x"), "1001"); err != nil {
		t.Fatal(err)
	}
	if p := popOf(t, s.next(t, 10*time.Second)); p.State != StateOffered || p.CallID != "ct-down" {
		t.Fatalf("%+v", p)
	}
	if ok, err := a.p.EndContact(context.Background(), "ct-down"); !ok || err != nil {
		t.Fatalf("end: %v %v", ok, err)
	}
	if p := popOf(t, s.next(t, 10*time.Second)); p.State != StateEnded {
		t.Fatalf("%+v", p)
	}
}
