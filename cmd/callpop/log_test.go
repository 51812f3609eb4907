package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/callpop/callpop/call"
)

func TestLogger(t *testing.T) {
	t.Cleanup(func() { call.SetMasking(true) })
	c := call.Call{ID: "c1", CLI: "+14155550123", ANI: "+14155550123"}
	tests := []struct {
		name   string
		cfg    LogConfig
		json   bool
		clear  bool // the number appears in clear
		debugs bool // debug lines are written
	}{
		{"defaults", DefaultConfig().Log, true, false, false},
		{"text, debug", LogConfig{Level: "debug", Format: "text", MaskPersonalData: true}, false, false, true},
		{"masking off", LogConfig{Level: "info", Format: "json", MaskPersonalData: false}, true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, level := newLoggerVar(tc.cfg, &buf)
			log.Debug("debug line", "component", "test")
			log.Info("call", "component", "test", "call", c)
			out := buf.String()
			if strings.Contains(out, "debug line") != tc.debugs {
				t.Errorf("debug written = %v, want %v:\n%s", !tc.debugs, tc.debugs, out)
			}
			if strings.Contains(out, "+14155550123") != tc.clear {
				t.Errorf("number in clear = %v, want %v:\n%s", !tc.clear, tc.clear, out)
			}
			if !tc.clear && !strings.Contains(out, "+1415***0123") {
				t.Errorf("no masked number:\n%s", out)
			}
			line := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
			if json.Valid([]byte(line)) != tc.json {
				t.Errorf("JSON = %v, want %v: %q", !tc.json, tc.json, line)
			}
			level.Set(slog.LevelError)
			buf.Reset()
			log.Info("quiet")
			if buf.Len() != 0 {
				t.Errorf("level change ignored: %q", buf.String())
			}
		})
	}
}
