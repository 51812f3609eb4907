package main

import (
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
)

// Two Asterisks under one `callpop run`: the ARI adapter's own metrics
// carry the pbx label, so each PBX's calls and connection are its own
// (they used to add up, and callpop_ari_connected showed whichever
// Asterisk changed last).
func TestRunTwoAsterisksMetricsByPBX(t *testing.T) {
	newSim := func(addr string) *arisim.Server {
		sim, err := arisim.New(arisim.Options{Addr: addr, Username: "callpop", Password: "test-ari-secret", App: "callpop-test"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sim.Close() })
		return sim
	}
	simA, simB := newSim(""), newSim("")
	t.Setenv("CALLPOP_PBXES_AST_A_PASSWORD", "test-ari-secret")
	t.Setenv("CALLPOP_PBXES_AST_B_PASSWORD", "test-ari-secret")
	t.Setenv("CALLPOP_POPPER_TOKEN_SECRET", popSecret)
	cfg := testConfig + `
call: {budget: 2s}
crm: {sample: true}
pbxes:
  - name: ast-a
    kind: asterisk
    asterisk: {url: "` + simA.URL() + `", username: callpop, app: callpop-test, reconnect_min: 20ms, reconnect_max: 200ms}
  - name: ast-b
    kind: asterisk
    required: false
    asterisk: {url: "` + simB.URL() + `", username: callpop, app: callpop-test, reconnect_min: 20ms, reconnect_max: 200ms}
`
	base, logs, stop := startRun(t, writeConfig(t, cfg))
	t.Cleanup(func() { _ = stop() })
	waitPBXes(t, base, true, map[string]string{"ast-a": "ready", "ast-b": "ready"})

	calls := func(pbx string) float64 {
		return counterSum(t, "callpop_ari_calls_total", map[string]string{"pbx": pbx})
	}
	connected := func(pbx string) float64 {
		return counterSum(t, "callpop_ari_connected", map[string]string{"pbx": pbx})
	}
	if a, b := connected("ast-a"), connected("ast-b"); a != 1 || b != 1 {
		t.Fatalf("callpop_ari_connected with both up: ast-a %v, ast-b %v", a, b)
	}
	a0, b0 := calls("ast-a"), calls("ast-b")
	offer := func(sim *arisim.Server, n int) {
		for range n {
			id := sim.OfferCall(arisim.CallSpec{CLI: "+14155550123", DNIS: "1000"})
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, ok := sim.Continued(id); ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("call %s not continued:\n%s", id, logs.String())
				}
			}
		}
	}
	offer(simA, 3)
	offer(simB, 2)
	// the adapter counts a call just after Asterisk accepted its continue
	var da, db float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if da, db = calls("ast-a")-a0, calls("ast-b")-b0; da >= 3 && db >= 2 {
			break
		}
	}
	if da != 3 || db != 2 {
		t.Fatalf("callpop_ari_calls_total: ast-a counted %v of 3, ast-b %v of 2", da, db)
	}

	// ast-b goes away: its gauge drops, ast-a's stays.
	_ = simB.Close()
	var st readyJSON
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(25 * time.Millisecond) {
		if st = waitReadyOnce(t, base); st.Pbxes["ast-b"] != "ready" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ast-b down, /readyz still %+v", st)
		}
	}
	if !st.Ready || st.Pbxes["ast-a"] != "ready" {
		t.Fatalf("ast-b (not required) down: /readyz %+v", st)
	}
	if a, b := connected("ast-a"), connected("ast-b"); a != 1 || b != 0 {
		t.Fatalf("callpop_ari_connected with ast-b down: ast-a %v, ast-b %v", a, b)
	}
	// and /metrics itself names each PBX's series
	_, body := get(t, base+"/metrics")
	for _, want := range []string{`callpop_ari_connected{pbx="ast-a"} 1`, `callpop_ari_connected{pbx="ast-b"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
