package ari

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

func benchLines(b *testing.B, name string) [][]byte {
	raw, err := os.ReadFile(filepath.Join(recordings, name))
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	for _, l := range bytes.Split(raw, []byte("\n")) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// BenchmarkDecodeStasisStart decodes one recorded StasisStart.
func BenchmarkDecodeStasisStart(b *testing.B) {
	line := benchLines(b, "a-national.events.jsonl")[0]
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := decodeEvent(line); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeMix decodes every line of a recorded queue call (Dial,
// ChannelVarset, DeviceStateChanged, ...), most of them skipped after the
// type is read.
func BenchmarkDecodeMix(b *testing.B) {
	lines := benchLines(b, "callpop-queue-ringall.self-channel-subscription.events.jsonl")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, err := decodeEvent(lines[i%len(lines)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDispatchLegs runs recorded Dial/hangup events through the leg
// tracker of a followed call.
func BenchmarkDispatchLegs(b *testing.B) {
	lines := benchLines(b, "callpop-queue-ringall.self-channel-subscription.events.jsonl")
	a := &Adapter{cfg: DefaultConfig(), log: discard(), follow: newFollowState(1000, time.Hour, call.NopSink{}, discard())}
	b.ReportAllocs()
	for b.Loop() {
		a.follow.add("1795312348.37306", "1795312348.37306")
		for _, l := range lines {
			if !bytes.Contains(l, []byte(`"StasisStart"`)) {
				a.dispatch(l, time.Now())
			}
		}
	}
}
