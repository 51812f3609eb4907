package call

import "time"

// LegState is a step in the life of an agent leg of an enriched call.
type LegState string

// Agent-leg states an adapter reports.
const (
	LegRinging  LegState = "ringing"  // the agent's phone is being offered the call
	LegAnswered LegState = "answered" // the agent answered
	LegStopped  LegState = "stopped"  // the leg ended without the agent answering (cancel, no answer, lost race)
	LegEnded    LegState = "ended"    // the agent's leg of an answered call hung up or was transferred away
)

// Enriched is reported once per call, when its decision has been applied to
// the channel, before the call goes on.
type Enriched struct {
	CallID   string // callpop's call id (inherited by agent legs as CALLPOP_CALL_ID)
	Call     Call
	Decision Decision
	PBX      string // the name of the PBX the call entered on (pbxes[].name, or the kind); "" = not known
}

// LegEvent is one step of an agent leg of an enriched call.
type LegEvent struct {
	CallID        string // callpop's call id; empty if the adapter only knows CallerChannel
	CallerChannel string // the PBX id of the enriched (caller) channel
	Leg           string // the PBX id of the agent leg, when known
	Endpoint      string // PBX endpoint of the agent: "PJSIP/1002-00000005", "Local/1002@agents-000048d7;1", "sofia/agents/1002@127.0.0.1:5072", "user/1002", "1002@default"
	State         LegState
	Cause         string // PBX cause, for logs: "CANCEL", "NOANSWER", "LOSE_RACE", ...
	At            time.Time
	PBX           string // the name of the PBX the leg is on; "" = not known
}

// CallEnd is reported when the caller's channel is gone.
type CallEnd struct {
	CallID        string
	CallerChannel string
	At            time.Time
}

// LegSink receives the life of enriched calls from the adapters. Its methods
// must not block: a slow sink must never delay a call. popper satisfies it.
type LegSink interface {
	CallEnriched(e Enriched)
	AgentLeg(e LegEvent)
	CallEnded(e CallEnd)
}

// NopSink discards everything; for wiring without a popper.
type NopSink struct{}

func (NopSink) CallEnriched(Enriched) {}
func (NopSink) AgentLeg(LegEvent)     {}
func (NopSink) CallEnded(CallEnd)     {}

// Follower is told about a call callpop decided for the dialplan itself
// (FastAGI, GET /v1/route with a call id) rather than through an adapter, so
// the call is registered for pops and its agent legs are followed as an
// adapter's are. Follow must not block.
type Follower interface {
	Follow(e Enriched)
}

// ReadyFollower is a Follower that tells when following a call has taken
// hold: from then on the call's events reach callpop (ARI: the app's
// subscription to the channel has answered), or it is known they never
// will (the channel is gone, the request failed, the queue is full, the
// adapter stopped, following is off). The dialplan ways in wait for it,
// never past the call's budget, before the dialplan goes on, so a Dial
// right after them is seen ringing.
type ReadyFollower interface {
	Follower
	// FollowReady does what Follow does and returns a channel that is
	// closed once following has taken hold or never will. It must not
	// block, and never returns nil.
	FollowReady(e Enriched) <-chan struct{}
}

// readyNow is closed: following that needs no wait.
var readyNow = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// ReadyNow returns a closed channel: what FollowReady returns when there is
// nothing to wait for (an event connection that sees every call already,
// a call not followed).
func ReadyNow() <-chan struct{} { return readyNow }

// FollowFunc adapts a function to Follower.
type FollowFunc func(e Enriched)

// Follow calls f.
func (f FollowFunc) Follow(e Enriched) { f(e) }
