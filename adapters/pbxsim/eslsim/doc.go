// Package eslsim is a protocol-faithful FreeSWITCH Event Socket simulator
// (inbound and outbound modes) replaying the bytes recorded from FreeSWITCH 1.10.
//
// Every frame it writes starts from a recording (recorded/*.txt, exact bytes
// of FreeSWITCH 1.10.12; recorded/README.md names each): the auth/request banner, command/reply
// and api/response replies, plain events with the real header sets and
// FreeSWITCH's URL-encoding (a `%` followed by two upper-case hex digits is not
// re-encoded), the 112-header outbound `connect` reply with Content-Type near
// the end and no Content-Length, BACKGROUND_JOB with its inner body sent to
// every subscriber, disconnect notices (exit, linger, auth failure, shutdown).
//
// It behaves like the real server where callpop's safety depends on it:
// commands end at a blank line (a value with "\n\n" injects a second command),
// api commands run one at a time per connection, `uuid_setvar` strips a pair of
// quotes, unescapes \s \t \n and trims, `sendmsg … execute set` runs after a
// 20 ms wake-up and EXPANDS ${…} (recording every expansion, and flagging any
// stored ${…} as a deferred expansion the dialplan would perform), dead UUIDs
// answer -ERR No such channel! / -ERR invalid session id.
//
// Inbound: NewInbound, OfferCall / OfferRecorded / ParkCalls / ParkWithoutEvent,
// DropConnectionsFor (a cut during which new connections are closed),
// RingAgents (agent legs of a ring-all bridge), Hangup, DropConnections,
// Shutdown, EmitRaw; `originate {…}loopback/<exten>/<context>` runs the -b
// leg through an XML dialplan subset (Options.Dialplan, dialplan.go);
// `originate {…}<device> <exten> XML <context>` of any other endpoint parses
// its argument as FreeSWITCH does (fsparse.go), rings the device
// (Options.RingTime) and answers or fails as ScriptDial says, an answered
// leg going into the dialplan, whose bridge and callcenter apps ring agents
// (originate.go); Originates records every request as parsed. Outbound: NewOutbound(target).Call / CallRecorded / Load
// dial callpop's listener per call. Both: Channel, Vars, Released,
// WaitReleased, Parked, Stats.
package eslsim
