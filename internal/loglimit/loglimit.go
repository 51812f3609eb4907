// Package loglimit keeps a repeated warning to one log line a second, so a
// flood (a CRM down, a scanner on a port) cannot flood the log too.
package loglimit

import (
	"sync/atomic"
	"time"
)

// Limiter lets one line a second through and counts the rest. The zero
// value is ready.
type Limiter struct {
	last       atomic.Int64 // unix nanos of the last line let through
	suppressed atomic.Int64
}

// Allow reports whether to log now, and how many lines were held back since
// the last one let through.
func (l *Limiter) Allow() (suppressed int64, ok bool) {
	n := time.Now().UnixNano()
	last := l.last.Load()
	if n-last < int64(time.Second) || !l.last.CompareAndSwap(last, n) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}
