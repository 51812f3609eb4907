package eslsim

import (
	"context"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
)

// Ring describes the agent legs a call rings (a dialplan `bridge` ring-all of
// user/<agent>@127.0.0.1, as in the captures of adapters/esl/testdata/agents).
type Ring struct {
	Agents  []string      // extensions: "1001", "1002"
	Answer  int           // index of the agent who answers; -1 = nobody
	RingFor time.Duration // until the answer (or until the caller gives up when nobody answers)
	TalkFor time.Duration // from the answer to the caller hanging up
	// Queue, when set ("support@default"), rings through mod_callcenter instead:
	// CUSTOM callcenter::info events (agent-offering, bridge-agent-start/-fail/-end,
	// member-queue-end) and agent legs linked by variable_cc_member_session_uuid
	// and variable_cc_agent (`<agent>@default`), with no Other-Leg-Unique-ID until
	// the bridge and no callpop_call_id unless ExportCallID (cc_export_vars).
	Queue        string
	ExportCallID bool
}

// RingAgents plays the agent-leg events of a ring-all bridge for the caller
// channel callerUUID to the subscribers, with the recorded link headers
// (Other-Leg-Unique-ID, variable_callpop_call_id, variable_dialed_user):
// CHANNEL_CREATE and CHANNEL_PROGRESS per leg, CHANNEL_ANSWER of the winner,
// CHANNEL_HANGUP_COMPLETE (LOSE_RACE) of the others, the caller's
// CHANNEL_BRIDGE, and at the end both hang-ups. It returns when the call is
// over or ctx ends.
func (s *sim) RingAgents(ctx context.Context, callerUUID string, r Ring) {
	type leg struct {
		ch    *channel
		agent string
	}
	s.mu.Lock()
	caller := s.channels[callerUUID]
	if caller == nil {
		// the caller lives in another simulator (outbound socket): a stand-in for its events
		caller = s.newChannel(Caller{Number: "0201234567"})
		caller.UUID = callerUUID
		caller.headers = withHeader(caller.headers, "Unique-ID", callerUUID)
	}
	// the agent legs inherit the caller's exported callpop_call_id, as
	// export_vars makes FreeSWITCH do; the caller's uuid when callpop set none
	callID := callerUUID
	if v := caller.Vars["callpop_call_id"]; v != "" {
		callID = v
	}
	var legs []leg
	for _, ag := range r.Agents {
		ch := s.newChannel(Caller{Number: ag, DNIS: ag})
		ch.headers = withHeader(ch.headers, "Call-Direction", "outbound")
		ch.headers = withHeader(ch.headers, "Channel-Name", eslwire.Encode("sofia/agents/"+ag+"@127.0.0.1:5072"))
		vars := map[string]string{"dialed_user": ag, "dialed_domain": "127.0.0.1"}
		if r.Queue == "" {
			ch.headers = append(ch.headers, eslwire.Header{Name: "Other-Type", Value: "originator"}, eslwire.Header{Name: "Other-Leg-Unique-ID", Value: callerUUID})
			vars["callpop_call_id"], vars["originating_leg_uuid"], vars["callpop_agent"] = callID, callerUUID, ag
		} else {
			vars["cc_agent"], vars["cc_member_session_uuid"], vars["cc_queue"] = ag+"@default", callerUUID, r.Queue
			if r.ExportCallID {
				vars["callpop_call_id"] = callID
			}
			s.ccInfo("agent-offering", r.Queue, callerUUID, ag, "")
		}
		for _, k := range []string{"dialed_user", "dialed_domain", "callpop_call_id", "originating_leg_uuid", "callpop_agent", "cc_agent", "cc_member_session_uuid", "cc_queue"} {
			if v, ok := vars[k]; ok {
				ch.setVar(k, v)
			}
		}
		s.add(ch)
		legs = append(legs, leg{ch, ag})
		s.broadcast("CHANNEL_CREATE", "", s.eventBody(ch, "CHANNEL_CREATE"), nil)
	}
	for _, l := range legs {
		s.broadcast("CHANNEL_PROGRESS", "", s.eventBody(l.ch, "CHANNEL_PROGRESS"), nil)
	}
	s.mu.Unlock()
	wait := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	hangup := func(ch *channel, cause string) {
		ch.Dead = true
		s.release(ch, "hangup")
		s.broadcast("CHANNEL_HANGUP_COMPLETE", "", s.eventBody(ch, "CHANNEL_HANGUP_COMPLETE",
			eslwire.Header{Name: "Hangup-Cause", Value: cause}, eslwire.Header{Name: "Hangup-Cause", Value: cause}), nil)
	}
	if !wait(r.RingFor) {
		return
	}
	s.mu.Lock()
	if r.Answer < 0 || r.Answer >= len(legs) {
		for _, l := range legs {
			hangup(l.ch, "ORIGINATOR_CANCEL")
			if r.Queue != "" {
				s.ccInfo("bridge-agent-fail", r.Queue, callerUUID, l.agent, l.ch.UUID)
			}
		}
		hangup(caller, "NORMAL_CLEARING")
		if r.Queue != "" {
			s.ccInfo("member-queue-end", r.Queue, callerUUID, "", "")
		}
		s.mu.Unlock()
		return
	}
	win := legs[r.Answer]
	s.broadcast("CHANNEL_ANSWER", "", s.eventBody(win.ch, "CHANNEL_ANSWER"), nil)
	if r.Queue != "" {
		s.ccInfo("bridge-agent-start", r.Queue, callerUUID, win.agent, win.ch.UUID)
	}
	for i, l := range legs {
		if i != r.Answer {
			hangup(l.ch, "LOSE_RACE")
			if r.Queue != "" {
				s.ccInfo("bridge-agent-fail", r.Queue, callerUUID, l.agent, l.ch.UUID)
			}
		}
	}
	s.broadcast("CHANNEL_BRIDGE", "", s.eventBody(caller, "CHANNEL_BRIDGE",
		eslwire.Header{Name: "Bridge-A-Unique-ID", Value: callerUUID},
		eslwire.Header{Name: "Bridge-B-Unique-ID", Value: win.ch.UUID},
		eslwire.Header{Name: "Other-Leg-Unique-ID", Value: win.ch.UUID},
		eslwire.Header{Name: "Other-Leg-Destination-Number", Value: win.agent}), nil)
	s.mu.Unlock()
	wait(r.TalkFor)
	s.mu.Lock()
	hangup(caller, "NORMAL_CLEARING")
	hangup(win.ch, "NORMAL_CLEARING")
	if r.Queue != "" {
		s.ccInfo("bridge-agent-end", r.Queue, callerUUID, win.agent, win.ch.UUID)
		s.ccInfo("member-queue-end", r.Queue, callerUUID, win.agent, win.ch.UUID)
	}
	s.mu.Unlock()
}

