package router

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callerid"
)

// decideCase is one call through the standard test env and what it decides.
type decideCase struct {
	name       string
	call       call.Call
	match      call.Match
	e164       string
	source     call.Source
	privacy    bool
	customerID string
	queue      string
	priority   int
	flags      []string
	popURL     string
	lookups    int64 // CRM requests this call may cause
}

// decideCases are TestDecide's calls.
var decideCases = []decideCase{
	{"hit by national cli", call.Call{ID: "c1", CLI: "020 123 4567", ANI: "0201234567", DNIS: "0800123456"},
		call.MatchHit, "+31201234567", call.SourceCLI, false, "C-1001", "vip", 10, []string{"vip", "ani_verified"}, "https://crm.example/c/1001", 1},
	{"hit by e164 tel uri", call.Call{ID: "c2", CLI: "tel:+14155550123", DNIS: "0800123456"},
		call.MatchHit, "+14155550123", call.SourceCLI, false, "C-2001", "support", 5, nil, "https://crm.example/c/2001", 1},
	{"miss fills the new-customer form", call.Call{ID: "c3", CLI: "+31 6 1111 2222"},
		call.MatchMiss, "+31611112222", call.SourceCLI, false, "", "general", 1, nil, "https://crm.example/new?phone=%2B31611112222", 1},
	{"miss with privacy: no form", call.Call{ID: "c4", CLI: "+31622223333", Privacy: true},
		call.MatchMiss, "+31622223333", call.SourceCLI, true, "", "general", 1, nil, "", 1},
	{"anonymous: no look-up", call.Call{ID: "c5", CLI: "Anonymous", ANI: ""},
		call.MatchAnonymous, "", "", true, "", "general", 1, nil, "", 0},
	{"invalid: no look-up", call.Call{ID: "c6", CLI: "ABC-not-a-number"},
		call.MatchInvalid, "", "", false, "", "general", 1, nil, "", 0},
	{"junk 40 digits", call.Call{ID: "c7", CLI: strings.Repeat("9", 40)},
		call.MatchInvalid, "", "", false, "", "general", 1, nil, "", 0},
	{"91-digit caller number (recorded from Asterisk)", call.Call{ID: "c7b", CLI: strings.Repeat("1234567890", 9) + "1"},
		call.MatchInvalid, "", "", false, "", "general", 1, nil, "", 0},
	{"empty number, presentation restricted, real number only in the ani (recorded)", call.Call{ID: "c7c", CLI: "", ANI: "0209876543", Privacy: true},
		call.MatchMiss, "+31209876543", call.SourceANI, true, "", "general", 1, nil, "", 1},
	{"ani fallback for a withheld cli", call.Call{ID: "c8", CLI: "anonymous", ANI: "0301112233"},
		call.MatchHit, "+31301112233", call.SourceANI, true, "C-1002", "support-de", 5, []string{"region_mismatch"}, "https://crm.example/c/1002", 1},
	{"cli and ani differ: not verified", call.Call{ID: "c9", CLI: "0201234567", ANI: "0301112233"},
		call.MatchHit, "+31201234567", call.SourceCLI, false, "C-1001", "vip", 10, []string{"vip"}, "https://crm.example/c/1001", 0},
}

