// Package arisim is a protocol-faithful Asterisk ARI simulator (HTTP REST +
// WebSocket events) replaying the shapes recorded from a real Asterisk 22.
package arisim
