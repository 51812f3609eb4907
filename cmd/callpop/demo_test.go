package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// `callpop demo` runs for a few seconds and handles calls of every kind.
func TestDemoHandlesCalls(t *testing.T) {
	var out, errOut syncBuf
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := runDemo(ctx, demoOptions{PBX: "asterisk", Duration: 3 * time.Second, Rate: 10, Listen: "127.0.0.1:0", Agents: true}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	o := out.String()
	t.Log(o)
	for _, want := range []string{"callpop demo: starting callpop with the sample CRM", "connecting to the simulated Asterisk", "agent 1002's panel: http://127.0.0.1:", "known", "hit", "anonymous", "ani-only", "junk", "invalid", "summary:", " 0 still waiting"} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if n := strings.Count(o, "\n"); n < 10 {
		t.Errorf("only %d lines", n)
	}
	if strings.Contains(errOut.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", errOut.String())
	}
}

func TestDemoRejectsUnknownPBX(t *testing.T) {
	var out bytes.Buffer
	if err := runDemo(context.Background(), demoOptions{PBX: "3cx", Rate: 1}, &out, &out); err == nil {
		t.Error("no error for --pbx 3cx")
	}
}
