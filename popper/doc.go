// Package popper correlates enriched calls to the agents they ring and delivers pops: agent panel (SSE), webhooks, softphone fields.
package popper