func TestDecide(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	tests := decideCases
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := te.fake.requests.Load()
			d := te.router.Decide(context.Background(), tt.call)
			if d.Match != tt.match || d.E164 != tt.e164 || d.Source != tt.source || d.Privacy != tt.privacy {
				t.Fatalf("got match %q e164 %q source %q privacy %v (err %q); want %q %q %q %v", d.Match, d.E164, d.Source, d.Privacy, d.Err, tt.match, tt.e164, tt.source, tt.privacy)
			}
			id := ""
			if d.Customer != nil {
				id = d.Customer.ID
			}
			if id != tt.customerID || d.Queue != tt.queue || d.Priority != tt.priority || d.PopURL != tt.popURL {
				t.Errorf("customer %q queue %q priority %d pop %q; want %q %q %d %q", id, d.Queue, d.Priority, d.PopURL, tt.customerID, tt.queue, tt.priority, tt.popURL)
			}
			if !slices.Equal(d.Flags, tt.flags) && !(len(d.Flags) == 0 && len(tt.flags) == 0) {
				t.Errorf("flags %v, want %v", d.Flags, tt.flags)
			}
			if d.CallID != tt.call.ID || d.Elapsed <= 0 || len(d.Rules) == 0 {
				t.Errorf("call id %q elapsed %v rules %v", d.CallID, d.Elapsed, d.Rules)
			}
			if d.QueuePrio != d.Priority || d.BaseScore != 60*d.Priority {
				t.Errorf("queue_prio %d cc_base_score %d for priority %d", d.QueuePrio, d.BaseScore, d.Priority)
			}
			if got := te.fake.requests.Load() - before; got > tt.lookups {
				t.Errorf("%d CRM requests, want at most %d", got, tt.lookups)
			}
			if tt.match == call.MatchInvalid && d.Err == "" {
				t.Error("invalid without a reason")
			}
		})
	}
	// The second time the hit comes from the cache.
	d := te.router.Decide(context.Background(), call.Call{CLI: "0201234567"})
	if d.Match != call.MatchHit || !d.Cached {
		t.Fatalf("repeat call: match %q cached %v", d.Match, d.Cached)
	}
}

func TestDecideHostileCRMSanitised(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	d := te.router.Decide(context.Background(), call.Call{CLI: "0209999999"})
	if d.Match != call.MatchHit {
		t.Fatalf("match %q (%s)", d.Match, d.Err)
	}
	for _, v := range d.Vars() {
		if strings.ContainsAny(v.Value, "\r\n\x00\"\\${}`;,") {
			t.Errorf("%s = %q carries unsafe characters", v.Name, v.Value)
		}
	}
	for _, s := range []string{d.Customer.ID, d.Customer.Name, d.Customer.Tier, d.Customer.Language, d.Customer.URL, d.PopURL, d.Language} {
		if strings.ContainsAny(s, "\r\n\x00\"\\") {
			t.Errorf("decision field %q carries unsafe characters", s)
		}
	}
}

func TestDecideCRMSlowTimesOutWithinBudget(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, 150*time.Millisecond)
	te.fake.setDelay(2 * time.Second)
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		max  time.Duration
	}{
		{"budget from Deps", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, 150 * time.Millisecond},
		{"deadline from ctx", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 80*time.Millisecond)
		}, 80 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			d := te.router.Decide(ctx, call.Call{CLI: "+31201234567", Received: start})
			took := time.Since(start)
			if d.Match != call.MatchTimeout {
				t.Fatalf("match %q (%s), want timeout", d.Match, d.Err)
			}
			// The budget, not the CRM, ended the wait: the CRM answers after
			// 2 s. (No bound nearer the budget: a loaded machine breaks it.)
			if took >= 2*time.Second {
				t.Fatalf("decision took %v: it waited for the CRM, budget %v", took, tc.max)
			}
			if d.Queue != "general" || d.Priority != 1 {
				t.Fatalf("timeout decision not routed by the rules: queue %q priority %d", d.Queue, d.Priority)
			}
		})
	}
	// Budget already spent: the rules still decide.
	d := te.router.Decide(context.Background(), call.Call{CLI: "+31201234567", Received: time.Now().Add(-time.Second)})
	if d.Match != call.MatchTimeout || d.Queue != "general" {
		t.Fatalf("spent budget: match %q queue %q", d.Match, d.Queue)
	}
}

func TestDecideCRMDown(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	te.fake.srv.Close()
	d := te.router.Decide(context.Background(), call.Call{CLI: "+31201234567"})
	if d.Match != call.MatchError || d.Err == "" || d.Queue != "general" {
		t.Fatalf("match %q err %q queue %q", d.Match, d.Err, d.Queue)
	}
}

