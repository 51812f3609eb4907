// Package popper correlates enriched calls to the agents they ring and delivers pops: agent panel (SSE), webhooks, softphone fields.
//
// The adapters report through call.LegSink (Popper's methods never block);
// one goroutine owns the correlator (correlate.go), which turns the reports
// into one pop state per agent and call (ringing, answered, retracted,
// ended). Pops go to the webhooks (webhook.go), and to the agents' SSE
// streams (http.go, hub.go) — through Redis Pub/Sub when configured, so any
// instance can serve an agent. Agents authenticate with signed tokens
// (token.go); the panel is embedded (web/). Decorate adds the softphone
// caller name and link to the router's decision (softphone.go). A contact
// (POST /v1/contacts with an agent) is popped at once as offered and ended
// on request (contacts.go), kept in Redis or in-process meanwhile.
// docs/popper.md is the operator's guide.
package popper
