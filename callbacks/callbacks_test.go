package callbacks

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/testredis"
)

// stores runs f on the Redis store and on the in-process one.
func stores(t *testing.T, f func(t *testing.T, rdb redis.UniversalClient)) {
	t.Run("redis", func(t *testing.T) { f(t, testRedis(t)) })
	t.Run("memory", func(t *testing.T) { f(t, nil) })
}

func TestSubmitRefusesBadRequests(t *testing.T) {
	s := newService(t, testConfig(), testRedis(t), newRecorder(nil))
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	far := time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name  string
		body  any
		code  int
		field string
		says  string
	}{
		{"premium rate", Request{Number: "09098790999"}, 400, "number", "premium-rate"},
		{"premium rate E.164", Request{Number: "+449098790999"}, 400, "number", "premium-rate"},
		{"shared cost", Request{Number: "+33810123456"}, 400, "number", "shared-cost"},
		{"shared cost (ES)", Request{Number: "+34 901 23 45 67"}, 400, "number", "shared-cost"},
		{"region not allowed", Request{Number: "+14155550123"}, 400, "number", "region US"},
		{"region not allowed (BE)", Request{Number: "+3225551234"}, 400, "number", "region BE"},
		{"invalid", Request{Number: "12ab34"}, 400, "number", "not a valid phone number"},
		{"impossible", Request{Number: "+44 1"}, 400, "number", "not a valid phone number"},
		{"missing number", Request{Name: "Ann"}, 400, "number", "required"},
		{"name too long", Request{Number: "+442079460018", Name: strings.Repeat("x", 1025)}, 400, "name", "1024"},
		{"note too long", Request{Number: "+442079460018", Note: strings.Repeat("x", 4097)}, 400, "note", "4096"},
		{"note 10 KB", Request{Number: "+442079460018", Note: strings.Repeat("${x}\n", 2048)}, 400, "note", "4096"},
		{"bad queue", Request{Number: "+442079460018", Queue: "sales;Dial"}, 400, "queue", "letters"},
		{"bad when", Request{Number: "+442079460018", When: "tomorrow"}, 400, "when", "RFC 3339"},
		{"when too far", Request{Number: "+442079460018", When: far}, 400, "when", "ahead"},
		{"unknown field", `{"number":"+442079460018","callerid":"x"}`, 400, "callerid", "unknown field"},
		{"wrong type", `{"number":442079460018}`, 400, "number", "must be a string"},
		{"not JSON", `number=+442079460018`, 400, "", "not valid JSON"},
		{"two objects", `{"number":"+442079460018"}{}`, 400, "", "one JSON object"},
		{"empty", ``, 400, "", "empty"},
		{"body over 16 KiB", `{"number":"+442079460018","note":"` + strings.Repeat("x", 17<<10) + `"}`, 413, "", "16 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, m, _ := post(t, srv, tc.body)
			if code != tc.code {
				t.Fatalf("status %d, want %d (%v)", code, tc.code, m)
			}
			if m["field"] != nil && m["field"] != tc.field || m["field"] == nil && tc.field != "" {
				t.Errorf("field %v, want %q (%v)", m["field"], tc.field, m)
			}
			if msg, _ := m["error"].(string); !strings.Contains(msg, tc.says) {
				t.Errorf("error %q does not say %q", msg, tc.says)
			}
		})
	}
	if n, _ := s.store.pending(context.Background()); n != 0 {
		t.Errorf("%d requests stored from refused requests", n)
	}
}

