package ari

import (
	"context"
	"errors"
	"strings"

	"github.com/callpop/callpop/call"
)

// The caller-ID functions a call needs beyond the event's caller number.
// Listed in ari.conf channelvars, they arrive in the StasisStart snapshot
// and no request reads them.
const (
	varANI     = "CALLERID(ani)"
	varNumPres = "CALLERID(num-pres)"
)

// callerID is what CALLERID(ani) and CALLERID(num-pres) told. knowANI and
// knowPres say the function was read (from channelvars or a GET): "" then
// means empty or unset. A function not read is not "empty": see unread.
type callerID struct {
	ani, numPres      string
	knowANI, knowPres bool
}

// take keeps the caller-ID functions found in vars.
func (id *callerID) take(vars map[string]string) {
	if v, ok := vars[varANI]; ok {
		id.ani, id.knowANI = v, true
	}
	if v, ok := vars[varNumPres]; ok {
		id.numPres, id.knowPres = v, true
	}
}

// known reports whether both functions were read.
func (id callerID) known() bool { return id.knowANI && id.knowPres }

// missing lists the functions not read yet.
func (id callerID) missing() []string {
	var names []string
	if !id.knowANI {
		names = append(names, varANI)
	}
	if !id.knowPres {
		names = append(names, varNumPres)
	}
	return names
}

// callerID is what the call knows of its caller's ANI and presentation: the
// read's answer once it ran, else what channelvars carried.
func (r *callRun) callerID() callerID {
	if id := r.read.Load(); id != nil {
		return *id
	}
	return r.ch.carried
}

// readCallerID reads the caller-ID functions channelvars did not carry: one
// GET /channels/{id}/variables where Asterisk has it, else one GET per
// function, concurrently. With a usable caller number the read is bounded by
// caller_vars_timeout (the number decides without it); without one it is
// waited for until the decision's deadline, since nothing can be decided
// without it. The reads run on goroutines of their own (counted in a.calls),
// not the call's; one already on its connection when the bound ends still
// finishes there, so the connection stays open.
func (r *callRun) readCallerID(ctx context.Context) callerID {
	a := r.a
	id := r.ch.carried
	names := id.missing()
	bound := ctx
	if usableCLI(r.ch.CLI) {
		var cancel context.CancelFunc
		bound, cancel = context.WithTimeout(ctx, a.cfg.CallerVarsTimeout)
		defer cancel()
	}
	// At most two reads: a nil channel is one not made or already answered.
	var first, second <-chan varsRead
	if a.multi.Load() {
		first = a.readVars(bound, r.ch.ID, names...)
	} else {
		first = a.readVars(bound, r.ch.ID, names[0])
		if len(names) > 1 {
			second = a.readVars(bound, r.ch.ID, names[1])
		}
	}
	for first != nil || second != nil {
		var v varsRead
		select {
		case v = <-first:
			first = nil
		case v = <-second:
			second = nil
		case <-bound.Done():
			r.a.m.restErrors.WithLabelValues("get_callerid_timeout").Inc()
			return id
		}
		switch {
		case v.err == nil:
			id.take(v.values)
		case errors.Is(v.err, ErrGone):
			r.gone.Store(true)
			return id
		case errors.Is(v.err, context.DeadlineExceeded) || errors.Is(v.err, context.Canceled):
			r.a.m.restErrors.WithLabelValues("get_callerid_timeout").Inc()
		default:
			r.a.m.restErrors.WithLabelValues("get_callerid").Inc()
		}
	}
	return id
}

// varsRead is what one read of caller variables gave.
type varsRead struct {
	values map[string]string
	err    error
}

// readVars reads channel variables on a goroutine of its own (counted in
// a.calls, so Run waits for it; it ends within request_timeout): all names
// in one GET /variables, or a single name with GET /variable.
func (a *Adapter) readVars(ctx context.Context, chanID string, names ...string) <-chan varsRead {
	out := make(chan varsRead, 1)
	a.calls.Add(1)
	go func() {
		defer a.calls.Done()
		if len(names) == 1 && !a.multi.Load() {
			v, err := a.rest.getVar(ctx, chanID, names[0])
			out <- varsRead{map[string]string{names[0]: v}, err}
			return
		}
		v, err := a.rest.getVars(ctx, chanID, names...)
		out <- varsRead{v, err}
	}()
	return out
}

// unread turns an "anonymous" decision taken without the caller's ANI or
// presentation (their read did not answer in time) into what it is: the
// call was not identified in time. A known customer calling withheld must
// not be told apart from a caller who withheld everything by a slow read.
func (r *callRun) unread(d call.Decision) call.Decision {
	r.a.m.callerVarsUnread.Inc()
	d.Match = call.MatchTimeout
	d.Err = "caller-ID variables not read in time"
	return d
}

// withCallerID adds what CALLERID(ani) and CALLERID(num-pres) told to c.
func withCallerID(c call.Call, id callerID) call.Call {
	c.ANI = strings.TrimSpace(id.ani)
	c.Privacy = strings.HasPrefix(strings.ToLower(id.numPres), "prohib")
	return c
}

// addsNothing reports whether the caller vars leave a usable CLI's decision
// as it was: no ANI or the same number, and not withheld.
func addsNothing(c, full call.Call) bool {
	return usableCLI(c.CLI) && (full.ANI == "" || full.ANI == full.CLI) && !full.Privacy
}

// usableCLI reports whether a caller number can decide the call when ANI
// and presentation are not read in time: not empty, not "anonymous", has
// digits.
func usableCLI(s string) bool {
	if s == "" || strings.EqualFold(strings.TrimSpace(s), "anonymous") {
		return false
	}
	return strings.ContainsAny(s, "0123456789")
}
