// Package call holds callpop's core types and the seams between its parts:
// the Decider an adapter asks for a routing decision, and the LegSink an
// adapter reports agent-leg life to. It imports nothing of callpop.
package call

import (
	"context"
	"log/slog"
	"time"
)

// Call is what an adapter knows about a new inbound channel when it asks for a
// decision. Values are raw, as the PBX gave them; nothing here is trusted.
type Call struct {
	ID       string    // the PBX's channel id (Asterisk channel id, FreeSWITCH Unique-ID)
	PBX      string    // "asterisk", "freeswitch", "http", "agi", "cli"
	CLI      string    // caller ID number (CLI)
	CLIName  string    // caller ID name
	ANI      string    // ANI, when the PBX has one
	DNIS     string    // the dialled number (DNIS)
	Privacy  bool      // the PBX says the number must not be shown (presentation restricted)
	Profile  string    // a profile named by the dialplan (e.g. Stasis(callpop,vip-line)); empty = by DNIS
	Received time.Time // when the event was read; the deadline budget counts from here
	// Inherited is a callpop call id the channel carries already: CALLPOP_CALL_ID
	// set from the X-Callpop-Call-Id header of a trunk from another PBX (or a
	// channel that re-enters). Raw, as the PBX gave it; "" = none.
	Inherited string
	// Channel is how the contact came in: "" (a voice call), or one of the
	// Channel* values (chat, email, sms, social, callback). The rules see it
	// as channel.
	Channel string
	// Email is the contact's e-mail address, raw (POST /v1/contacts); the
	// router looks the customer up by it when it has one.
	Email string
	// Subject is a contact's subject or a web callback's note, raw: shown to
	// the agent on the pop (escaped there), never set on a channel.
	Subject string
}

// LogValue masks personal data in logs.
func (c Call) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", c.ID),
		slog.String("pbx", c.PBX),
		slog.String("cli", MaskNumber(c.CLI)),
		slog.String("ani", MaskNumber(c.ANI)),
		slog.String("dnis", c.DNIS),
		slog.Bool("privacy", c.Privacy),
		slog.String("channel", c.Channel),
		slog.String("email", MaskEmail(c.Email)),
	)
}

// Customer is a CRM record.
type Customer struct {
	ID       string         `json:"id"`
	Name     string         `json:"name"`
	Tier     string         `json:"tier,omitempty"`
	Language string         `json:"language,omitempty"`
	URL      string         `json:"url,omitempty"`
	Phones   []string       `json:"phones,omitempty"` // E.164 numbers the customer owns, when the source says
	Extra    map[string]any `json:"extra,omitempty"`  // further fields kept for pops and rules
	// Lists are the customer's named lists (history, tickets, any name the
	// admin maps): items of scalar fields, in the source's order. Bounded
	// by the crm package (MaxLists, MaxListItems, MaxItemFields).
	Lists map[string][]map[string]any `json:"lists,omitempty"`
}

// Candidate is one of several customers owning the caller's number, as a
// decision with Match = multiple lists them.
type Candidate struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Tier string `json:"tier,omitempty"`
	URL  string `json:"url,omitempty"`
}

// MaxCandidates bounds the candidates of a decision.
const MaxCandidates = 10

// LogValue masks personal data in logs.
func (c Customer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", c.ID), slog.String("name", MaskName(c.Name)), slog.String("tier", c.Tier))
}

// Match says how the look-up ended; it is CALLPOP_MATCH.
type Match string

// The values of CALLPOP_MATCH.
const (
	MatchHit       Match = "hit"
	MatchMultiple  Match = "multiple" // several customers own the number: Customer is the best candidate
	MatchMiss      Match = "miss"
	MatchAnonymous Match = "anonymous"
	MatchInvalid   Match = "invalid"
	MatchTimeout   Match = "timeout"
	MatchError     Match = "error"
)

// Source says what the look-up used (the CLI, the ANI or the e-mail
// address); it is CALLPOP_SOURCE.
type Source string

// The values of CALLPOP_SOURCE.
const (
	SourceNone Source = ""
	SourceCLI  Source = "cli"
	SourceANI  Source = "ani"
	// SourceEmail: the customer was looked up by the contact's e-mail
	// address (Call.Email), there being no usable number or the number
	// being unknown to the CRM.
	SourceEmail Source = "email"
)

// Decision is the outcome of one call's pipeline: who is calling and where the
// call goes. It knows nothing of Asterisk or FreeSWITCH.
type Decision struct {
	CallID     string            `json:"call_id,omitempty"`
	Match      Match             `json:"match"`
	E164       string            `json:"e164"`
	Source     Source            `json:"source"`
	Privacy    bool              `json:"privacy,omitempty"` // the number must not be shown to agents
	Customer   *Customer         `json:"customer,omitempty"`
	Candidates []Candidate       `json:"candidates,omitempty"` // Match = multiple: every candidate (at most MaxCandidates), best first
	Priority   int               `json:"priority"`             // CALLPOP_PRIORITY
	QueuePrio  int               `json:"queue_prio"`           // Asterisk QUEUE_PRIO (scaled)
	BaseScore  int               `json:"cc_base_score"`        // FreeSWITCH cc_base_score (scaled)
	Queue      string            `json:"queue,omitempty"`
	Skill      string            `json:"skill,omitempty"`
	Language   string            `json:"language,omitempty"`
	Flags      []string          `json:"flags,omitempty"`
	PopURL     string            `json:"pop_url,omitempty"`
	CallerName string            `json:"caller_name,omitempty"` // softphone caller-name rewrite, empty = leave as is
	InfoURL    string            `json:"info_url,omitempty"`    // softphone link (SIP Call-Info / X- header), empty = none
	Extra      map[string]string `json:"extra,omitempty"`       // extra variables set by rules, names without prefix
	Profile    string            `json:"profile,omitempty"`
	Rules      []string          `json:"rules,omitempty"` // names of the rules that matched, for debugging
	Cached     bool              `json:"cached"`
	Elapsed    time.Duration     `json:"-"`
	Err        string            `json:"error,omitempty"` // why Match is error/invalid, for operators
}

// Decider turns a call into a decision. It must return by ctx's deadline; on
// deadline it returns what it knows with Match = timeout. router satisfies it.
type Decider interface {
	Decide(ctx context.Context, c Call) Decision
}

// AsyncDecider is a Decider that can also answer without holding the
// caller's goroutine while it waits (for Redis, for the CRM): a call held in
// the look-up is then a few small structs, not a goroutine and its stack.
//
// DecideAsync calls done exactly once, with what Decide would have returned,
// by ctx's deadline (on deadline: Match = timeout). It may call done before it
// returns, on the caller's goroutine (an in-process cache hit), or later on
// another goroutine. done must not block: it hands longer work (setting
// variables, continuing the channel) to a goroutine of its own.
type AsyncDecider interface {
	Decider
	DecideAsync(ctx context.Context, c Call, done func(Decision))
}

// DeciderFunc adapts a function to Decider.
type DeciderFunc func(ctx context.Context, c Call) Decision

// Decide calls f.
func (f DeciderFunc) Decide(ctx context.Context, c Call) Decision { return f(ctx, c) }
