package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

// With popper.softphone configured, /v1/route answers with the softphone's
// caller name, as an adapter-enriched channel would get it.
func TestRouteCarriesSoftphoneName(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Popper.Softphone.CallerName = "{tier}: {name}"
	srv := newTestServer(t, cfg)
	resp, err := http.Get(srv.URL + "/v1/route?number=%2B31201234567&field=caller_name")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "VIP: Anna de Vries" {
		t.Fatalf("caller_name: %d %q", resp.StatusCode, body)
	}
}

// The sidecar's root (exactly "/") sends a browser to the agent panel,
// dropping the query; anything else unknown stays 404.
func TestRootRedirectsToPanel(t *testing.T) {
	srv := newTestServer(t, DefaultConfig())
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]string{"/": "303 /agent", "/?token=secret": "303 /agent", "/favicon.ico": "404 ", "/agent/x": "404 "} {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("Location")); got != want {
			t.Errorf("GET %s: %s, want %s", path, got, want)
		}
	}
}

// newTestServer serves the sidecar's whole HTTP handler (router, popper,
// probes) on cfg until the test ends.
func newTestServer(t testing.TB, cfg Config) *httptest.Server {
	t.Helper()
	p, err := newPipeline(cfg, slog.New(slog.DiscardHandler), pipelineOptions{Popper: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newHandler(p, &readiness{}, context.Background()))
	t.Cleanup(func() { srv.Close(); p.Close() })
	return srv
}
