package crm

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// waiter is one LookupAsync caller waiting for a flight: its callback and
// what ends it at its context's end (and at its own deadline, when earlier).
// Whichever of the flight's answer and the end claims it first calls done.
// Its stops are set before the waiter joins a flight.
type waiter struct {
	claimed atomic.Bool
	done    func(Result, error)
	stop    func() bool // cancels context.AfterFunc's callback
	timer   *time.Timer // the deadline's; nil when ctx's own is as early
}

// claim reports whether the caller may call w.done (true exactly once).
func (w *waiter) claim() bool { return w.claimed.CompareAndSwap(false, true) }

// stopAll cancels the callbacks that would end w.
func (w *waiter) stopAll() {
	w.stop()
	if w.timer != nil {
		w.timer.Stop()
	}
}

// expire ends w with err (its context's end or its deadline) unless it was
// answered. It may run before w.timer is set: only the timer's own call
// (byTimer) stops the context's callback; a timer left running finds w claimed.
func (c *CRM) expire(w *waiter, err error, byTimer bool) {
	if w.claim() {
		if byTimer {
			w.stop()
		}
		lookupsTotal.WithLabelValues("timeout").Inc()
		c.deliver(w, Result{}, err)
	}
}

// LookupAsync is Lookup without holding the caller's goroutine: done gets
// what Lookup would have returned, exactly once. An in-process hit (or an
// error known at once) calls done before LookupAsync returns; otherwise the
// caller waits as a small struct on the number's flight, whose worker reads
// Redis and asks the sources, and done runs on that worker (or, at ctx's
// deadline, on the goroutine context.AfterFunc starts). done must not block.
func (c *CRM) LookupAsync(ctx context.Context, q Query, done func(Result, error)) {
	c.LookupAsyncBy(ctx, time.Time{}, q, done)
}

// LookupAsyncBy is LookupAsync ending at deadline (context.DeadlineExceeded)
// when that comes before ctx's end, as if ctx had that deadline, but with one
// timer instead of a derived context (zero deadline: ctx's alone).
func (c *CRM) LookupAsyncBy(ctx context.Context, deadline time.Time, q Query, done func(Result, error)) {
	if q.E164 == "" {
		done(Result{}, errors.New("crm: query without e164"))
		return
	}
	srcs, field, err := c.pick(q.Sources)
	if err != nil {
		done(Result{}, err)
		return
	}
	k := localKey{q.E164, field}
	if r, ok := c.fromLocal(k, q, srcs); ok {
		lookupsTotal.WithLabelValues(resultOf(r)).Inc()
		done(r, nil)
		return
	}
	err = ctx.Err()
	var wait time.Duration
	if err == nil && !deadline.IsZero() {
		if d, ok := ctx.Deadline(); !ok || deadline.Before(d) {
			if wait = time.Until(deadline); wait <= 0 {
				err = context.DeadlineExceeded
			}
		}
	}
	if err != nil {
		lookupsTotal.WithLabelValues("timeout").Inc()
		done(Result{}, err)
		return
	}
	w := &waiter{done: done}
	w.stop = context.AfterFunc(ctx, func() { c.expire(w, ctx.Err(), false) })
	if wait > 0 {
		w.timer = time.AfterFunc(wait, func() { c.expire(w, context.DeadlineExceeded, true) })
	}
	if c.joinAs(k, q, srcs, false, w) == nil {
		if w.claim() {
			w.stopAll()
			c.deliver(w, Result{}, errClosed)
		}
	}
}

// answer ends w with its flight's outcome unless its deadline came first.
func (c *CRM) answer(w *waiter, e entry, err error) {
	if !w.claim() {
		return
	}
	w.stopAll()
	if err != nil {
		lookupsTotal.WithLabelValues("error").Inc()
		c.deliver(w, Result{}, err)
		return
	}
	r := e.result()
	lookupsTotal.WithLabelValues(resultOf(r)).Inc()
	c.deliver(w, r, nil)
}

// deliver calls w's callback. It runs on a flight's worker that other
// waiters and flights depend on, so a panic in it is logged, not spread.
func (c *CRM) deliver(w *waiter, r Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("look-up callback panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	w.done(r, err)
}

// readRedis hands f to a Redis reader: one runs it now if fewer than
// rslots run, else it waits in the readers' queue (a struct, no goroutine):
// a burst of first-time callers costs at most rslots goroutines.
func (c *CRM) readRedis(f *flight) {
	c.rmu.Lock()
	if c.rrunning >= c.rslots {
		c.rqueue.push(f)
		c.rmu.Unlock()
		return
	}
	if !c.track(&c.wg) {
		c.rmu.Unlock()
		c.finish(f, entry{}, errClosed)
		return
	}
	c.rrunning++
	c.rmu.Unlock()
	go c.redisWorker(f)
}

// redisWorker reads Redis for f, then for the flights queued for a reader
// until none is left.
func (c *CRM) redisWorker(f *flight) {
	defer c.wg.Done()
	for f != nil {
		c.redisFirst(f)
		c.rmu.Lock()
		f = c.rqueue.pop()
		if f == nil {
			c.rrunning--
		}
		c.rmu.Unlock()
	}
}

// redisFirst reads the Redis tier for a flight started by LookupAsync; on a
// miss it hands the flight on to its sources.
func (c *CRM) redisFirst(f *flight) {
	e, ok := c.fromRedis(c.ctx, f.key, f.h)
	if !ok {
		c.advance(f)
		return
	}
	c.finish(f, e, nil)
	if e.stale { // after finish: the refresh is a flight of its own
		c.refresh(f.key, f.q, f.srcs)
	}
}