func TestSubmitAnswersTheRequestOnly(t *testing.T) {
	stores(t, func(t *testing.T, rdb redis.UniversalClient) {
		s := newService(t, testConfig(), rdb, newRecorder(nil))
		srv := httptest.NewServer(s.Handler())
		defer srv.Close()
		when := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		code, m, h := post(t, srv, Request{Number: "020 7946 0018", Name: "Ann Smith", When: when.Format(time.RFC3339), Queue: "sales", Note: "about my order"})
		if code != http.StatusCreated {
			t.Fatalf("status %d: %v", code, m)
		}
		id, _ := m["id"].(string)
		if !validID(id) || h.Get("Location") != "/v1/callbacks/"+id {
			t.Errorf("id %q, Location %q", id, h.Get("Location"))
		}
		if m["state"] != "pending" || m["number"] != "+442079460018" || m["attempts"] != 0.0 || m["max_attempts"] != 3.0 ||
			m["scheduled_for"] != when.Format(time.RFC3339) {
			t.Errorf("answer %v", m)
		}
		for k := range m { // nothing of the decision (the CRM record) comes back
			if !slices.Contains([]string{"id", "state", "number", "scheduled_for", "attempts", "max_attempts", "next_attempt_at", "created", "updated"}, k) {
				t.Errorf("answer holds %q: %v", k, m)
			}
		}
		// The same number again, written another way: the request is updated.
		code, m2, _ := post(t, srv, Request{Number: "+44 20 7946 0018", Name: "Ann Smith", Note: "call me now"})
		if code != http.StatusOK || m2["id"] != id {
			t.Fatalf("second request: %d %v, want 200 and id %s", code, m2, id)
		}
		if n, _ := s.store.pending(context.Background()); n != 1 {
			t.Errorf("%d requests pending, want 1", n)
		}
		rec, _ := s.store.get(context.Background(), id)
		if rec.Note != "call me now" || rec.Queue != "" || rec.Scheduled.After(time.Now()) {
			t.Errorf("record not updated: %+v", rec)
		}
		// GET
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/callbacks/"+id, nil)
		if code, m, _ := do(t, req); code != 200 || m["state"] != "pending" || m["next_attempt_at"] == nil {
			t.Errorf("GET: %d %v", code, m)
		}
		req, _ = http.NewRequest(http.MethodGet, srv.URL+"/v1/callbacks/"+strings.Repeat("0", 24), nil)
		if code, _, _ := do(t, req); code != 404 {
			t.Errorf("GET of an unknown id: %d", code)
		}
	})
}

func TestSubmitRateLimitPerNumber(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPerNumber = 2
	s := newService(t, cfg, testRedis(t), newRecorder(nil))
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for i := range 2 {
		if code, m, _ := post(t, srv, Request{Number: "+442079460018"}); code != 201 && code != 200 {
			t.Fatalf("request %d: %d %v", i, code, m)
		}
	}
	code, m, h := post(t, srv, Request{Number: "+442079460018"})
	if code != http.StatusTooManyRequests || m["field"] != "number" || h.Get("Retry-After") == "" {
		t.Fatalf("third request: %d %v Retry-After %q", code, m, h.Get("Retry-After"))
	}
	if code, m, _ := post(t, srv, Request{Number: "+442079460019"}); code != 201 {
		t.Errorf("another number: %d %v", code, m)
	}
}

func TestBusyRetriesThenConnects(t *testing.T) {
	stores(t, func(t *testing.T, rdb redis.UniversalClient) {
		rec := newRecorder(busyThenConnected)
		s := newService(t, testConfig(), rdb, rec)
		run(t, s)
		st := submit(t, s, Request{Number: "+442079460018", Name: "Ann Smith", Queue: "callbacks", Note: "order 42"})
		done := waitState(t, s, st.ID, StateConnected)
		if done.Attempts != 2 || done.LastOutcome != "connected" || done.NextAttemptAt != nil {
			t.Errorf("status %+v", done)
		}
		calls := rec.snapshot()
		if len(calls) != 2 {
			t.Fatalf("%d originates, want 2", len(calls))
		}
		for i, o := range calls {
			if o.ID != fmt.Sprintf("cb-%s-%d", st.ID, i+1) || o.CallbackID != st.ID || o.Number != "+442079460018" ||
				o.Endpoint != "PJSIP/+442079460018@trunk" || o.Context != "callpop-callback" || o.Extension != "s" ||
				o.CallerIDNumber != "+442079460000" || o.CallerIDName != "Example Ltd" || o.Timeout != 2*time.Second {
				t.Errorf("originate %d: %+v", i, o)
			}
			if o.Call.Channel != call.ChannelCallback || o.Call.CLI != "+442079460018" || o.Call.Subject != "order 42" ||
				o.Call.ID != o.ID || o.Call.PBX != "asterisk" || o.Call.Received.IsZero() {
				t.Errorf("originate %d's call: %+v", i, o.Call)
			}
			// the decision's variables, the request's queue over the rules'
			if o.Decision.Match != call.MatchHit || o.Decision.Queue != "callbacks" || o.Decision.QueuePrio != 50 || o.Decision.BaseScore != 500 {
				t.Errorf("originate %d's decision: %+v", i, o.Decision)
			}
		}
		if gap := calls[1].Call.Received.Sub(calls[0].Call.Received); gap < 50*time.Millisecond {
			t.Errorf("second attempt %s after the first, before retry_after", gap)
		}
	})
}

