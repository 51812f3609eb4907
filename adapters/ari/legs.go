package ari

import (
	"context"
	"log/slog"
	"sync"
	"time"

	ariv5 "github.com/CyCoreSystems/ari/v5"

	"github.com/callpop/callpop/call"
)

// followState tracks enriched calls after they leave Stasis, from the events
// the app's channel:<caller> subscription delivers (see testdata/callpop-*):
// Dial with caller = the enriched channel (peer = agent leg), the transfer
// events where it is the transferee, and its hangup. Bounded in count and age.
type followState struct {
	mu      sync.Mutex
	calls   map[string]*followed  // by enriched (caller) channel id
	byCall  map[string]string     // call id → caller channel id
	aliases map[string]aliasEntry // other channels known to carry a call id (transfer targets, CALLPOP_CALL_ID varsets)
	max     int
	ttl     time.Duration
	sink    call.LegSink
	log     *slog.Logger
	m       *metrics
	now     func() time.Time
	// expired is told about calls the sweep forgot while their channel may
	// still live (Asterisk drops a channel subscription itself only when
	// the channel is destroyed).
	expired func(callerChan string)
}

type aliasEntry struct {
	callID string
	at     time.Time
}

type followed struct {
	callID string
	caller string
	legs   map[string]*legState // by leg channel id
	order  []string
	ended  bool
	since  time.Time
}

type legState struct {
	endpoint string
	state    call.LegState
}

func newFollowState(max int, ttl time.Duration, sink call.LegSink, log *slog.Logger, m *metrics) *followState {
	return &followState{
		calls: map[string]*followed{}, byCall: map[string]string{}, aliases: map[string]aliasEntry{},
		max: max, ttl: ttl, sink: sink, log: log, m: m, now: time.Now,
	}
}

// add starts following an enriched call; false when the bound is reached.
func (f *followState) add(callerChan, callID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.calls[callerChan]; ok {
		return true
	}
	if len(f.calls) >= f.max {
		f.m.followFull.Inc()
		return false
	}
	f.calls[callerChan] = &followed{callID: callID, caller: callerChan, legs: map[string]*legState{}, since: f.now()}
	f.byCall[callID] = callerChan
	return true
}

// room reports whether another call can be followed; counted when not.
func (f *followState) room() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) >= f.max {
		f.m.followFull.Inc()
		return false
	}
	return true
}

func (f *followState) following(callerChan string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.calls[callerChan]
	return ok
}

func (f *followState) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// findLocked returns the followed call a channel belongs to: it is the
// enriched channel, an alias, or it carries the inherited CALLPOP_CALL_ID
// in channelvars (ari.conf channelvars = CALLPOP_CALL_ID).
func (f *followState) findLocked(ch ariv5.ChannelData) *followed {
	if fc := f.calls[ch.ID]; fc != nil {
		return fc
	}
	if al, ok := f.aliases[ch.ID]; ok {
		if id, ok := f.byCall[al.callID]; ok {
			return f.calls[id]
		}
	}
	if v := ch.ChannelVars["CALLPOP_CALL_ID"]; v != "" {
		if id, ok := f.byCall[v]; ok {
			return f.calls[id]
		}
	}
	return nil
}

func eventTime(ts ariv5.DateTime, fallback time.Time) time.Time {
	if t := time.Time(ts); !t.IsZero() {
		return t
	}
	return fallback
}

// legStateFor maps a Dial dialstatus to a leg state.
func legStateFor(dialstatus string) call.LegState {
	switch dialstatus {
	case "", "RINGING", "PROGRESS":
		return call.LegRinging
	case "ANSWER":
		return call.LegAnswered
	default: // CANCEL, NOANSWER, BUSY, CONGESTION, CHANUNAVAIL, DONTCALL, TORTURE, INVALIDARGS
		return call.LegStopped
	}
}

// rank orders states so a late or repeated event never moves a leg back.
func rank(s call.LegState) int {
	switch s {
	case call.LegRinging:
		return 1
	case call.LegAnswered:
		return 2
	case call.LegStopped, call.LegEnded:
		return 3
	}
	return 0
}

