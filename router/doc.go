// Package router makes the routing decision for a call (normalise → look up →
// rules) and serves the endpoints dialplans call.
//
// One decision path (async.go: decideAsync) serves every caller — the PBX
// adapters, GET /v1/route and /v1/lookup (http.go), FastAGI (fastagi.go),
// POST /v1/contacts (contacts.go: a chat, e-mail, SMS or social contact,
// popped to its agent through ContactPops) and `callpop lookup`. DecideAsync calls back; Decide (router.go) waits for the
// callback. Its steps, in this order:
//
//  1. deadline: the ctx's, else call.budget from Call.Received;
//  2. profile: named by the call, else by DNIS, else the default (config.go);
//  3. normalise: callerid.Pick(CLI, ANI, privacy, region) (steps 1–3: identify);
//  4. look up: crm.LookupLocal, else crm.LookupAsyncBy with the profile's
//     sources, and the shared Redis block list in parallel; a waiting call is
//     a held struct, no goroutine; deadline → timeout, failure → error
//     (takeAnswer). A call with an e-mail address (a contact) and no usable
//     number, or whose number missed, is then looked up by the address, in
//     the same held struct by the same deadline (takeEmailAnswer: source
//     email);
//  5. flags: vip, fraud_suspect (blocklist.go), region_mismatch, ani_verified;
//  6. rules: expr-lang programs compiled once per load against Env
//     (rules.go), evaluated in order even when the budget is spent;
//  7. outputs: priority clamped and scaled, queue, skill, language, extra
//     variables, pop URL — all sanitised (steps 5–7: applyRules);
//  8. stamp: the elapsed time and the metrics, once a call; a panic in any
//     step is a Match=error decision. done is called once, by the deadline.
//
// Reload swaps a new compiled configuration in atomically, only if all of it
// compiles. Metrics are declared in metrics.go; docs/dialplan-routing.md is
// the operator's guide.
package router
