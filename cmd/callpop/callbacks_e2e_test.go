package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/internal/testredis"
	"github.com/callpop/callpop/popper"
)

// callbacksConfig is the callbacks section and the Redis they live in.
func callbacksConfig(redisAddr, dial string) string {
	return `
cache:
  redis:
    addrs: ["` + redisAddr + `"]
    timeout: 2s
callbacks:
  enabled: true
  allowed_regions: [GB, IE]
  retry_after: 100ms
  ring_timeout: 2s
  caller_id: {number: "+442079460000", name: "Example Ltd"}
` + dial
}

// postCallback sends a request to a running callpop (a loopback client:
// no api.keys needed) and returns the status and the answer.
func postCallback(t *testing.T, base string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(base+"/v1/callbacks", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// waitCallback polls GET /v1/callbacks/{id} until its state is want.
func waitCallback(t *testing.T, base, id, want string) map[string]any {
	t.Helper()
	var m map[string]any
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(base + "/v1/callbacks/" + id)
		if err != nil {
			t.Fatal(err)
		}
		m = nil
		_ = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if m["state"] == want {
			return m
		}
	}
	t.Fatalf("callback %s never %s: last %v", id, want, m)
	return nil
}

// expectCallbackPop waits for the ringing pop of call id on an agent's
// stream: a callback's, with the request's note as its subject.
func expectCallbackPop(t *testing.T, pops <-chan streamedPop, id, number, note string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case p := <-pops:
			if p.CallID != id {
				continue
			}
			if p.State != popper.StateRinging || p.Number != number || p.Customer == nil || (p.Match != "hit" && p.Match != "multiple") ||
				p.Channel != "callback" || p.Subject != note {
				t.Fatalf("pop %+v, want a callback ringing for %s with the customer's record and the note %q", p, number, note)
			}
			return
		case <-timeout:
			t.Fatalf("no pop for callback call %s", id)
		}
	}
}

