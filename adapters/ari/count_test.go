package ari_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
)

// counterSum is the sum over all label values of the counter family name on
// the default registry (0 when it has none yet).
func counterSum(t testing.TB, name string) float64 {
	t.Helper()
	fams, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// Each call is decided once, whatever channelvars carries and whatever the
// caller-ID functions add: a caller whose number is withheld but shown (a
// usable CLI, CALLERID(num-pres) prohibited) with a known customer's ANI, or
// one whose ANI differs from the CLI, is one router decision and one CRM
// look-up in the metrics.
func TestEachCallDecidedOnce(t *testing.T) {
	const budget = 2 * time.Second // about counting, not speed
	for _, mode := range []struct {
		name string
		vars []string
	}{
		{"GET", nil},
		{"channelvars", []string{"CALLPOP_CALL_ID", "CALLERID(ani)", "CALLERID(num-pres)"}},
	} {
		for _, spec := range []arisim.CallSpec{
			{CLI: "+31201234567", ANI: "+14155550123", NumPres: "prohib"},
			{CLI: "+31201234567", ANI: "+14155550123"},
			{CLI: "anonymous", ANI: "+14155550123", NumPres: "prohib"},
			{CLI: "+31201234567"},
		} {
			t.Run(fmt.Sprintf("%s/cli=%s,ani=%s,pres=%s", mode.name, spec.CLI, spec.ANI, spec.NumPres), func(t *testing.T) {
				sim, err := arisim.New(arisim.Options{Username: "ariuser", Password: "ariS3cret", ChannelVars: mode.vars})
				if err != nil {
					t.Fatal(err)
				}
				defer sim.Close()
				run(t, sim, pipeline(t, budget), budget, &sink{})
				decisions0 := counterSum(t, "callpop_router_decisions_total")
				lookups0 := counterSum(t, "callpop_crm_lookups_total")
				const n = 3
				for range n {
					r := settle(t, sim, sim.OfferCall(spec))
					if r.Continued.IsZero() || r.Vars["CALLPOP_MATCH"] == "" {
						t.Fatalf("not decided: %+v", r)
					}
				}
				if got := counterSum(t, "callpop_router_decisions_total") - decisions0; got != n {
					t.Errorf("%v router decisions for %d calls", got, n)
				}
				if got := counterSum(t, "callpop_crm_lookups_total") - lookups0; got != n {
					t.Errorf("%v CRM look-ups for %d calls", got, n)
				}
			})
		}
	}
}
