package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
)

// waitReady polls /readyz until it reports want, or fails after 10s.
func waitReady(t *testing.T, base string, want bool) readyJSON {
	t.Helper()
	var st readyJSON
	var code int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		var body string
		code, body = get(t, base+"/readyz")
		st = readyJSON{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("/readyz body %q: %v", body, err)
		}
		if st.Ready == want && (code == 200) == want {
			return st
		}
	}
	t.Fatalf("/readyz never reported ready=%v (last %d %+v)", want, code, st)
	return st
}

// The whole product: `callpop run` with the FreeSWITCH adapter (inbound
// mode) against the ESL simulator, the embedded sample CRM and the
// in-process cache. /readyz follows the adapter's connection; a parked call
// is enriched and transferred.
func TestRunWithFreeSWITCH(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: "test-esl-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	// The password comes from the environment, as in production.
	t.Setenv("CALLPOP_PBX_FREESWITCH_PASSWORD", "test-esl-secret")
	// A generous budget: this test is about wiring, not speed, and the
	// first call on a loaded machine may be slow.
	cfg := runConfig + `
call: {budget: 2s}
pbx:
  kind: freeswitch
  freeswitch:
    mode: inbound
    address: ` + sim.Addr() + `
    reconnect_min: 20ms
    reconnect_max: 200ms
`
	base, logs, stop := startRun(t, writeConfig(t, cfg))
	defer func() { _ = stop() }()

	waitPBXReady(t, base)

	uuid := sim.OfferCall(eslsim.Caller{Number: "+14155550123", Name: "Caller", DNIS: "1000"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.WaitReleased(ctx, uuid); err != nil {
		t.Fatalf("call not released: %v\n%s", err, logs.String())
	}
	vars := sim.Vars(uuid)
	if vars["callpop_e164"] != "+14155550123" || vars["callpop_match"] != "hit" || vars["callpop_name"] == "" {
		t.Fatalf("variables not set: %v", vars)
	}

	// FreeSWITCH goes away: not ready, with the reason.
	sim.Close()
	waitPBXGone(t, base)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// The same with Asterisk: `callpop run` with the ARI adapter against the ARI
// simulator; a call in Stasis gets its variables and is continued; /readyz
// follows the WebSocket.
func TestRunWithAsterisk(t *testing.T) {
	sim, err := arisim.New(arisim.Options{Username: "callpop", Password: "test-ari-secret", App: "callpop-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	t.Setenv("CALLPOP_PBX_ASTERISK_PASSWORD", "test-ari-secret")
	base, logs, stop := startRun(t, writeConfig(t, asteriskRunConfig(sim.URL())))
	defer func() { _ = stop() }()

	waitPBXReady(t, base)
	id := sim.OfferCall(arisim.CallSpec{CLI: "+14155550123", CLIName: "Caller", DNIS: "1000"})
	var continued bool
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !continued; time.Sleep(10 * time.Millisecond) {
		_, continued = sim.Continued(id)
	}
	if !continued {
		t.Fatalf("call not continued:\n%s", logs.String())
	}
	vars := sim.Vars(id)
	if vars["CALLPOP_E164"] != "+14155550123" || vars["CALLPOP_MATCH"] != "hit" || vars["CALLPOP_NAME"] == "" {
		t.Fatalf("variables: %v", vars)
	}

	sim.Close()
	waitPBXGone(t, base)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// asteriskRunConfig is runConfig with the ARI adapter on the simulator at
// url (user callpop, app callpop-test, the password from the environment).
func asteriskRunConfig(url string) string {
	return runConfig + `
call: {budget: 2s}
pbx:
  kind: asterisk
  asterisk:
    url: ` + url + `
    username: callpop
    app: callpop-test
    reconnect_min: 20ms
    reconnect_max: 200ms
`
}

// waitPBXReady waits for /readyz to report ready with the pbx check alone.
func waitPBXReady(t *testing.T, base string) {
	t.Helper()
	if st := waitReady(t, base, true); len(st.Checks) != 1 || st.Checks[0].Name != "pbx" {
		t.Fatalf("checks %+v", st.Checks)
	}
}

// waitPBXGone waits for /readyz to report not ready, the pbx check saying why.
func waitPBXGone(t *testing.T, base string) {
	t.Helper()
	if st := waitReady(t, base, false); len(st.Reasons) == 0 || !strings.HasPrefix(st.Reasons[0], "pbx: ") {
		t.Fatalf("reasons %q", st.Reasons)
	}
}
