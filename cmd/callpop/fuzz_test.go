package main

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeConfig: any file an admin (or a broken deploy) puts in place
// gives a config or an error, never a panic.
func FuzzDecodeConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/config/*.yaml")
	files = append(files, examplePath)
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("crm: {sources: [{name: a, kind: csv, path: x, timeout: 1s}]}\n"))
	f.Add([]byte("router: {tier_priority: {vip: 10}, rule_sets: {b: [{name: x, then: {queue: q}}]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := decodeConfig(data, noEnv)
		if err == nil {
			_ = cfg.Validate()
		}
	})
}
