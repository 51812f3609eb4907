// Package esl connects callpop to FreeSWITCH over the Event Socket, outbound and inbound modes.
//
// Outbound (recommended): the dialplan runs `socket <listen> async full`; for
// each call callpop sends `connect` with `resume` (without resume a session
// that ends before FreeSWITCH has parked the call leaves it parked for good),
// reads the channel from the `connect` reply, decides within
// the budget, stores the variables with one `api uuid_setvar_multi` (synchronous:
// +OK means stored, no 20 ms wait for CHANNEL_EXECUTE_COMPLETE as with sendmsg)
// and sends `exit`. A watchdog closes the socket at the budget's end whatever
// happens; a closed socket also lets the dialplan go on.
//
// Inbound: one event connection (supervised: backoff with jitter, auth,
// `event plain`, reconcile via `show channels as json` + `uuid_dump`, and a
// periodic sweep) takes CHANNEL_PARK of inbound legs in park_context, sets the
// variables and `uuid_transfer`s the call. Per-call commands are `bgapi` with
// a Job-UUID of callpop's, matched by that id.
//
// Agent-leg life (ringing/answered/stopped/ended) for enriched calls comes from
// the event connection (legs.go) and goes to the LegSink.
//
// Callbacks: Originate (originate.go, call.Originator) places a call with
// `bgapi originate {vars}<endpoint> <ext> XML <context>` on the event
// connection, the decision's variables escaped for originate's {…} list
// (BraceValue), and reads the outcome from the job's result.
//
// The wire is eslwire (a fuzzed frame reader/writer), not eslgo v1.5.1's Conn,
// whose design loses calls in ways a wrapper cannot fix: replies are matched
// to commands only by order, so a client-side timeout shifts every later reply
// (TestEslgoShiftsLateReplies pins it); a frame of an unknown content type
// (log/data, text/rude-rejection) ends its receive loop with no disconnect
// callback; event listeners run in new goroutines, so per-channel order is lost;
// GetHeader returns "" for a bad `%` escape; there is no reconnect; and Close
// races with the receive loop (-race). callpop's conn keeps a timed-out
// command's slot so its late reply is consumed there, skips unknown frames,
// delivers events in order on one goroutine, and eslwire.Decode keeps invalid
// escapes literally.
//
// Values: every value is reduced by fsvars.Text (call.CleanValue plus the
// FreeSWITCH rules in internal/fsvars) before it is written, so it can neither split a
// command nor be expanded later by the dialplan.
package esl