func TestAttemptsExhaustedFail(t *testing.T) {
	stores(t, func(t *testing.T, rdb redis.UniversalClient) {
		rec := newRecorder(always(call.OutcomeNoAnswer))
		s := newService(t, testConfig(), rdb, rec)
		noAnswers := testutil.ToFloat64(attemptsTotal.WithLabelValues("no_answer"))
		run(t, s)
		st := submit(t, s, Request{Number: "+442079460018"})
		done := waitState(t, s, st.ID, StateFailed)
		if done.Attempts != 3 || done.LastOutcome != "no_answer" || rec.count(st.ID) != 3 {
			t.Errorf("status %+v after %d originates", done, rec.count(st.ID))
		}
		if n := testutil.ToFloat64(attemptsTotal.WithLabelValues("no_answer")) - noAnswers; n != 3 {
			t.Errorf("callpop_callbacks_attempts_total{outcome=\"no_answer\"} rose by %g, want 3", n)
		}
		// over: a new request for the number is a new one
		st2 := submit(t, s, Request{Number: "+442079460018"})
		if st2.ID == st.ID || st2.State != StatePending && st2.State != StateDialing {
			t.Errorf("after failure: %+v", st2)
		}
	})
}

func TestWrongNumberFailsAtOnce(t *testing.T) {
	rec := newRecorder(always(call.OutcomeFailed))
	s := newService(t, testConfig(), testRedis(t), rec)
	run(t, s)
	st := submit(t, s, Request{Number: "+353 1 234 5678"})
	done := waitState(t, s, st.ID, StateFailed)
	if done.Attempts != 1 || rec.count(st.ID) != 1 {
		t.Errorf("status %+v", done)
	}
}

func TestPBXErrorIsNotAnAttempt(t *testing.T) {
	rec := newRecorder(func(_ call.Originate, n int) (call.OriginateResult, error) {
		if n <= 2 {
			return call.OriginateResult{}, fmt.Errorf("ari: not connected")
		}
		return call.OriginateResult{Outcome: call.OutcomeConnected}, nil
	})
	s := newService(t, testConfig(), testRedis(t), rec)
	run(t, s)
	st := submit(t, s, Request{Number: "+442079460018"})
	done := waitState(t, s, st.ID, StateConnected)
	if done.Attempts != 1 || rec.count(st.ID) != 3 {
		t.Errorf("status %+v after %d originates; want 1 attempt counted of 3 originates", done, rec.count(st.ID))
	}
	calls := rec.snapshot()
	if calls[0].ID != calls[2].ID {
		t.Errorf("the attempt's id changed across PBX errors: %s, %s", calls[0].ID, calls[2].ID)
	}
}

