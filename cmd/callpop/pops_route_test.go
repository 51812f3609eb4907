package main

import (
	"net/http"
	"strings"
	"testing"
)

// The sidecar serves the panel's choice and action endpoints, under the
// agent token: without one they answer 401, not 404.
func TestPopEndpointsServed(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Popper.TokenSecret = "0123456789abcdef-test-secret"
	srv := newTestServer(t, cfg)
	for _, path := range []string{"/v1/pops/1/choice", "/v1/pops/1/actions/log_call"} {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without a token: %d, want 401", path, resp.StatusCode)
		}
	}
}