func TestDecideProfiles(t *testing.T) {
	cfg := testConfig()
	cfg.RuleSets = map[string][]Rule{"tenantb": {{Name: "tenant-b", Then: Then{Queue: "tenant-b", Priority: 3, Vars: map[string]string{"tenant": "b"}}}}}
	cfg.Profiles = []Profile{
		{Name: "tenant-b", DNIS: []string{"+1 800 555 0100", "0900*"}, Region: "US", RuleSet: "TenantB", NewCustomerURL: "https://b.example/new?n={e164}"},
		{Name: "no-sources", DNIS: []string{"0800999999"}, Sources: []string{"nonexistent"}},
	}
	te := newTestEnv(t, cfg, nil, testBudget)
	tests := []struct {
		name    string
		call    call.Call
		profile string
		queue   string
		e164    string
	}{
		{"by exact dnis, US region", call.Call{CLI: "(415) 555-0123", DNIS: "18005550100"}, "tenant-b", "tenant-b", "+14155550123"},
		{"by dnis prefix", call.Call{CLI: "(415) 555-0123", DNIS: "0900-1234"}, "tenant-b", "tenant-b", "+14155550123"},
		{"by name", call.Call{CLI: "+14155550123", Profile: "tenant-b"}, "tenant-b", "tenant-b", "+14155550123"},
		{"default: NL region", call.Call{CLI: "0201234567", DNIS: "0800123456"}, "default", "vip", "+31201234567"},
		{"default by name beats the dnis", call.Call{CLI: "0201234567", DNIS: "0900", Profile: "default"}, "default", "vip", "+31201234567"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := te.router.Decide(context.Background(), tt.call)
			if d.Profile != tt.profile || d.Queue != tt.queue || d.E164 != tt.e164 {
				t.Fatalf("profile %q queue %q e164 %q (match %q); want %q %q %q", d.Profile, d.Queue, d.E164, d.Match, tt.profile, tt.queue, tt.e164)
			}
			if tt.profile == "tenant-b" && d.Extra["TENANT"] != "b" {
				t.Errorf("extra vars %v", d.Extra)
			}
		})
	}
	d := te.router.Decide(context.Background(), call.Call{CLI: "+1 415 555 9999", DNIS: "0900"})
	if d.Match != call.MatchMiss || d.PopURL != "https://b.example/new?n=%2B14155559999" {
		t.Fatalf("profile new-customer url: %q %q", d.Match, d.PopURL)
	}
	d = te.router.Decide(context.Background(), call.Call{CLI: "0201234567", DNIS: "0800999999"})
	if d.Profile != "no-sources" || d.Match == call.MatchHit {
		t.Fatalf("profile restricted to an unknown source still hit: %q %q", d.Profile, d.Match)
	}
}

func TestDecidePriority(t *testing.T) {
	cfg := testConfig()
	cfg.TierPriority = map[string]int{"standard": 4, "gold": 7}
	cfg.Priority = PriorityConfig{Default: 2, Min: 1, Max: 50, QueuePrioScale: 10, CCBaseScoreScale: 100}
	cfg.Rules = []Rule{
		{Name: "huge", When: `customer.tier == "vip"`, Then: Then{Priority: 500}},
		{Name: "negative", When: `customer.tier == "junk"`, Then: Then{Priority: -5}},
	}
	te := newTestEnv(t, cfg, nil, testBudget)
	tests := []struct {
		cli  string
		want int
	}{
		{"0201234567", 50},  // vip: 500 clamped to max
		{"+14155550123", 4}, // standard by tier_priority, no rule
		{"0301112233", 7},   // gold by tier_priority
		{"+31655554444", 2}, // miss: default
		{"anonymous", 2},    // anonymous: default
	}
	for _, tt := range tests {
		d := te.router.Decide(context.Background(), call.Call{CLI: tt.cli})
		if d.Priority != tt.want || d.QueuePrio != tt.want*10 || d.BaseScore != tt.want*100 {
			t.Errorf("%s: priority %d queue_prio %d cc_base_score %d; want %d", tt.cli, d.Priority, d.QueuePrio, d.BaseScore, tt.want)
		}
		if v := varValue(d, "CALLPOP_PRIORITY"); v != strings.TrimSpace(v) || v == "" {
			t.Errorf("CALLPOP_PRIORITY %q", v)
		}
	}
}

func varValue(d call.Decision, name string) string {
	for _, v := range d.Vars() {
		if v.Name == name {
			return v.Value
		}
	}
	return ""
}

