package main

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"testing"
	"time"
)

func TestDemoFreeSWITCH(t *testing.T) {
	var out bytes.Buffer
	err := runDemo(context.Background(), demoOptions{PBX: PBXFreeSWITCH, Duration: 1500 * time.Millisecond, Rate: 10, Agents: true}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`summary: (\d+) calls released by exit .*; (\d+) over the .* budget\), (\d+) stuck`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no summary in:\n%s", out.String())
	}
	if m[1] == "0" || m[2] != "0" || m[3] != "0" {
		t.Fatalf("summary: %s", m[0])
	}
	if !regexp.MustCompile(`(?m)^\S+\s+known\s+hit\s+cli`).MatchString(out.String()) {
		t.Fatalf("no enriched known caller in:\n%s", out.String())
	}
}
