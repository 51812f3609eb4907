package call

import (
	"context"
	"time"
)

// The channels a contact comes in by: Call.Channel, what the rules see as
// channel. An empty Channel is a voice call.
const (
	ChannelVoice    = "voice"    // a call that rang the PBX
	ChannelChat     = "chat"     // POST /v1/contacts
	ChannelEmail    = "email"    // POST /v1/contacts
	ChannelSMS      = "sms"      // POST /v1/contacts
	ChannelSocial   = "social"   // POST /v1/contacts
	ChannelCallback = "callback" // a web callback callpop originates (POST /v1/callbacks)
)

// ContactChannels are the channels POST /v1/contacts accepts.
var ContactChannels = []string{ChannelChat, ChannelEmail, ChannelSMS, ChannelSocial}

// ChannelOf returns c's channel, ChannelVoice when it has none.
func ChannelOf(c Call) string {
	if c.Channel == "" {
		return ChannelVoice
	}
	return c.Channel
}

// Outcome is how one originate attempt ended.
type Outcome string

// The outcomes of an originate attempt.
const (
	OutcomeConnected Outcome = "connected" // the customer answered; the channel went into the dialplan
	OutcomeBusy      Outcome = "busy"      // the customer's line was busy (or rejected the call)
	OutcomeNoAnswer  Outcome = "no_answer" // it rang out (or the network gave up waiting)
	OutcomeFailed    Outcome = "failed"    // the PBX could not place it: a wrong number, no route, congestion…
)

// Originate is one attempt at calling a customer back: what callpop asks a
// PBX to dial and the decision the new channel must carry.
type Originate struct {
	// ID is callpop's call id for this attempt, made of [A-Za-z0-9._-]: the
	// new channel's id (ARI channelId, FreeSWITCH origination_uuid) and its
	// CALLPOP_CALL_ID, so its agent legs pop like an incoming call's.
	ID string
	// CallbackID is the callback request's id (CALLPOP_CALLBACK_ID on the channel).
	CallbackID string
	// Number is the customer's number, E.164 (already validated).
	Number string
	// Endpoint is the dial string with the number in it: "PJSIP/+442079460018@trunk",
	// "sofia/gateway/trunk/+442079460018". Built by callpop from configuration
	// and a validated number; the adapter still refuses one its wire cannot carry.
	Endpoint string
	// Context and Extension are where the answered channel goes in the dialplan.
	Context   string
	Extension string
	// CallerID is what the customer's phone shows: "name" <number> parts.
	CallerIDName   string
	CallerIDNumber string
	// Timeout is how long the customer's phone may ring.
	Timeout time.Duration
	// Call is the call as decided: Channel = ChannelCallback, the customer's
	// number as CLI; Received is when the attempt began.
	Call Call
	// Decision is set on the new channel at creation (the CALLPOP_* contract,
	// QUEUE_PRIO / cc_base_score), every value through the adapter's sanitiser.
	Decision Decision
}

// OriginateResult is how an attempt ended.
type OriginateResult struct {
	Outcome Outcome
	Cause   string // the PBX's cause, for logs and the request's state: "USER_BUSY", "NO_ANSWER", "17"…
	Channel string // the PBX's id of the customer's channel
}

// Originator places calls on a PBX (adapters/ari, adapters/esl).
//
// Originate creates the customer's channel with the decision's variables
// set at creation, registers it with the adapter's LegSink as an enriched
// call (Call.Channel = ChannelCallback) and follows its agent legs as it
// does an incoming call's, and returns once the outcome is known: the
// customer answered (connected: the dialplan now has the channel) or the
// attempt ended without that. It returns an error, and no result, when the
// PBX could not be asked (not connected, refused the request): the attempt
// did not happen. ctx bounds the whole wait.
type Originator interface {
	Originate(ctx context.Context, o Originate) (OriginateResult, error)
}
