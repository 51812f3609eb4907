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
// calls done exactly once by ctx's deadline: before it returns when nothing
// is waited for (an in-process hit, no number), else on the CRM's worker or
// the goroutine the deadline starts. A panic in any step becomes a
// Match=error decision. done must not block.
func (r *Router) DecideAsync(ctx context.Context, c call.Call, done func(call.Decision)) {
	r.decideAsync(ctx, c, nil, done)
}

// decideAsync is the one decision path, Decide's and DecideAsync's: identify
// the caller, look the number up (at once from the in-process tier, else as
// a held call), apply the rules, stamp, done. trace, when not nil, gets the
// rules' trace before done is called.
func (r *Router) decideAsync(ctx context.Context, c call.Call, trace *[]RuleTrace, done func(call.Decision)) {
	p := pending{c: c, trace: trace} // on the stack: only a call that waits costs a held struct
	q, deadline, wait := r.decideNow(ctx, &p, done)
	if !wait {
		return
	}
	h := &held{r: r, ctx: ctx, done: done, pending: p, until: lookupDeadline(deadline)}
	defer h.recover()
	// The look-up ends at h.until by a timer of the CRM's (no derived context
	// to hold); the shared block list's Redis call needs the context.
	lctx := ctx
	key := h.st.cfg.Flags.BlockListRedisKey
	if key == "" || r.deps.Redis == nil || h.byEmail { // an e-mail address is on no block list
		h.arms.Store(1)
	} else {
		h.arms.Store(2)
		lctx, h.cancel = context.WithDeadline(ctx, h.until)
		r.checkBlocked(lctx, key, h.d.E164, h.blockListed)
	}
	r.deps.CRM.LookupAsyncBy(lctx, h.until, q, h.looked)
}

// pending is one call's decision under way: what each step (identify, the
// look-up, applyRules, stamp) hands the next.
type pending struct {
	c       call.Call
	d       call.Decision
	trace   *[]RuleTrace // the rules' trace, for Explain; nil otherwise
	start   time.Time    // the call's arrival: c.Received, else when the decision began
	st      *state
	prof    *profile
	region  string // the region national numbers are read in
	number  callerid.Number
	blocked bool             // on a block list
	email   string           // the contact's e-mail address, normalised; "" = none (or not valid)
	byEmail bool             // the look-up under way (or done) is by e-mail
	cust    *call.Customer   // the CRM's record (cleaned once applyRules began); nil on no hit
	cands   []*call.Customer // several matches: every candidate, as the CRM gave them
}

// decideNow runs the steps up to the wait: when there is nothing to wait
// for (no number, an in-process hit) it decides and calls done, and wait is
// false; else it returns the query and the deadline to wait for.
func (r *Router) decideNow(ctx context.Context, p *pending, done func(call.Decision)) (q crm.Query, deadline time.Time, wait bool) {
	delivered := false
	defer func() {
		if x := recover(); x != nil {
			wait = false
			if delivered { // in done itself: the decision is out already
				r.log.Error("decide panicked after its decision", "call", p.c, "panic", fmt.Sprint(x), "stack", string(debug.Stack()))
				return
			}
			r.stamp(p, x)
			delivered = true
			done(p.d)
		}
	}()
	p.start = p.c.Received
	if p.start.IsZero() {
		p.start = time.Now()
	}
	deadline, lookup := r.identify(ctx, p)
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
		r.takeAnswer(p, res, nil, false)
	}
	if wantEmail(p, lookup) {
		q = emailQuery(p)
		res, ok := r.deps.CRM.LookupLocal(q)
		if !ok {
			return q, deadline, true
		}
		r.takeEmailAnswer(p, res, nil, false)
	}
	r.applyRules(ctx, p)
	r.stamp(p, nil)
	delivered = true
	done(p.d)
	return q, deadline, false
}

// held is a call whose decision waits for its look-up: its pending decision
// and the look-up's answers, in one struct instead of a goroutine's stack.
type held struct {
	r    *Router
	ctx  context.Context
	done func(call.Decision)
	pending

	until  time.Time          // the look-up's share of the deadline
	cancel context.CancelFunc // of the block list's context, if any

	arms         atomic.Int32 // parts of the look-up still out: the CRM, the shared block list
	res          crm.Result   // the CRM's answer (set before its arm ends)
	err          error
	timedOut     bool
	redisBlocked bool // on the shared block list (set before its arm ends, when it answered in time)

	mu        sync.Mutex  // held while the decision is written after the look-up, and by a recovered panic
	delivered atomic.Bool // done was called (or is being called)
}

// looked is the CRM's answer.
func (h *held) looked(res crm.Result, err error) {
	defer h.recover()
	h.res, h.err = res, err
	// The deadline (not the caller's cancelling) ended the look-up.
	h.timedOut = err != nil && (!time.Now().Before(h.until) || errors.Is(h.ctx.Err(), context.DeadlineExceeded))
	h.armDone()
}

// blockListed is the shared block list's answer.
func (h *held) blockListed(b, ok bool) {
	defer h.recover()
	h.redisBlocked = ok && b
	h.armDone()
}

// armDone ends one part of the look-up; the last one applies the rules and
// delivers the decision — or, when the number missed and the contact has an
// e-mail address, starts the look-up by e-mail (the same held struct, the
// same deadline) and waits for that.
func (h *held) armDone() {
	if h.arms.Add(-1) != 0 {
		return
	}
	if h.cancel != nil {
		h.cancel()
	}
	if q, chain := h.settle(); chain {
		// Outside h.mu: the CRM may answer before LookupAsyncBy returns.
		h.r.deps.CRM.LookupAsyncBy(h.ctx, h.until, q, h.looked)
	}
}

// settle takes the look-up's answer: it delivers the decision, or returns
// the e-mail query to chain (chain true, the answers reset for it).
func (h *held) settle() (q crm.Query, chain bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.delivered.Load() { // a panic ended the decision already
		return q, false
	}
	if h.byEmail {
		h.r.takeEmailAnswer(&h.pending, h.res, h.err, h.timedOut)
	} else {
		if h.redisBlocked {
			h.blocked = true
		}
		h.r.takeAnswer(&h.pending, h.res, h.err, h.timedOut)
		if wantEmail(&h.pending, true) {
			q = emailQuery(&h.pending)
			h.res, h.err, h.timedOut, h.cancel = crm.Result{}, nil, false, nil
			h.arms.Store(1)
			return q, true
		}
	}
	h.r.applyRules(h.ctx, &h.pending)
	h.deliver(nil)
	return q, false
}

// deliver stamps the decision (x: a recovered panic) and calls done, once.
func (h *held) deliver(x any) {
	if !h.delivered.CompareAndSwap(false, true) {
		if x != nil { // in done itself, or after it: the decision is out already
			h.r.log.Error("decide panicked after its decision", "call", h.c, "panic", fmt.Sprint(x), "stack", string(debug.Stack()))
		}
		return
	}
	h.r.stamp(&h.pending, x)
	h.done(h.d)
}

// recover turns a panic in any step, on any goroutine, into the error
// decision (or a log line once done was called).
func (h *held) recover() {
	if x := recover(); x != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.deliver(x)
	}
}
