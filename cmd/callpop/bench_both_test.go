package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// `bench --pbx asterisk,freeswitch` runs both simulators at once on one
// pipeline: the calls go to each, the report has each PBX's figures, which
// add up to the whole, and each adapter's metrics carry its PBX's name.
func TestBenchBothPBXs(t *testing.T) {
	ariCalls := func() float64 { return counterSum(t, "callpop_ari_calls_total", map[string]string{"pbx": "asterisk"}) }
	eslCalls := func() float64 {
		return counterSum(t, "callpop_esl_calls_total", map[string]string{"pbx": "freeswitch-outbound"})
	}
	ari0, esl0 := ariCalls(), eslCalls()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	out, logs, err := execute(t, ctx, "bench", "--pbx", "asterisk,freeswitch", "--in-process", "--duration", "500ms", "--rate", "20",
		"--population", "50", "--burst-numbers", "0", "--inflight", "0", "--bare-duration", "0", "--budget", "2s", "--json", "-")
	if err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	var rep struct {
		PBX       string `json:"pbx"`
		Offered   int64  `json:"calls_offered"`
		Completed int64  `json:"calls_completed"`
		PBXes     []struct {
			Name      string         `json:"name"`
			Offered   int64          `json:"calls_offered"`
			Completed int64          `json:"calls_completed"`
			Matches   map[string]int `json:"matches"`
			All       struct {
				Count int     `json:"count"`
				P50   float64 `json:"p50_ms"`
			} `json:"all"`
		} `json:"pbxes"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.PBX != "asterisk,freeswitch-outbound" || len(rep.PBXes) != 2 || rep.PBXes[0].Name != "asterisk" || rep.PBXes[1].Name != "freeswitch-outbound" {
		t.Fatalf("report pbx %q with %d PBXs, want asterisk,freeswitch-outbound:\n%s", rep.PBX, len(rep.PBXes), out)
	}
	var offered, completed int64
	for _, x := range rep.PBXes {
		if x.Completed == 0 || x.All.Count == 0 || x.All.P50 <= 0 || x.Matches["hit"]+x.Matches["miss"] == 0 {
			t.Errorf("%s: %d calls completed, latencies %+v, matches %v: none looked up", x.Name, x.Completed, x.All, x.Matches)
		}
		offered += x.Offered
		completed += x.Completed
	}
	if offered != rep.Offered || completed != rep.Completed || rep.Completed == 0 {
		t.Fatalf("the PBXs' calls (%d offered, %d completed) are not the whole's (%d, %d)", offered, completed, rep.Offered, rep.Completed)
	}
	// each simulator's adapter counted its calls under its own name
	if a, f := ariCalls()-ari0, eslCalls()-esl0; a < float64(rep.PBXes[0].Completed) || f < float64(rep.PBXes[1].Completed) {
		t.Fatalf("adapters counted asterisk %v (report %d), freeswitch-outbound %v (report %d)", a, rep.PBXes[0].Completed, f, rep.PBXes[1].Completed)
	}
	if !strings.Contains(logs, "--pbx freeswitch is FreeSWITCH in Event Socket outbound mode") {
		t.Fatalf("the mode is not stated:\n%s", logs)
	}
}