// TestRuleClockSetsNoDeadline: the rule clock (what rules read as time,
// hour, weekday) may be anywhere; a call's deadline and elapsed time come
// from the real clock. A rule clock a year off once made every look-up a
// timeout with Elapsed in the thousands of hours.
func TestRuleClockSetsNoDeadline(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	for _, off := range []time.Duration{-366 * 24 * time.Hour, 366 * 24 * time.Hour} {
		te.router.ruleClock = func() time.Time { return time.Now().Add(off) }
		for i, decide := range []func(call.Call) call.Decision{
			func(c call.Call) call.Decision { return te.router.Decide(context.Background(), c) },
			func(c call.Call) call.Decision { return decideAsync(t, te.router, context.Background(), c) },
		} {
			// No Received: the router starts the budget itself.
			d := decide(call.Call{ID: "clock", CLI: "0201234567"})
			if d.Match != call.MatchHit || d.Elapsed < 0 || d.Elapsed > time.Hour {
				t.Errorf("rule clock %+v, path %d: match %s, elapsed %v", off, i, d.Match, d.Elapsed)
			}
			te.crm.Forget(context.Background(), "+31201234567")
		}
	}
}

func TestDecideTimeOfDay(t *testing.T) {
	cfg := testConfig()
	cfg.Timezone = "Europe/Amsterdam"
	cfg.Rules = []Rule{
		{Name: "closed", When: `weekend || hhmm < 900 || hhmm >= 1730`, Then: Then{Queue: "voicemail"}, Stop: true},
		{Name: "open", Then: Then{Queue: "desk"}},
	}
	te := newTestEnv(t, cfg, nil, testBudget)
	ams, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	tests := []struct {
		at   time.Time
		want string
	}{
		{localAt(base, ams, time.Monday, 9, 30), "desk"},
		{localAt(base, ams, time.Monday, 8, 30), "voicemail"},
		{localAt(base, ams, time.Monday, 17, 45), "voicemail"},
		{localAt(base, ams, time.Saturday, 13, 0), "voicemail"},
		// The rule clock is read in the rules' zone, whatever zone it gives.
		{localAt(base, ams, time.Tuesday, 10, 0).UTC(), "desk"},
	}
	for _, tt := range tests {
		te.router.ruleClock = func() time.Time { return tt.at }
		if d := te.router.Decide(context.Background(), call.Call{CLI: "anonymous", Received: time.Now()}); d.Queue != tt.want {
			t.Errorf("%v: queue %q, want %q", tt.at, d.Queue, tt.want)
		}
	}
}

func TestReloadKeepsOldRulesOnError(t *testing.T) {
	cfg := testConfig()
	cfg.Rules = []Rule{{Name: "v1", Then: Then{Queue: "one"}}}
	te := newTestEnv(t, cfg, nil, testBudget)
	c := call.Call{CLI: "anonymous"}
	if q := te.router.Decide(context.Background(), c).Queue; q != "one" {
		t.Fatalf("queue %q", q)
	}
	bad := cfg
	bad.Rules = []Rule{{Name: "v2", When: `custmer.tier == "vip"`, Then: Then{Queue: "two"}}}
	err := te.router.Reload(bad)
	if err == nil || !strings.Contains(err.Error(), `router.rules[0] "v2": unknown name custmer`) {
		t.Fatalf("Reload(bad) = %v", err)
	}
	if q := te.router.Decide(context.Background(), c).Queue; q != "one" {
		t.Fatalf("after a bad reload: queue %q, want the old rules", q)
	}
	good := cfg
	good.Rules = []Rule{{Name: "v3", Then: Then{Queue: "three"}}}
	if err := te.router.Reload(good); err != nil {
		t.Fatal(err)
	}
	if q := te.router.Decide(context.Background(), c).Queue; q != "three" {
		t.Fatalf("after reload: queue %q", q)
	}
}