func TestCancel(t *testing.T) {
	stores(t, func(t *testing.T, rdb redis.UniversalClient) {
		release := make(chan struct{})
		rec := newRecorder(always(call.OutcomeBusy))
		rec.hold = func(call.Originate) { <-release }
		s := newService(t, testConfig(), rdb, rec)
		srv := httptest.NewServer(s.Handler())
		defer srv.Close()
		del := func(id string) (int, map[string]any) {
			req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/v1/callbacks/"+id, nil)
			code, m, _ := do(t, req)
			return code, m
		}
		// pending (later today): 204, then 409
		later := submit(t, s, Request{Number: "+442079460019", When: time.Now().Add(time.Hour).Format(time.RFC3339)})
		if code, m := del(later.ID); code != http.StatusNoContent {
			t.Fatalf("DELETE pending: %d %v", code, m)
		}
		if st, _, _ := s.Get(context.Background(), later.ID); st.State != StateCancelled {
			t.Errorf("after DELETE: %+v", st)
		}
		if code, m := del(later.ID); code != http.StatusConflict || m["state"] != "cancelled" {
			t.Errorf("DELETE cancelled: %d %v", code, m)
		}
		if code, _ := del(strings.Repeat("a", 24)); code != http.StatusNotFound {
			t.Errorf("DELETE unknown: %d", code)
		}
		// dialing: 202, the attempt goes on, none follows
		run(t, s)
		now := submit(t, s, Request{Number: "+442079460018"})
		waitState(t, s, now.ID, StateDialing)
		code, m := del(now.ID)
		if code != http.StatusAccepted || m["cancel_requested"] != true || m["state"] != "dialing" {
			t.Fatalf("DELETE dialing: %d %v", code, m)
		}
		close(release)
		done := waitState(t, s, now.ID, StateCancelled)
		if done.Attempts != 1 || rec.count(now.ID) != 1 {
			t.Errorf("after cancel while dialing: %+v, %d originates", done, rec.count(now.ID))
		}
	})
}

// A new Service on the same Redis (callpop restarted) dials what the
// first one took.
func TestRestartKeepsPendingRequests(t *testing.T) {
	rdb := testRedis(t)
	first := newService(t, testConfig(), rdb, newRecorder(nil))
	st := submit(t, first, Request{Number: "+442079460018", Note: "after the restart"})
	rec := newRecorder(nil)
	second := newService(t, testConfig(), rdb, rec)
	run(t, second)
	waitState(t, second, st.ID, StateConnected)
	if calls := rec.snapshot(); len(calls) != 1 || calls[0].Call.Subject != "after the restart" {
		t.Errorf("originates after restart: %+v", calls)
	}
}

// An instance that dies while dialling: its lease runs out, the attempt
// counts (outcome unknown), and another instance dials it again after
// retry_after, never at once.
func TestInstanceDiesMidDial(t *testing.T) {
	srv := testredisStart(t)
	deadRDB := newClient(t, srv)
	entered := make(chan struct{})
	stuck := make(chan struct{})
	defer close(stuck)
	dead := newRecorder(nil)
	dead.hold = func(call.Originate) { close(entered); <-stuck }
	short := func(d *Deps) { d.LeaseTTL = 300 * time.Millisecond }
	a := newService(t, testConfig(), deadRDB, dead, short)
	run(t, a)
	st := submit(t, a, Request{Number: "+442079460018"})
	<-entered
	_ = deadRDB.Close() // the instance is gone: no renewal, no outcome

	rec := newRecorder(nil)
	b := newService(t, testConfig(), newClient(t, srv), rec, short)
	run(t, b)
	done := waitState(t, b, st.ID, StateConnected)
	if done.Attempts != 2 || rec.count(st.ID) != 1 {
		t.Errorf("status %+v, %d originates by the live instance", done, rec.count(st.ID))
	}
	if calls := rec.snapshot(); calls[0].ID != "cb-"+st.ID+"-2" {
		t.Errorf("the live instance dialled %s, want attempt 2", calls[0].ID)
	}
}

// On a Redis Cluster: the keys share a hash tag, so the transactions work.
func TestOnRedisCluster(t *testing.T) {
	c := testredis.StartCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = rdb.Close() })
	rec := newRecorder(busyThenConnected)
	s := newService(t, testConfig(), rdb, rec)
	run(t, s)
	st := submit(t, s, Request{Number: "+442079460018"})
	if again := submit(t, s, Request{Number: "+442079460018", Note: "updated"}); again.ID != st.ID {
		t.Errorf("update on the cluster made request %s, want %s", again.ID, st.ID)
	}
	if done := waitState(t, s, st.ID, StateConnected); done.Attempts != 2 {
		t.Errorf("status %+v", done)
	}
}

