// Package callbacks is callpop's web callbacks: POST /v1/callbacks takes a
// customer's request to be called back, validates the number (libphonenumber
// through callerid; premium-rate, shared-cost and numbers outside
// callbacks.allowed_regions are refused), keeps one request per number in a
// store (Redis; an in-process store only for the single-instance demo), and
// its scheduler originates the call at the time asked, within
// callbacks.hours, through a call.Originator (the PBX adapter), with the
// decision of the decision path set on the new channel. Several instances
// share the requests through Redis and never dial one twice at once: each
// attempt is made under a lease on the request.
//
// It imports call and callerid, never the router, the popper or an adapter:
// main hands it a call.Decider and a call.Originator.
package callbacks
