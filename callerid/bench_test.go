package callerid

import (
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkParseCold parses a different number every time (memo misses).
func BenchmarkParseCold(b *testing.B) {
	n := newTest(b, func(c *Config) { c.CacheSize = 1 })
	_, _ = n.Parse("+14155550199", "US") // one-time metadata and geocoding loads are not per call
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := n.Parse("+1415555"+strconv.Itoa(1000+i%9000), "US"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseMemo parses a repeat caller (memo hit).
func BenchmarkParseMemo(b *testing.B) {
	n := newTest(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.Parse("0201234567", "NL"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPick is a whole CLI/ANI pick for a repeat caller.
func BenchmarkPick(b *testing.B) {
	n := newTest(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		if r := n.Pick("+14155550123", "", false, "US"); r.Status != "" {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkFirstParseHeap reports the heap a Normalizer holds after its first
// parse (the phone-number metadata it loads stays for the process's life).
// Run with -benchtime 1x in a fresh process.
func BenchmarkFirstParseHeap(b *testing.B) {
	for b.Loop() {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		n := newTest(b, nil)
		if _, err := n.Parse("0201234567", "NL"); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapInuse)-float64(m0.HeapInuse), "heapB")
		runtime.KeepAlive(n)
	}
}
