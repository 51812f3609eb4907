// Package testrouter builds the real decision path for tests: callerid →
// crm (in-process cache, no Redis) → router.
package testrouter

import (
	"log/slog"
	"testing"
	"time"

	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/router"
)

// New returns a router that reads national numbers in region, asks crmCfg's
// sources (none: the embedded sample CSV) and decides with cfg. The CRM is
// closed when the test ends.
func New(t testing.TB, region string, crmCfg crm.Config, cfg router.Config, budget time.Duration) *router.Router {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ncfg := callerid.DefaultConfig()
	ncfg.DefaultRegion = region
	numbers, err := callerid.New(ncfg, log)
	if err != nil {
		t.Fatal(err)
	}
	c, err := crm.New(crmCfg, crm.DefaultCacheConfig(), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r, err := router.New(cfg, router.Deps{Numbers: numbers, CRM: c, Budget: budget, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
