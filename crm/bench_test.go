package crm

import (
	"context"
	"testing"

	"github.com/callpop/callpop/callerid"
)

func benchCRM(b *testing.B, redisTier bool) *CRM {
	srv := newCRMServer(b, testCustomers)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{httpSourceConfig("main", srv.URL)}
	cc := testCacheConfig()
	var c *CRM
	if redisTier {
		_, rdb := startRedis(b)
		cc.LocalSize = 0
		c = newTestCRM(b, cfg, cc, rdb)
	} else {
		c = newTestCRM(b, cfg, cc, nil)
	}
	if _, err := c.Lookup(context.Background(), q("+14155550123")); err != nil {
		b.Fatal(err)
	}
	settle(b, c)
	return c
}

// BenchmarkCacheHitLocal: a repeat caller served by the in-process tier.
func BenchmarkCacheHitLocal(b *testing.B) {
	c := benchCRM(b, false)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r, err := c.Lookup(ctx, q("+14155550123")); err != nil || !r.Cached {
			b.Fatal(r, err)
		}
	}
}

// BenchmarkCacheHitRedis: served by Redis (no in-process tier), one HGET per look-up.
func BenchmarkCacheHitRedis(b *testing.B) {
	c := benchCRM(b, true)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r, err := c.Lookup(ctx, q("+14155550123")); err != nil || !r.Cached {
			b.Fatal(r, err)
		}
	}
}

// BenchmarkWarmLookup: normalise a raw CLI (memoised) and look it up (in-process hit).
func BenchmarkWarmLookup(b *testing.B) {
	c := benchCRM(b, false)
	ncfg := callerid.DefaultConfig()
	n, err := callerid.New(ncfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	n.Pick("(415) 555-0123", "", false, "US") // the cold parse is BenchmarkParseCold's
	b.ReportAllocs()
	for b.Loop() {
		res := n.Pick("(415) 555-0123", "", false, "US")
		num := res.Number
		r, err := c.Lookup(ctx, Query{E164: num.E164, National: num.National, Digits: num.Digits})
		if err != nil || r.Customer == nil {
			b.Fatal(r, err)
		}
	}
}
