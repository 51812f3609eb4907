package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/callpop/callpop/internal/apiauth"
)

// BenchmarkLoadConfigExample: reading, decoding and validating
// config.example.yaml (start-up and every reload).
func BenchmarkLoadConfigExample(b *testing.B) {
	for b.Loop() {
		if _, err := loadConfig(examplePath, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHTTPLookupWarm: GET /v1/lookup over loopback HTTP through the
// whole handler and pipeline, the number in the in-process cache.
func BenchmarkHTTPLookupWarm(b *testing.B) {
	req, _ := http.NewRequest("GET", newTestServer(b, DefaultConfig()).URL+"/v1/lookup?number=%2B14155550123", nil)
	benchGet(b, req)
}

// benchGet sends req once to warm the cache, then once per iteration; every
// answer must be a 200.
func benchGet(b *testing.B, req *http.Request) {
	get := func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	get()
	for b.Loop() {
		get()
	}
}

// BenchmarkHTTPRouteWarm: GET /v1/route?field=queue over loopback HTTP, a
// dialplan's request: as a loopback client with no api.keys, and with a
// Bearer key (what the guard adds).
func BenchmarkHTTPRouteWarm(b *testing.B) {
	for _, withKey := range []bool{false, true} {
		name := "loopback"
		cfg := DefaultConfig()
		if withKey {
			name = "bearer-key"
			cfg.API.Keys = []apiauth.KeyConfig{{Name: "dialplan", Scopes: []string{apiauth.ScopeRoute}}}
			cfg.API.RateLimit = apiauth.RateLimit{PerSecond: 1e9, Burst: 1 << 30} // counted, never reached
			b.Setenv(apiauth.EnvName("dialplan"), "bench-dialplan-key-0123456789")
		}
		b.Run(name, func(b *testing.B) {
			url := newTestServer(b, cfg).URL + "/v1/route?number=%2B14155550123&field=queue"
			req, _ := http.NewRequest("GET", url, nil)
			if withKey {
				req.Header.Set("Authorization", "Bearer bench-dialplan-key-0123456789")
			}
			benchGet(b, req)
		})
	}
}
