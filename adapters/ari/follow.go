package ari

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/callpop/callpop/call"
)

// Bounds of following dialplan calls (FastAGI, /v1/route): subscription
// requests in flight at once, and waiting for one of those. A call beyond
// them is decided as usual but not followed (counted as "busy").
const (
	followWorkers = 8
	followQueue   = 1024
)

var (
	metricDialplanFollow = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "callpop_ari_dialplan_follow_total",
		Help: "Calls decided over FastAGI or /v1/route that the adapter was asked to follow, by result: subscribed, gone (the channel hung up first), failed, busy (queue full), full (max_follow), stopped, disabled (follow_legs off), invalid (not a channel id).",
	}, []string{"pbx", "result"})
	metricDialplanQueued = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "callpop_ari_dialplan_follow_queued",
		Help: "Channel subscriptions for dialplan calls waiting or in flight.",
	}, pbxLabel)
)

// dialplanFollow subscribes the app to channels of calls decided outside
// Stasis, on at most followWorkers goroutines that exist only while there is
// work, from a bounded queue.
type dialplanFollow struct {
	mu      sync.Mutex
	ctx     context.Context // Run's; nil while the adapter is not running
	queue   []followItem
	workers int
	wg      sync.WaitGroup
}

// followItem is a channel to subscribe to, and what FollowReady returned
// for it: closed once the subscription has answered, whatever it said.
type followItem struct {
	chanID string
	ready  chan struct{}
}

// startFollowing lets Follow work until stop is called (Run's lifetime).
func (a *Adapter) startFollowing(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	d := &a.dialplan
	d.mu.Lock()
	d.ctx = ctx
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		d.ctx = nil
		left := d.queue
		d.queue = nil
		d.mu.Unlock()
		cancel()
		d.wg.Wait()
		for _, it := range left {
			a.follow.drop(it.chanID)
			close(it.ready)
		}
		a.m.dialplanQueued.Set(0)
	}
}

// Follow starts following the agent legs of a call decided for the dialplan
// (FastAGI, /v1/route) that never entered Stasis: the app subscribes to its
// channel (POST /applications/{app}/subscription?eventSource=channel:{id}),
// after which its Dials, transfers and hang-up arrive as for an enriched
// call. It never blocks: the subscription is sent later, from a bounded
// queue, and Asterisk drops it itself when the channel is destroyed.
func (a *Adapter) Follow(e call.Enriched) {
	a.FollowReady(e)
}

// FollowReady is Follow, and returns a channel closed once the
// subscription has answered (events of the channel reach the app from
// then on: Asterisk subscribes before it answers) or the call will not be
// followed (disabled, invalid, full, busy, stopped, gone, failed). A call
// followed already is ready at once.
func (a *Adapter) FollowReady(e call.Enriched) <-chan struct{} {
	chanID := e.Call.ID
	callID := e.CallID
	if callID == "" {
		callID = chanID
	}
	switch {
	case !a.cfg.FollowLegs:
		a.m.dialplanFollow.WithLabelValues("disabled").Inc()
		return call.ReadyNow()
	case chanID == "" || call.CleanToken(chanID) != chanID:
		a.m.dialplanFollow.WithLabelValues("invalid").Inc()
		return call.ReadyNow()
	case a.follow.following(chanID):
		return call.ReadyNow() // followed already (it went through Stasis too)
	}
	d := &a.dialplan
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.ctx == nil:
		a.m.dialplanFollow.WithLabelValues("stopped").Inc()
		return call.ReadyNow()
	case len(d.queue) >= followQueue:
		a.m.dialplanFollow.WithLabelValues("busy").Inc()
		return call.ReadyNow()
	case !a.follow.add(chanID, callID):
		// Taken before the subscription, so its first Dial finds the call.
		a.m.dialplanFollow.WithLabelValues("full").Inc()
		return call.ReadyNow()
	}
	it := followItem{chanID: chanID, ready: make(chan struct{})}
	d.queue = append(d.queue, it)
	a.m.dialplanQueued.Inc()
	if d.workers < followWorkers {
		d.workers++
		d.wg.Add(1)
		go a.followWorker(d.ctx) // ends when the queue is empty
	}
	return it.ready
}

func (a *Adapter) followWorker(ctx context.Context) {
	d := &a.dialplan
	defer d.wg.Done()
	for {
		d.mu.Lock()
		if len(d.queue) == 0 || ctx.Err() != nil {
			d.workers--
			d.mu.Unlock()
			return
		}
		it := d.queue[0]
		d.queue[0] = followItem{}
		d.queue = d.queue[1:]
		d.mu.Unlock()
		a.subscribeDialplan(ctx, it.chanID) // recovers its own panics
		close(it.ready)
		a.m.dialplanQueued.Dec()
	}
}

// subscribeDialplan subscribes the app to a dialplan call's channel; a
// channel already gone ends the call, any other failure leaves it unfollowed.
func (a *Adapter) subscribeDialplan(ctx context.Context, chanID string) {
	defer func() {
		if r := recover(); r != nil {
			a.m.panics.Inc()
			a.log.Error("panic following a dialplan call", "chan", chanID, "panic", r)
		}
	}()
	rctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	err := a.rest.subscribe(rctx, a.cfg.App, chanID)
	var se *StatusError
	switch {
	case err == nil:
		a.m.dialplanFollow.WithLabelValues("subscribed").Inc()
	case errors.As(err, &se) && se.Code == http.StatusUnprocessableEntity:
		// "Event source does not exist": the caller hung up already.
		a.m.dialplanFollow.WithLabelValues("gone").Inc()
		a.follow.callerGone(chanID, a.follow.now(), true)
	default:
		a.m.dialplanFollow.WithLabelValues("failed").Inc()
		a.follow.drop(chanID)
		a.log.Debug("subscribing to a dialplan call failed; its agent legs are not followed", "chan", chanID, "err", err)
	}
}

// drop forgets a call that is not followed after all, without reporting
// its end (the call goes on; it just pops nothing).
func (f *followState) drop(callerChan string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fc := f.calls[callerChan]; fc != nil {
		f.forgetLocked(fc)
	}
}
