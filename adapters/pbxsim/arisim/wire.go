package arisim

import (
	"bytes"
	"encoding/json"
	"sync"
	"time"
)

// The JSON shapes below mirror, field by field and in order, what Asterisk
// 22.10.1 sent in testdata/*.jsonl (compact ARI output).

const (
	asteriskID = "02:fc:00:00:00:01"
	timeFormat = "2006-01-02T15:04:05.000-0700"
)

type callerJSON struct {
	Name   string `json:"name"`
	Number string `json:"number"`
}

type dialplanJSON struct {
	Context  string `json:"context"`
	Exten    string `json:"exten"`
	Priority int    `json:"priority"`
	AppName  string `json:"app_name"`
	AppData  string `json:"app_data"`
}

type channelJSON struct {
	ID           string       `json:"id"`
	Name         string       `json:"name"`
	State        string       `json:"state"`
	ProtocolID   string       `json:"protocol_id"`
	Caller       callerJSON   `json:"caller"`
	Connected    callerJSON   `json:"connected"`
	Accountcode  string       `json:"accountcode"`
	Dialplan     dialplanJSON `json:"dialplan"`
	CreationTime string       `json:"creationtime"`
	Language     string       `json:"language"`
	CallerRDNIS  string       `json:"caller_rdnis,omitempty"`
	ChannelVars  channelVars  `json:"channelvars,omitempty"`
}

// channelVars is ari.conf's channelvars in a snapshot: names in the
// configured order (as Asterisk writes them), unset ones as "".
type channelVars []nameValue

type nameValue struct{ name, value string }

func (v channelVars) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 64)
	b = append(b, '{')
	for i, nv := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, nv.name)
		b = append(b, ':')
		b = appendJSONString(b, nv.value)
	}
	return append(b, '}'), nil
}

// appendJSONString appends s quoted like jansson (no HTML escaping).
func appendJSONString(b []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	if plain {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // a string always marshals
	if !bytes.ContainsAny(q, `\`) {
		return append(b, q...)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return append(b, bytes.TrimRight(buf.Bytes(), "\n")...)
}

type applicationJSON struct {
	Name             string   `json:"name"`
	ChannelIDs       []string `json:"channel_ids"`
	BridgeIDs        []string `json:"bridge_ids"`
	EndpointIDs      []string `json:"endpoint_ids"`
	DeviceNames      []string `json:"device_names"`
	EventsAllowed    []string `json:"events_allowed"`
	EventsDisallowed []string `json:"events_disallowed"`
}

type stasisStartJSON struct {
	Type        string      `json:"type"`
	Timestamp   string      `json:"timestamp"`
	Args        []string    `json:"args"`
	Channel     channelJSON `json:"channel"`
	AsteriskID  string      `json:"asterisk_id"`
	Application string      `json:"application"`
}

type channelEventJSON struct {
	Type        string      `json:"type"`
	Timestamp   string      `json:"timestamp"`
	Channel     channelJSON `json:"channel"`
	AsteriskID  string      `json:"asterisk_id"`
	Application string      `json:"application"`
}

type varsetJSON struct {
	Variable    string      `json:"variable"`
	Value       string      `json:"value"`
	Type        string      `json:"type"`
	Timestamp   string      `json:"timestamp"`
	Channel     channelJSON `json:"channel"`
	AsteriskID  string      `json:"asterisk_id"`
	Application string      `json:"application"`
}

type hangupRequestJSON struct {
	Cause       int         `json:"cause"`
	Soft        bool        `json:"soft,omitempty"`
	Type        string      `json:"type"`
	Timestamp   string      `json:"timestamp"`
	Channel     channelJSON `json:"channel"`
	AsteriskID  string      `json:"asterisk_id"`
	Application string      `json:"application"`
}

type destroyedJSON struct {
	Type        string      `json:"type"`
	Timestamp   string      `json:"timestamp"`
	Cause       int         `json:"cause"`
	CauseTxt    string      `json:"cause_txt"`
	Channel     channelJSON `json:"channel"`
	AsteriskID  string      `json:"asterisk_id"`
	Application string      `json:"application"`
}

type dialJSON struct {
	Type        string      `json:"type"`
	Timestamp   string      `json:"timestamp"`
	Dialstatus  string      `json:"dialstatus"`
	Forward     string      `json:"forward"`
	Dialstring  string      `json:"dialstring"`
	Caller      channelJSON `json:"caller"`
	Peer        channelJSON `json:"peer"`
	AsteriskID  string      `json:"asterisk_id"`
	Application string      `json:"application"`
}

// originDialJSON is the Dial of an originate's own channel: no caller.
type originDialJSON struct {
	Type        string      `json:"type"`
	Timestamp   string      `json:"timestamp"`
	Dialstatus  string      `json:"dialstatus"`
	Forward     string      `json:"forward"`
	Dialstring  string      `json:"dialstring"`
	Peer        channelJSON `json:"peer"`
	AsteriskID  string      `json:"asterisk_id"`
	Application string      `json:"application"`
}

type appReplacedJSON struct {
	Type        string `json:"type"`
	Timestamp   string `json:"timestamp"`
	Application string `json:"application"`
	AsteriskID  string `json:"asterisk_id"`
}

type messageJSON struct {
	Message string `json:"message"`
}

func stamp(t time.Time) string { return t.UTC().Format(timeFormat) }

// encoder is a reusable buffer and JSON encoder (one per event otherwise).
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

// mustJSON encodes like Asterisk's jansson: no HTML escaping, no newline.
func mustJSON(v any) []byte {
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		panic("arisim: " + err.Error()) // only our own fixed shapes are marshalled
	}
	return bytes.Clone(bytes.TrimRight(e.buf.Bytes(), "\n"))
}
