package main

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

// `callpop demo --pbx asterisk,freeswitch`: both simulators under one
// pipeline; agent 1002's one stream gets pops from each PBX, named after it.
func TestDemoBothPBXs(t *testing.T) {
	var out syncBuf
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, demoOptions{PBX: "asterisk,freeswitch", Rate: 6, Listen: "127.0.0.1:0", Agents: true}, &out, io.Discard)
	}()
	panelRe := regexp.MustCompile(`API at (http://[^;]+); agent 1002's panel \(pops from both PBXs\): \S+\?token=(\S+)`)
	var m []string
	for deadline := time.Now().Add(20 * time.Second); m == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		m = panelRe.FindStringSubmatch(out.String())
	}
	if m == nil {
		t.Fatalf("no panel line:\n%s", out.String())
	}
	pops := openPopsToken(t, m[1], "1002", m[2])
	seen := map[string]bool{}
	for deadline := time.After(30 * time.Second); !seen["asterisk"] || !seen["freeswitch"]; {
		select {
		case p := <-pops:
			if !strings.HasPrefix(p.CallID, p.PBX+"/") {
				t.Fatalf("pop %+v: call id not named after its PBX", p)
			}
			seen[p.PBX] = true
		case <-deadline:
			t.Fatalf("pops from %v only:\n%s", seen, out.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	o := out.String()
	for _, want := range []string{"asterisk summary:", "freeswitch summary:", " 0 over the 300ms budget", " 0 stuck"} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
}

func TestDemoRejectsBadPBXList(t *testing.T) {
	for _, list := range []string{"asterisk,asterisk", "asterisk,3cx", "", "asterisk,"} {
		if err := runDemo(context.Background(), demoOptions{PBX: list, Rate: 1}, io.Discard, io.Discard); err == nil {
			t.Errorf("no error for --pbx %q", list)
		}
	}
}
