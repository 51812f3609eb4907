package esl

import (
	"log/slog"
	"sync"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
	"github.com/callpop/callpop/call"
)

// legEvents are the events the agent-leg tracker needs.
var legEvents = []string{"CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_HANGUP_COMPLETE"}

// legTracker turns channel events into the life of agent legs of enriched
// calls (recorded in testdata/agents: bridge ring-all and hunt, mod_callcenter, transfers).
//
// An agent leg is an outbound channel linked to an enriched caller by
// variable_cc_member_session_uuid (mod_callcenter), variable_callpop_call_id
// (exported by callpop), variable_originating_leg_uuid or Other-Leg-Unique-ID.
// Its endpoint is `user/<variable_dialed_user>` (else variable_cc_agent), never
// Channel-Name (it changes with the phone's registration) and never the
// caller leg's dialed_user (that is the last agent dialled, not who answered).
// A leg with no link (uuid_bridge of a separately originated consult call) is
// remembered by endpoint and adopted when the caller's CHANNEL_BRIDGE names it.
type legTracker struct {
	sink call.LegSink
	log  *slog.Logger
	m    *metrics // leg events, under the adapter's pbx label

	mu      sync.Mutex
	callers map[string]string // caller uuid → call id
	byID    map[string]string // call id → caller uuid, where they differ
	seen    map[string]time.Time
	legs    map[string]*agentLeg
	orphans map[string]string // unlinked outbound leg → endpoint
}

type agentLeg struct {
	caller, callID, endpoint string
	ringing, answered        bool
	at                       time.Time
}

const maxTracked = 50000

func newLegTracker(sink call.LegSink, log *slog.Logger, m *metrics) *legTracker {
	return &legTracker{sink: sink, log: log, m: m, callers: map[string]string{}, byID: map[string]string{}, seen: map[string]time.Time{}, legs: map[string]*agentLeg{}, orphans: map[string]string{}}
}

// prune forgets callers and legs older than maxAge whose hang-up was never
// seen (events lost while the event connection was down), and all orphans
// when there are too many of them.
func (t *legTracker) prune(maxAge time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cut := time.Now().Add(-maxAge)
	for id, at := range t.seen {
		if at.Before(cut) {
			t.forgetCaller(id)
			delete(t.seen, id)
		}
	}
	for id, l := range t.legs {
		if l.at.Before(cut) {
			delete(t.legs, id)
		}
	}
	if len(t.orphans) > maxTracked/2 {
		t.orphans = map[string]string{}
	}
}

// enriched starts tracking a caller channel; false when the bound is reached.
func (t *legTracker) enriched(caller, callID string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.callers[caller]; !ok && len(t.callers) >= maxTracked {
		return false
	}
	t.callers[caller] = callID
	if callID != caller {
		t.byID[callID] = caller
	}
	t.seen[caller] = time.Now()
	return true
}

// forget stops tracking a caller channel; false when it was not tracked.
func (t *legTracker) forget(caller string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.callers[caller]; !ok {
		return false
	}
	t.forgetCaller(caller)
	delete(t.seen, caller)
	return true
}

// forgetCaller stops tracking a caller channel. Caller holds t.mu.
func (t *legTracker) forgetCaller(caller string) {
	if id, ok := t.callers[caller]; ok && t.byID[id] == caller {
		delete(t.byID, id)
	}
	delete(t.callers, caller)
}

func endpointOf(ev *eslwire.Event) string {
	if u := call.CleanToken(ev.Get("variable_dialed_user")); u != "" {
		return "user/" + u
	}
	if a := call.CleanToken(ev.Get("variable_cc_agent")); a != "" {
		return a
	}
	if u := call.CleanToken(ev.Get("variable_callpop_agent")); u != "" {
		return "user/" + u
	}
	return ""
}

// observe takes one event, in arrival order (FreeSWITCH keeps order per channel).
func (t *legTracker) observe(ev *eslwire.Event) {
	id := ev.Get("Unique-ID")
	if id == "" {
		return
	}
	now := time.Now()
	t.mu.Lock()
	var out []call.LegEvent
	var ended *call.CallEnd
	switch name := ev.Name(); name {
	case "CHANNEL_HANGUP_COMPLETE":
		out, ended = t.hangup(ev, id, now)
	case "CHANNEL_BRIDGE":
		out = t.bridge(ev, id, now)
	default:
		out = t.outboundStep(ev, name, id, now)
	}
	t.mu.Unlock()
	for _, e := range out {
		t.m.legEvents.WithLabelValues(string(e.State)).Inc()
		t.sink.AgentLeg(e)
	}
	if ended != nil {
		t.sink.CallEnded(*ended)
	}
}

