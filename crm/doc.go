// Package crm looks callers up in CRM sources (HTTP, PostgreSQL, CSV) through a cache (in-process LRU, Redis).
//
// A look-up (CRM.Lookup) goes: in-process LRU → Redis → the sources in
// configured order (first hit wins). Concurrent look-ups of one number share
// one flight (singleflight), which runs detached from the caller: the caller
// stops waiting at its context's deadline, the request runs on (bounded by the
// sources' timeouts) and its answer fills both tiers for the next call. A
// source runs at most max_conns requests at once; further flights wait in its
// queue (a struct each, no goroutine) for at most its timeout.
// The look-up is written once, for a caller that must not hold a goroutine
// while it waits (CRM.lookup in async.go; LookupAsync and LookupAsyncBy call
// back, Lookup waits for the callback): an in-process hit answers at once;
// otherwise the caller joins the number's flight as a waiter (its callback
// and, for LookupAsync, a context.AfterFunc for its context's end and, with
// LookupAsyncBy, a timer for an earlier deadline), a Redis reader (at most
// cache.redis.pool_size) reads Redis for the flight, a source worker asks the
// sources, and the first of the answer and the end calls back, once. The
// Redis read is counted once per flight, not per caller. LookupLocal is its
// in-process step alone.
// Hits live cache.ttl, then are served stale for cache.stale_for while one
// background request refreshes them; misses live cache.miss_ttl; errors are not
// cached. Each source and Redis sit behind a circuit breaker (sony/gobreaker).
//
// A look-up by e-mail (Query.Email; LookupEmail, LookupEmailAsync) is the
// same look-up with another key kind: the address normalised (NormalizeEmail:
// trimmed, domain lower-cased, local part kept; ErrInvalidEmail otherwise),
// keyed as "mailto:" + address (never a number's key), asking only the
// sources with an e-mail way (EmailSource: url_by_email, query_by_email, a
// CSV email column). Caching, flights, breakers and several matches work as
// for a number.
//
// Redis keys are cache.key_prefix + hex HMAC-SHA256(cache.key_secret, E.164 or the e-mail key):
// no key holds a number or an address. Each key is a hash whose fields are the source sets
// asked ("*" = all sources, else the names joined by ","), so Forget deletes
// every variant of a number with one DEL. Values are versioned JSON
// ({"v":2,...}); an unreadable value or another version is a miss.
//
// A source may find several customers for a number (MultiSource: an HTTP
// array, several rows, several CSV lines): the Result lists them all as
// Candidates (at most call.MaxCandidates; the router picks the best). A
// customer may carry named Lists (history, tickets, …), bounded by
// MaxLists, MaxListItems and MaxItemFields, cached with it.
//
// Metrics (default registry):
//
//	callpop_crm_lookups_total{result}            hit, miss, error, timeout
//	callpop_crm_source_seconds{source,result}    one source request: hit, miss, error, open, busy (no slot within the timeout)
//	callpop_crm_breaker_state{breaker}           0 closed, 1 half-open, 2 open (sources and "redis")
//	callpop_cache_requests_total{tier,result}    local|redis × hit, miss, stale, invalid, error
//	callpop_cache_redis_seconds{op}              get, set, del
//	callpop_cache_refreshes_total{result}        background refreshes: ok, error
package crm