func (f *followState) dial(e *ariv5.Dial) {
	if e.Caller.ID == "" || e.Peer.ID == "" {
		return // the originate's own Dial (no caller) or a malformed one
	}
	var out []call.LegEvent
	f.mu.Lock()
	fc := f.findLocked(e.Caller)
	if fc == nil || fc.ended {
		f.mu.Unlock()
		return
	}
	at := eventTime(e.Timestamp, f.now())
	st := legStateFor(e.Dialstatus)
	leg := fc.legs[e.Peer.ID]
	if leg == nil {
		// A new attempt while an agent is still answered: the call was
		// redirected away from that agent (no transfer event is sent for a
		// dialplan redirect), so that agent's leg has ended.
		for _, id := range fc.order {
			if l := fc.legs[id]; l.state == call.LegAnswered {
				l.state = call.LegEnded
				out = append(out, f.event(fc, id, l, "REDIRECT", at))
			}
		}
		leg = &legState{endpoint: e.Peer.Name}
		fc.legs[e.Peer.ID] = leg
		fc.order = append(fc.order, e.Peer.ID)
	}
	if rank(st) > rank(leg.state) {
		leg.state = st
		out = append(out, f.event(fc, e.Peer.ID, leg, e.Dialstatus, at))
	}
	f.mu.Unlock()
	f.emit(out)
}

func (f *followState) event(fc *followed, legID string, l *legState, cause string, at time.Time) call.LegEvent {
	return call.LegEvent{CallID: fc.callID, CallerChannel: fc.caller, Leg: legID, Endpoint: l.endpoint,
		State: l.state, Cause: cause, At: at}
}

func (f *followState) emit(evs []call.LegEvent) {
	for _, e := range evs {
		f.m.legs.WithLabelValues(string(e.State)).Inc()
		f.sink.AgentLeg(e)
	}
}

// endLegLocked ends the leg with id (or, when unknown, the answered leg).
func (f *followState) endLegLocked(fc *followed, legID, cause string, at time.Time) []call.LegEvent {
	if l := fc.legs[legID]; l != nil {
		if rank(l.state) >= rank(call.LegStopped) {
			return nil
		}
		if l.state == call.LegAnswered {
			l.state = call.LegEnded
		} else {
			l.state = call.LegStopped
		}
		return []call.LegEvent{f.event(fc, legID, l, cause, at)}
	}
	var out []call.LegEvent
	for _, id := range fc.order {
		if l := fc.legs[id]; l.state == call.LegAnswered {
			l.state = call.LegEnded
			out = append(out, f.event(fc, id, l, cause, at))
		}
	}
	return out
}

func (f *followState) blindTransfer(e *ariv5.BridgeBlindTransfer) {
	f.mu.Lock()
	fc := f.findLocked(e.Transferee)
	if fc == nil || fc.ended {
		f.mu.Unlock()
		return
	}
	out := f.endLegLocked(fc, e.Channel.ID, "BLIND_TRANSFER", eventTime(e.Timestamp, f.now()))
	f.mu.Unlock()
	f.emit(out)
}

func (f *followState) attendedTransfer(e *ariv5.BridgeAttendedTransfer) {
	f.mu.Lock()
	fc := f.findLocked(e.Transferee)
	if fc == nil || fc.ended || (e.Result != "" && e.Result != "Success") {
		f.mu.Unlock()
		return
	}
	at := eventTime(e.Timestamp, f.now())
	out := f.endLegLocked(fc, e.TransfererFirstLeg.ID, "ATTENDED_TRANSFER", at)
	if e.TransfererSecondLeg.ID != e.TransfererFirstLeg.ID {
		out = append(out, f.endLegLocked(fc, e.TransfererSecondLeg.ID, "ATTENDED_TRANSFER", at)...)
	}
	// The consultation target already answered: it is the caller's new agent.
	if t := e.TransferTarget; t.ID != "" && fc.legs[t.ID] == nil {
		l := &legState{endpoint: t.Name, state: call.LegAnswered}
		fc.legs[t.ID] = l
		fc.order = append(fc.order, t.ID)
		f.aliases[t.ID] = aliasEntry{callID: fc.callID, at: at}
		out = append(out, f.event(fc, t.ID, l, "ATTENDED_TRANSFER", at))
	}
	f.mu.Unlock()
	f.emit(out)
}

