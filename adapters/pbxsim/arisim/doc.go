// Package arisim is a protocol-faithful Asterisk ARI simulator (HTTP REST +
// WebSocket events) replaying the shapes recorded from a real Asterisk 22
// (testdata/ holds the recordings it is checked against). It serves the subset
// callpop uses: /ari/events (one socket per app, ApplicationReplaced for the
// older one), channel variables (204/400/404/409 with Asterisk's bodies),
// continue (204, then StasisEnd asynchronously), application subscriptions,
// GET /channels and /applications/{app}, POST /channels (a Local channel
// whose ;2 half runs an extensions.conf subset, Options.Dialplan; or a
// device, a customer's phone whose answer is scripted per number with
// ScriptOutcomes and whose answered channel runs the dialplan, see
// originate.go) and DELETE /channels/{id}; it offers calls at a rate, plays
// agent legs (Dial RINGING/ANSWER/CANCEL) and records what callpop did.
// Its AGI (RunAGI, a dialplan's AGI()) reads and runs commands as Asterisk
// 22's res_agi does, EXEC MSet included (agiparse.go: one model of the
// parsing, which callpop's router tests check their commands against).
package arisim
