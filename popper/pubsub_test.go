package popper

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/internal/testredis"
)

func newRedis(t testing.TB, addrs ...string) redis.UniversalClient {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: addrs, DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond, ContextTimeoutEnabled: true, MaxRetries: -1,
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Two instances share a Redis: the call is seen by instance A (its adapter),
// the agent's panel is connected to instance B, and the pop reaches it.
func TestPopsAcrossInstances(t *testing.T) {
	srv := testredis.Start(t)
	a := startInstance(t, Config{}, Deps{Redis: newRedis(t, srv.Addr)})
	b := startInstance(t, Config{}, Deps{Redis: newRedis(t, srv.Addr)})
	onB := openStream(t, b.srv.URL, "1001", token(t, "1001"), nil)
	onA := openStream(t, a.srv.URL, "1002", token(t, "1002"), nil)
	for i := range 50 {
		id := "x" + itoa(i)
		enrich(a.p, id, hitDecision())
		ring(a.p, id, "1001")
		m := onB.next(t, 5*time.Second)
		if !strings.Contains(m.Data, `"call_id":"`+id+`"`) || !strings.Contains(m.Data, `"agent":"1001"`) {
			t.Fatalf("on B: %s", m.Data)
		}
	}
	// Agent 1002 (on A) got nothing of 1001's calls.
	select {
	case m := <-onA.C:
		if m.Event == "pop" {
			t.Fatalf("1002 got %s", m.Data)
		}
	case <-time.After(200 * time.Millisecond):
	}
	// And the other way round.
	enrich(b.p, "y1", hitDecision())
	ring(b.p, "y1", "1002")
	if m := onA.next(t, 5*time.Second); !strings.Contains(m.Data, `"call_id":"y1"`) {
		t.Fatalf("on A: %s", m.Data)
	}
}

// The same over a Redis Cluster: instances connected to different masters.
func TestPopsAcrossInstancesCluster(t *testing.T) {
	cl := testredis.StartCluster(t, 3)
	a := startInstance(t, Config{}, Deps{Redis: newRedis(t, cl.Addrs...)})
	b := startInstance(t, Config{}, Deps{Redis: newRedis(t, cl.Addrs[2], cl.Addrs[1], cl.Addrs[0])})
	onB := openStream(t, b.srv.URL, "1001", token(t, "1001"), nil)
	for i := range 20 {
		id := "k" + itoa(i)
		enrich(a.p, id, hitDecision())
		ring(a.p, id, "1001")
		if m := onB.next(t, 10*time.Second); !strings.Contains(m.Data, `"call_id":"`+id+`"`) {
			t.Fatalf("on B: %s", m.Data)
		}
	}
}

// With Redis down, an instance still pops its own agents.
func TestRedisDownDeliversLocally(t *testing.T) {
	srv := testredis.Start(t)
	a := startInstance(t, Config{}, Deps{Redis: newRedis(t, srv.Addr)})
	s := openStream(t, a.srv.URL, "1001", token(t, "1001"), nil)
	srv.Stop()
	start := time.Now()
	enrich(a.p, "c1", hitDecision())
	ring(a.p, "c1", "1001")
	// Reports hand pops to the publisher without waiting: one that waited
	// for the dead Redis to come back would be held for good. (No bound near
	// the milliseconds this takes: a loaded machine breaks it.)
	if d := time.Since(start); d >= 5*time.Second {
		t.Fatalf("reports blocked on a dead Redis for %v", d)
	}
	if m := s.next(t, 10*time.Second); !strings.Contains(m.Data, `"call_id":"c1"`) {
		t.Fatalf("got %s", m.Data)
	}
}

// Every goroutine Run starts (correlator, webhook workers, Redis publisher
// and subscriber) and every stream goroutine ends with Run and its clients.
func TestRunNoGoroutineLeak(t *testing.T) {
	srv := testredis.Start(t)
	rdb := newRedis(t, srv.Addr)
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	hook := newReceiver(t, 500, 500, 500)
	fastBackoff(t)
	base := runtime.NumGoroutine()
	in := startInstance(t, Config{Webhooks: []WebhookConfig{{URL: hook.srv.URL, MaxAttempts: 20}}}, Deps{Redis: rdb})
	s := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	enrich(in.p, "c1", hitDecision())
	ring(in.p, "c1", "1001")
	s.next(t, 5*time.Second)
	s.Close()
	in.stop()
	hook.srv.CloseClientConnections()
	http.DefaultClient.CloseIdleConnections()
	var n int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n = runtime.NumGoroutine(); n <= base {
			return
		}
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("goroutines %d after Run, %d before\n%s", n, base, buf[:runtime.Stack(buf, true)])
}

// After a Redis restart the subscription comes back by itself: pops from
// the other instance reach the agent again.
func TestPubSubSurvivesRedisRestart(t *testing.T) {
	srv := testredis.Start(t)
	a := startInstance(t, Config{}, Deps{Redis: newRedis(t, srv.Addr)})
	b := startInstance(t, Config{}, Deps{Redis: newRedis(t, srv.Addr)})
	onB := openStream(t, b.srv.URL, "1001", token(t, "1001"), nil)
	srv.Restart()
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("no pop crossed instances within 100 tries after the restart")
		}
		id := "r" + itoa(i)
		enrich(a.p, id, hitDecision())
		ring(a.p, id, "1001")
		select {
		case m := <-onB.C:
			if m.Event == "pop" {
				return
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
}
