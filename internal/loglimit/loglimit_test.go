package loglimit

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l Limiter
		if _, ok := l.Allow(); !ok {
			t.Fatal("first line held back")
		}
		for i := range 5 {
			time.Sleep(100 * time.Millisecond)
			if _, ok := l.Allow(); ok {
				t.Fatalf("line %d within the second let through", i)
			}
		}
		time.Sleep(600 * time.Millisecond)
		if n, ok := l.Allow(); !ok || n != 5 {
			t.Fatalf("after a second: %d held back, let through %v; want 5, true", n, ok)
		}
	})
}