// varset learns channels that inherited CALLPOP_CALL_ID (with subscribeAll,
// or when Asterisk reports it on a followed channel's relatives).
func (f *followState) varset(e *ariv5.ChannelVarset) {
	if e.Variable != "__CALLPOP_CALL_ID" && e.Variable != "CALLPOP_CALL_ID" || e.Channel.ID == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, mine := f.calls[e.Channel.ID]; mine {
		return
	}
	if _, ok := f.byCall[e.Value]; ok && len(f.aliases) < f.max {
		f.aliases[e.Channel.ID] = aliasEntry{callID: e.Value, at: f.now()}
	}
}

// callerGone reports the end of an enriched call once; destroyed forgets it.
func (f *followState) callerGone(chanID string, ts time.Time, destroyed bool) {
	f.mu.Lock()
	fc := f.calls[chanID]
	if fc == nil {
		if destroyed {
			delete(f.aliases, chanID)
		}
		f.mu.Unlock()
		return
	}
	at := ts
	if at.IsZero() {
		at = f.now()
	}
	var out []call.LegEvent
	first := !fc.ended
	if first {
		fc.ended = true
		for _, id := range fc.order {
			l := fc.legs[id]
			switch l.state {
			case call.LegAnswered:
				l.state = call.LegEnded
				out = append(out, f.event(fc, id, l, "CALLER_HANGUP", at))
			case call.LegRinging:
				l.state = call.LegStopped
				out = append(out, f.event(fc, id, l, "CALLER_HANGUP", at))
			}
		}
	}
	if destroyed {
		f.forgetLocked(fc)
	}
	callID := fc.callID
	f.mu.Unlock()
	f.emit(out)
	if first {
		f.sink.CallEnded(call.CallEnd{CallID: callID, CallerChannel: chanID, At: at})
	}
}

// prune ends the followed calls whose channel is not in alive (the list
// GET /channels gave after a reconnect, asked at listed): their hang-up
// happened while the socket was down. Calls followed since are kept.
func (f *followState) prune(alive map[string]bool, listed time.Time) int {
	f.mu.Lock()
	var gone []string
	for id, fc := range f.calls {
		if !alive[id] && fc.since.Before(listed) {
			gone = append(gone, id)
		}
	}
	f.mu.Unlock()
	for _, id := range gone {
		f.callerGone(id, f.now(), true)
	}
	return len(gone)
}

func (f *followState) forgetLocked(fc *followed) {
	delete(f.calls, fc.caller)
	delete(f.byCall, fc.callID)
	for id, al := range f.aliases {
		if al.callID == fc.callID {
			delete(f.aliases, id)
		}
	}
}

// sweep forgets calls older than ttl (their hangup was missed, e.g. while
// disconnected) and reports them ended.
func (f *followState) sweep() {
	cut := f.now().Add(-f.ttl)
	var ended []call.CallEnd
	var expired []string
	f.mu.Lock()
	for _, fc := range f.calls {
		if fc.since.Before(cut) {
			if !fc.ended {
				ended = append(ended, call.CallEnd{CallID: fc.callID, CallerChannel: fc.caller, At: f.now()})
			}
			expired = append(expired, fc.caller)
			f.forgetLocked(fc)
		}
	}
	for id, al := range f.aliases {
		if al.at.Before(cut) {
			delete(f.aliases, id)
		}
	}
	f.mu.Unlock()
	for _, e := range ended {
		f.sink.CallEnded(e)
	}
	if f.expired != nil {
		for _, id := range expired {
			f.expired(id)
		}
	}
}

// runSweeper sweeps every ttl/10 (at most a minute) until ctx ends.
func (f *followState) runSweeper(ctx context.Context) {
	every := min(f.ttl/10, time.Minute)
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.sweep()
		}
	}
}
