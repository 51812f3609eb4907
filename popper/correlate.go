package popper

import (
	"strconv"
	"strings"
	"time"

	"github.com/callpop/callpop/call"
)

// Timings of the correlator's bookkeeping.
const (
	endedKeep    = 2 * time.Minute  // an ended call is remembered this long, so late events are ignored
	pendingKeep  = 30 * time.Second // leg events of a call not (yet) enriched wait this long
	pendingMax   = 64               // per call, events waiting for its enrichment
	pendingCalls = 4096             // calls with waiting events
)

// endpointKey marks a leg known only by its endpoint (no PBX leg id).
const endpointKey = "endpoint:"

// correlator turns the adapters' reports into pops. It is not safe for
// concurrent use: Popper.Run feeds it from one goroutine.
type correlator struct {
	cfg     Config
	agents  agentMap
	popRing bool
	emit    func(Pop)
	ids     idGen

	calls     map[string]*callState // by call id
	byChannel map[string]string     // caller channel → call id
	byLeg     map[string]string     // agent leg → call id
	order     []string              // call ids in arrival order, for eviction
	pending   map[string]*pending   // call id or caller channel → events seen before the enrichment
}

type callState struct {
	base       popBase
	channel    string
	agents     map[string]*agentState
	legAgent   map[string]string // leg id → agent
	legs       []string
	answeredAt time.Time // when an agent last answered (PBX time)
	ended      bool
	last       time.Time
}

type agentState struct {
	state     string                   // "", ringing, answered, retracted, ended
	delivered bool                     // the agent holds an open pop (ringing or answered)
	legs      map[string]call.LegState // leg key → last state
}

type pending struct {
	first time.Time
	legs  []call.LegEvent
	end   *call.CallEnd
}

func newCorrelator(cfg Config, emit func(Pop)) *correlator {
	return &correlator{
		cfg:       cfg,
		agents:    agentMap{entries: cfg.Agents, ignore: cfg.Unmapped == "ignore"},
		popRing:   cfg.PopOn != "answer",
		emit:      emit,
		calls:     make(map[string]*callState),
		byChannel: make(map[string]string),
		byLeg:     make(map[string]string),
		pending:   make(map[string]*pending),
	}
}

// idGen hands out increasing event ids that are also roughly comparable
// between instances: microseconds since the epoch, bumped when equal.
type idGen struct{ last int64 }

func (g *idGen) next(now time.Time) string {
	n := now.UnixMicro()
	if n <= g.last {
		n = g.last + 1
	}
	g.last = n
	return strconv.FormatInt(n, 10)
}

// Enriched starts tracking a call.
func (c *correlator) Enriched(e call.Enriched, now time.Time) {
	base := newPopBase(e)
	id := base.callID
	if id == "" {
		return
	}
	if _, ok := c.calls[id]; ok {
		return // reported twice: keep the first
	}
	c.evict()
	cs := &callState{base: base, channel: e.Call.ID, agents: make(map[string]*agentState), legAgent: make(map[string]string), last: now}
	c.calls[id] = cs
	c.order = append(c.order, id)
	if cs.channel != "" {
		c.byChannel[cs.channel] = id
	}
	for _, key := range []string{id, cs.channel} {
		p, ok := c.pending[key]
		if !ok || key == "" {
			continue
		}
		delete(c.pending, key)
		for _, l := range p.legs {
			c.Leg(l, now)
		}
		if p.end != nil {
			c.End(*p.end, now)
		}
	}
}

// find returns the call an event belongs to.
func (c *correlator) find(callID, channel, leg string) (string, *callState) {
	for _, id := range []string{callID, c.byChannel[callID]} {
		if cs, ok := c.calls[id]; ok && id != "" {
			return id, cs
		}
	}
	for _, id := range []string{c.byChannel[channel], channel, c.byLeg[leg]} {
		if cs, ok := c.calls[id]; ok && id != "" {
			return id, cs
		}
	}
	return "", nil
}

// park keeps an event of a call that is not known yet.
func (c *correlator) park(key string, now time.Time, leg *call.LegEvent, end *call.CallEnd) {
	if key == "" {
		return
	}
	p, ok := c.pending[key]
	if !ok {
		if len(c.pending) >= pendingCalls {
			return
		}
		p = &pending{first: now}
		c.pending[key] = p
	}
	if leg != nil && len(p.legs) < pendingMax {
		p.legs = append(p.legs, *leg)
	}
	if end != nil {
		p.end = end
	}
}