// Decisions run while the rules are swapped: the race detector watches.
func TestReloadConcurrentWithDecide(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	cfgA, cfgB := testConfig(), testConfig()
	cfgA.Rules = []Rule{{Name: "a", Then: Then{Queue: "a"}}}
	cfgB.Rules = []Rule{{Name: "b", Then: Then{Queue: "b"}}}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				d := te.router.Decide(context.Background(), call.Call{CLI: "anonymous"})
				if d.Queue != "a" && d.Queue != "b" && d.Queue != "general" {
					t.Errorf("goroutine %d call %d: queue %q", g, i, d.Queue)
					return
				}
			}
		}()
	}
	for i := range 50 {
		cfg := cfgA
		if i%2 == 1 {
			cfg = cfgB
		}
		if err := te.router.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestBlockListFile(t *testing.T) {
	path := writeFile(t, "blocked.txt", "# fraud numbers\n+31 6 1234 9999\n0201234567 # known abuser\n\n+1900*\nnot a number\n")
	cfg := testConfig()
	cfg.Flags.BlockListFile = path
	cfg.Flags.BlockListReload = 10 * time.Millisecond
	te := newTestEnv(t, cfg, nil, testBudget)
	tests := []struct {
		cli   string
		fraud bool
		queue string
	}{
		{"+31612349999", true, "fraud-desk"},
		{"020 123 4567", true, "fraud-desk"}, // a VIP customer, but blocked
		{"+19005550100", true, "fraud-desk"}, // prefix
		{"+14155550123", false, "support"},
	}
	for _, tt := range tests {
		d := te.router.Decide(context.Background(), call.Call{CLI: tt.cli})
		if slices.Contains(d.Flags, "fraud_suspect") != tt.fraud || d.Queue != tt.queue {
			t.Errorf("%s: flags %v queue %q; want fraud %v queue %q", tt.cli, d.Flags, d.Queue, tt.fraud, tt.queue)
		}
		if tt.fraud && (d.Priority != 0 || slices.Contains(d.Flags, "ani_verified")) {
			t.Errorf("%s: blocked caller got priority %d flags %v", tt.cli, d.Priority, d.Flags)
		}
	}
	// Change the file: the new list is picked up without a restart.
	time.Sleep(20 * time.Millisecond) // a distinct modification time on coarse file systems
	if err := os.WriteFile(path, []byte("+14155550123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := te.router.Decide(context.Background(), call.Call{CLI: "+14155550123"})
		if slices.Contains(d.Flags, "fraud_suspect") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("block-list file change not picked up within 5s")
		}
		time.Sleep(15 * time.Millisecond)
	}
	if d := te.router.Decide(context.Background(), call.Call{CLI: "+31612349999"}); slices.Contains(d.Flags, "fraud_suspect") {
		t.Fatal("old block-list entry still blocks after the reload")
	}
	// A file that disappears keeps the last list.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	for range 3 {
		te.router.Decide(context.Background(), call.Call{CLI: "anonymous"})
		time.Sleep(15 * time.Millisecond)
	}
	if d := te.router.Decide(context.Background(), call.Call{CLI: "+14155550123"}); !slices.Contains(d.Flags, "fraud_suspect") {
		t.Fatal("block list dropped when its file vanished")
	}
	// A missing file at start is a configuration error naming the key.
	cfg.Flags.BlockListFile = path
	if _, err := New(cfg, Deps{Numbers: te.numbers, CRM: te.crm}); err == nil || !strings.Contains(err.Error(), "router.flags.block_list_file") {
		t.Fatalf("New with a missing block list: %v", err)
	}
}