// ccInfo sends a CUSTOM callcenter::info event with the recorded CC-* headers.
// Caller holds s.mu.
func (s *sim) ccInfo(action, queue, member, agent, agentLeg string) {
	s.seq++
	hs := eslwire.Headers{
		{Name: "Event-Name", Value: "CUSTOM"},
		{Name: "Core-UUID", Value: "63eb0755-dbf9-411a-8281-e27daafb4b5b"},
		{Name: "FreeSWITCH-Hostname", Value: "vm"},
		{Name: "Event-Subclass", Value: "callcenter%3A%3Ainfo"},
		{Name: "Event-Calling-File", Value: "mod_callcenter.c"},
		{Name: "Event-Sequence", Value: itoa(s.seq)},
		{Name: "CC-Queue", Value: eslwire.Encode(queue)},
		{Name: "CC-Action", Value: action},
	}
	if agent != "" {
		hs = append(hs, eslwire.Header{Name: "CC-Agent", Value: eslwire.Encode(agent + "@default")})
	}
	if agentLeg != "" {
		hs = append(hs, eslwire.Header{Name: "CC-Agent-UUID", Value: agentLeg})
	}
	hs = append(hs, eslwire.Header{Name: "CC-Member-Session-UUID", Value: member})
	s.broadcast("CUSTOM", "callcenter::info", renderBlock(hs, nil), nil)
}

func withHeader(hs eslwire.Headers, name, value string) eslwire.Headers {
	out := make(eslwire.Headers, 0, len(hs))
	found := false
	for _, h := range hs {
		if h.Name == name {
			h.Value, found = value, true
		}
		out = append(out, h)
	}
	if !found {
		out = append(out, eslwire.Header{Name: name, Value: value})
	}
	return out
}