// Leg applies one agent-leg event.
func (c *correlator) Leg(e call.LegEvent, now time.Time) {
	id, cs := c.find(e.CallID, e.CallerChannel, e.Leg)
	if cs == nil {
		// Keep it under both names: the enrichment may know either.
		c.park(e.CallID, now, &e, nil)
		if e.CallerChannel != e.CallID {
			c.park(e.CallerChannel, now, &e, nil)
		}
		return
	}
	cs.last = now
	if cs.ended {
		return
	}
	agent := c.agents.Agent(e.Endpoint)
	if agent == "" && e.Leg != "" {
		agent = cs.legAgent[e.Leg] // a later event of a leg may lack the endpoint
	}
	if agent == "" {
		return
	}
	if e.Leg != "" && cs.legAgent[e.Leg] == "" {
		cs.legAgent[e.Leg] = agent
	}
	legKey := e.Leg
	if legKey == "" {
		legKey = endpointKey + e.Endpoint
	}
	if e.Leg != "" {
		if _, ok := c.byLeg[e.Leg]; !ok {
			c.byLeg[e.Leg] = id
			cs.legs = append(cs.legs, e.Leg)
		}
	}
	as := cs.agents[agent]
	if as == nil {
		as = &agentState{legs: make(map[string]call.LegState, 1)}
		cs.agents[agent] = as
	}
	at := e.At
	if at.IsZero() {
		at = now
	}
	prev := as.legs[legKey]
	switch e.State {
	case call.LegRinging:
		if prev != "" {
			return // repeated, or late after the leg was answered or stopped
		}
		as.legs[legKey] = call.LegRinging
		if !e.At.IsZero() && e.At.Before(cs.answeredAt) {
			return // rang before someone answered, reported late: already over
		}
		switch as.state {
		case "", StateRetracted, StateEnded:
			as.state = StateRinging
			if c.popRing {
				as.delivered = true
				c.send(cs, agent, StateRinging, "", at)
			}
		}
	case call.LegAnswered:
		if prev == call.LegAnswered || prev == call.LegEnded {
			return
		}
		as.legs[legKey] = call.LegAnswered
		if at.After(cs.answeredAt) {
			cs.answeredAt = at
		}
		if as.state != StateAnswered {
			as.state = StateAnswered
			as.delivered = true
			c.send(cs, agent, StateAnswered, "", at)
		}
		for _, other := range sortedAgents(cs.agents) {
			if other == agent {
				continue
			}
			o := cs.agents[other]
			switch o.state {
			case StateRinging:
				c.close(cs, other, o, StateRetracted, "answered_elsewhere", at)
			case StateAnswered:
				c.close(cs, other, o, StateEnded, "transferred", at)
			}
		}
	case call.LegStopped, call.LegEnded:
		if prev == call.LegStopped || prev == call.LegEnded {
			return // Queue() repeats its CANCELs
		}
		final := call.LegStopped
		if prev == call.LegAnswered || e.State == call.LegEnded {
			final = call.LegEnded
		}
		as.legs[legKey] = final
		if e.Leg != "" {
			// A leg reported earlier by endpoint only (mod_callcenter's
			// agent-offering) is this one: it stops with it.
			for k, st := range as.legs {
				if strings.HasPrefix(k, endpointKey) && (st == call.LegRinging || st == call.LegAnswered) {
					as.legs[k] = final
				}
			}
		}
		if as.live() {
			return // another leg of this agent still rings or talks
		}
		cause := call.CleanToken(e.Cause)
		switch as.state {
		case StateRinging:
			c.close(cs, agent, as, StateRetracted, cause, at)
		case StateAnswered:
			c.close(cs, agent, as, StateEnded, cause, at)
		}
	}
}

// live reports whether any leg of the agent still rings or is answered.
func (as *agentState) live() bool {
	for _, s := range as.legs {
		if s == call.LegRinging || s == call.LegAnswered {
			return true
		}
	}
	return false
}

// close moves an agent's pop to a final state, sending it once.
func (c *correlator) close(cs *callState, agent string, as *agentState, state, cause string, at time.Time) {
	as.state = state
	if as.delivered {
		as.delivered = false
		c.send(cs, agent, state, cause, at)
	}
}

// End closes every open pop of the call.
func (c *correlator) End(e call.CallEnd, now time.Time) {
	_, cs := c.find(e.CallID, e.CallerChannel, "")
	if cs == nil {
		c.park(e.CallID, now, nil, &e)
		if e.CallerChannel != e.CallID {
			c.park(e.CallerChannel, now, nil, &e)
		}
		return
	}
	cs.last = now
	if cs.ended {
		return
	}
	cs.ended = true
	at := e.At
	if at.IsZero() {
		at = now
	}
	for _, agent := range sortedAgents(cs.agents) {
		as := cs.agents[agent]
		if as.state == StateRinging || as.state == StateAnswered {
			c.close(cs, agent, as, StateEnded, "caller_hangup", at)
		}
	}
}

func (c *correlator) send(cs *callState, agent, state, cause string, at time.Time) {
	b := &cs.base
	p := Pop{
		ID:       c.ids.next(at),
		CallID:   b.callID,
		Agent:    agent,
		State:    state,
		Match:    b.match,
		Customer: b.customer,
		Number:   b.number,
		Privacy:  b.privacy,
		Priority: b.priority,
		Queue:    b.queue,
		Flags:    b.flags,
		Links:    b.links(c.cfg.Links, agent),
		Cause:    cause,
		At:       at,
	}
	c.emit(p)
}

// Sweep forgets calls idle past their TTL, ended calls after a grace period
// and waiting events of calls never enriched.
func (c *correlator) Sweep(now time.Time) {
	for id, cs := range c.calls {
		keep := c.cfg.CallTTL
		if cs.ended {
			keep = endedKeep
		}
		if now.Sub(cs.last) > keep {
			c.forget(id, cs)
		}
	}
	if len(c.order) > 2*len(c.calls)+64 {
		live := c.order[:0]
		for _, id := range c.order {
			if _, ok := c.calls[id]; ok {
				live = append(live, id)
			}
		}
		c.order = live
	}
	for k, p := range c.pending {
		if now.Sub(p.first) > pendingKeep {
			delete(c.pending, k)
		}
	}
}

// evict makes room for one more call.
func (c *correlator) evict() {
	for len(c.calls) >= c.cfg.MaxCalls && len(c.order) > 0 {
		id := c.order[0]
		c.order = c.order[1:]
		if cs, ok := c.calls[id]; ok {
			c.forget(id, cs)
			evictedTotal.Inc()
		}
	}
}

func (c *correlator) forget(id string, cs *callState) {
	delete(c.calls, id)
	if cs.channel != "" && c.byChannel[cs.channel] == id {
		delete(c.byChannel, cs.channel)
	}
	for _, l := range cs.legs {
		if c.byLeg[l] == id {
			delete(c.byLeg, l)
		}
	}
}

// Len is the number of calls tracked.
func (c *correlator) Len() int { return len(c.calls) }
