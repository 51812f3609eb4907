package callbacks

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/callpop/callpop/call"
)

// Scheduler timing.
const (
	maxIdle      = time.Second      // the due set is read at least this often
	originMargin = 15 * time.Second // an originate may outlast ring_timeout by this (answer, the PBX's reply)
	storeTimeout = 5 * time.Second  // one store operation
	gaugeEvery   = 5 * time.Second
	stuckRetry   = 250 * time.Millisecond // a due request another instance holds is looked at again after this
)

// Run dials the requests when they are due, until ctx ends. On ctx's end
// it takes no new attempt and waits for the attempts under way (each
// bounded by ring_timeout); a caller that cannot wait leaves them to the
// leases (an attempt cut short is found by another instance and counted).
func (s *Service) Run(ctx context.Context) error {
	s.log.Info("callback scheduler running", "pbx", s.deps.PBX, "attempts", s.cfg.Attempts, "retry_after", s.cfg.RetryAfter.String(),
		"shared", s.deps.Redis != nil)
	defer s.inFlight.Wait()
	var blockedUntil time.Time // the global rate is used up until then
	var lastGauge time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.wake:
		}
		now := s.deps.Now()
		if now.Sub(lastGauge) >= gaugeEvery || now.Before(lastGauge) {
			lastGauge = now
			s.updateGauge(ctx)
		}
		wait := maxIdle
		if now.Before(blockedUntil) {
			wait = min(blockedUntil.Sub(now), maxIdle)
		} else if until, busy, err := s.sweep(ctx, now); err != nil {
			s.storeWarn.Warn(s.log, "callbacks: store unavailable; requests wait", "err", err)
		} else if !until.IsZero() {
			blockedUntil = until
			wait = min(until.Sub(now), maxIdle)
		} else if !busy { // busy: an attempt ending wakes the loop
			if next, ok, err := s.nextDue(ctx); err == nil && ok {
				d := next.Sub(s.deps.Now())
				if d <= 0 {
					// due but not ours to take (another instance's lease): look again soon, not at once
					d = stuckRetry
				}
				wait = min(wait, max(d, 10*time.Millisecond))
			}
		}
		timer.Reset(wait)
	}
}

func (s *Service) nextDue(ctx context.Context) (time.Time, bool, error) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return s.store.next(sctx)
}

func (s *Service) updateGauge(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if n, err := s.store.pending(sctx); err == nil {
		pendingGauge.Set(float64(n))
	}
}

// sweep starts an attempt for each due request it can lease, as many as
// the instance's in-flight bound allows (busy: it allowed no more). It
// returns, when the global rate is used up, the end of the rate's window.
func (s *Service) sweep(ctx context.Context, now time.Time) (until time.Time, busy bool, err error) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	ids, err := s.store.due(sctx, now, dueBatch)
	cancel()
	if err != nil {
		return time.Time{}, false, err
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return time.Time{}, false, nil
		}
		select {
		case s.sem <- struct{}{}:
		default:
			return time.Time{}, true, nil // the rest wait for a free slot
		}
		until, started, err := s.take(ctx, id)
		if !started {
			<-s.sem
		}
		if err != nil {
			return time.Time{}, false, err
		}
		if !until.IsZero() {
			return until, false, nil
		}
	}
	return time.Time{}, false, nil
}

