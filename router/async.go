package router

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/crm"
)

// DecideAsync is Decide without holding the caller's goroutine while the CRM
// (or the shared block list) is asked: the call waits as a held struct. It
// runs decide's parts (begin, the look-up, conclude, end) and calls done
// exactly once by ctx's deadline: before it returns when nothing is waited
// for (an in-process hit, no number), else on the CRM's worker or the
// goroutine the deadline starts. A panic in any part becomes a Match=error
// decision. done must not block.
func (r *Router) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	p := parts{c: c} // on the stack: only a call that waits costs a held struct
	q, deadline, wait := r.decideNow(ctx, &p, done)
	if !wait {
		return
	}
	h := &held{r: r, ctx: ctx, done: done, parts: p, until: lookupDeadline(deadline)}
	defer h.recover()
	// The look-up ends at h.until by a timer of the CRM's (no derived context
	// to hold); the shared block list's Redis call needs the context.
	lctx := ctx
	key := h.st.cfg.Flags.BlockListRedisKey
	if key == "" || r.deps.Redis == nil {
		h.arms.Store(1)
	} else {
		h.arms.Store(2)
		lctx, h.cancel = context.WithDeadline(ctx, h.until)
		r.checkBlocked(lctx, key, h.d.E164, h.blockListed)
	}
	r.deps.CRM.LookupAsyncBy(lctx, h.until, q, h.looked)
}

// parts is what decide keeps between its parts.
type parts struct {
	c       call.Call
	d       call.Decision
	start   time.Time
	st      *state
	prof    *profile
	region  string
	number  callerid.Number
	blocked bool
	cust    *call.Customer
}

// decideNow runs DecideAsync's parts up to the wait: when there is nothing
// to wait for (no number, an in-process hit) it decides and calls done, and
// wait is false; else it returns the query and the deadline to wait for.
func (r *Router) decideNow(ctx context.Context, p *parts, done func(call.Decision)) (q crm.Query, deadline time.Time, wait bool) {
	finished := false
	defer func() {
		if x := recover(); x != nil {
			wait = false
			if finished { // in done itself: the decision is out already
				r.log.Error("decide panicked after its decision", "call", p.c, "panic", fmt.Sprint(x), "stack", string(debug.Stack()))
				return
			}
			r.end(&p.c, &p.d, p.start, x)
			finished = true
			done(p.d)
		}
	}()
	p.start = p.c.Received
	if p.start.IsZero() {
		p.start = time.Now()
	}
	var lookup bool
	p.st, p.prof, p.region, p.number, deadline, lookup = r.begin(ctx, &p.c, &p.d, p.start)
	if lookup {
		p.blocked = r.block.contains(p.d.E164)
		q = lookupQuery(&p.number, p.prof)
		res, ok := crm.Result{}, false
		if r.localFirst(p.st) {
			res, ok = r.deps.CRM.LookupLocal(q)
		}
		if !ok {
			return q, deadline, true
		}
		p.cust = r.settle(&p.c, &p.d, res, nil, false)
	}
	r.conclude(ctx, &p.c, &p.d, p.st, p.prof, &p.number, p.region, p.cust, p.blocked, nil)
	r.end(&p.c, &p.d, p.start, nil)
	finished = true
	done(p.d)
	return q, deadline, false
}

// held is a call whose decision waits for its look-up: what decide keeps on
// its stack while it waits, kept in one struct instead.
type held struct {
	r    *Router
	ctx  context.Context
	done func(call.Decision)
	parts

	until  time.Time          // the look-up's share of the deadline
	cancel context.CancelFunc // of the block list's context, if any

	arms         atomic.Int32 // parts of the look-up still out: the CRM, the shared block list
	res          crm.Result   // the CRM's answer (set before its arm ends)
	err          error
	timedOut     bool
	redisBlocked bool // on the shared block list (set before its arm ends, when it answered in time)

	mu       sync.Mutex  // held while the decision is written after the look-up, and by a recovered panic
	finished atomic.Bool // done was called (or is being called)
}

// looked is the CRM's answer.
func (h *held) looked(res crm.Result, err error) {
	defer h.recover()
	h.res, h.err = res, err
	// As decide's errors.Is(lctx.Err(), context.DeadlineExceeded).
	h.timedOut = err != nil && (!time.Now().Before(h.until) || errors.Is(h.ctx.Err(), context.DeadlineExceeded))
	h.armDone()
}

// blockListed is the shared block list's answer.
func (h *held) blockListed(b, ok bool) {
	defer h.recover()
	h.redisBlocked = ok && b
	h.armDone()
}

// armDone ends one part of the look-up; the last one concludes.
func (h *held) armDone() {
	if h.arms.Add(-1) != 0 {
		return
	}
	if h.cancel != nil {
		h.cancel()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.finished.Load() { // a panic ended the decision already
		return
	}
	if h.redisBlocked {
		h.blocked = true
	}
	h.cust = h.r.settle(&h.c, &h.d, h.res, h.err, h.timedOut)
	h.conclude()
}

// conclude runs the rules and hands the decision to done.
func (h *held) conclude() {
	h.r.conclude(h.ctx, &h.c, &h.d, h.st, h.prof, &h.number, h.region, h.cust, h.blocked, nil)
	h.finish(nil)
}

// finish ends the decision (p: a recovered panic) and calls done, once.
func (h *held) finish(p any) {
	if !h.finished.CompareAndSwap(false, true) {
		if p != nil { // in done itself, or after it: the decision is out already
			h.r.log.Error("decide panicked after its decision", "call", h.c, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
		return
	}
	h.r.end(&h.c, &h.d, h.start, p)
	h.done(h.d)
}

// recover turns a panic in any part, on any goroutine, into the error
// decision (or a log line once done was called).
func (h *held) recover() {
	if p := recover(); p != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.finish(p)
	}
}
