package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/call"
)

func needRedis(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not on PATH (CI=true)")
		}
		t.Skip("redis-server not on PATH")
	}
}

func TestQuantile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 5}, {0.9, 9}, {0.99, 10}, {0.1, 1}, {0, 1}, {1, 10}}
	for _, tt := range tests {
		if got := quantile(d, tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing is not 0")
	}
}

func TestCustomerNumbers(t *testing.T) {
	seen := map[string]bool{}
	for _, i := range []int{0, 1, 9, 10, 99_999, 100_000, 654_321, 5_999_999} {
		e := CustomerNumber(i)
		if seen[e] {
			t.Fatalf("CustomerNumber(%d) = %s twice", i, e)
		}
		seen[e] = true
		if got, ok := customerIndex(e); !ok || got != i {
			t.Errorf("customerIndex(%s) = %d, %v; want %d", e, got, ok, i)
		}
		u := unknownNumber(i)
		if _, ok := customerIndex(u); ok {
			t.Errorf("unknownNumber(%d) = %s is a customer's", i, u)
		}
	}
}

func TestCallersMix(t *testing.T) {
	c := NewCallers(1000, 1.1, Mix{Unknown: 0.2, Anonymous: 0.1, Junk: 0.1}, 7)
	counts := map[Kind]int{}
	repeat := map[string]int{}
	const n = 20000
	for range n {
		x := c.Next()
		counts[x.Kind]++
		if x.Kind == KindKnown {
			repeat[x.E164]++
			if _, ok := customerIndex(x.E164); !ok {
				t.Fatalf("known caller %q is not a customer", x.E164)
			}
		}
	}
	for k, want := range map[Kind]float64{KindKnown: 0.6, KindUnknown: 0.2, KindAnonymous: 0.1, KindJunk: 0.1} {
		if got := float64(counts[k]) / n; got < want-0.03 || got > want+0.03 {
			t.Errorf("%s share = %.3f, want about %.2f", k, got, want)
		}
	}
	if len(repeat) > counts[KindKnown]/2 {
		t.Errorf("%d distinct known callers in %d calls: not Zipf-like", len(repeat), counts[KindKnown])
	}
}

func TestCRMStub(t *testing.T) {
	s, err := StartCRMStub(100, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		phone string
		code  int
		id    string
	}{
		{CustomerNumber(0), 200, "C0"},
		{CustomerNumber(99), 200, "C99"},
		{CustomerNumber(100), 404, ""}, // beyond the population
		{unknownNumber(3), 404, ""},
		{"junk", 404, ""},
	}
	for _, tt := range tests {
		resp, err := http.Get(s.URL + "/customers?phone=" + strings.ReplaceAll(tt.phone, "+", "%2B"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("%s: status %d, want %d", tt.phone, resp.StatusCode, tt.code)
			continue
		}
		if tt.id != "" {
			var c stubCustomer
			if err := json.Unmarshal(body, &c); err != nil || c.ID != tt.id || c.Name == "" {
				t.Errorf("%s: %s (%v), want id %s", tt.phone, body, err, tt.id)
			}
		}
		if got := s.Requests(tt.phone); got != 1 {
			t.Errorf("%s: counted %d requests, want 1", tt.phone, got)
		}
	}
	if s.Total() != int64(len(tests)) {
		t.Errorf("total %d, want %d", s.Total(), len(tests))
	}
}

func TestCRMStubHold(t *testing.T) {
	s, err := StartCRMStub(10, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Hold()
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(s.URL + "/customers?phone=" + strings.ReplaceAll(CustomerNumber(1), "+", "%2B"))
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	for i := 0; s.Held() == 0 && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Held() != 1 {
		t.Fatalf("held %d requests, want 1", s.Held())
	}
	s.Release()
	if code := <-done; code != 200 {
		t.Fatalf("released request: status %d", code)
	}
}

// TestSmoke runs `callpop bench`'s whole sequence briefly on each simulator
// and checks only that it completes with sane, non-zero figures.
func TestSmoke(t *testing.T) {
	needRedis(t)
	for _, pbx := range []string{PBXAsterisk, PBXFreeSWITCHOutbound, PBXFreeSWITCHInbound} {
		t.Run(pbx, func(t *testing.T) {
			o := DefaultOptions()
			o.PBX = pbx
			o.Rate = 50
			o.Duration = time.Second
			o.BareDuration = 500 * time.Millisecond
			o.Population = 1000
			o.CRMLatency, o.CRMJitter = 5*time.Millisecond, 5*time.Millisecond
			o.BurstNumbers, o.BurstCalls = 2, 50
			o.InFlight = 200
			o.Budget = time.Second // generous: the test runs under -race on a shared machine
			o.Logger = slog.New(slog.DiscardHandler)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			rep, err := Run(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			var table, js, svg bytes.Buffer
			if err := rep.WriteTable(&table); err != nil {
				t.Fatal(err)
			}
			t.Log("\n" + table.String())
			checks := []struct {
				name string
				ok   bool
			}{
				{"calls completed", rep.CallsCompleted > 0 && rep.CallsCompleted <= rep.CallsOffered},
				{"achieved calls/s", rep.AchievedCPS > 0},
				{"all p50", rep.All.P50 > 0 && rep.All.P50 <= rep.All.P99},
				{"lookups happened", rep.Warm.Count+rep.Cold.Count > 0},
				{"bare p50", rep.Bare.P50 > 0},
				{"overhead ratio", rep.OverheadRatio > 0},
				{"CRM requests", rep.CRMRequests > 0},
				{"burst numbers", rep.Burst.Numbers == 2 && rep.Burst.RequestsMax >= 1},
				{"in flight reached", rep.InFlight.Reached > 0 && rep.InFlight.Goroutines > 0},
				{"peak RSS", rep.PeakRSSMiB > 0},
				{"ready", rep.ReadyMs > 0},
			}
			for _, c := range checks {
				if !c.ok {
					t.Errorf("%s: not sane", c.name)
				}
			}
			if err := rep.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(js.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"calls_per_second", "budget_misses", "overhead_ratio", "crm_requests_per_burst_number", "peak_rss_mib", "ready_ms"} {
				if _, ok := m[k]; !ok {
					t.Errorf("JSON lacks %s", k)
				}
			}
			for _, k := range []string{"warm.p50_ms", "warm.p99_ms", "cold.p99_ms"} {
				obj, key, _ := strings.Cut(k, ".")
				if sub, ok := m[obj].(map[string]any); !ok || sub[key] == nil {
					t.Errorf("JSON lacks %s", k)
				}
			}
			if err := rep.WritePlot(&svg); err != nil {
				t.Fatal(err)
			}
			d := xml.NewDecoder(&svg)
			polylines := 0
			for {
				tok, err := d.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("plot is not well-formed XML: %v", err)
				}
				if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
					polylines++
				}
			}
			if polylines < 2 {
				t.Errorf("plot has %d curves, want at least callpop and bare", polylines)
			}
		})
	}
}

// TestSmokeRamp runs a one-step ramp (--rate 0) and checks the ramp's figures are there.
func TestSmokeRamp(t *testing.T) {
	needRedis(t)
	o := DefaultOptions()
	o.Rate, o.Duration, o.BareDuration = 0, time.Second, 500*time.Millisecond
	o.Population = 1000
	o.CRMLatency, o.CRMJitter = 5*time.Millisecond, 5*time.Millisecond
	o.BurstNumbers, o.InFlight = 0, 0
	o.Budget = time.Second
	o.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + table.String())
	if len(rep.Steps) == 0 || len(rep.BareSteps) == 0 || rep.Bare.Count == 0 || rep.OverheadRatio <= 0 {
		t.Errorf("ramp: %d steps, %d bare steps, %d bare calls, overhead ratio %v", len(rep.Steps), len(rep.BareSteps), rep.Bare.Count, rep.OverheadRatio)
	}
}

