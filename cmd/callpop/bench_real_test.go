package main

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/bench"
)

func TestBenchRealFlagErrors(t *testing.T) {
	t.Setenv("CALLPOP_PBX_ASTERISK_PASSWORD", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ari-url", "http://127.0.0.1:1", "--ari-user", "u", "--way", "ari", "--pbx", "asterisk"}, "--pbx: a simulator setting"},
		{[]string{"--ari-url", "http://127.0.0.1:1", "--ari-user", "u", "--way", "ari", "--inflight", "5"}, "--inflight: a simulator setting"},
		{[]string{"--way", "ari"}, "--way: give the real PBX too"},
		{[]string{"--force"}, "--force: only against a real PBX"},
		{[]string{"--crm-delay", "3s"}, "--crm-delay: only against a real PBX"},
		{[]string{"--esl-address", "127.0.0.1:8021", "--way", "multiset", "--crm-delay", "1m"}, "--crm-delay: must be between 0 and 4s"},
		{[]string{"--esl-address", "127.0.0.1:8021", "--way", "multiset", "--crm-delay", "3s", "--crm-latency", "3s"}, "--crm-latency: a simulator setting"},
		{[]string{"--ari-url", "http://127.0.0.1:1", "--ari-user", "u", "--way", "ari"}, "CALLPOP_PBX_ASTERISK_PASSWORD: not set"},
		{[]string{"--ari-url", "http://127.0.0.1:1", "--esl-address", "127.0.0.1:8021", "--way", "http"}, "one PBX at a time"},
		{[]string{"--esl-address", "127.0.0.1:8021", "--way", "ari"}, `"ari" is not a way into FreeSWITCH`},
	} {
		_, _, err := execute(t, ctx, append([]string{"bench"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bench %v: want %q, got %v", c.args, c.want, err)
		}
	}
}

func TestBenchRealAsterisk(t *testing.T) {
	b, err := os.ReadFile("../../docs/performance.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```ini\n(\\[callpop-bench\\].*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/performance.md has no [callpop-bench] context")
	}
	sim, err := arisim.New(arisim.Options{Username: "bench", Password: "s3cret", Dialplan: string(m[1])})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	t.Setenv("CALLPOP_PBX_ASTERISK_PASSWORD", "s3cret")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, errOut, err := execute(t, ctx, "bench", "--ari-url", sim.URL(), "--ari-user", "bench", "--way", "http,fastagi",
		"--rate", "20", "--duration", "500ms", "--population", "20", "--json", "-")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var rep bench.RealReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Ways) != 2 || rep.Ways[0].Way != "http" || rep.Ways[1].Way != "fastagi" {
		t.Fatalf("ways: %+v", rep.Ways)
	}
	for _, w := range rep.Ways {
		if w.Callpop.Completed == 0 || w.Bare.Completed == 0 || w.Callpop.StepP50 <= 0 {
			t.Errorf("%s: %+v", w.Way, w)
		}
	}
	if strings.Contains(errOut, "s3cret") || strings.Contains(out, "s3cret") {
		t.Error("the password reached the output")
	}
}
