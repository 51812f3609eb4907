package esl

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/esl/eslwire"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/call"
	dto "github.com/prometheus/client_model/go"
)

// The server drops every connection in the middle of a burst of 200 parked
// calls; calls parked meanwhile send no event to anybody. After the reconnect
// the adapter resubscribes and reconciles: every call is transferred, once.
func TestInboundReconnectMidBurst(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dec := call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		select { // a CRM taking 1-20 ms
		case <-time.After(time.Duration(1+rand.IntN(20)) * time.Millisecond):
		case <-ctx.Done():
		}
		return call.Decision{Match: call.MatchMiss, E164: "+49201234567", Source: call.SourceCLI}
	})
	a := startAdapter(t, inboundConfig(sim.Addr()), adapters.Deps{Decider: dec, Budget: roomyBudget})
	waitFor(t, 5*time.Second, "ready", func() bool { ok, _ := a.Ready(); return ok })
	const n = 200
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		if i == 80 {
			sim.DropConnections()
		}
		ids = append(ids, sim.OfferCall(eslsim.Caller{Number: fmt.Sprintf("020%07d", i), Name: "Burst"}))
		time.Sleep(500 * time.Microsecond)
	}
	waitFor(t, 15*time.Second, "no call left parked", func() bool { return len(sim.Parked()) == 0 })
	for _, id := range ids {
		ch, _ := sim.Channel(id)
		if ch.ReleasedBy != "transfer" {
			t.Errorf("%s released by %q", id, ch.ReleasedBy)
		}
	}
	st := sim.Stats()
	if st.Connections < 2 {
		t.Errorf("connections = %d, want a reconnect", st.Connections)
	}
	if st.Transfers != n {
		t.Errorf("transfers = %d, want %d (each call once)", st.Transfers, n)
	}
}

