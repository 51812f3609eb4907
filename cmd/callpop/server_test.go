package main

import (
	"strings"
	"testing"
)

func TestReadiness(t *testing.T) {
	tests := []struct {
		name     string
		checks   map[string]string // name → reason; "" = ready
		draining bool
		ready    bool
		reasons  []string
	}{
		{"no checks", nil, false, true, nil},
		{"adapter ready", map[string]string{"pbx": ""}, false, true, nil},
		{"adapter down", map[string]string{"pbx": "event socket 127.0.0.1:8021 not connected"}, false, false,
			[]string{"pbx: event socket 127.0.0.1:8021 not connected"}},
		{"draining", map[string]string{"pbx": ""}, true, false, []string{"draining: shutting down"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rd := &readiness{}
			for name, why := range tc.checks {
				rd.add(name, func() (bool, string) { return why == "", why })
			}
			rd.draining.Store(tc.draining)
			st := rd.status()
			if st.Ready != tc.ready || strings.Join(st.Reasons, "|") != strings.Join(tc.reasons, "|") || len(st.Checks) != len(tc.checks) {
				t.Fatalf("got %+v", st)
			}
		})
	}
}