func TestBlockListRedis(t *testing.T) {
	te, srv, rdb := blockListEnvRedis(t)

	d := te.router.Decide(context.Background(), call.Call{CLI: "+14155550123"})
	if !slices.Contains(d.Flags, "fraud_suspect") || d.Queue != "fraud-desk" {
		t.Fatalf("blocked in Redis: flags %v queue %q", d.Flags, d.Queue)
	}
	if d := te.router.Decide(context.Background(), call.Call{CLI: "0201234567"}); slices.Contains(d.Flags, "fraud_suspect") {
		t.Fatalf("not blocked: flags %v", d.Flags)
	}
	// Another instance adds a number: seen at once.
	if err := rdb.SAdd(context.Background(), "callpop:blocklist", "+31201234567").Err(); err != nil {
		t.Fatal(err)
	}
	if d := te.router.Decide(context.Background(), call.Call{CLI: "0201234567"}); !slices.Contains(d.Flags, "fraud_suspect") {
		t.Fatalf("shared block list: flags %v", d.Flags)
	}
	// Redis down: decisions still come, with the CRM's answer and without
	// the flag, and do not wait out the budget (2 s) for the block list: the
	// dead Redis answers at once. (No bound nearer: the decision always ends
	// by its budget, and a loaded machine breaks "budget + a margin".)
	srv.Stop()
	start := time.Now()
	d = te.router.Decide(context.Background(), call.Call{CLI: "+14155550123"})
	if took := time.Since(start); took >= testBudget {
		t.Fatalf("with Redis down the decision took %v: it waited out the budget %v", took, testBudget)
	}
	if d.Match != call.MatchHit || d.Customer == nil {
		t.Fatalf("with Redis down: match %q (%s)", d.Match, d.Err)
	}
	if slices.Contains(d.Flags, "fraud_suspect") {
		t.Fatalf("with Redis down: flags %v (the block list cannot be read)", d.Flags)
	}
}

func TestRegionMismatch(t *testing.T) {
	nl := numberFacts("NL", 31)
	tests := []struct {
		usual any
		want  bool
	}{
		{"NL", false}, {"nl", false}, {"DE", true}, {"31", false}, {"+31", false}, {"49", true}, {49, true}, {31, false},
		{"", false}, {nil, false}, {"Netherlands", false},
	}
	for _, tt := range tests {
		c := &call.Customer{Extra: map[string]any{"region": tt.usual}}
		if got := regionMismatch(c, "region", nl); got != tt.want {
			t.Errorf("usual %v: %v, want %v", tt.usual, got, tt.want)
		}
	}
	if regionMismatch(&call.Customer{Extra: map[string]any{"region": "DE"}}, "", nl) {
		t.Error("disabled by an empty field name")
	}
}

func TestANIVerified(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, testBudget)
	tests := []struct {
		name string
		call call.Call
		want bool
	}{
		{"cli equals ani, registered", call.Call{CLI: "0201234567", ANI: "+31 20 123 4567"}, true},
		{"only ani, registered", call.Call{CLI: "", ANI: "0201234567"}, true},
		{"no ani", call.Call{CLI: "0201234567"}, false},
		{"ani differs from cli", call.Call{CLI: "0201234567", ANI: "0612345678"}, false},
		{"withheld cli", call.Call{CLI: "anonymous", ANI: "0201234567"}, false},
		{"presentation restricted", call.Call{CLI: "0201234567", ANI: "0201234567", Privacy: true}, false},
		{"source without phones: the matched number", call.Call{CLI: "+14155550123", ANI: "+14155550123"}, true},
		{"miss", call.Call{CLI: "+31655554444", ANI: "+31655554444"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := te.router.Decide(context.Background(), tt.call)
			if got := slices.Contains(d.Flags, "ani_verified"); got != tt.want {
				t.Fatalf("ani_verified %v, want %v (match %q flags %v)", got, tt.want, d.Match, d.Flags)
			}
		})
	}
}