// Asterisk: the customer is busy, callpop dials again after retry_after;
// the answered channel carries the decision's variables from its creation
// and the agent its Queue() rings gets the pop.
func TestRunCallbackOnAsterisk(t *testing.T) {
	rs := testredis.Start(t)
	sim, err := arisim.New(arisim.Options{Username: "callpop", Password: "test-ari-secret", App: "callpop-test", RingTime: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	sim.ScriptOutcomes("+442079460018", arisim.Busy)
	t.Setenv("CALLPOP_PBX_ASTERISK_PASSWORD", "test-ari-secret")
	t.Setenv("CALLPOP_POPPER_TOKEN_SECRET", popSecret)
	t.Setenv("CALLPOP_CACHE_KEY_SECRET", "test-cache-key-secret-0123456789")
	cfg := asteriskRunConfig(sim.URL()) + callbacksConfig(rs.Addr, "  asterisk: {endpoint: \"PJSIP/{number}@trunk\"}\n")
	base, logs, stop := startRun(t, writeConfig(t, cfg))
	defer func() { _ = stop() }()
	waitPBXReady(t, base)
	pops := openPops(t, base, popSecret, "1001")

	code, m := postCallback(t, base, map[string]string{"number": "+44 20 7946 0018", "name": "Liam", "note": "order 42", "queue": "callbacks"})
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/callbacks: %d %v", code, m)
	}
	id, _ := m["id"].(string)
	if _, ok := m["customer"]; ok || m["number"] != "+442079460018" || m["max_attempts"] != 3.0 {
		t.Errorf("answer %v", m)
	}
	if code, m := postCallback(t, base, map[string]string{"number": "+449098790999"}); code != 400 || m["field"] != "number" ||
		!strings.Contains(m["error"].(string), "premium-rate") {
		t.Errorf("premium rate: %d %v", code, m)
	}
	if code, m := postCallback(t, base, map[string]string{"number": "+14155550123"}); code != 400 || !strings.Contains(m["error"].(string), "region US") {
		t.Errorf("region not allowed: %d %v", code, m)
	}
	expectCallbackPop(t, pops, "cb-"+id+"-2", "+442079460018", "order 42")
	st := waitCallback(t, base, id, "connected")
	if st["attempts"] != 2.0 || st["last_outcome"] != "connected" {
		t.Errorf("status %v", st)
	}
	origs := sim.Originates()
	if len(origs) != 2 {
		t.Fatalf("%d originates, want 2 (busy, answered):\n%s", len(origs), logs.String())
	}
	for i, o := range origs {
		if o.Endpoint != "PJSIP/+442079460018@trunk" || o.Context != "callpop-callback" || o.Extension != "s" ||
			o.ID != "cb-"+id+"-"+string(rune('1'+i)) {
			t.Errorf("originate %d: %+v", i, o)
		}
		v := o.Variables
		if v["CALLPOP_MATCH"] == "" || v["CALLPOP_E164"] != "+442079460018" || v["QUEUE_PRIO"] == "" || v["CALLPOP_QUEUE"] != "callbacks" ||
			v["CALLPOP_CALLBACK_ID"] != id {
			t.Errorf("originate %d's variables: %v", i, v)
		}
	}
	if strings.Contains(logs.String(), "7946 0018") || strings.Contains(logs.String(), "+442079460018") {
		t.Error("the number in clear in the logs")
	}
}

// FreeSWITCH: bgapi originate with the decision in {…}; a hostile name
// reaches no command; the agent mod_callcenter rings gets the pop.
func TestRunCallbackOnFreeSWITCH(t *testing.T) {
	rs := testredis.Start(t)
	sim, err := eslsim.NewInbound(eslsim.Options{Password: "test-esl-secret", RingTime: 20 * time.Millisecond, Agents: []string{"1001", "1002"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	sim.ScriptDial("+35312345678", eslsim.Dial{Cause: "USER_BUSY"}, eslsim.Dial{Cause: "USER_BUSY"}, eslsim.Dial{Cause: "NO_ANSWER"})
	t.Setenv("CALLPOP_PBX_FREESWITCH_PASSWORD", "test-esl-secret")
	t.Setenv("CALLPOP_POPPER_TOKEN_SECRET", popSecret)
	t.Setenv("CALLPOP_CACHE_KEY_SECRET", "test-cache-key-secret-0123456789")
	cfg := runConfig + `
call: {budget: 2s}
pbx:
  kind: freeswitch
  freeswitch:
    mode: inbound
    address: ` + sim.Addr() + `
    reconnect_min: 20ms
    reconnect_max: 200ms
` + callbacksConfig(rs.Addr, "  freeswitch: {endpoint: \"sofia/gateway/trunk/{number}\", context: callbacks, extension: callback}\n")
	base, logs, stop := startRun(t, writeConfig(t, cfg))
	defer func() { _ = stop() }()
	waitPBXReady(t, base)

	// three attempts: busy, no answer, no answer → failed
	hostile := "${system(reboot)}\nevent-name: CUSTOM\n'quoted' " + strings.Repeat("{x}", 300)
	code, m := postCallback(t, base, map[string]string{"number": "+353 1 234 5678", "name": hostile, "note": hostile})
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %v", code, m)
	}
	failed := waitCallback(t, base, m["id"].(string), "failed")
	if failed["attempts"] != 3.0 || failed["last_outcome"] != "no_answer" {
		t.Errorf("status %v", failed)
	}

	pops := openPops(t, base, popSecret, "1001")
	code, m = postCallback(t, base, map[string]string{"number": "+442079460018", "name": hostile, "note": "order 42\nplease"})
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %v", code, m)
	}
	id := m["id"].(string)
	expectCallbackPop(t, pops, "cb-"+id+"-1", "+442079460018", "order 42 please")
	waitCallback(t, base, id, "connected")

	origs := sim.Originates()
	if len(origs) != 4 {
		t.Fatalf("%d originates, want 4:\n%s", len(origs), logs.String())
	}
	last := origs[3]
	if last.Endpoint != "sofia/gateway/trunk/+442079460018" || last.Context != "callbacks" || last.Extension != "callback" ||
		last.Var("callpop_match") == "" || last.Var("callpop_e164") != "+442079460018" || last.Var("cc_base_score") == "" ||
		last.Var("callpop_callback_id") != id || last.UUID != "cb-"+id+"-1" {
		t.Errorf("originate %+v", last)
	}
	for _, o := range origs {
		if strings.Contains(o.Arg, "${system") || strings.ContainsAny(o.Arg, "\n\r") || strings.Contains(o.Arg, "event-name") {
			t.Errorf("hostile input in the originate: %q", o.Arg)
		}
	}
}

// A request taken by one callpop is dialled by the next one started on
// the same Redis: a restart loses nothing.
func TestRunCallbackSurvivesRestart(t *testing.T) {
	rs := testredis.Start(t)
	sim, err := arisim.New(arisim.Options{Username: "callpop", Password: "test-ari-secret", App: "callpop-test", RingTime: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	t.Setenv("CALLPOP_PBX_ASTERISK_PASSWORD", "test-ari-secret")
	t.Setenv("CALLPOP_CACHE_KEY_SECRET", "test-cache-key-secret-0123456789")
	path := writeConfig(t, asteriskRunConfig(sim.URL())+callbacksConfig(rs.Addr, "  asterisk: {endpoint: \"PJSIP/{number}@trunk\"}\n"))
	base, _, stop := startRun(t, path)
	waitPBXReady(t, base)
	// due once this instance is gone
	when := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	code, m := postCallback(t, base, map[string]string{"number": "+442079460018", "when": when})
	if code != http.StatusCreated {
		_ = stop()
		t.Fatalf("POST: %d %v", code, m)
	}
	id := m["id"].(string)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(sim.Originates()); n != 0 {
		t.Fatalf("%d originates before the time asked", n)
	}
	// the next instance: it has the request, and updating it (now, this
	// time) keeps its id and dials it
	base, _, stop = startRun(t, path)
	defer func() { _ = stop() }()
	waitPBXReady(t, base)
	if st := waitCallback(t, base, id, "pending"); st["scheduled_for"] != when {
		t.Errorf("after the restart: %v", st)
	}
	code, m = postCallback(t, base, map[string]string{"number": "+442079460018"})
	if code != http.StatusOK || m["id"] != id {
		t.Fatalf("update after restart: %d %v", code, m)
	}
	waitCallback(t, base, id, "connected")
	if n := len(sim.Originates()); n != 1 {
		t.Errorf("%d originates, want 1", n)
	}
}

// `callpop demo` takes the callback its output shows (the curl line) and
// dials it on the simulated PBX.
func TestDemoCallback(t *testing.T) {
	for _, kind := range []string{PBXAsterisk, PBXFreeSWITCH} {
		t.Run(kind, func(t *testing.T) {
			var out, errOut syncBuf
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- runDemo(ctx, demoOptions{PBX: kind, Duration: 30 * time.Second, Rate: 1, Listen: "127.0.0.1:0", Agents: true}, &out, &errOut)
			}()
			curl := regexp.MustCompile(`curl -X POST '(http://127\.0\.0\.1:\d+)/v1/callbacks'`)
			var base string
			for deadline := time.Now().Add(20 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if m := curl.FindStringSubmatch(out.String()); m != nil {
					base = m[1]
				}
			}
			if base == "" {
				cancel()
				<-done
				t.Fatalf("no callback line in the demo's output:\n%s", out.String())
			}
			code, m := postCallback(t, base, map[string]string{"number": "+442079460018", "name": "Liam", "note": "about my order"})
			if code != http.StatusCreated {
				t.Fatalf("POST: %d %v", code, m)
			}
			waitCallback(t, base, m["id"].(string), "connected")
			if code, m := postCallback(t, base, map[string]string{"number": "+3225551234"}); code != 400 || m["field"] != "number" {
				t.Errorf("a Belgian number in the demo: %d %v", code, m)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if strings.Contains(errOut.String(), "level=ERROR") {
				t.Errorf("errors logged:\n%s", errOut.String())
			}
		})
	}
}

// Two callpop instances on one Redis: every request is dialled once, by
// one of them, whatever both schedulers see due at the same moment.
func TestRunCallbacksTwoInstances(t *testing.T) {
	rs := testredis.Start(t)
	t.Setenv("CALLPOP_PBX_ASTERISK_PASSWORD", "test-ari-secret")
	t.Setenv("CALLPOP_CACHE_KEY_SECRET", "test-cache-key-secret-0123456789")
	var sims []*arisim.Server
	var bases []string
	for range 2 {
		sim, err := arisim.New(arisim.Options{Username: "callpop", Password: "test-ari-secret", App: "callpop-test", RingTime: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		base, _, stop := startRun(t, writeConfig(t, asteriskRunConfig(sim.URL())+callbacksConfig(rs.Addr, "  asterisk: {endpoint: \"PJSIP/{number}@trunk\"}\n")))
		defer func() { _ = stop() }()
		waitPBXReady(t, base)
		sims, bases = append(sims, sim), append(bases, base)
	}
	var ids []string
	for i := range 20 {
		code, m := postCallback(t, bases[i%2], map[string]string{"number": fmt.Sprintf("+44207946%04d", i)})
		if code != http.StatusCreated {
			t.Fatalf("POST %d: %d %v", i, code, m)
		}
		ids = append(ids, m["id"].(string))
	}
	for i, id := range ids {
		waitCallback(t, bases[(i+1)%2], id, "connected") // read through the other instance
	}
	dialled := map[string]int{}
	for i, sim := range sims {
		for _, o := range sim.Originates() {
			dialled[o.ID]++
		}
		t.Logf("instance %d dialled %d", i, len(sim.Originates()))
	}
	for _, id := range ids {
		if n := dialled["cb-"+id+"-1"]; n != 1 || len(dialled) != len(ids) {
			t.Errorf("request %s dialled %d times (%d attempts in all for %d requests)", id, n, len(dialled), len(ids))
		}
	}
}
