// Package heldcalls measures what calls held in flight cost a process, for
// the held-call benchmarks of crm, router and the adapters.
package heldcalls

import (
	"runtime"
	"time"
)

// Settle waits until the goroutine count has not changed for half a second
// (the held calls have all reached the place they wait in), or 30 s passed.
func Settle() {
	prev, same := 0, 0
	for i := 0; i < 600 && same < 10; i++ {
		time.Sleep(50 * time.Millisecond)
		if g := runtime.NumGoroutine(); g == prev {
			same++
		} else {
			prev, same = g, 0
		}
	}
}

// Snapshot collects garbage (three times, so finalisers and freed spans
// settle) and returns the goroutine count and the memory statistics.
func Snapshot() (int, runtime.MemStats) {
	runtime.GC()
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m
}
