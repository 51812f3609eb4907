package crm

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// waiter is one caller waiting for a flight: its callback and what ends it
// at its context's end (and at its own deadline, when earlier). Whichever of
// the flight's answer and the end claims it first calls done. Its stops are
// set before the waiter joins a flight; a blocking Lookup has none (it ends
// its waiter itself at its context's end).
type waiter struct {
	claimed atomic.Bool
	done    func(Result, error)
	stop    func() bool // cancels context.AfterFunc's callback; nil for Lookup
	timer   *time.Timer // the deadline's; nil when ctx's own is as early
}

// claim reports whether the caller may call w.done (true exactly once).
func (w *waiter) claim() bool { return w.claimed.CompareAndSwap(false, true) }

// stopAll cancels the callbacks that would end w.
func (w *waiter) stopAll() {
	if w.stop != nil {
		w.stop()
	}
	if w.timer != nil {
		w.timer.Stop()
	}
}

// expire ends w with err (its context's end or its deadline) unless it was
// answered. It may run before w.timer is set: only the timer's own call
// (byTimer) stops the context's callback; a timer left running finds w claimed.
func (c *CRM) expire(w *waiter, err error, byTimer bool) {
	if w.claim() {
		if byTimer && w.stop != nil {
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
	if r, w, err := c.lookup(ctx, deadline, q, done, true); w == nil {
		done(r, err)
	}
}

// lookup is every look-up: Lookup waits on it, LookupAsync does not. It
// answers at once (w == nil: r, err) from the in-process tier or with an
// error known at once; otherwise the caller waits as w on the number's
// flight, and done gets the answer exactly once. With timed, w ends by
// itself at deadline (zero: ctx's alone) or ctx's end; without, the caller
// ends it (c.expire) when it stops waiting.
func (c *CRM) lookup(ctx context.Context, deadline time.Time, q Query, done func(Result, error), timed bool) (r Result, w *waiter, err error) {
	id, q, err := lookupKey(q)
	if err != nil {
		return Result{}, nil, err
	}
	srcs, field, err := c.pick(q.Sources, q.Email != "")
	if err != nil {
		return Result{}, nil, err
	}
	k := localKey{id, field}
	if r, ok := c.fromLocal(k, q, srcs); ok {
		countLookup(r)
		return r, nil, nil
	}
	if c.cache.local != nil {
		localMisses.Inc()
	}
	wait, err := waitBound(ctx, deadline)
	if err != nil {
		lookupsTotal.WithLabelValues("timeout").Inc()
		return Result{}, nil, err
	}
	wt := &waiter{done: done} // not w: the closures would move the result to the heap on every look-up
	if timed {
		wt.stop = context.AfterFunc(ctx, func() { c.expire(wt, ctx.Err(), false) })
		if wait > 0 {
			wt.timer = time.AfterFunc(wait, func() { c.expire(wt, context.DeadlineExceeded, true) })
		}
	}
	if c.join(k, q, srcs, false, wt) == nil && wt.claim() {
		wt.stopAll()
		c.deliver(wt, Result{}, errClosed)
	}
	return Result{}, wt, nil
}

// waitBound is how long a waiter may wait for deadline, when that comes
// before ctx's end (0: ctx's end alone bounds it); an error when ctx ended
// or deadline passed already.
func waitBound(ctx context.Context, deadline time.Time) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if deadline.IsZero() {
		return 0, nil
	}
	if d, ok := ctx.Deadline(); ok && !deadline.Before(d) {
		return 0, nil
	}
	wait := time.Until(deadline)
	if wait <= 0 {
		return 0, context.DeadlineExceeded
	}
	return wait, nil
}

// answerWaiter ends w with its flight's outcome unless its deadline came first.
func (c *CRM) answerWaiter(w *waiter, e entry, err error) {
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
	countLookup(r)
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
		c.endFlight(f, entry{}, errClosed)
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

// redisFirst reads the Redis tier for a flight a waiter started; on a
// miss it hands the flight on to its sources.
func (c *CRM) redisFirst(f *flight) {
	e, ok := c.fromRedis(c.ctx, f.key, f.h)
	if !ok {
		c.advance(f)
		return
	}
	c.endFlight(f, e, nil)
	if e.stale { // after endFlight: the refresh is a flight of its own
		c.refresh(f.key, f.q, f.srcs)
	}
}
