package ari

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

// FuzzDecodeEvent feeds arbitrary WebSocket messages to the decoder and the
// dispatcher: nothing may panic, and a StasisStart never starts a call for
// another app. The corpus (testdata/fuzz/FuzzDecodeEvent) holds recorded events.
func FuzzDecodeEvent(f *testing.F) {
	for _, name := range []string{"a-national.events.jsonl", "callpop-transfer-attended-dtmf.watch-channel-subscription.events.jsonl"} {
		b, err := os.ReadFile(filepath.Join("../pbxsim/arisim/testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range bytes.Split(b, []byte("\n")) {
			if len(l) > 0 {
				f.Add(l)
			}
		}
	}
	f.Add([]byte(`{"type":"ChannelToneDetected"}`))
	f.Add([]byte(`{"type":"StasisStart","channel":null,"args":null}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, unknown, err := decodeEvent(raw)
		if err != nil && (ev != nil || unknown) {
			t.Fatalf("error with a result: %v %v", ev, unknown)
		}
		a := &Adapter{cfg: DefaultConfig(), log: discard(), m: testM,
			follow: newFollowState(100, time.Hour, call.NopSink{}, discard(), testM)}
		a.cfg.App = "never-matches-\x00"
		a.deps.Budget = time.Second
		a.dispatch(raw, time.Now())
		if a.follow.size() != 0 {
			t.Fatalf("followed a call from a bare event")
		}
	})
}