// take leases request id and deals with it: an attempt (started: it runs
// on its own goroutine, holding a slot and the lease), or a record put
// right (out of hours, an attempt whose instance died, cancelled). until is
// set when the global rate is used up.
func (s *Service) take(ctx context.Context, id string) (until time.Time, started bool, err error) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	ok, err := s.store.lease(sctx, id, s.owner, s.deps.LeaseTTL)
	if err != nil || !ok {
		return time.Time{}, false, err // another instance has it
	}
	defer func() {
		if !started {
			_ = s.store.release(context.WithoutCancel(sctx), id, s.owner)
		}
	}()
	now := s.deps.Now()
	dial := false
	var attempt int
	var rec *Record
	_, err = s.store.update(sctx, id, func(r *Record) error {
		dial, rec = false, nil
		switch {
		case r.State.Terminal():
			return errNoChange // the due set lost it on the write
		case r.NextAt.After(now):
			return errNoChange // moved (an update) since it was read
		case r.State == StateDialing:
			// The lease was free, so the instance dialling is gone: the
			// attempt counts, its outcome unknown; never dialled again now.
			attemptsTotal.WithLabelValues("unknown").Inc()
			s.log.Warn("callback attempt lost with the instance making it; counted", "id", r.ID, "attempt", r.Attempt)
			s.finish(r, "unknown", "the instance dialling stopped", now)
			return nil
		case r.CancelRequested:
			r.State, r.Updated = StateCancelled, now
			return nil
		}
		if at := s.schedule(now); at.After(now) {
			r.NextAt, r.Updated = at, now // out of hours: the next opening, not counted
			return nil
		}
		dial, rec = true, r
		r.State, r.Attempt, r.Updated = StateDialing, r.Attempts+1, now
		r.NextAt = now.Add(s.deps.LeaseTTL)
		attempt = r.Attempt
		return nil
	})
	if err != nil || !dial {
		return time.Time{}, false, err
	}
	// The global rate, across instances: over it, the request goes back
	// as it was and the sweep waits for the next window.
	// A store failure here puts it back too (not dialled, not counted).
	n, err := s.store.count(sctx, "rate:"+windowName(now, time.Minute), 2*time.Minute)
	if err != nil || n > int64(s.cfg.MaxPerMinute) {
		_, uerr := s.store.update(sctx, id, func(r *Record) error {
			if r.State != StateDialing || r.Attempt != attempt {
				return errNoChange
			}
			r.State, r.Attempt, r.NextAt = StatePending, 0, now
			return nil
		})
		if err != nil {
			return time.Time{}, false, err
		}
		return windowEnd(now, time.Minute), false, uerr
	}
	s.inFlight.Add(1)
	go func() {
		defer s.inFlight.Done()
		defer func() { <-s.sem }()
		s.attempt(context.WithoutCancel(ctx), *rec)
	}()
	return time.Time{}, true, nil
}

