// Package loglimit keeps a repeated warning to one log line a second, so a
// flood (a CRM down, a scanner on a port) cannot flood the log too.
package loglimit

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// Limiter lets one line a second (or one per Every) through and counts the
// rest. The zero value is ready.
type Limiter struct {
	Every      time.Duration // 0 = a second
	last       atomic.Int64  // unix nanos of the last line let through
	suppressed atomic.Int64
}

// Allow reports whether to log now, and how many lines were held back since
// the last one let through.
func (l *Limiter) Allow() (suppressed int64, ok bool) {
	every := l.Every
	if every <= 0 {
		every = time.Second
	}
	n := time.Now().UnixNano()
	last := l.last.Load()
	if n-last < int64(every) || !l.last.CompareAndSwap(last, n) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}

// Warn logs msg with args at WARN unless l holds it back (a held-back line
// is counted, never formatted); the line says how many were held back.
func (l *Limiter) Warn(log *slog.Logger, msg string, args ...any) {
	if n, ok := l.Allow(); ok {
		log.Warn(msg, append(args, "suppressed", n)...)
	}
}
