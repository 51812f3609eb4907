package main

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/popper"
)

// An agent's pop stream outlives the server's write timeout, and a stop
// ends it rather than waiting for it.
func TestPopStreamLongLived(t *testing.T) {
	old := writeTimeout
	writeTimeout = 300 * time.Millisecond
	t.Cleanup(func() { writeTimeout = old })
	const secret = "test-token-secret-0123456789abcdef"
	t.Setenv("CALLPOP_POPPER_TOKEN_SECRET", secret)
	base, logs, stop := startRun(t, writeConfig(t, runConfig+"popper:\n  heartbeat: 100ms\n"))
	defer func() { _ = stop() }()

	tok, err := popper.IssueToken([]byte(secret), "1001", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/agents/1001/pops?token="+tok, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), logs.String())
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// Heartbeats keep coming well past the write timeout.
	start := time.Now()
	beats := 0
	for time.Since(start) < 5*writeTimeout {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream cut after %s (write timeout %s)", time.Since(start), writeTimeout)
			}
			if strings.HasPrefix(l, ":") {
				beats++
			}
		case <-time.After(5 * time.Second):
			t.Fatal("stream silent for 5s")
		}
	}
	if beats < 3 {
		t.Fatalf("%d heartbeats in %s", beats, 5*writeTimeout)
	}
	// Stopping ends the stream at once.
	stopped := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if d := time.Since(stopped); d > 5*time.Second {
		t.Fatalf("stop took %s with a stream open", d)
	}
}