// attempt makes one attempt at r (state dialing, under this instance's
// lease) and records its outcome.
func (s *Service) attempt(ctx context.Context, r Record) {
	defer func() {
		rctx, cancel := context.WithTimeout(ctx, storeTimeout)
		defer cancel()
		_ = s.store.release(rctx, r.ID, s.owner)
		s.poke()
	}()
	start := time.Now()
	attemptCtx, cancel := context.WithTimeout(ctx, s.cfg.RingTimeout+originMargin)
	defer cancel()
	leaseCtx, stopLease := context.WithCancel(attemptCtx)
	defer stopLease()
	lost := s.keepLease(leaseCtx, r.ID)

	callID := "cb-" + r.ID + "-" + strconv.Itoa(r.Attempt)
	c := s.callFor(r.Number, r.Name, r.Note, callID)
	dctx, dcancel := context.WithTimeout(attemptCtx, s.deps.Budget)
	d := s.deps.Decider.Decide(dctx, c) // fail-open: a timeout decision still dials
	dcancel()
	if r.Queue != "" {
		d.Queue = r.Queue
	}
	o := call.Originate{
		ID: callID, CallbackID: r.ID, Number: r.Number,
		Endpoint:       strings.Replace(s.dial().Endpoint, "{number}", r.Number, 1),
		Context:        s.dial().Context,
		Extension:      s.dial().Extension,
		CallerIDName:   call.CleanValueN(s.cfg.CallerID.Name, 64),
		CallerIDNumber: call.CleanToken(s.cfg.CallerID.Number),
		Timeout:        s.cfg.RingTimeout,
		Call:           c,
		Decision:       cleanDecision(d),
	}
	if !e164.MatchString(r.Number) { // the store is trusted, but only + and digits may reach a dial string
		s.record(ctx, r, call.OriginateResult{Outcome: call.OutcomeFailed, Cause: "invalid number"}, nil)
		return
	}
	s.log.Info("callback dialling", "id", r.ID, "call_id", callID, "attempt", r.Attempt, "number", call.MaskNumber(r.Number),
		"match", string(d.Match), "queue", d.Queue)
	res, err := s.deps.Originator.Originate(attemptCtx, o)
	stopLease()
	if lost() && err == nil {
		s.log.Warn("callback lease lost during the attempt (store unreachable?)", "id", r.ID, "attempt", r.Attempt)
	}
	s.record(ctx, r, res, err)
	s.log.Info("callback attempt ended", "id", r.ID, "call_id", callID, "outcome", string(res.Outcome), "cause", call.CleanValue(res.Cause),
		"err", errString(err), "took", time.Since(start).Round(time.Millisecond).String())
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (s *Service) dial() DialConfig { return s.cfg.Dial(s.deps.Kind) }

// keepLease renews the lease (and the record's NextAt, so the sweep does
// not look at it) every third of its life until ctx ends; lost reports
// whether a renewal failed.
func (s *Service) keepLease(ctx context.Context, id string) (lost func() bool) {
	done := make(chan struct{})
	var failed bool
	go func() {
		defer close(done)
		t := time.NewTicker(s.deps.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(ctx, storeTimeout)
			ok, err := s.store.renew(rctx, id, s.owner, s.deps.LeaseTTL)
			if err == nil && ok {
				_, err = s.store.update(rctx, id, func(r *Record) error {
					if r.State != StateDialing {
						return errNoChange
					}
					r.NextAt = s.deps.Now().Add(s.deps.LeaseTTL)
					return nil
				})
			}
			cancel()
			if err != nil || !ok {
				failed = true
			}
		}
	}()
	return func() bool { <-done; return failed }
}

// record writes an attempt's outcome.
func (s *Service) record(ctx context.Context, r Record, res call.OriginateResult, oerr error) {
	outcome := string(res.Outcome)
	if oerr != nil {
		outcome = "pbx_error"
		s.pbxWarn.Warn(s.log, "callbacks: the PBX could not be asked; the attempt is not counted and retried", "id", r.ID, "err", oerr)
	}
	attemptsTotal.WithLabelValues(outcome).Inc()
	rctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	_, err := s.store.update(rctx, r.ID, func(cur *Record) error {
		if cur.State != StateDialing || cur.Attempt != r.Attempt {
			return errNoChange // someone counted it already (the lease was lost)
		}
		now := s.deps.Now()
		if oerr != nil {
			if cur.PBXErrors == 0 {
				cur.PBXErrorSince = now
			}
			cur.PBXErrors++
			cur.State, cur.Attempt, cur.Updated = StatePending, 0, now
			cur.LastOutcome, cur.LastCause = "pbx_error", call.CleanValue(oerr.Error())
			switch {
			case now.Sub(cur.PBXErrorSince) >= pbxGiveUp:
				cur.State = StateFailed
			case cur.CancelRequested:
				cur.State = StateCancelled
			default:
				back := min(s.deps.Backoff<<min(cur.PBXErrors-1, 10), maxBackoff)
				cur.NextAt = s.schedule(now.Add(back))
			}
			return nil
		}
		cur.PBXErrors, cur.PBXErrorSince = 0, time.Time{}
		s.finish(cur, outcome, res.Cause, now)
		return nil
	})
	if err != nil {
		s.storeWarn.Warn(s.log, "callbacks: could not record an attempt's outcome; the lease's expiry will count it", "id", r.ID, "err", err)
	}
}

// finish applies a counted attempt's outcome to r.
func (s *Service) finish(r *Record, outcome, cause string, now time.Time) {
	r.Attempts++
	r.Attempt = 0
	r.LastOutcome, r.LastCause, r.Updated = outcome, call.CleanValue(cause), now
	switch {
	case outcome == string(call.OutcomeConnected):
		r.State = StateConnected
	case outcome == string(call.OutcomeFailed):
		r.State = StateFailed
	case r.CancelRequested:
		r.State = StateCancelled
	case r.Attempts >= r.MaxAttempts:
		r.State = StateFailed
	default:
		r.State = StatePending
		r.NextAt = s.schedule(now.Add(s.cfg.RetryAfter))
	}
}

// cleanDecision passes the decision's values through the call sanitisers
// (the adapters sanitise again, as for any call).
func cleanDecision(d call.Decision) call.Decision {
	d.Queue = call.CleanValue(d.Queue)
	d.Skill = call.CleanValue(d.Skill)
	d.Language = call.CleanValue(d.Language)
	d.CallerName = call.CleanValue(d.CallerName)
	d.PopURL = call.CleanURL(d.PopURL)
	d.InfoURL = call.CleanURL(d.InfoURL)
	d.E164 = call.CleanToken(d.E164)
	flags := make([]string, 0, len(d.Flags))
	for _, f := range d.Flags {
		if f = call.CleanToken(f); f != "" {
			flags = append(flags, f)
		}
	}
	d.Flags = flags
	if d.Extra != nil {
		extra := make(map[string]string, len(d.Extra))
		for k, v := range d.Extra {
			if call.VarName(k) != "" {
				extra[k] = call.CleanValue(v)
			}
		}
		d.Extra = extra
	}
	if d.Customer != nil {
		c := *d.Customer
		c.ID, c.Name, c.Tier, c.Language = call.CleanValue(c.ID), call.CleanValue(c.Name), call.CleanValue(c.Tier), call.CleanValue(c.Language)
		c.URL = call.CleanURL(c.URL)
		d.Customer = &c
	}
	return d
}