// The CRM hangs (the decider ignores its context and does not answer while
// the test runs): every call is still released, by the adapter's budget.
//
// What proves it, on any load: the CRM never answers, and nothing else in
// the adapter can release a call within the test's wait (command_timeout is
// set far beyond it), so a release at all is the budget's deadline or
// watchdog at work; and no call is released before its budget's decision
// deadline (Created, on the simulator, precedes the adapter's Received: the
// same process, the same monotonic clock), so it was the budget, not a path
// that gives up early. How far past the budget a loaded machine's scheduler
// lets the release slip is not the adapter's to bound, and not asserted
// (a wall-time margin here failed on busy 2-core CI boxes).
func TestCRMHangingReleasesWithinBudget(t *testing.T) {
	const (
		budget  = 200 * time.Millisecond
		reserve = 80 * time.Millisecond // time left to set the timeout decision: most calls carry it
		wait    = 20 * time.Second      // generous: a loaded machine's worst case, far below no release at all
	)
	// hangingCRM answers once the test is over (unhang, registered as a
	// cleanup after the adapter's, runs before the adapter stops).
	hangingCRM := func() (call.Decider, func()) {
		unhang := make(chan struct{})
		return call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
			<-unhang
			return call.Decision{Match: call.MatchHit}
		}), func() { close(unhang) }
	}
	// budgetReleased checks one call's release, held from its creation.
	budgetReleased := func(held time.Duration, by string, byWant ...string) error {
		if held < budget-reserve {
			return fmt.Errorf("released %v after creation by %s, before its budget's decision deadline %v", held, by, budget-reserve)
		}
		for _, w := range byWant {
			if by == w {
				return nil
			}
		}
		return fmt.Errorf("released by %q, want one of %q", by, byWant)
	}
	t.Run("outbound", func(t *testing.T) {
		cfg := outboundConfig()
		cfg.ApplyReserve = reserve
		cfg.CommandTimeout = 10 * wait
		crm, unhang := hangingCRM()
		a := startAdapter(t, cfg, adapters.Deps{Decider: crm, Budget: budget})
		t.Cleanup(unhang)
		sim := eslsim.NewOutbound(waitAddr(t, a), eslsim.Options{})
		var wg sync.WaitGroup
		var enriched atomic.Int32
		var worst atomic.Int64
		errs := make(chan error, 30)
		for i := 0; i < 30; i++ {
			wg.Add(1)
			time.Sleep(5 * time.Millisecond) // 200 calls/s, above what FreeSWITCH parks
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				res, err := sim.Call(ctx, eslsim.Caller{Number: "0201234567"})
				if err != nil {
					errs <- err // not released within the wait: the budget did not end the call
					return
				}
				held := res.Released.Sub(res.Created)
				for w := worst.Load(); int64(held) > w && !worst.CompareAndSwap(w, int64(held)); w = worst.Load() {
				}
				// "exit": the timeout decision at the deadline, set, then exit;
				// "close": the watchdog at the budget's end closed the socket
				if err := budgetReleased(held, res.ReleasedBy, "exit", "close"); err != nil {
					errs <- err
				}
				switch res.Vars["callpop_match"] {
				case "timeout":
					enriched.Add(1)
				case "": // released by the watchdog before the variables were confirmed (loaded -race box)
				default:
					errs <- fmt.Errorf("callpop_match = %q", res.Vars["callpop_match"])
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := enriched.Load(); n == 0 {
			t.Errorf("no call of 30 carries callpop_match=timeout")
		}
		t.Logf("%d of 30 calls carry callpop_match=timeout; held up to %v (budget %v)", enriched.Load(), time.Duration(worst.Load()), budget)
	})
	t.Run("inbound", func(t *testing.T) {
		sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		cfg := inboundConfig(sim.Addr())
		cfg.ApplyReserve = reserve
		cfg.CommandTimeout = 10 * wait
		crm, unhang := hangingCRM()
		a := startAdapter(t, cfg, adapters.Deps{Decider: crm, Budget: budget})
		t.Cleanup(unhang)
		waitFor(t, 5*time.Second, "ready", func() bool { ok, _ := a.Ready(); return ok })
		var ids []string
		for i := 0; i < 30; i++ {
			ids = append(ids, sim.OfferCall(eslsim.Caller{Number: "0201234567"}))
			time.Sleep(5 * time.Millisecond)
		}
		enriched := 0
		var worst time.Duration
		for _, id := range ids {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			err := sim.WaitReleased(ctx, id)
			cancel()
			if err != nil {
				t.Fatalf("%s: %v (not released: the budget did not end the call)", id, err)
			}
			ch, _ := sim.Channel(id)
			held := ch.Released.Sub(ch.Created)
			worst = max(worst, held)
			if err := budgetReleased(held, ch.ReleasedBy, "transfer"); err != nil {
				t.Errorf("%s: %v", id, err)
			}
			switch ch.Vars["callpop_match"] {
			case "timeout":
				enriched++
			case "":
			default:
				t.Errorf("callpop_match = %q", ch.Vars["callpop_match"])
			}
		}
		if enriched == 0 {
			t.Errorf("no call of 30 carries callpop_match=timeout")
		}
		t.Logf("%d of 30 calls carry callpop_match=timeout; held up to %v (budget %v)", enriched, worst, budget)
	})
}

// A reply that arrives after its command timed out on the client is consumed
// by that command's slot: the next command gets its own reply (eslgo would
// hand it the late one).
func TestLateReplyDoesNotShift(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword, APIDelay: func(cmd, args string) time.Duration {
		if strings.HasSuffix(args, " slow") {
			return 300 * time.Millisecond
		}
		return 0
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	id := sim.ParkWithoutEvent(eslsim.Caller{Number: "0201234567", Context: "other", Vars: map[string]string{"slow": "SLOW", "fast": "FAST", "next": "NEXT"}})
	nc, err := net.Dial("tcp", sim.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cn := newConn(nc, quietLog(), testM)
	cn.start(nil)
	defer cn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := cn.auth(ctx, testPassword); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = cn.api(short, "uuid_getvar "+id+" slow")
	cancelShort()
	if err == nil {
		t.Fatal("the slow command did not time out")
	}
	for _, v := range []string{"fast", "next"} {
		out, err := cn.api(ctx, "uuid_getvar "+id+" "+v)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.ToUpper(v); out != want {
			t.Fatalf("reply to %s = %q, want %q (replies shifted)", v, out, want)
		}
	}
}

// Unknown content types (log/data, text/rude-rejection, JSON events) are
// skipped; the loop keeps reading and replies still arrive.
func TestUnknownContentTypesKeepTheLoop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := eslwire.NewReader(nc)
		_, _ = nc.Write([]byte("Content-Type: auth/request\n\n"))
		if _, err := r.ReadFrame(); err != nil {
			return
		}
		_, _ = nc.Write([]byte("Content-Type: log/data\nContent-Length: 6\n\nlog!\n\n" +
			"Content-Type: text/rude-rejection\nContent-Length: 3\n\nno\n" +
			"Content-Length: 9\nContent-Type: text/event-json\n\n{\"a\":\"b\"}\n\n" +
			"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"))
		time.Sleep(time.Second)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cn := newConn(nc, quietLog(), testM)
	cn.start(nil)
	defer cn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := cn.auth(ctx, "pw"); err != nil {
		t.Fatalf("auth after unknown frames: %v", err)
	}
}

// A wrong password ends with -ERR invalid and a disconnect notice; the
// supervisor keeps retrying without a ready state.
func TestAuthFailureNotReady(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: "other-password"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	a := startAdapter(t, inboundConfig(sim.Addr()), adapters.Deps{Decider: call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision { return call.Decision{} })})
	waitFor(t, 5*time.Second, "two auth failures", func() bool { return sim.Stats().AuthFailures >= 2 })
	if ok, why := a.Ready(); ok || why == "" {
		t.Fatalf("Ready = %v %q", ok, why)
	}
}

// A transfer that fails on a live connection (FreeSWITCH answered -ERR) is
// retried by the periodic sweep: the call does not stay parked.
func TestSweepRetriesFailedTransfer(t *testing.T) {
	old := sweepInterval
	sweepInterval = 100 * time.Millisecond
	defer func() { sweepInterval = old }()
	var failed atomic.Bool
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword, APIDelay: func(cmd, args string) time.Duration {
		if cmd == "uuid_transfer" && failed.CompareAndSwap(false, true) {
			return 3 * time.Second // longer than command_timeout: the adapter gives up on this one
		}
		return 0
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	cfg := inboundConfig(sim.Addr())
	cfg.CommandTimeout = 500 * time.Millisecond
	a := startAdapter(t, cfg, adapters.Deps{Decider: call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		return call.Decision{Match: call.MatchMiss}
	})})
	waitFor(t, 5*time.Second, "ready", func() bool { ok, _ := a.Ready(); return ok })
	id := sim.OfferCall(eslsim.Caller{Number: "0201234567"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.WaitReleased(ctx, id); err != nil {
		t.Fatal(err)
	}
	if !failed.Load() {
		t.Fatal("the first transfer was not delayed")
	}
}

// The caller hangs up while callpop decides: uuid_setvar_multi answers
// -ERR No such channel!, which is counted as dead, not retried, not transferred.
func TestInboundCallerHangsUpDuringDecision(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	hung := make(chan string, 1)
	dec := call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		sim.Hangup(c.ID)
		hung <- c.ID
		return call.Decision{Match: call.MatchMiss}
	})
	before := counterValue(t, "inbound", "dead")
	a := startAdapter(t, inboundConfig(sim.Addr()), adapters.Deps{Decider: dec})
	waitFor(t, 5*time.Second, "ready", func() bool { ok, _ := a.Ready(); return ok })
	id := sim.OfferCall(eslsim.Caller{Number: "0201234567"})
	if got := <-hung; got != id {
		t.Fatalf("decided %s, offered %s", got, id)
	}
	waitFor(t, 5*time.Second, "dead call counted", func() bool {
		return counterValue(t, "inbound", "dead") == before+1
	})
	if st := sim.Stats(); st.Transfers != 0 || st.DeadUUID != 1 {
		t.Fatalf("transfers %d, dead-uuid replies %d", st.Transfers, st.DeadUUID)
	}
}

