package main

import (
	"io"
	"net/http"
	"testing"
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
	url := newTestServer(b, DefaultConfig()).URL + "/v1/lookup?number=%2B14155550123"
	get := func() {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	get() // warm the cache
	b.ResetTimer()
	for b.Loop() {
		get()
	}
}
