package popper

import (
	"strconv"
	"strings"
	"sync/atomic"
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
	aliases    []string // further channels of the call (on another PBX, after a transfer over a trunk)
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
	pbx       string                   // the PBX of the agent's latest leg
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
// between instances: microseconds since the epoch, bumped when equal. The
// correlator and the contacts' pops share one; it is safe for concurrent use.
type idGen struct{ last atomic.Int64 }

func (g *idGen) next(now time.Time) string {
	for {
		last := g.last.Load()
		n := now.UnixMicro()
		if n <= last {
			n = last + 1
		}
		if g.last.CompareAndSwap(last, n) {
			return strconv.FormatInt(n, 10)
		}
	}
}

// Enriched starts tracking a call.
func (c *correlator) Enriched(e call.Enriched, now time.Time) {
	base := newPopBase(e)
	id := base.callID
	if id == "" {
		return
	}
	if cs, ok := c.calls[id]; ok {
		// Reported twice: keep the first decision. A second channel (the
		// call passed to another PBX over a trunk, carrying its call id)
		// becomes another name of the call.
		if ch := e.Call.ID; ch != "" && ch != cs.channel {
			if _, taken := c.byChannel[ch]; !taken {
				c.byChannel[ch] = id
				cs.aliases = append(cs.aliases, ch)
				c.replay(ch, now)
			}
		}
		return
	}
	c.evict()
	cs := &callState{base: base, channel: e.Call.ID, agents: make(map[string]*agentState), legAgent: make(map[string]string), last: now}
	c.calls[id] = cs
	c.order = append(c.order, id)
	if cs.channel != "" {
		c.byChannel[cs.channel] = id
	}
	for _, key := range []string{id, cs.channel} {
		c.replay(key, now)
	}
}

// replay applies the events parked under key (a call id or a channel).
func (c *correlator) replay(key string, now time.Time) {
	p, ok := c.pending[key]
	if !ok || key == "" {
		return
	}
	delete(c.pending, key)
	for _, l := range p.legs {
		c.Leg(l, now)
	}
	if p.end != nil {
		c.End(*p.end, now)
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

// parkUnder keeps an event of a call that is not known yet under both its
// names: the enrichment may know either.
func (c *correlator) parkUnder(callID, channel string, now time.Time, leg *call.LegEvent, end *call.CallEnd) {
	c.park(callID, now, leg, end)
	if channel != callID {
		c.park(channel, now, leg, end)
	}
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

// legCase is one cell of legTable: the leg's last state ("" = not seen yet)
// and the state an event reports for it.
type legCase struct{ from, on call.LegState }

// legMove is what an event does to a leg: its next state and the action on
// the agent's pop.
type legMove struct {
	to  call.LegState
	act func(c *correlator, u legUpdate)
}

// legTable is the life of one agent leg, state × event → next state and
// action. A cell left out changes nothing: a repeated report, a ring after the
// leg was answered or stopped (late), an answer after it ended, a second stop
// (Queue() repeats its CANCELs).
var legTable = map[legCase]legMove{
	{"", call.LegRinging}:  {call.LegRinging, (*correlator).ring},
	{"", call.LegAnswered}: {call.LegAnswered, (*correlator).answer},
	{"", call.LegStopped}:  {call.LegStopped, (*correlator).stop},
	{"", call.LegEnded}:    {call.LegEnded, (*correlator).stop},

	{call.LegRinging, call.LegAnswered}: {call.LegAnswered, (*correlator).answer},
	{call.LegRinging, call.LegStopped}:  {call.LegStopped, (*correlator).stop},
	{call.LegRinging, call.LegEnded}:    {call.LegEnded, (*correlator).stop},

	// an answered leg that stops has ended
	{call.LegAnswered, call.LegStopped}: {call.LegEnded, (*correlator).stop},
	{call.LegAnswered, call.LegEnded}:   {call.LegEnded, (*correlator).stop},

	// an answer after the stop is taken (TestCorrelateLegTable pins it)
	{call.LegStopped, call.LegAnswered}: {call.LegAnswered, (*correlator).answer},
}

// legUpdate is one agent-leg event applied to its call and agent.
type legUpdate struct {
	cs    *callState
	agent string
	as    *agentState
	e     call.LegEvent
	state call.LegState // the leg's state after the event
	at    time.Time     // when it happened (PBX time, else arrival)
}

// Leg applies one agent-leg event: it finds the call (or parks the event
// until the call is enriched), the agent and the leg, and moves the leg
// through legTable.
func (c *correlator) Leg(e call.LegEvent, now time.Time) {
	id, cs := c.find(e.CallID, e.CallerChannel, e.Leg)
	if cs == nil {
		c.parkUnder(e.CallID, e.CallerChannel, now, &e, nil)
		return
	}
	cs.last = now
	if cs.ended {
		return
	}
	agent, legKey := c.agentLeg(id, cs, e)
	if agent == "" {
		return
	}
	as := cs.agentState(agent)
	if e.PBX != "" {
		as.pbx = call.CleanToken(e.PBX)
	}
	move, ok := legTable[legCase{as.legs[legKey], e.State}]
	if !ok {
		return
	}
	as.legs[legKey] = move.to
	at := e.At
	if at.IsZero() {
		at = now
	}
	move.act(c, legUpdate{cs: cs, agent: agent, as: as, e: e, state: move.to, at: at})
}

// agentLeg names the agent of a leg event and the key its leg is kept
// under, and registers the leg with the call. agent is "" for an endpoint
// no agent maps to.
func (c *correlator) agentLeg(id string, cs *callState, e call.LegEvent) (agent, legKey string) {
	agent = c.agents.Agent(e.Endpoint)
	if agent == "" && e.Leg != "" {
		agent = cs.legAgent[e.Leg] // a later event of a leg may lack the endpoint
	}
	if agent == "" {
		return "", ""
	}
	if e.Leg == "" {
		return agent, endpointKey + e.Endpoint
	}
	if cs.legAgent[e.Leg] == "" {
		cs.legAgent[e.Leg] = agent
	}
	if _, ok := c.byLeg[e.Leg]; !ok {
		c.byLeg[e.Leg] = id
		cs.legs = append(cs.legs, e.Leg)
	}
	return agent, e.Leg
}

// agentState returns the call's state for agent, created on first use.
func (cs *callState) agentState(agent string) *agentState {
	as := cs.agents[agent]
	if as == nil {
		as = &agentState{legs: make(map[string]call.LegState, 1)}
		cs.agents[agent] = as
	}
	return as
}

// ring opens the agent's pop, unless the ring happened before someone
// answered (reported late: already over) or the agent's pop is open.
func (c *correlator) ring(u legUpdate) {
	if !u.e.At.IsZero() && u.e.At.Before(u.cs.answeredAt) {
		return
	}
	switch u.as.state {
	case "", StateRetracted, StateEnded:
		u.as.state = StateRinging
		if c.popRing {
			u.as.delivered = true
			c.send(u.cs, u.agent, StateRinging, "", u.at)
		}
	}
}

// answer pops the call as answered to the agent and closes every other
// agent's pop: retracted where it rang, ended where it was answered (transferred).
func (c *correlator) answer(u legUpdate) {
	cs := u.cs
	if u.at.After(cs.answeredAt) {
		cs.answeredAt = u.at
	}
	if u.as.state != StateAnswered {
		u.as.state = StateAnswered
		u.as.delivered = true
		c.send(cs, u.agent, StateAnswered, "", u.at)
	}
	for _, other := range sortedAgents(cs.agents) {
		if other == u.agent {
			continue
		}
		o := cs.agents[other]
		switch o.state {
		case StateRinging:
			c.close(cs, other, o, StateRetracted, "answered_elsewhere", u.at)
		case StateAnswered:
			c.close(cs, other, o, StateEnded, "transferred", u.at)
		}
	}
}

// stop closes the agent's pop once none of its legs rings or talks any more:
// retracted where it rang, ended where it was answered.
func (c *correlator) stop(u legUpdate) {
	if u.e.Leg != "" {
		// A leg reported earlier by endpoint only (mod_callcenter's
		// agent-offering) is this one: it stops with it.
		for k, st := range u.as.legs {
			if strings.HasPrefix(k, endpointKey) && (st == call.LegRinging || st == call.LegAnswered) {
				u.as.legs[k] = u.state
			}
		}
	}
	if u.as.live() {
		return // another leg of this agent still rings or talks
	}
	cause := call.CleanToken(u.e.Cause)
	switch u.as.state {
	case StateRinging:
		c.close(u.cs, u.agent, u.as, StateRetracted, cause, u.at)
	case StateAnswered:
		c.close(u.cs, u.agent, u.as, StateEnded, cause, u.at)
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
		c.parkUnder(e.CallID, e.CallerChannel, now, nil, &e)
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
	pbx := b.pbx
	if as := cs.agents[agent]; as != nil && as.pbx != "" {
		pbx = as.pbx
	}
	p := Pop{
		ID:          c.ids.next(at),
		CallID:      b.callID,
		Agent:       agent,
		State:       state,
		Channel:     b.channel,
		Subject:     b.subject,
		Email:       b.email,
		Match:       b.match,
		Customer:    b.customer,
		Candidates:  b.candidates,
		Number:      b.number,
		NetworkName: b.network,
		Privacy:     b.privacy,
		Priority:    b.priority,
		Queue:       b.queue,
		Flags:       b.flags,
		Links:       b.links(c.cfg.Links, agent),
		Actions:     actionButtons(c.cfg.Actions),
		Cause:       cause,
		PBX:         pbx,
		At:          at,
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
	for _, ch := range append([]string{cs.channel}, cs.aliases...) {
		if ch != "" && c.byChannel[ch] == id {
			delete(c.byChannel, ch)
		}
	}
	for _, l := range cs.legs {
		if c.byLeg[l] == id {
			delete(c.byLeg, l)
		}
	}
}

// Len is the number of calls tracked.
func (c *correlator) Len() int { return len(c.calls) }
