package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunContacts: `callpop run` serves POST /v1/contacts under the
// contacts scope (no key 401, a key of other scopes 403), pops the contact
// to the agent named, ends it, and audits each request with the contact's
// id and never the sender's number, address, name or subject.
func TestRunContacts(t *testing.T) {
	const (
		chatKey  = "chat-platform-key-0123456789"
		otherKey = "other-scopes-key-0123456789"
		secret   = "contacts-popper-token-secret-0123456789"
	)
	t.Setenv("CALLPOP_API_KEYS_CHAT_KEY", chatKey)
	t.Setenv("CALLPOP_API_KEYS_OPS_KEY", otherKey)
	t.Setenv("CALLPOP_POPPER_TOKEN_SECRET", secret)
	cfg := runConfig + `
api:
  keys:
    - {name: chat, scopes: [contacts]}
    - {name: ops, scopes: [route, lookup, cache, metrics, stats]}
`
	base, logs, stop := startRun(t, writeConfig(t, cfg))
	defer func() { _ = stop() }()
	post := func(path, key, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	const body = `{"channel":"chat","from":{"phone":"+31 20 123 4567","name":"Anna ${x}"},"subject":"Secret subject","agent":"1001"}`
	if code, _ := post("/v1/contacts", "", body); code != http.StatusUnauthorized {
		t.Errorf("no key: %d", code)
	}
	if code, _ := post("/v1/contacts", otherKey, body); code != http.StatusForbidden {
		t.Errorf("other scopes: %d", code)
	}
	pops := openPops(t, base, secret, "1001")
	code, out := post("/v1/contacts", chatKey, body)
	if code != http.StatusOK || out["match"] != "hit" || out["channel"] != "chat" || out["agent"] != "1001" {
		t.Fatalf("contact: %d %v\n%s", code, out, logs.String())
	}
	id, _ := out["id"].(string)
	for _, want := range []string{"offered", "ended"} {
		if want == "ended" {
			if code, _ := post("/v1/contacts/"+id+"/end", otherKey, ""); code != http.StatusForbidden {
				t.Errorf("end, other scopes: %d", code)
			}
			if code, out := post("/v1/contacts/"+id+"/end", chatKey, ""); code != http.StatusOK || out["ended"] != true {
				t.Fatalf("end: %d %v", code, out)
			}
		}
		select {
		case p := <-pops:
			if p.CallID != id || p.State != want || p.Channel != "chat" || p.Customer["name"] != "Anna de Vries" {
				t.Errorf("pop %+v, want %s", p, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no %s pop\n%s", want, logs.String())
		}
	}
	if code, _ := post("/v1/contacts/"+id+"/end", chatKey, ""); code != http.StatusNotFound {
		t.Errorf("second end: %d", code)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var audits []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"endpoint":"contacts"`) {
			audits = append(audits, l)
		}
		for _, s := range []string{"31201234567", "Secret subject", "Anna", chatKey} {
			if strings.Contains(l, s) {
				t.Errorf("log line holds %q: %s", s, l)
			}
		}
	}
	// contacts: 401, 403, 200; end: 403, 200, 404.
	if len(audits) != 6 || !strings.Contains(strings.Join(audits, "\n"), `"key":"chat","number":"","status":200,"match":"hit","contact":"`+id+`"`) {
		t.Errorf("audit lines:\n%s", strings.Join(audits, "\n"))
	}
}