// TestBareRoundTrips checks each bare client makes the requests callpop's
// adapter makes for a warm known caller (ARI with and without channelvars).
func TestBareRoundTrips(t *testing.T) {
	needRedis(t)
	rs, err := StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	stub, err := StartCRMStub(100, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Close()
	log := slog.New(slog.DiscardHandler)
	p, err := NewPipeline(PipelineConfig{CRMURL: stub.SourceURL(), RedisAddr: rs.Addr, Budget: 2 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	caller := Caller{Kind: KindKnown, CLI: CustomerNumber(1), E164: CustomerNumber(1)}
	d := p.Router.Decide(context.Background(), call.Call{ID: "x", PBX: "bench", CLI: caller.CLI, DNIS: dnis, Received: time.Now()})
	if d.Match != call.MatchHit {
		t.Fatalf("match %s", d.Match)
	}
	tests := []struct {
		pbx      string
		chanVars bool
	}{{PBXAsterisk, true}, {PBXAsterisk, false}, {PBXFreeSWITCHOutbound, false}, {PBXFreeSWITCHInbound, false}}
	for _, tt := range tests { // one decision: the counts must match exactly
		requests := map[bool]int64{}
		for _, bare := range []bool{false, true} {
			tgt, err := newTarget(tt.pbx, bare, targetConfig{log: log, ariChannelVars: tt.chanVars, bareDecisions: []call.Decision{d}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := tgt.Start(ctx, adapters.Deps{Decider: p.Router, Logger: log, Budget: 2 * time.Second}); err != nil {
				t.Fatal(err)
			}
			if err := waitReady(ctx, tgt, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			// A first call lets start-up requests (reconcile, subscriptions) finish.
			if _, err := tgt.Offer(ctx, caller, dnis); err != nil {
				t.Fatal(err)
			}
			// Requests per call over a few calls, rounded: one a straggler
			// (a request answered after the release) lands in either call.
			const calls = 4
			before, _ := tgt.(requestCounter).requests()
			for range calls {
				if _, err := tgt.Offer(ctx, caller, dnis); err != nil {
					t.Fatal(err)
				}
			}
			after, _ := tgt.(requestCounter).requests()
			requests[bare] = (after - before + calls/2) / calls
			cancel()
			tgt.Close()
		}
		t.Logf("%s (channelvars %v): %d requests per warm call", tt.pbx, tt.chanVars, requests[false])
		if requests[false] != requests[true] || requests[false] == 0 {
			t.Errorf("%s (channelvars %v): callpop made %d requests for a warm call, the bare client %d", tt.pbx, tt.chanVars, requests[false], requests[true])
		}
	}
}
