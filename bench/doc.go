// Package bench is callpop's load generator: it starts a PBX simulator, a CRM
// stub and a throwaway redis-server on loopback, drives calls through the real
// sidecar pipeline, and reports sustained calls/s, latency split warm/cold,
// the overhead over bare protocol round trips, the singleflight effect,
// memory with many calls in flight and time to ready. `callpop bench` runs it.
package bench