// callpop down in outbound mode: the socket app fails at once and the
// dialplan's next action runs (the documented fallback).
func TestOutboundCallpopDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sim := eslsim.NewOutbound(addr, eslsim.Options{})
	res, err := sim.Call(context.Background(), eslsim.Caller{Number: "0201234567"})
	if err == nil {
		t.Fatal("no error from a socket app with nobody listening")
	}
	if res.ReleasedBy != "close" || res.Resume.Sub(res.Connected) > 100*time.Millisecond {
		t.Fatalf("released by %q after %v", res.ReleasedBy, res.Resume.Sub(res.Connected))
	}
}

// Parking at a rate through the simulator's helper: every call released.
func TestInboundParkRate(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	a := startAdapter(t, inboundConfig(sim.Addr()), adapters.Deps{Decider: numbersDecider(t, customers)})
	waitFor(t, 5*time.Second, "ready", func() bool { ok, _ := a.Ready(); return ok })
	ids := sim.ParkCalls(context.Background(), 100, 200, func(i int) eslsim.Caller {
		return eslsim.Caller{Number: fmt.Sprintf("+4920112345%02d", i), Name: "Rate"}
	})
	waitFor(t, 10*time.Second, "all released", func() bool { return len(sim.Parked()) == 0 })
	for _, id := range ids {
		if v := sim.Vars(id)["callpop_match"]; v != "miss" {
			t.Fatalf("%s: callpop_match %q", id, v)
		}
	}
}

