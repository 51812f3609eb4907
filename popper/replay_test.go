package popper

// Small extractors that turn the raw recordings under testdata/ into the
// reports an adapter gives the popper. They are deliberately simple: the
// adapters (adapters/ari, adapters/esl) do the real parsing; these exist so
// the correlation tables replay real event orders, not hand-made ones.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

// step is one report, in arrival order.
type step struct {
	enriched *call.Enriched
	leg      *call.LegEvent
	end      *call.CallEnd
}

func (s step) apply(c *correlator, now time.Time) {
	switch {
	case s.enriched != nil:
		c.Enriched(*s.enriched, now)
	case s.leg != nil:
		c.Leg(*s.leg, now)
	case s.end != nil:
		c.End(*s.end, now)
	}
}

type ariChannel struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Channelvars map[string]string `json:"channelvars"`
}

type ariEvent struct {
	Type       string      `json:"type"`
	Timestamp  string      `json:"timestamp"`
	Channel    *ariChannel `json:"channel"`
	Caller     *ariChannel `json:"caller"`
	Peer       *ariChannel `json:"peer"`
	Dialstatus string      `json:"dialstatus"`
	CauseTxt   string      `json:"cause_txt"`
}

// ariSteps reads an ARI events recording (one WebSocket message a line). The
// enriched channel is the one whose CALLPOP_CALL_ID is "cp-" + its id, as the
// recording's enrichment set it. Dial events whose caller is that channel (or
// carries its CALLPOP_CALL_ID) are agent legs; ChannelDestroyed of the
// enriched channel ends the call.
func ariSteps(t *testing.T, file string, dec call.Decision) []step {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []step
	var enriched, callID string
	legs := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev ariEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		at, _ := time.Parse("2006-01-02T15:04:05.000-0700", ev.Timestamp)
		for _, ch := range []*ariChannel{ev.Channel, ev.Caller} {
			if enriched == "" && ch != nil && ch.Channelvars["CALLPOP_CALL_ID"] == "cp-"+ch.ID {
				enriched, callID = ch.ID, "cp-"+ch.ID
				d := dec
				d.CallID = callID
				steps = append(steps, step{enriched: &call.Enriched{CallID: callID, Call: call.Call{ID: enriched, PBX: "asterisk"}, Decision: d}})
			}
		}
		if enriched == "" {
			continue
		}
		switch ev.Type {
		case "Dial":
			if ev.Caller == nil || ev.Peer == nil {
				continue
			}
			id := ev.Caller.Channelvars["CALLPOP_CALL_ID"]
			if ev.Caller.ID != enriched && id != callID {
				continue
			}
			le := call.LegEvent{CallID: id, CallerChannel: ev.Caller.ID, Leg: ev.Peer.ID, Endpoint: ev.Peer.Name, Cause: ev.Dialstatus, At: at}
			switch ev.Dialstatus {
			case "", "RINGING", "PROGRESS", "PROCEEDING":
				le.State = call.LegRinging
			case "ANSWER":
				le.State = call.LegAnswered
			default:
				le.State = call.LegStopped
			}
			legs[ev.Peer.ID] = true
			steps = append(steps, step{leg: &le})
		case "ChannelDestroyed":
			switch {
			case ev.Channel.ID == enriched:
				steps = append(steps, step{end: &call.CallEnd{CallID: callID, CallerChannel: enriched, At: at}})
			case legs[ev.Channel.ID]:
				steps = append(steps, step{leg: &call.LegEvent{CallerChannel: enriched, Leg: ev.Channel.ID, Endpoint: ev.Channel.Name, State: call.LegStopped, Cause: ev.CauseTxt, At: at}})
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return steps
}

// eslEvents reads the plain events of an ESL recording (gzip of the s2c bytes).
func eslEvents(t *testing.T, file string) []map[string]string {
	t.Helper()
	evs, _ := eslFrames(t, file)
	return evs
}

// eslFrames returns the plain events parsed and their raw bodies.
func eslFrames(t *testing.T, file string) ([]map[string]string, [][]byte) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	var bodies [][]byte
	r := bufio.NewReader(bytes.NewReader(raw))
	for {
		hdr, err := readHeaders(r, false)
		if err != nil {
			break
		}
		n, _ := strconv.Atoi(hdr["Content-Length"])
		if n == 0 {
			continue
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("%s: short body: %v", file, err)
		}
		if hdr["Content-Type"] != "text/event-plain" {
			continue
		}
		ev, err := readHeaders(bufio.NewReader(bytes.NewReader(body)), true)
		if err != nil && err != io.EOF {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, ev)
		bodies = append(bodies, body)
	}
	return out, bodies
}

// readHeaders reads "Name: value" lines up to an empty line.
func readHeaders(r *bufio.Reader, decode bool) (map[string]string, error) {
	h := map[string]string{}
	for {
		line, err := r.ReadString('\n')
		line = strings.TrimRight(line, "\n")
		if line == "" {
			if err != nil && len(h) == 0 {
				return nil, err
			}
			if len(h) == 0 && err == nil {
				continue // blank separator lines between frames
			}
			return h, nil
		}
		k, v, _ := strings.Cut(line, ": ")
		if decode {
			if d, err := url.QueryUnescape(v); err == nil {
				v = d
			}
		}
		h[k] = v
		if err != nil {
			return h, nil
		}
	}
}

// eslSteps turns a FreeSWITCH recording into reports. The caller leg is the
// channel whose exported callpop_call_id is its own uuid; agent legs are
// linked by callpop_call_id or Other-Leg-Unique-ID; the caller's
// CHANNEL_BRIDGE names the leg that answered (uuid_bridge consult legs carry
// no link variables); mod_callcenter's agent-offering / bridge-agent-* name
// the queue agent.
func eslSteps(t *testing.T, file string, dec call.Decision) []step {
	t.Helper()
	var steps []step
	caller := ""
	legs := map[string]string{} // agent leg uuid → endpoint
	answered := map[string]bool{}
	for _, ev := range eslEvents(t, file) {
		name := ev["Event-Name"]
		uuid := ev["Unique-ID"]
		us, _ := strconv.ParseInt(ev["Event-Date-Timestamp"], 10, 64)
		at := time.UnixMicro(us)
		if caller == "" && uuid != "" && ev["variable_callpop_call_id"] == uuid {
			caller = uuid
			d := dec
			d.CallID = caller
			steps = append(steps, step{enriched: &call.Enriched{CallID: caller, Call: call.Call{ID: caller, PBX: "freeswitch"}, Decision: d}})
		}
		if caller == "" {
			continue
		}
		leg := func(id, endpoint string, st call.LegState, cause string) {
			steps = append(steps, step{leg: &call.LegEvent{CallID: caller, CallerChannel: caller, Leg: id, Endpoint: endpoint, State: st, Cause: cause, At: at}})
		}
		if name == "CUSTOM" && ev["Event-Subclass"] == "callcenter::info" && ev["CC-Member-Session-UUID"] == caller {
			switch ev["CC-Action"] {
			case "agent-offering":
				leg("", ev["CC-Agent"], call.LegRinging, "")
			case "bridge-agent-start":
				leg("", ev["CC-Agent"], call.LegAnswered, "")
			case "bridge-agent-fail":
				leg("", ev["CC-Agent"], call.LegStopped, ev["CC-Hangup-Cause"])
			}
			continue
		}
		if uuid == caller {
			switch name {
			case "CHANNEL_BRIDGE":
				other := ev["Other-Leg-Unique-ID"]
				ep := legs[other]
				if ep == "" {
					ep = ev["Other-Leg-Channel-Name"]
					legs[other] = ep
				}
				if !answered[other] {
					answered[other] = true
					leg(other, ep, call.LegAnswered, "")
				}
			case "CHANNEL_HANGUP_COMPLETE":
				steps = append(steps, step{end: &call.CallEnd{CallID: caller, CallerChannel: caller, At: at}})
			}
			continue
		}
		ep, known := legs[uuid]
		if !known {
			if name != "CHANNEL_CREATE" && name != "CHANNEL_ORIGINATE" && name != "CHANNEL_PROGRESS" {
				continue
			}
			if ev["variable_callpop_call_id"] != caller && ev["Other-Leg-Unique-ID"] != caller {
				continue
			}
			ep = ev["Channel-Name"]
			if u := ev["variable_dialed_user"]; u != "" {
				ep = "user/" + u
			}
			legs[uuid] = ep
			leg(uuid, ep, call.LegRinging, "")
			continue
		}
		switch name {
		case "CHANNEL_ANSWER":
			if !answered[uuid] {
				answered[uuid] = true
				leg(uuid, ep, call.LegAnswered, "")
			}
		case "CHANNEL_HANGUP_COMPLETE":
			leg(uuid, ep, call.LegStopped, ev["Hangup-Cause"])
		}
	}
	return steps
}
