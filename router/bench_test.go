package router

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/heldcalls"
)

// benchEnv is a known English customer on a weekday: with the default rules
// it passes fraud-desk, vip-first and language-queue before known-customer
// matches, the longest path through them.
func benchEnv() *Env {
	return envFor(call.MatchHit, bobEN, monday10)
}

func benchRules(b *testing.B, rules []*compiledRule) {
	b.ReportAllocs()
	env := benchEnv()
	flags := env.Flags
	for b.Loop() {
		env.Flags = flags
		o := evalRules(rules, env, false)
		if len(o.matched) == 0 {
			b.Fatal("no rule matched")
		}
	}
}

func BenchmarkRulesDefault(b *testing.B) {
	rules, err := compileRules("router.rules", DefaultRules(), "UTC")
	if err != nil {
		b.Fatal(err)
	}
	benchRules(b, rules)
}

// hundredRules is a realistic large strategy: 100 rules of DNIS, tier, time,
// language and country conditions; a few match, none stops.
func hundredRules() []Rule {
	rules := make([]Rule, 0, 100)
	for i := range 100 {
		var when string
		switch i % 5 {
		case 0:
			when = fmt.Sprintf(`dnis == "0800%06d" && hour >= 8 && hour < 18`, i)
		case 1:
			when = fmt.Sprintf(`match == "hit" && customer.tier == "tier-%d"`, i)
		case 2:
			when = fmt.Sprintf(`country_code == %d && !("vip" in flags)`, 100+i)
		case 3:
			when = fmt.Sprintf(`lower(customer.language) in ["x%d", "y%d"] || customer.extra.segment == "s%d"`, i, i, i)
		case 4:
			when = fmt.Sprintf(`weekday == "mon" && hhmm >= %d && number_type == "fixed_line"`, 800+i)
		}
		rules = append(rules, Rule{Name: fmt.Sprintf("rule-%03d", i), When: when,
			Then: Then{Queue: fmt.Sprintf("q%d", i), Priority: i % 10}})
	}
	return rules
}

func BenchmarkRules100(b *testing.B) {
	rules, err := compileRules("router.rules", hundredRules(), "UTC")
	if err != nil {
		b.Fatal(err)
	}
	benchRules(b, rules)
}

func BenchmarkCompileDefault(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := compileRules("router.rules", DefaultRules(), "UTC"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideWarm is one full pipeline pass for a repeat caller: parse
// (memoised), in-process cache hit, flags, default rules, outputs.
func BenchmarkDecideWarm(b *testing.B) {
	te := newTestEnv(b, testConfig(), nil, testBudget)
	c := call.Call{ID: "bench", CLI: "0201234567", ANI: "0201234567", DNIS: "0800123456"}
	if d := te.router.Decide(context.Background(), c); d.Match != call.MatchHit {
		b.Fatalf("warm-up: %q %s", d.Match, d.Err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := te.router.Decide(context.Background(), c); !d.Cached {
			b.Fatal("not served from the cache")
		}
	}
}

// BenchmarkDecideCold is one full pipeline pass for a first-time caller:
// parse (not memoised), an in-process cache miss, one HTTP request to the
// CRM over loopback (a 404: a miss, then cached), default rules, outputs.
func BenchmarkDecideCold(b *testing.B) {
	te := newTestEnv(b, testConfig(), nil, testBudget)
	te.router.Decide(context.Background(), call.Call{ID: "warm-up", CLI: "0201234567", DNIS: "0800123456"})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		c := call.Call{ID: "bench", CLI: fmt.Sprintf("020%07d", 2000000+i%8000000), DNIS: "0800123456"}
		if d := te.router.Decide(context.Background(), c); d.Match != call.MatchMiss || d.Cached {
			b.Fatalf("%q cached %v: %s", d.Match, d.Cached, d.Err)
		}
	}
}

// BenchmarkDecideWarmVars adds building the sanitised variables, as an adapter does.
func BenchmarkDecideWarmVars(b *testing.B) {
	te := newTestEnv(b, testConfig(), nil, testBudget)
	c := call.Call{ID: "bench", CLI: "0201234567", ANI: "0201234567", DNIS: "0800123456"}
	te.router.Decide(context.Background(), c)
	b.ReportAllocs()
	for b.Loop() {
		if vars := te.router.Decide(context.Background(), c).Vars(); len(vars) < 12 {
			b.Fatal("vars")
		}
	}
}

// BenchmarkFastAGISession is one whole FastAGI session over loopback TCP for
// a repeat caller: environment, GET VARIABLE, Decide, one EXEC MSet of 14 variables.
func BenchmarkFastAGISession(b *testing.B) {
	te := newTestEnv(b, testConfig(), nil, testBudget)
	addr := startAGI(b, te.router)
	ast := &asterisk{env: defaultAGIEnv("route", "0201234567", "Jan de Vries", "0800123456"), ani: "0201234567"}
	ast.run(b, addr)
	b.ReportAllocs()
	for b.Loop() {
		if s := ast.run(b, addr); len(s.vars) != 14 {
			b.Fatalf("%d variables", len(s.vars))
		}
	}
}

// BenchmarkRouteHTTP is GET /v1/route?…&field=queue over loopback HTTP for a
// repeat caller, as Asterisk's CURL() does it.
func BenchmarkRouteHTTP(b *testing.B) {
	te := newTestEnv(b, testConfig(), nil, testBudget)
	srv := startHTTP(b, te.router)
	path := "/v1/route?number=0201234567&ani=0201234567&dnis=0800123456&field=queue"
	get(b, srv, path)
	b.ReportAllocs()
	for b.Loop() {
		if code, body, _ := get(b, srv, path); code != 200 || body != "vip" {
			b.Fatalf("%d %q", code, body)
		}
	}
}

// BenchmarkHeldDecides measures what a call held in Decide on a stalled CRM
// costs (its own goroutine included): 10,000 first-time callers wait until
// their deadline. It holds one wave whatever -benchtime says.
func BenchmarkHeldDecides(b *testing.B) {
	const n = 10000
	// One held wave whatever b.N is (b.Loop below only satisfies the harness):
	// the figures are per held call and reported after it.
	te := newTestEnv(b, testConfig(), nil, time.Minute)
	te.fake.setDelay(time.Hour)
	te.router.Decide(context.Background(), call.Call{ID: "warm-up", CLI: "0201234567", Received: time.Now().Add(-59 * time.Second)})
	g0, m0 := heldcalls.Snapshot()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan call.Match, n)
	for i := range n {
		go func() {
			c := call.Call{ID: "held", CLI: fmt.Sprintf("020%07d", 2000000+i), DNIS: "0800123456", Received: time.Now()}
			done <- te.router.Decide(ctx, c).Match
		}()
	}
	heldcalls.Settle()
	g1, m1 := heldcalls.Snapshot()
	te.fake.setDelay(0)
	cancel()
	for range n {
		<-done
	}
	_ = te.crm.Close()
	for b.Loop() {
	}
	b.ReportMetric(float64(g1-g0)/n, "goroutines/held")
	b.ReportMetric(float64(m1.HeapInuse-m0.HeapInuse)/n, "heapB/held")
	b.ReportMetric(float64(m1.StackInuse-m0.StackInuse)/n, "stackB/held")
}
