package popper

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

// receiver is a webhook endpoint that answers with the statuses given, then 200.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	got      []*http.Request
	bodies   [][]byte
	srv      *httptest.Server
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, req)
		r.bodies = append(r.bodies, b)
		code := 200
		if len(r.statuses) > 0 {
			code, r.statuses = r.statuses[0], r.statuses[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func fastBackoff(t *testing.T) {
	base, max := webhookBackoffBase, webhookBackoffMax
	webhookBackoffBase, webhookBackoffMax = 5*time.Millisecond, 20*time.Millisecond
	t.Cleanup(func() { webhookBackoffBase, webhookBackoffMax = base, max })
}

const hookSecret = "webhook-secret-0123456789"

func TestWebhookSignedAndRetried(t *testing.T) {
	fastBackoff(t)
	r := newReceiver(t, 500, 503)
	in := startInstance(t, Config{Webhooks: []WebhookConfig{{URL: r.srv.URL, Secret: hookSecret, MaxAttempts: 5}}}, Deps{})
	enrich(in.p, "c1", hitDecision())
	ring(in.p, "c1", "1001")
	waitFor(t, func() bool { return r.count() == 3 })
	time.Sleep(50 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 3 {
		t.Fatalf("attempts %d, want 3 (500, 503, 200)", len(r.got))
	}
	for i, req := range r.got {
		ts, sig := req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderSignature)
		if !VerifySignature([]byte(hookSecret), ts, sig, r.bodies[i]) {
			t.Errorf("attempt %d: signature %q does not verify", i, sig)
		}
		if VerifySignature([]byte("wrong-secret-0123456789"), ts, sig, r.bodies[i]) {
			t.Errorf("attempt %d: verifies with a wrong secret", i)
		}
		if req.Header.Get(HeaderEvent) != "ringing" || req.Header.Get(HeaderDelivery) != r.got[0].Header.Get(HeaderDelivery) {
			t.Errorf("attempt %d headers %v", i, req.Header)
		}
	}
}

func TestWebhookGivesUp(t *testing.T) {
	fastBackoff(t)
	r := newReceiver(t, 500, 500, 500, 500, 500, 500, 500, 500)
	in := startInstance(t, Config{Webhooks: []WebhookConfig{{URL: r.srv.URL, Secret: hookSecret, MaxAttempts: 3, Events: []string{"ringing"}}}}, Deps{})
	enrich(in.p, "c1", hitDecision())
	ring(in.p, "c1", "1001")
	in.p.CallEnded(call.CallEnd{CallID: "c1"}) // "ended" is not subscribed
	waitFor(t, func() bool { return r.count() >= 3 })
	time.Sleep(200 * time.Millisecond)
	if n := r.count(); n != 3 {
		t.Fatalf("attempts %d, want exactly 3", n)
	}
}

func TestWebhookNoRetryOn4xx(t *testing.T) {
	fastBackoff(t)
	r := newReceiver(t, 400, 400)
	in := startInstance(t, Config{Webhooks: []WebhookConfig{{URL: r.srv.URL, MaxAttempts: 5}}}, Deps{})
	enrich(in.p, "c1", hitDecision())
	ring(in.p, "c1", "1001")
	waitFor(t, func() bool { return r.count() >= 1 })
	time.Sleep(100 * time.Millisecond)
	if n := r.count(); n != 1 {
		t.Fatalf("attempts %d on 400, want 1", n)
	}
}

// A dead receiver never blocks the adapters: reports return at once and
// pops beyond the queue are dropped, not waited for.
func TestWebhookNeverBlocks(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	const hookTimeout = 5 * time.Second
	in := startInstance(t, Config{Webhooks: []WebhookConfig{{URL: srv.URL, Timeout: hookTimeout, Queue: 4}}}, Deps{})
	s := openStream(t, in.srv.URL, "1001", token(t, "1001"), nil)
	start := time.Now()
	for i := range 100 {
		id := "c" + itoa(i)
		enrich(in.p, id, hitDecision())
		ring(in.p, id, "1001")
	}
	// A report that waited for the stuck receiver would wait for a delivery
	// to time out (5 s) before a queue slot frees. (No bound nearer: a loaded
	// machine breaks it.)
	if d := time.Since(start); d >= hookTimeout {
		t.Fatalf("200 reports took %v: they waited for the stuck webhook", d)
	}
	// The agent's stream still gets its pops while the webhook is stuck.
	for range 20 {
		s.next(t, 5*time.Second)
	}
}

// No goroutine outlives Run, with deliveries in flight and retries pending.
func TestWebhookNoGoroutineLeak(t *testing.T) {
	fastBackoff(t)
	r := newReceiver(t, 500, 500, 500, 500, 500, 500)
	base := runtime.NumGoroutine()
	p, err := New(Config{TokenSecret: testSecret, Webhooks: []WebhookConfig{
		{URL: r.srv.URL, Secret: hookSecret, MaxAttempts: 50},
		{URL: "http://127.0.0.1:1/unreachable", MaxAttempts: 50},
	}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	for i := range 20 {
		enrich(p, "c"+itoa(i), hitDecision())
		ring(p, "c"+itoa(i), "1001")
	}
	waitFor(t, func() bool { return r.count() >= 2 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	r.srv.CloseClientConnections()
	var n int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n = runtime.NumGoroutine(); n <= base {
			return
		}
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("goroutines %d after Run, %d before\n%s", n, base, buf[:runtime.Stack(buf, true)])
}