func TestTwoInstancesNeverDialTwice(t *testing.T) {
	srv := testredisStart(t)
	rec := newRecorder(busyThenConnected)
	rec.hold = func(call.Originate) { time.Sleep(3 * time.Millisecond) }
	a := newService(t, testConfig(), newClient(t, srv), rec)
	b := newService(t, testConfig(), newClient(t, srv), rec)
	run(t, a)
	run(t, b)
	var ids []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			svc := a
			if i%2 == 1 {
				svc = b
			}
			st := submit(t, svc, Request{Number: fmt.Sprintf("+44207946%04d", i)})
			mu.Lock()
			ids = append(ids, st.ID)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, id := range ids {
		waitState(t, a, id, StateConnected)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.overlap != 0 {
		t.Errorf("%d originates overlapped another of their request", rec.overlap)
	}
	for _, id := range ids {
		if rec.perCB[id] != 2 {
			t.Errorf("request %s originated %d times, want 2 (busy, connected)", id, rec.perCB[id])
		}
	}
	seen := map[string]bool{}
	for _, o := range rec.calls {
		if seen[o.ID] {
			t.Errorf("attempt %s dialled twice", o.ID)
		}
		seen[o.ID] = true
	}
}

func TestHostileNameAndNote(t *testing.T) {
	rec := newRecorder(nil)
	s := newService(t, testConfig(), testRedis(t), rec)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	name := "${system(rm -rf /)}\nAction: Originate\r\nX: \"quoted\" `tick` \\ " + strings.Repeat("Ü${x}", 150)
	note := "call ${sip_h_X}\nevent-name: CUSTOM\n" + strings.Repeat("%{}$", 900)
	if len(name) > maxNameLen || len(note) > maxNoteLen {
		t.Fatal("test strings too long for the request")
	}
	code, m, _ := post(t, srv, Request{Number: "+442079460018", Name: name, Note: note})
	if code != http.StatusCreated {
		t.Fatalf("%d %v", code, m)
	}
	// 10 KB strings never get in
	if code, _, _ := post(t, srv, Request{Number: "+442079460018", Name: strings.Repeat("${a}\n", 2048)}); code != 400 {
		t.Errorf("10 KB name: %d", code)
	}
	run(t, s)
	waitState(t, s, m["id"].(string), StateConnected)
	o := rec.snapshot()[0]
	if o.Call.Subject != note || o.Call.CLIName != name {
		t.Errorf("the call lost the request's name or note")
	}
	// Everything else the PBX is told is clean.
	d := o.Decision
	values := []string{o.ID, o.CallbackID, o.Number, o.Endpoint, o.Context, o.Extension, o.CallerIDName, o.CallerIDNumber,
		d.Queue, d.Skill, d.Language, d.CallerName, d.PopURL, d.InfoURL, d.E164, d.Customer.Name}
	for _, v := range d.Extra {
		values = append(values, v)
	}
	for _, v := range d.Vars() {
		values = append(values, v.Name, v.Value)
	}
	for _, v := range values {
		if strings.ContainsAny(v, "${}\\\"`\r\n") || len(v) > 512 {
			t.Errorf("unsanitised value reaches the originate: %q", v)
		}
		if strings.Contains(v, "sip_h_X") || strings.Contains(v, "event-name") {
			t.Errorf("the note reaches more than the call's subject: %q", v)
		}
	}
	if d.CallerName == "" || !strings.Contains(d.CallerName, "system(rm -rf /)") {
		t.Errorf("caller name %q: sanitised away entirely?", d.CallerName)
	}
}

func TestGlobalRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPerMinute = 2
	// a frozen rule clock: every request due at once, one rate window
	clk := newClock(time.Now().Truncate(time.Minute).Add(10 * time.Second))
	rdb := testRedis(t)
	rec := newRecorder(nil)
	s := newService(t, cfg, rdb, rec, func(d *Deps) { d.Now = clk.Now })
	for i := range 5 {
		submit(t, s, Request{Number: fmt.Sprintf("+44207946%04d", i)})
	}
	run(t, s)
	counter := counterKey("rate:" + windowName(clk.Now(), time.Minute))
	waitFor(t, "a third originate refused by the rate", func() bool {
		n, _ := rdb.Get(context.Background(), counter).Int()
		return n >= 3 && len(rec.snapshot()) == 2
	})
	waitFor(t, "the two attempts to end", func() bool { n, _ := s.store.pending(context.Background()); return n == 3 })
	if n := len(rec.snapshot()); n != 2 {
		t.Fatalf("%d originates within max_per_minute 2", n)
	}
	clk.Add(time.Minute) // the next window
	waitFor(t, "two more originates in the next minute", func() bool { return len(rec.snapshot()) == 4 })
	waitFor(t, "a fifth refused", func() bool {
		n, _ := rdb.Get(context.Background(), counterKey("rate:"+windowName(clk.Now(), time.Minute))).Int()
		return n >= 3
	})
	if n := len(rec.snapshot()); n != 4 {
		t.Errorf("%d originates after two windows of 2", n)
	}
}

