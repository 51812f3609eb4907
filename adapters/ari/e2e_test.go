package ari_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/ari"
	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/internal/testrouter"
	"github.com/callpop/callpop/router"
)

const recordings = "../pbxsim/arisim/testdata"

// pipeline builds the real decision path (callerid → crm with the embedded
// sample CSV and the in-process cache → router) with region NL, where the
// recordings' national numbers live.
func pipeline(t testing.TB, budget time.Duration) call.Decider {
	t.Helper()
	return testrouter.New(t, "NL", crm.DefaultConfig(), router.DefaultConfig(), budget)
}

type sink struct {
	mu sync.Mutex
	e  []call.Enriched
}

func (s *sink) CallEnriched(e call.Enriched) { s.mu.Lock(); s.e = append(s.e, e); s.mu.Unlock() }
func (s *sink) AgentLeg(call.LegEvent)       {}
func (s *sink) CallEnded(call.CallEnd)       {}

func run(t testing.TB, sim *arisim.Server, dec call.Decider, budget time.Duration, sk call.LegSink) *ari.Adapter {
	t.Helper()
	cfg := ari.DefaultConfig()
	cfg.URL, cfg.Username, cfg.Password, cfg.App = sim.URL(), "ariuser", "ariS3cret", sim.App()
	cfg.ReconnectMin, cfg.ReconnectMax = 20*time.Millisecond, 200*time.Millisecond
	a, err := ari.New(cfg, adapters.Deps{Decider: dec, Sink: sk, Budget: budget, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if ok, _ := a.Ready(); ok {
			return a
		}
	}
	t.Fatal("adapter not ready")
	return nil
}

func settle(t testing.TB, sim *arisim.Server, id string) arisim.Record {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if r, ok := sim.Record(id); ok && (!r.Continued.IsZero() || r.HungUp || r.Failed) {
			return r
		}
	}
	t.Fatalf("%s not settled", id)
	return arisim.Record{}
}

// Every recorded inbound scenario, replayed through the simulator into the
// real pipeline: the right match and source, and the variables, reach the
// simulator exactly as a dialplan would read them.
func TestRecordedScenariosThroughRealPipeline(t *testing.T) {
	const budget = 2 * time.Second // about wiring and values, not speed
	tests := []scenarioWant{
		{"a-national", call.MatchHit, call.SourceCLI, "+31201234567", "C1001", false},
		{"b-e164", call.MatchHit, call.SourceCLI, "+14155550123", "C1002", false},
		{"c1-anonymous-prohib", call.MatchAnonymous, call.SourceNone, "", "", true},
		{"c2-empty-number-prohib", call.MatchMiss, call.SourceANI, "+31209876543", "", true},
		{"d-ani-differs", call.MatchHit, call.SourceCLI, "+31201234567", "C1001", false},
		{"e-junk-chars", call.MatchInvalid, call.SourceNone, "", "", false},
		{"e2-very-long-number", call.MatchInvalid, call.SourceNone, "", "", false},
		{"plain-local-no-callerid", call.MatchAnonymous, call.SourceNone, "", "", false},
	}
	// With ari.conf channelvars listing the caller-ID functions the same
	// decisions are made without reading them (no GET); without, each call
	// reads both.
	for _, mode := range []struct {
		name string
		vars []string
	}{
		{"GET", nil},
		{"channelvars", []string{"CALLPOP_CALL_ID", "CALLERID(ani)", "CALLERID(num-pres)"}},
	} {
		t.Run(mode.name, func(t *testing.T) { recordedScenarios(t, budget, tests, mode.vars) })
	}
}

type scenarioWant struct {
	scenario    string
	match       call.Match
	source      call.Source
	e164        string
	customer    string
	wantPrivacy bool
}

func recordedScenarios(t *testing.T, budget time.Duration, tests []scenarioWant, channelVars []string) {
	sim, err := arisim.New(arisim.Options{Username: "ariuser", Password: "ariS3cret", ChannelVars: channelVars})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	sk := &sink{}
	run(t, sim, pipeline(t, budget), budget, sk)
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			gets := sim.Stats().VarGets
			ev, err := os.ReadFile(filepath.Join(recordings, tt.scenario+".events.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			rest, err := os.ReadFile(filepath.Join(recordings, tt.scenario+".rest.json"))
			if err != nil {
				t.Fatal(err)
			}
			spec, err := arisim.SpecFromRecording(ev, rest)
			if err != nil {
				t.Fatal(err)
			}
			spec.App = "" // the recordings used crm-lookup; offer to ours
			id := sim.OfferCall(spec)
			r := settle(t, sim, id)
			if r.Continued.IsZero() {
				t.Fatalf("not continued: %+v", r)
			}
			v := r.Vars
			t.Logf("%s: match=%s source=%s e164=%s customer=%s prio=%s queue=%s flags=%s", tt.scenario,
				v["CALLPOP_MATCH"], v["CALLPOP_SOURCE"], v["CALLPOP_E164"], v["CALLPOP_CUSTOMER_ID"],
				v["CALLPOP_PRIORITY"], v["CALLPOP_QUEUE"], v["CALLPOP_FLAGS"])
			if tt.match != "" {
				if v["CALLPOP_MATCH"] != string(tt.match) || v["CALLPOP_SOURCE"] != string(tt.source) ||
					v["CALLPOP_E164"] != tt.e164 || v["CALLPOP_CUSTOMER_ID"] != tt.customer {
					t.Errorf("got match=%q source=%q e164=%q customer=%q, want %q %q %q %q",
						v["CALLPOP_MATCH"], v["CALLPOP_SOURCE"], v["CALLPOP_E164"], v["CALLPOP_CUSTOMER_ID"],
						tt.match, tt.source, tt.e164, tt.customer)
				}
			}
			if v["__CALLPOP_CALL_ID"] != id {
				t.Errorf("__CALLPOP_CALL_ID = %q", v["__CALLPOP_CALL_ID"])
			}
			if p := v["QUEUE_PRIO"]; p == "" || strings.Trim(p, "0123456789") != "" {
				t.Errorf("QUEUE_PRIO = %q, want digits", p)
			}
			for k, val := range v {
				if strings.ContainsAny(val, "\n\r${}\"`;") {
					t.Errorf("%s = %q not sanitised", k, val)
				}
			}
			sk.mu.Lock()
			var got *call.Enriched
			for i := range sk.e {
				if sk.e[i].CallID == id {
					got = &sk.e[i]
				}
			}
			sk.mu.Unlock()
			if got == nil {
				t.Fatalf("no CallEnriched for %s", id)
			}
			if got.Call.Privacy != tt.wantPrivacy || got.Call.ANI != spec.ANI || got.Call.CLI != spec.CLI ||
				got.Call.DNIS != "0800123456" || got.Call.Profile != "inbound" {
				t.Errorf("call as decided: %+v", got.Call)
			}
			switch n := sim.Stats().VarGets - gets; {
			case channelVars != nil && n != 0:
				t.Errorf("%d GETs with CALLERID(ani) and CALLERID(num-pres) in channelvars", n)
			case channelVars == nil && n != 1:
				t.Errorf("%d GETs, want 1 (CALLERID(ani) and CALLERID(num-pres) in one)", n)
			}
		})
	}
}