func TestDecideNeverPanics(t *testing.T) {
	te := newTestEnv(t, testConfig(), nil, 100*time.Millisecond)
	inputs := []string{"", "\x00", "\xff\xfe", strings.Repeat("+", 5000), "sip:+31201234567@evil;user=phone", "١٢٣٤٥٦٧٨٩", "0000000"}
	for _, in := range inputs {
		d := te.router.Decide(context.Background(), call.Call{CLI: in, ANI: in, DNIS: in, Profile: in, CLIName: in})
		if d.Match == "" {
			t.Errorf("%q: empty match", in)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if d := te.router.Decide(ctx, call.Call{CLI: "+31612340000"}); d.Match != call.MatchError && d.Match != call.MatchTimeout {
		t.Fatalf("cancelled ctx: %q", d.Match)
	}
}

func TestNewRequiresDeps(t *testing.T) {
	if _, err := New(testConfig(), Deps{}); err == nil {
		t.Fatal("New without deps succeeded")
	}
	bad := testConfig()
	bad.Rules = []Rule{{Name: "x", When: "nope"}}
	te := newTestEnv(t, testConfig(), nil, 0)
	if _, err := New(bad, Deps{Numbers: te.numbers, CRM: te.crm}); err == nil || !errors.Is(err, err) || !strings.Contains(err.Error(), `router.rules[0] "x"`) {
		t.Fatalf("New with a bad rule: %v", err)
	}
}

// TestDecideGeo: rules that read geo (by name, through $env, in a rule set or
// an output) see the number's place; the geocoding data is loaded only for them.
func TestDecideGeo(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		sets  map[string][]Rule
		want  string
		reads bool
	}{
		{"when", []Rule{{Name: "ams", When: `geo == "Amsterdam"`, Then: Then{Queue: "ams"}}}, nil, "ams", true},
		{"env", []Rule{{Name: "ams", When: `$env.geo == "Amsterdam"`, Then: Then{Queue: "ams"}}}, nil, "ams", true},
		{"output", []Rule{{Name: "geo", Then: Then{Queue: `=lower(geo)`}}}, nil, "amsterdam", true},
		{"rule set", nil, map[string][]Rule{"other": {{Name: "g", When: `geo != ""`}}}, "", true},
		{"none", []Rule{{Name: "nl", When: `region == "NL"`, Then: Then{Queue: "nl"}}}, nil, "nl", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Rules, cfg.RuleSets = tt.rules, tt.sets
			te := newTestEnv(t, cfg, nil, testBudget)
			if got := te.router.state.Load().readsGeo; got != tt.reads {
				t.Fatalf("readsGeo = %v, want %v", got, tt.reads)
			}
			d := te.router.Decide(context.Background(), call.Call{CLI: "0201234567", Received: time.Now()})
			if d.Match != call.MatchHit || d.Queue != tt.want {
				t.Fatalf("match %q queue %q, want hit %q", d.Match, d.Queue, tt.want)
			}
		})
	}
}

// router.profiles and numbers.profiles resolve a DNIS by the one rule
// (callerid.DNISMatcher): an exact entry beats a prefix listed before it,
// the longest prefix beats a shorter one listed before it, the earlier
// profile wins a tie. The same lists in both sections pick the same
// profile: the router's by name, the numbers section's by its region.
func TestDNISProfileOrderSameInRouterAndNumbers(t *testing.T) {
	lists := []struct {
		name, region string
		dnis         []string
	}{
		{"uk", "GB", []string{"+44*"}},
		{"london", "IE", []string{"+44207946*"}},
		{"line", "NL", []string{"+442079460018"}},
		{"london-again", "FR", []string{"+44207946*", "+44 20 7946 0018"}},
	}
	cfg := testConfig()
	ncfg := callerid.DefaultConfig()
	ncfg.DefaultRegion = "US"
	for _, l := range lists {
		cfg.Profiles = append(cfg.Profiles, Profile{Name: l.name, DNIS: l.dnis, Region: l.region})
		ncfg.Profiles = append(ncfg.Profiles, callerid.Profile{DNIS: l.dnis, Region: l.region})
	}
	te := newTestEnv(t, cfg, nil, testBudget)
	numbers, err := callerid.New(ncfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for dnis, want := range map[string]string{
		"+442079460018":      "line", // exact, though two prefixes come first
		"+44 (20) 7946-0018": "line",
		"+442079460019":      "london", // the longer prefix; its twin in london-again comes later
		"+441130000000":      "uk",
		"0800123456":         "default",
	} {
		if d := te.router.Decide(context.Background(), call.Call{CLI: "0201234567", DNIS: dnis}); d.Profile != want {
			t.Errorf("router: DNIS %q picks %q, want %q", dnis, d.Profile, want)
		}
		region := "US"
		for _, l := range lists {
			if l.name == want {
				region = l.region
			}
		}
		if got := numbers.RegionFor(dnis); got != region {
			t.Errorf("numbers: DNIS %q reads in %q, want %q (profile %s)", dnis, got, region, want)
		}
	}
}
