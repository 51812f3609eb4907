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

func TestLimiterEvery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := Limiter{Every: 10 * time.Second}
		if _, ok := l.Allow(); !ok {
			t.Fatal("first line held back")
		}
		time.Sleep(5 * time.Second)
		if _, ok := l.Allow(); ok {
			t.Fatal("a line within Every let through")
		}
		time.Sleep(6 * time.Second)
		if n, ok := l.Allow(); !ok || n != 1 {
			t.Fatalf("after Every: %d held back, let through %v; want 1, true", n, ok)
		}
	})
}