// pipelineHTTP is the real pipeline with one HTTP CRM source at url.
func pipelineHTTP(t testing.TB, url string, budget time.Duration) call.Decider {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	nums, err := callerid.New(callerid.DefaultConfig(), log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := crm.DefaultConfig()
	cfg.Sources = []crm.SourceConfig{{Name: "crm", Kind: "http", URL: url + "/customers?phone={e164}", Timeout: 5 * time.Second}}
	c, err := crm.New(cfg, crm.DefaultCacheConfig(), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r, err := router.New(router.DefaultConfig(), router.Deps{Numbers: nums, CRM: c, Budget: budget, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// CRM hanging, end to end: a real HTTP CRM that answers long after the
// budget, through the real crm + router: every channel is continued by its
// budget (plus the test margin) with CALLPOP_MATCH=timeout.
func TestHangingCRMThroughRealPipeline(t *testing.T) {
	const budget, crmDelay = 300 * time.Millisecond, 5 * time.Second
	crmSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(crmDelay):
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"late","name":"Too Late"}`))
	}))
	defer crmSrv.Close()
	sim, err := arisim.New(arisim.Options{Username: "ariuser", Password: "ariS3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	run(t, sim, pipelineHTTP(t, crmSrv.URL, budget), budget, &sink{})
	margin := ari.BudgetMargin(t) // far past the budget, short of the CRM's answer
	if budget+margin >= crmDelay {
		t.Fatalf("budget %v + margin %v does not tell the budget from the CRM's %v", budget, margin, crmDelay)
	}
	var ids []string
	for i := 0; i < 10; i++ {
		ids = append(ids, sim.OfferCall(arisim.CallSpec{CLI: fmt.Sprintf("+1415555%04d", 1000+i)}))
		time.Sleep(10 * time.Millisecond)
	}
	for _, id := range ids {
		r := settle(t, sim, id)
		if r.Continued.IsZero() {
			t.Fatalf("%s not continued", id)
		}
		if held := r.Continued.Sub(r.Offered); held > budget+margin {
			t.Errorf("%s held %v > %v + %v", id, held, budget, margin)
		}
		if m := r.Vars["CALLPOP_MATCH"]; m != "timeout" && m != "" {
			t.Errorf("%s: CALLPOP_MATCH = %q, want timeout", id, m)
		}
	}
}

// Hostile CRM values, end to end through the real HTTP source and router:
// newlines, ${...}, commas and 500 characters arrive sanitised.
func TestHostileCRMThroughRealPipeline(t *testing.T) {
	long := strings.Repeat("A", 500)
	body, _ := json.Marshal(map[string]string{
		"id": "ID-1\n,2", "name": "Evil\nName ${SHELL(reboot)},Queue(x);" + long, "tier": "${EXTEN}",
		"language": "nl\r\n", "url": "https://crm/x?a=${SHELL(x)}&b=1,2\n" + long,
	})
	crmSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer crmSrv.Close()
	sim, err := arisim.New(arisim.Options{Username: "ariuser", Password: "ariS3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	run(t, sim, pipelineHTTP(t, crmSrv.URL, 2*time.Second), 2*time.Second, &sink{})
	id := sim.OfferCall(arisim.CallSpec{CLI: "+14155550123"})
	r := settle(t, sim, id)
	if r.Vars["CALLPOP_MATCH"] != "hit" {
		t.Fatalf("vars %v", r.Vars)
	}
	for k, v := range r.Vars {
		if strings.ContainsAny(v, "\n\r${}\"`;\\") || (k != "CALLPOP_FLAGS" && strings.Contains(v, ",")) {
			t.Errorf("%s = %q carries a dangerous character", k, v)
		}
		if !strings.HasSuffix(k, "_URL") && utf8.RuneCountInString(v) > call.MaxValueLen {
			t.Errorf("%s is %d runes", k, utf8.RuneCountInString(v))
		}
		if len(v) > call.MaxURLLen {
			t.Errorf("%s is %d bytes", k, len(v))
		}
	}
	t.Logf("name %q url %q", r.Vars["CALLPOP_NAME"], r.Vars["CALLPOP_POP_URL"])
}
