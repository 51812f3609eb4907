// Package router makes the routing decision for a call (normalise → look up →
// rules) and serves the endpoints dialplans call.
//
// Decide (router.go) is the one path every caller takes — the PBX adapters,
// GET /v1/route and /v1/lookup (http.go), FastAGI (fastagi.go) and
// `callpop lookup` — in this order:
//
//  1. deadline: the ctx's, else call.budget from Call.Received;
//  2. profile: named by the call, else by DNIS, else the default (config.go);
//  3. normalise: callerid.Pick(CLI, ANI, privacy, region);
//  4. look up: crm.Lookup with the profile's sources, and the shared Redis
//     block list in parallel; deadline → timeout, failure → error;
//  5. flags: vip, fraud_suspect (blocklist.go), region_mismatch, ani_verified;
//  6. rules: expr-lang programs compiled once per load against Env
//     (rules.go), evaluated in order even when the budget is spent;
//  7. outputs: priority clamped and scaled, queue, skill, language, extra
//     variables, pop URL — all sanitised.
//
// DecideAsync (async.go) runs the same parts — begin, the look-up
// (crm.LookupAsync), conclude, end — for an adapter that must not hold a
// goroutine per call while the CRM answers: a waiting call is a held struct;
// done is called once, by the deadline, a panic in any part being a
// Match=error decision.
//
// Reload swaps a new compiled configuration in atomically, only if all of it
// compiles. Metrics are declared in metrics.go; docs/dialplan-routing.md is
// the operator's guide.
package router
