package callbacks

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/internal/testredis"
)

// recorder is a call.Originator that records every request, checks no
// request is dialled twice at once, and answers what outcome says.
type recorder struct {
	mu      sync.Mutex
	calls   []call.Originate
	perCB   map[string]int // originates per callback id
	active  map[string]int // in progress per callback id
	overlap int            // an originate began while another for its request was in progress
	outcome func(o call.Originate, n int) (call.OriginateResult, error)
	hold    func(o call.Originate) // runs inside Originate (a delay, a block)
}

func newRecorder(outcome func(o call.Originate, n int) (call.OriginateResult, error)) *recorder {
	return &recorder{perCB: map[string]int{}, active: map[string]int{}, outcome: outcome}
}

func (r *recorder) Originate(ctx context.Context, o call.Originate) (call.OriginateResult, error) {
	r.mu.Lock()
	r.calls = append(r.calls, o)
	r.perCB[o.CallbackID]++
	n := r.perCB[o.CallbackID]
	if r.active[o.CallbackID] > 0 {
		r.overlap++
	}
	r.active[o.CallbackID]++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.active[o.CallbackID]--
		r.mu.Unlock()
	}()
	if r.hold != nil {
		r.hold(o)
	}
	if err := ctx.Err(); err != nil {
		return call.OriginateResult{}, err
	}
	if r.outcome == nil {
		return call.OriginateResult{Outcome: call.OutcomeConnected, Channel: "ch-" + o.ID}, nil
	}
	return r.outcome(o, n)
}

func (r *recorder) snapshot() []call.Originate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call.Originate(nil), r.calls...)
}

func (r *recorder) count(cb string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.perCB[cb]
}

func always(o call.Outcome) func(call.Originate, int) (call.OriginateResult, error) {
	return func(call.Originate, int) (call.OriginateResult, error) {
		return call.OriginateResult{Outcome: o, Cause: string(o)}, nil
	}
}

// busyThenConnected: busy for the first attempt, connected after.
func busyThenConnected(_ call.Originate, n int) (call.OriginateResult, error) {
	if n == 1 {
		return call.OriginateResult{Outcome: call.OutcomeBusy, Cause: "USER_BUSY"}, nil
	}
	return call.OriginateResult{Outcome: call.OutcomeConnected, Cause: "NORMAL_CLEARING"}, nil
}

// testDecider decides as a router would for a known caller, echoing the
// caller's name the way a CRM that stored it would.
var testDecider = call.DeciderFunc(func(_ context.Context, c call.Call) call.Decision {
	return call.Decision{
		Match: call.MatchHit, E164: c.CLI, Source: call.SourceCLI, Priority: 5, QueuePrio: 50, BaseScore: 500,
		Queue: "support", Customer: &call.Customer{ID: "c-1", Name: c.CLIName, Tier: "gold"},
		CallerName: c.CLIName, Extra: map[string]string{"greeting": "hello " + c.CLIName},
	}
})

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Enabled = true
	cfg.AllowedRegions = []string{"GB", "IE"}
	cfg.RetryAfter = 50 * time.Millisecond
	cfg.RingTimeout = 2 * time.Second
	cfg.MaxPerMinute = 10000
	cfg.MaxPerNumber = 1000
	cfg.CallerID = CallerIDConfig{Number: "+442079460000", Name: "Example Ltd"}
	cfg.Asterisk.Endpoint = "PJSIP/{number}@trunk"
	cfg.FreeSWITCH.Endpoint = "sofia/gateway/trunk/{number}"
	return cfg
}

func testNumbers(t testing.TB) *callerid.Normalizer {
	n, err := callerid.New(callerid.Config{DefaultRegion: "GB", CacheSize: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func testRedis(t testing.TB) redis.UniversalClient {
	srv := testredis.Start(t)
	return newClient(t, srv.Addr)
}

func newClient(t testing.TB, addr string) redis.UniversalClient {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// newService builds a Service; rdb nil = the in-process store.
func newService(t testing.TB, cfg Config, rdb redis.UniversalClient, o call.Originator, mod ...func(*Deps)) *Service {
	t.Helper()
	d := Deps{
		Decider: testDecider, Originator: o, Numbers: testNumbers(t), Region: "GB",
		KeySecret: []byte("0123456789abcdef0123"), Budget: 200 * time.Millisecond,
		PBX: "asterisk", Kind: KindAsterisk, LeaseTTL: 3 * time.Second, Backoff: 20 * time.Millisecond,
	}
	if rdb != nil {
		d.Redis = rdb
	}
	for _, m := range mod {
		m(&d)
	}
	s, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs s's scheduler until the test ends.
func run(t testing.TB, s *Service) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing the test after a generous timeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitState(t testing.TB, s *Service, id string, want State) Status {
	t.Helper()
	var st Status
	waitFor(t, "request "+id+" to be "+string(want), func() bool {
		var ok bool
		var err error
		st, ok, err = s.Get(context.Background(), id)
		return err == nil && ok && st.State == want
	})
	return st
}

func submit(t testing.TB, s *Service, req Request) Status {
	t.Helper()
	st, _, err := s.Submit(context.Background(), req)
	if err != nil {
		t.Fatalf("submit %+v: %v", req, err)
	}
	return st
}

// post sends body to srv's POST /v1/callbacks.
func post(t testing.TB, srv *httptest.Server, body any) (int, map[string]any, http.Header) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/callbacks", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

func do(t testing.TB, req *http.Request) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, resp.Header
}

// clock is an injectable wall clock.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock    { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// testredisStart starts a Redis server and returns its address.
func testredisStart(t testing.TB) string { return testredis.Start(t).Addr }
