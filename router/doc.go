// Package router makes the routing decision for a call (normalise → look up → rules) and serves the endpoints dialplans call.
package router
