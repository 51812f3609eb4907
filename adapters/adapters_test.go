package adapters

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

// asyncFunc is an AsyncDecider made of a function.
type asyncFunc func(ctx context.Context, c call.Call, done func(call.Decision))

func (f asyncFunc) Decide(ctx context.Context, c call.Call) call.Decision {
	ch := make(chan call.Decision, 1)
	f(ctx, c, func(d call.Decision) { ch <- d })
	return <-ch
}

func (f asyncFunc) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	f(ctx, c, done)
}

// doneRecorder counts done calls and keeps the first decision.
type doneRecorder struct {
	mu    sync.Mutex
	n     int
	first call.Decision
	got   chan struct{}
}

func newDoneRecorder() *doneRecorder { return &doneRecorder{got: make(chan struct{})} }

func (r *doneRecorder) done(d call.Decision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if r.n == 1 {
		r.first = d
		close(r.got)
	}
}

func (r *doneRecorder) wait(t *testing.T) (int, call.Decision) {
	t.Helper()
	select {
	case <-r.got:
	case <-time.After(10 * time.Second):
		t.Fatal("done never called")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, r.first
}

func testLogger() (*slog.Logger, *syncBuf) {
	b := &syncBuf{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var testCall = call.Call{ID: "c-1", PBX: "asterisk", CLI: "+31201234567"}

func TestDecideAsyncSynchronousAnswer(t *testing.T) {
	log, _ := testLogger()
	rec := newDoneRecorder()
	dec := asyncFunc(func(ctx context.Context, c call.Call, done func(call.Decision)) {
		done(call.Decision{Match: call.MatchHit})
	})
	DecideAsync(context.Background(), dec, testCall, log, rec.done)
	select {
	case <-rec.got: // before DecideAsync returned
	default:
		t.Fatal("an in-process answer was not delivered before DecideAsync returned")
	}
	if n, d := rec.wait(t); n != 1 || d.Match != call.MatchHit {
		t.Errorf("done %d times, first %+v", n, d)
	}
}

// A decider that answers twice (or answers and then panics) still gives one done.
func TestDecideAsyncExactlyOnce(t *testing.T) {
	log, buf := testLogger()
	tests := []struct {
		name  string
		dec   asyncFunc
		want  call.Match
		panic bool
	}{
		{"twice synchronously", func(ctx context.Context, c call.Call, done func(call.Decision)) {
			done(call.Decision{Match: call.MatchHit})
			done(call.Decision{Match: call.MatchMiss})
		}, call.MatchHit, false},
		{"answer then panic", func(ctx context.Context, c call.Call, done func(call.Decision)) {
			done(call.Decision{Match: call.MatchMiss})
			panic("after the answer")
		}, call.MatchMiss, true},
		{"panic before any answer", func(ctx context.Context, c call.Call, done func(call.Decision)) {
			panic("crm client bug")
		}, call.MatchError, true},
		{"async twice, racing", func(ctx context.Context, c call.Call, done func(call.Decision)) {
			for range 8 {
				go done(call.Decision{Match: call.MatchHit})
			}
		}, call.MatchHit, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newDoneRecorder()
			before := strings.Count(buf.String(), "decider panicked")
			DecideAsync(context.Background(), tt.dec, testCall, log, rec.done)
			n, d := rec.wait(t)
			time.Sleep(20 * time.Millisecond) // room for a wrong second done (not a timing assertion)
			rec.mu.Lock()
			n = rec.n
			rec.mu.Unlock()
			if n != 1 || d.Match != tt.want {
				t.Errorf("done %d times, first %+v; want once with %s", n, d, tt.want)
			}
			if logged := strings.Count(buf.String(), "decider panicked") - before; (logged == 1) != tt.panic {
				t.Errorf("panic logged %d times, want panic=%v", logged, tt.panic)
			}
		})
	}
	if strings.Contains(buf.String(), "+31201234567") {
		t.Errorf("raw caller number logged: %s", buf.String())
	}
}

// A plain Decider runs on a goroutine of its own; its panic becomes
// Match=error there instead of ending the process.
func TestDecideAsyncPlainDecider(t *testing.T) {
	log, buf := testLogger()
	rec := newDoneRecorder()
	dec := call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		return call.Decision{Match: call.MatchMiss}
	})
	DecideAsync(context.Background(), dec, testCall, log, rec.done)
	if n, d := rec.wait(t); n != 1 || d.Match != call.MatchMiss {
		t.Errorf("done %d times, first %+v", n, d)
	}

	rec = newDoneRecorder()
	DecideAsync(context.Background(), call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		panic("crm client bug")
	}), testCall, log, rec.done)
	if n, d := rec.wait(t); n != 1 || d.Match != call.MatchError {
		t.Errorf("done %d times, first %+v; want once with error", n, d)
	}
	if !strings.Contains(buf.String(), "decider panicked") {
		t.Errorf("panic not logged: %s", buf.String())
	}
}
