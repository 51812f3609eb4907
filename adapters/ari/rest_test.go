package ari

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
)

// The REST client against the simulator's recorded answers: 404 on an
// unset variable is an empty value, 404/409 on a channel is ErrGone, empty
// values are sent as "value=" (set, not unset).
func TestRESTClientAnswers(t *testing.T) {
	sim := newSim(t, arisim.Options{})
	dialRaw(t, sim, sim.App())
	id := sim.OfferCall(arisim.CallSpec{CLI: "0201234567", ANI: "0301112233", NumPres: "prohib"})
	rc := newRESTClient(sim.URL(), testUser, testPass, 4)
	defer rc.close()
	ctx := context.Background()
	tests := []struct {
		name, variable, want string
	}{
		{"ani", "CALLERID(ani)", "0301112233"},
		{"num-pres", "CALLERID(num-pres)", "prohib"},
		{"unset variable", "NO_SUCH_VAR", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := rc.getVar(ctx, id, tt.variable)
			if err != nil || v != tt.want {
				t.Errorf("%q %v, want %q", v, err, tt.want)
			}
		})
	}
	if err := rc.setVar(ctx, id, "CALLPOP_NAME", ""); err != nil {
		t.Fatal(err)
	}
	if v, ok := sim.Vars(id)["CALLPOP_NAME"]; !ok || v != "" {
		t.Errorf("empty value not set: %q %v", v, ok)
	}
	if _, err := rc.getVar(ctx, "does-not-exist-123", "CALLERID(ani)"); !errors.Is(err, ErrGone) {
		t.Errorf("missing channel: %v", err)
	}
	if err := rc.continueChannel(ctx, id, ContinueConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := rc.setVar(ctx, id, "X", "1"); !errors.Is(err, ErrGone) {
		t.Errorf("set after continue: %v, want ErrGone (409)", err)
	}
	if err := rc.continueChannel(ctx, id, ContinueConfig{}); !errors.Is(err, ErrGone) {
		t.Errorf("second continue: %v, want ErrGone (409)", err)
	}
	var se *StatusError
	bad := newRESTClient(sim.URL(), testUser, "wrong", 1)
	defer bad.close()
	if _, err := bad.channels(ctx); !errors.As(err, &se) || se.Code != 401 {
		t.Errorf("wrong password: %v", err)
	}
}

// A transport error never carries the query (caller data) into an error.
func TestRESTErrorsCarryNoValues(t *testing.T) {
	rc := newRESTClient("http://127.0.0.1:1", testUser, testPass, 1) // nothing listens on port 1
	defer rc.close()
	err := rc.setVar(context.Background(), "1.2", "CALLPOP_NAME", "Jan de Vries")
	if err == nil {
		t.Fatal("no error")
	}
	for _, leak := range []string{"Jan", "value=", testPass} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error %q leaks %q", err, leak)
		}
	}
}

// A request already on its connection finishes when its call's context
// ends (aborting it would close the keep-alive connection: a dial per
// request under load); one still waiting for a connection gives up.
func TestRequestInFlightKeepsConnection(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var accepted atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("variable") == "SLOW" {
			entered <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			accepted.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	rc := newRESTClient(srv.URL, "", "", 3) // a per-call pool of one
	rc.finish = 10 * time.Second
	defer rc.close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rc.setVar(ctx, "1.1", "SLOW", "x") }()
	<-entered
	// the only connection is busy: a second request waits, and gives up with its context
	ctx2, cancel2 := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() { waiting <- rc.setVar(ctx2, "1.2", "FAST", "x") }()
	cancel2()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Errorf("waiting request: %v, want context.Canceled", err)
	}
	cancel() // the call's deadline passes while its request is on the connection
	close(release)
	if err := <-done; err != nil {
		t.Errorf("request in flight: %v, want it finished", err)
	}
	if err := rc.setVar(context.Background(), "1.3", "FAST", "x"); err != nil {
		t.Fatal(err)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections accepted, want 1 (kept alive)", n)
	}
}

// Calls whose deadlines pass while their requests queue for the per-call
// pool never cost a connection: a request given up at the moment a
// connection frees is not sent on it and aborted there (Go's Transport
// closes a connection whose request is cancelled in flight, and Asterisk
// counts the old session until it has read the close, so a close and a
// re-dial held one session more than max_connections at once). Counted at
// the server: one connection for the whole run, whatever the load.
func TestGivenUpRequestsKeepConnections(t *testing.T) {
	var accepted atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			accepted.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	rc := newRESTClient(srv.URL, "", "", 3) // a per-call pool of one
	rc.finish = 10 * time.Second
	defer rc.close()
	var wg sync.WaitGroup
	var sent, gaveUp atomic.Int64
	for i := range 200 {
		wg.Go(func() {
			// deadlines spread over the time the queue takes to drain, so
			// many end just as the connection frees
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%40)*time.Millisecond)
			defer cancel()
			switch err := rc.setVar(ctx, "1.1", "X", "x"); {
			case err == nil:
				sent.Add(1)
			case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
				gaveUp.Add(1)
			default:
				t.Errorf("setVar: %v", err)
			}
		})
	}
	wg.Wait()
	if err := rc.setVar(context.Background(), "1.2", "X", "x"); err != nil {
		t.Fatal(err)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections accepted, want 1 (%d requests answered, %d given up)", n, sent.Load(), gaveUp.Load())
	}
	t.Logf("%d requests answered, %d given up while queued", sent.Load(), gaveUp.Load())
}
