package arisim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Mix returns the demo's caller mix: each known number, an unknown caller,
// both withheld forms, an ANI-only caller and junk, cycling.
func Mix(known []string, unknown string) []CallSpec {
	var out []CallSpec
	for _, k := range known {
		out = append(out, CallSpec{Kind: "known", CLI: k, CLIName: "Known Caller"})
	}
	if unknown == "" {
		unknown = "+14155550199"
	}
	out = append(out,
		CallSpec{Kind: "unknown", CLI: unknown, CLIName: "Unknown Caller"},
		CallSpec{Kind: "anonymous", CLI: "anonymous", CLIName: "Anonymous", NumPres: "prohib"},
		CallSpec{Kind: "ani-only", CLI: "", NumPres: "prohib_passed_screen", ANI: firstOr(known, unknown)},
		CallSpec{Kind: "junk", CLI: `+31 (0)20-123 4567 ext.12 ABC#*;x=1"q'%&<>`, CLIName: `Zoë "Ünïcode" O'Brien`},
	)
	return out
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

// Generate offers n calls (n <= 0: until ctx ends) at rate calls per second,
// cycling through mix, and returns the channel ids offered.
func (s *Server) Generate(ctx context.Context, rate float64, n int, mix []CallSpec) []string {
	if len(mix) == 0 {
		mix = Mix(nil, "")
	}
	if rate <= 0 {
		rate = 1
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var ids []string
	for i := 0; n <= 0 || i < n; i++ {
		if ctx.Err() != nil || s.ctx.Err() != nil {
			break
		}
		next := start.Add(time.Duration(i) * interval)
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ids
			case <-t.C:
			}
		}
		ids = append(ids, s.OfferCall(mix[i%len(mix)]))
	}
	return ids
}

// SpecFromRecording builds a CallSpec from a recorded scenario: the
// StasisStart line of its *.events.jsonl and the CALLERID(ani) and
// CALLERID(num-pres) answers in its *.rest.json (which may be nil).
func SpecFromRecording(events, rest []byte) (CallSpec, error) {
	var spec CallSpec
	found := false
	sc := bufio.NewScanner(bytes.NewReader(events))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var ev struct {
			Type    string      `json:"type"`
			Args    []string    `json:"args"`
			Channel channelJSON `json:"channel"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Type != "StasisStart" {
			continue
		}
		c := ev.Channel
		spec = CallSpec{ID: c.ID, Name: c.Name, CLI: c.Caller.Number, CLIName: c.Caller.Name,
			RDNIS: c.CallerRDNIS, DNIS: c.Dialplan.Exten, Context: c.Dialplan.Context, Args: ev.Args}
		found = true
		break
	}
	if !found {
		return spec, fmt.Errorf("arisim: no StasisStart in recording")
	}
	if len(rest) > 0 {
		var pairs []struct {
			Request struct {
				Method, Path, Query string
			} `json:"request"`
			Response struct {
				Status int    `json:"status"`
				Body   string `json:"body"`
			} `json:"response"`
		}
		if err := json.Unmarshal(rest, &pairs); err != nil {
			return spec, fmt.Errorf("arisim: rest recording: %w", err)
		}
		for _, p := range pairs {
			if p.Request.Method != "GET" || !strings.HasSuffix(p.Request.Path, "/variable") || p.Response.Status != 200 {
				continue
			}
			var v struct {
				Value string `json:"value"`
			}
			json.Unmarshal([]byte(p.Response.Body), &v)
			switch p.Request.Query {
			case "variable=CALLERID%28ani%29":
				spec.ANI = v.Value
			case "variable=CALLERID%28num-pres%29":
				spec.NumPres = v.Value
			}
		}
	}
	return spec, nil
}
