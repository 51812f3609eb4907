// Package ari connects callpop to Asterisk over ARI (the Asterisk REST
// Interface), built against traffic recorded from Asterisk 22.10.1.
//
// A call enters Stasis(<app>[,profile]); the adapter reads StasisStart from
// its own event WebSocket (github.com/coder/websocket, with pings), reads
// CALLERID(ani) and CALLERID(num-pres) in one request unless ari.conf
// channelvars carried them, asks for the decision once (no goroutine while the
// decider holds the call), sets the CALLPOP_* variables, QUEUE_PRIO and the
// inherited __CALLPOP_CALL_ID whole over a keep-alive pool, subscribes the app
// to the channel (to follow its agent legs for the popper) and continues it.
// A watchdog continues every channel by the end of its budget whatever
// happens.
//
// Events are decoded with the github.com/CyCoreSystems/ari/v5 types; types
// that library does not know are skipped and counted. A supervisor reconnects
// with backoff and jitter and, after every connect, continues the channels
// left waiting in the app (reconcile) before reporting ready. See
// docs/asterisk.md.
package ari
