package ari

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	ariv5 "github.com/CyCoreSystems/ari/v5"
)

// libKnown is every event type ari/v5 v5.3.1 can decode. Asterisk 22 sends
// more (ApplicationRegistered, ChannelTransfer, ChannelToneDetected, ...);
// those are skipped and counted instead of tearing the connection down.
var libKnown = func() map[string]bool {
	e := ariv5.Events
	m := map[string]bool{}
	for _, t := range []string{
		e.ApplicationMoveFailed, e.ApplicationReplaced, e.BridgeAttendedTransfer, e.BridgeBlindTransfer,
		e.BridgeCreated, e.BridgeDestroyed, e.BridgeMerged, e.BridgeVideoSourceChanged, e.ChannelCallerID,
		e.ChannelConnectedLine, e.ChannelCreated, e.ChannelDestroyed, e.ChannelDialplan, e.ChannelDtmfReceived,
		e.ChannelEnteredBridge, e.ChannelHangupRequest, e.ChannelHold, e.ChannelLeftBridge, e.ChannelStateChange,
		e.ChannelTalkingFinished, e.ChannelTalkingStarted, e.ChannelUnhold, e.ChannelUserevent, e.ChannelVarset,
		e.ContactStatusChange, e.DeviceStateChanged, e.Dial, e.EndpointStateChange, e.PeerStatusChange,
		e.PlaybackContinuing, e.PlaybackFinished, e.PlaybackStarted, e.RecordingFailed, e.RecordingFinished,
		e.RecordingStarted, e.StasisEnd, e.StasisStart, e.TextMessageReceived,
	} {
		m[t] = true
	}
	return m
}()

// decodeEvent decodes the event types callpop acts on into the library's
// types. It returns (nil, nil) for a type that is skipped: known but of no
// interest, or unknown to the library (unknown reports which).
func decodeEvent(raw []byte) (ev ariv5.Event, unknown bool, err error) {
	typ, ok := scanType(raw)
	if !ok {
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, false, fmt.Errorf("adapters/ari: event: %w", err)
		}
		typ = head.Type
	}
	if typ == "" {
		return nil, false, fmt.Errorf("adapters/ari: event without type")
	}
	switch typ {
	case "StasisStart", "ChannelHangupRequest", "ChannelDestroyed", "ChannelStateChange":
		return decodeChannelEvent(typ, raw)
	case "Dial":
		ev = &ariv5.Dial{}
	case "ChannelVarset":
		// Most varsets (every variable set on a followed channel) are of no
		// interest; only CALLPOP_CALL_ID correlates a leg. The name is
		// looked for as the variable, not anywhere: with ari.conf
		// channelvars every snapshot carries "CALLPOP_CALL_ID":... .
		if !isCallIDVarset(raw) {
			return nil, false, nil
		}
		return decodeChannelEvent(typ, raw)
	case "BridgeBlindTransfer":
		ev = &ariv5.BridgeBlindTransfer{}
	case "BridgeAttendedTransfer":
		ev = &ariv5.BridgeAttendedTransfer{}
	case "ApplicationReplaced":
		ev = &ariv5.ApplicationReplaced{}
	default:
		return nil, !libKnown[typ], nil
	}
	if err := json.Unmarshal(raw, ev); err != nil {
		return nil, false, fmt.Errorf("adapters/ari: %s: %w", typ, err)
	}
	return ev, false, nil
}

// leanEvent is what callpop reads of a StasisStart, ChannelHangupRequest,
// ChannelDestroyed, ChannelStateChange or ChannelVarset: one pass over the JSON, where the library's ChannelData
// decodes its channel twice and keeps every field.
type leanEvent struct {
	Type        string         `json:"type"`
	Application string         `json:"application"`
	Timestamp   ariv5.DateTime `json:"timestamp"`
	Args        []string       `json:"args"`
	Variable    string         `json:"variable"` // ChannelVarset
	Value       string         `json:"value"`
	Cause       int            `json:"cause"` // ChannelDestroyed
	CauseTxt    string         `json:"cause_txt"`
	Channel     struct {
		ID          string             `json:"id"`
		Name        string             `json:"name"`
		State       string             `json:"state"`
		Caller      *ariv5.CallerID    `json:"caller"`
		Dialplan    *ariv5.DialplanCEP `json:"dialplan"`
		ChannelVars map[string]string  `json:"channelvars"`
	} `json:"channel"`
}