func TestHoursMoveTheRequest(t *testing.T) {
	cfg := testConfig()
	cfg.Hours = []string{"mon-fri 08:00-18:00", "sat 09:00-13:00"}
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Skip("no tz data:", err)
	}
	// Saturday 29 March 2025, 20:00 in London: the clocks go forward that night.
	clk := newClock(time.Date(2025, 3, 29, 20, 0, 0, 0, london))
	rec := newRecorder(nil)
	s := newService(t, cfg, testRedis(t), rec, func(d *Deps) { d.Now = clk.Now; d.Location = london })
	st := submit(t, s, Request{Number: "+442079460018"})
	want := time.Date(2025, 3, 31, 8, 0, 0, 0, london) // Monday 08:00 BST
	if !st.ScheduledFor.Equal(want) {
		t.Fatalf("scheduled for %s, want %s", st.ScheduledFor, want)
	}
	// a `when` within the hours is kept; one in the past is now
	st = submit(t, s, Request{Number: "+442079460019", When: time.Date(2025, 3, 31, 10, 30, 0, 0, time.UTC).Format(time.RFC3339)})
	if want := time.Date(2025, 3, 31, 10, 30, 0, 0, time.UTC); !st.ScheduledFor.Equal(want) {
		t.Errorf("scheduled for %s, want %s", st.ScheduledFor, want)
	}
	run(t, s)
	clk.ns.Store(time.Date(2025, 3, 31, 8, 0, 1, 0, london).UnixNano()) // Monday morning
	waitFor(t, "the first request dialled on Monday", func() bool { return len(rec.snapshot()) >= 1 })
	if calls := rec.snapshot(); len(calls) != 1 || calls[0].Number != "+442079460018" {
		t.Errorf("dialled %+v", calls)
	}
}

// Redis gone: the request is refused with a 503, nothing half-stored; back,
// it is taken.
func TestStoreDown(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	s := newService(t, testConfig(), rdb, newRecorder(nil))
	h := httptest.NewServer(s.Handler())
	defer h.Close()
	srv.Stop()
	code, m, _ := post(t, h, Request{Number: "+442079460018"})
	if code != http.StatusServiceUnavailable || strings.Contains(fmt.Sprint(m), srv.Addr) {
		t.Fatalf("Redis down: %d %v", code, m)
	}
	srv.Restart()
	waitFor(t, "Redis back", func() bool { return rdb.Ping(context.Background()).Err() == nil })
	if code, m, _ := post(t, h, Request{Number: "+442079460018"}); code != http.StatusCreated {
		t.Fatalf("Redis back: %d %v", code, m)
	}
}