// event is a step of the agent leg with PBX id leg.
func (l *agentLeg) event(leg string, st call.LegState, cause string, at time.Time) call.LegEvent {
	return call.LegEvent{CallID: l.callID, CallerChannel: l.caller, Leg: leg, Endpoint: l.endpoint, State: st, Cause: cause, At: at}
}

// hangup ends a caller channel (the call is over) or an agent leg (stopped,
// or ended once answered). Caller holds t.mu.
func (t *legTracker) hangup(ev *eslwire.Event, id string, now time.Time) (out []call.LegEvent, ended *call.CallEnd) {
	if callID, ok := t.callers[id]; ok {
		t.forgetCaller(id)
		delete(t.seen, id)
		ended = &call.CallEnd{CallID: callID, CallerChannel: id, At: now}
	}
	if l, ok := t.legs[id]; ok {
		delete(t.legs, id)
		st := call.LegStopped
		if l.answered {
			st = call.LegEnded
		}
		out = append(out, l.event(id, st, call.CleanToken(ev.Get("Hangup-Cause")), now))
	}
	delete(t.orphans, id)
	return out, ended
}

// bridge answers the agent leg an enriched caller is bridged to, adopting an
// orphan leg it names. Caller holds t.mu.
func (t *legTracker) bridge(ev *eslwire.Event, id string, now time.Time) []call.LegEvent {
	callID, ok := t.callers[id]
	if !ok {
		return nil
	}
	b := ev.Get("Bridge-B-Unique-ID")
	if b == "" || b == id {
		b = ev.Get("Other-Leg-Unique-ID")
	}
	l, known := t.legs[b]
	if !known {
		ep, orphan := t.orphans[b]
		if !orphan {
			return nil
		}
		delete(t.orphans, b)
		l = &agentLeg{caller: id, callID: callID, endpoint: ep, at: now}
		t.legs[b] = l
	}
	if l.answered {
		return nil
	}
	l.answered = true
	return []call.LegEvent{l.event(b, call.LegAnswered, "", now)}
}

// outboundStep follows an outbound channel: linked to an enriched caller it
// is an agent leg (ringing on progress, answered on answer); unlinked, its
// endpoint is remembered as an orphan. Caller holds t.mu.
func (t *legTracker) outboundStep(ev *eslwire.Event, name, id string, now time.Time) []call.LegEvent {
	if ev.Get("Call-Direction") != "outbound" {
		return nil
	}
	if _, caller := t.callers[id]; caller {
		return nil // an enriched call of its own: an originated callback's customer leg
	}
	l, known := t.legs[id]
	if !known {
		caller, callID := t.link(ev)
		if caller == "" {
			if name == "CHANNEL_CREATE" && len(t.orphans) < maxTracked {
				if ep := endpointOf(ev); ep != "" {
					t.orphans[id] = ep
				}
			}
			return nil
		}
		if len(t.legs) >= maxTracked {
			return nil
		}
		l = &agentLeg{caller: caller, callID: callID, endpoint: endpointOf(ev), at: now}
		t.legs[id] = l
	}
	if l.endpoint == "" {
		l.endpoint = endpointOf(ev)
	}
	switch name {
	case "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA":
		if !l.ringing && !l.answered {
			l.ringing = true
			return []call.LegEvent{l.event(id, call.LegRinging, "", now)}
		}
	case "CHANNEL_ANSWER":
		if !l.answered {
			l.answered = true
			return []call.LegEvent{l.event(id, call.LegAnswered, "", now)}
		}
	}
	return nil
}

// link finds the enriched caller an outbound leg belongs to. Caller holds t.mu.
func (t *legTracker) link(ev *eslwire.Event) (caller, callID string) {
	if cid := call.CleanCallID(ev.Get("variable_callpop_call_id")); cid != "" {
		if caller, ok := t.byID[cid]; ok {
			// a call id that is not the caller's uuid (pbxes: "fs-b/<uuid>",
			// or a call passed over a trunk from another PBX)
			return caller, cid
		}
		// exported by callpop (or cc_export_vars): the caller's uuid is the call id
		if _, ok := t.callers[cid]; !ok && len(t.callers) < maxTracked {
			t.callers[cid] = cid
			t.seen[cid] = time.Now()
		}
		return cid, t.callers[cid]
	}
	for _, h := range []string{"variable_cc_member_session_uuid", "variable_originating_leg_uuid", "Other-Leg-Unique-ID"} {
		if v := ev.Get(h); v != "" {
			if id, ok := t.callers[v]; ok {
				return v, id
			}
		}
	}
	return "", ""
}