// decodeChannelEvent decodes the per-call events into the library's types,
// filling the fields callpop reads.
func decodeChannelEvent(typ string, raw []byte) (ariv5.Event, bool, error) {
	var l leanEvent
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, false, fmt.Errorf("adapters/ari: %s: %w", typ, err)
	}
	ed := ariv5.EventData{Type: l.Type, Application: l.Application, Timestamp: l.Timestamp}
	ch := ariv5.ChannelData{ID: l.Channel.ID, Name: l.Channel.Name, State: l.Channel.State, Caller: l.Channel.Caller,
		Dialplan: l.Channel.Dialplan, ChannelVars: l.Channel.ChannelVars}
	switch typ {
	case "StasisStart":
		return &ariv5.StasisStart{EventData: ed, Args: l.Args, Channel: ch}, false, nil
	case "ChannelHangupRequest":
		return &ariv5.ChannelHangupRequest{EventData: ed, Channel: ch}, false, nil
	case "ChannelVarset":
		return &ariv5.ChannelVarset{EventData: ed, Variable: l.Variable, Value: l.Value, Channel: ch}, false, nil
	case "ChannelStateChange":
		return &ariv5.ChannelStateChange{EventData: ed, Channel: ch}, false, nil
	default:
		return &ariv5.ChannelDestroyed{EventData: ed, Cause: l.Cause, CauseTxt: l.CauseTxt, Channel: ch}, false, nil
	}
}

// isCallIDVarset reports whether a ChannelVarset may set CALLPOP_CALL_ID
// (with or without the inheritance prefix). Compact ARI JSON writes
// "variable":"NAME" without spaces; a value escaped differently (never the
// case for this name) would only cost a full decode.
func isCallIDVarset(raw []byte) bool {
	i := bytes.Index(raw, []byte(`"variable":"`))
	if i < 0 {
		return bytes.Contains(raw, []byte(`CALLPOP_CALL_ID"`)) // not compact: decode to be sure
	}
	v := bytes.TrimLeft(raw[i+len(`"variable":"`):], "_")
	return bytes.HasPrefix(v, []byte(`CALLPOP_CALL_ID"`))
}

// scanType finds the top-level "type" of a compact ARI event without
// parsing it: `"type":"X"` at a key position (after '{' or ','), X plain
// letters. Events the decoder goes on to use are parsed fully anyway; for
// the rest (most of a followed call's stream) this is the only work done.
// ok is false when the fast path does not apply.
func scanType(raw []byte) (string, bool) {
	const key = `"type":"`
	i := bytes.Index(raw, []byte(key))
	if i <= 0 || (raw[i-1] != '{' && raw[i-1] != ',') || raw[0] != '{' {
		return "", false
	}
	// a key at depth 1 only: no '{' between the start and the key
	if bytes.IndexByte(raw[1:i], '{') >= 0 {
		return "", false
	}
	rest := raw[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 || j > 64 {
		return "", false
	}
	for _, c := range rest[:j] {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return "", false
		}
	}
	return string(rest[:j]), true
}

// dispatch handles one event read at read. It runs on the reader goroutine,
// so it only does map work; calls get their own goroutine.
func (a *Adapter) dispatch(raw []byte, read time.Time) {
	defer func() {
		if r := recover(); r != nil {
			a.m.panics.Inc()
			a.log.Error("panic handling ARI event", "panic", fmt.Sprint(r))
		}
	}()
	a.m.events.Inc()
	ev, unknown, err := decodeEvent(raw)
	switch {
	case err != nil:
		a.m.badEvents.Inc()
		a.log.Debug("undecodable ARI event skipped", "err", err)
		return
	case unknown:
		a.m.unknownEvents.Inc()
		return
	case ev == nil:
		return
	}
	switch e := ev.(type) {
	case *ariv5.StasisStart:
		if e.Application != "" && e.Application != a.cfg.App {
			return
		}
		sc := stasisChannel{
			ID: e.Channel.ID, Name: e.Channel.Name, CLI: callerNumber(e.Channel.Caller),
			CLIName: callerName(e.Channel.Caller), DNIS: dialplanExten(e.Channel.Dialplan), Args: e.Args,
		}
		sc.callerVars(e.Channel.ChannelVars)
		a.startCall(sc, read, false)
	case *ariv5.ApplicationReplaced:
		a.replacedBy()
	case *ariv5.Dial:
		if e.Caller.ID == "" && e.Peer.ID != "" {
			a.originDial(e.Peer.ID, e.Dialstatus)
		}
		a.follow.dial(e)
	case *ariv5.ChannelHangupRequest:
		a.follow.callerGone(e.Channel.ID, time.Time(e.Timestamp), false)
	case *ariv5.ChannelDestroyed:
		a.originEnded(e.Channel.ID, e.Cause, e.CauseTxt)
		a.follow.callerGone(e.Channel.ID, time.Time(e.Timestamp), true)
	case *ariv5.ChannelStateChange:
		a.originState(e.Channel.ID, e.Channel.State)
	case *ariv5.ChannelVarset:
		a.follow.varset(e)
	case *ariv5.BridgeBlindTransfer:
		a.follow.blindTransfer(e)
	case *ariv5.BridgeAttendedTransfer:
		a.follow.attendedTransfer(e)
	}
}

func callerNumber(c *ariv5.CallerID) string {
	if c == nil {
		return ""
	}
	return c.Number
}

func callerName(c *ariv5.CallerID) string {
	if c == nil {
		return ""
	}
	return c.Name
}

func dialplanExten(d *ariv5.DialplanCEP) string {
	if d == nil {
		return ""
	}
	return d.Exten
}
