package crm

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// logLimiter lets one line a second through and counts the rest: a failing
// source or Redis fails every call, and a line per call would cost more than
// the calls (and flood the log) just when the box is under strain.
type logLimiter struct {
	last       atomic.Int64 // unix nanos of the last line let through
	suppressed atomic.Int64
}

// warn logs msg with args unless a line went out less than a second ago (a
// held-back line is counted, never formatted).
func (l *logLimiter) warn(log *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(time.Second) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return
	}
	log.Warn(msg, append(args, "suppressed", l.suppressed.Swap(0))...)
}