func counterValue(t testing.TB, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := testM.calls.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestNextBackoff(t *testing.T) {
	const minB, maxB = 100 * time.Millisecond, 5 * time.Second
	low := func(int64) int64 { return 0 }
	high := func(n int64) int64 { return n - 1 }
	cur := minB
	var seq []time.Duration
	for i := 0; i < 8; i++ {
		lo, _ := nextBackoff(cur, maxB, low)
		hi, next := nextBackoff(cur, maxB, high)
		if lo != cur/2 || hi < cur-time.Nanosecond || hi > cur {
			t.Fatalf("cur %v: wait in [%v, %v], want [%v, %v]", cur, lo, hi, cur/2, cur)
		}
		seq = append(seq, next)
		cur = next
	}
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, maxB, maxB, maxB}
	for i := range want {
		if seq[i] != want[i] {
			t.Fatalf("backoff sequence %v, want %v", seq, want)
		}
	}
}

// The supervisor redials a FreeSWITCH that comes up late, then serves calls.
func TestInboundFreeSWITCHComesUpLate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens yet
	a := startAdapter(t, inboundConfig(addr), adapters.Deps{Decider: numbersDecider(t, customers)})
	time.Sleep(300 * time.Millisecond)
	if ok, _ := a.Ready(); ok {
		t.Fatal("ready without FreeSWITCH")
	}
	sim, err := eslsim.NewInboundAt(addr, eslsim.Options{Password: testPassword})
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	defer sim.Close()
	waitFor(t, 5*time.Second, "ready", func() bool { ok, _ := a.Ready(); return ok })
	id := sim.OfferCall(eslsim.Caller{Number: "0201234567"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sim.WaitReleased(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// An ACL that refuses callpop: text/rude-rejection, the socket closes; the
// adapter counts it, stays not ready, and keeps retrying.
func TestRudeRejection(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword, Reject: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	var before dto.Metric
	_ = testM.frames.WithLabelValues("rude_rejection").Write(&before)
	a := startAdapter(t, inboundConfig(sim.Addr()), adapters.Deps{Decider: numbersDecider(t, customers)})
	waitFor(t, 5*time.Second, "two connection attempts", func() bool { return sim.Stats().Connections >= 2 })
	if ok, _ := a.Ready(); ok {
		t.Fatal("ready although refused")
	}
	waitFor(t, 5*time.Second, "rejection counted", func() bool {
		var m dto.Metric
		_ = testM.frames.WithLabelValues("rude_rejection").Write(&m)
		return m.GetCounter().GetValue() > before.GetCounter().GetValue()
	})
}

// TestOutboundAllowList: a socket app connecting from outside
// pbx.freeswitch.allow is closed before callpop reads a byte, so its call
// goes on to the dialplan's next action unenriched; a listed FreeSWITCH is
// served. Bound beyond loopback, the default allow-list is refused.
func TestOutboundAllowList(t *testing.T) {
	cfg := outboundConfig()
	cfg.Allow = []string{"127.0.0.2/32"}
	dec := &asyncDecider{delay: 0}
	a := startAdapter(t, cfg, adapters.Deps{Decider: dec, Budget: 2 * time.Second})
	addr := waitAddr(t, a)
	callFrom := func(source string) (eslsim.Result, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return eslsim.NewOutbound(addr, eslsim.Options{Source: source}).Call(ctx, eslsim.Caller{Number: "0201234567"})
	}
	if res, err := callFrom("127.0.0.2"); err != nil || res.Vars["callpop_match"] != "hit" {
		t.Fatalf("listed FreeSWITCH: match %q, %v", res.Vars["callpop_match"], err)
	}
	res, _ := callFrom("127.0.0.3")
	if res.Vars["callpop_match"] != "" || res.Exit {
		t.Fatalf("unlisted peer was served: match %q exit %v", res.Vars["callpop_match"], res.Exit)
	}
	dec.mu.Lock()
	n := dec.n
	dec.mu.Unlock()
	if n != 1 {
		t.Fatalf("decisions asked: %d, want 1 (the listed peer's)", n)
	}

	bound := DefaultConfig()
	bound.Listen = "0.0.0.0:8084"
	bound.Events = false
	if err := bound.Validate(); err == nil || !strings.Contains(err.Error(), "pbx.freeswitch.allow") ||
		!strings.Contains(err.Error(), "CALLPOP_PBX_FREESWITCH_ALLOW") {
		t.Fatalf("beyond loopback with the default allow-list: %v", err)
	}
}
