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

	mu      sync.Mutex
	callers map[string]string // caller uuid → call id
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

func newLegTracker(sink call.LegSink, log *slog.Logger) *legTracker {
	return &legTracker{sink: sink, log: log, callers: map[string]string{}, seen: map[string]time.Time{}, legs: map[string]*agentLeg{}, orphans: map[string]string{}}
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
			delete(t.callers, id)
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
	t.seen[caller] = time.Now()
	return true
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
	name := ev.Name()
	id := ev.Get("Unique-ID")
	if id == "" {
		return
	}
	now := time.Now()
	t.mu.Lock()
	var out []call.LegEvent
	var ended *call.CallEnd
	switch name {
	case "CHANNEL_HANGUP_COMPLETE":
		if callID, ok := t.callers[id]; ok {
			delete(t.callers, id)
			delete(t.seen, id)
			ended = &call.CallEnd{CallID: callID, CallerChannel: id, At: now}
		}
		if l, ok := t.legs[id]; ok {
			delete(t.legs, id)
			st := call.LegStopped
			if l.answered {
				st = call.LegEnded
			}
			out = append(out, call.LegEvent{CallID: l.callID, CallerChannel: l.caller, Leg: id, Endpoint: l.endpoint, State: st, Cause: call.CleanToken(ev.Get("Hangup-Cause")), At: now})
		}
		delete(t.orphans, id)
	case "CHANNEL_BRIDGE":
		callID, ok := t.callers[id]
		if !ok {
			break
		}
		b := ev.Get("Bridge-B-Unique-ID")
		if b == "" || b == id {
			b = ev.Get("Other-Leg-Unique-ID")
		}
		l, known := t.legs[b]
		if !known {
			ep, orphan := t.orphans[b]
			if !orphan {
				break
			}
			delete(t.orphans, b)
			l = &agentLeg{caller: id, callID: callID, endpoint: ep, at: now}
			t.legs[b] = l
		}
		if !l.answered {
			l.answered = true
			out = append(out, call.LegEvent{CallID: l.callID, CallerChannel: l.caller, Leg: b, Endpoint: l.endpoint, State: call.LegAnswered, At: now})
		}
	default:
		if ev.Get("Call-Direction") != "outbound" {
			break
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
				break
			}
			if len(t.legs) >= maxTracked {
				break
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
				out = append(out, call.LegEvent{CallID: l.callID, CallerChannel: l.caller, Leg: id, Endpoint: l.endpoint, State: call.LegRinging, At: now})
			}
		case "CHANNEL_ANSWER":
			if !l.answered {
				l.answered = true
				out = append(out, call.LegEvent{CallID: l.callID, CallerChannel: l.caller, Leg: id, Endpoint: l.endpoint, State: call.LegAnswered, At: now})
			}
		}
	}
	t.mu.Unlock()
	for _, e := range out {
		legEventsTotal.WithLabelValues(string(e.State)).Inc()
		t.sink.AgentLeg(e)
	}
	if ended != nil {
		t.sink.CallEnded(*ended)
	}
}

// link finds the enriched caller an outbound leg belongs to. Caller holds t.mu.
func (t *legTracker) link(ev *eslwire.Event) (caller, callID string) {
	if cid := call.CleanToken(ev.Get("variable_callpop_call_id")); cid != "" {
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
