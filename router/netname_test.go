package router

import (
	"context"
	"testing"

	"github.com/callpop/callpop/call"
)

// router.new_customer_url takes {network_name}: the caller name the PBX
// saw, URL-escaped; empty for a placeholder name; no URL at all when the
// caller withheld the number.
func TestNewCustomerURLNetworkName(t *testing.T) {
	cfg := testConfig()
	cfg.NewCustomerURL = "https://crm.example/new?phone={e164}&name={network_name}"
	te := newTestEnv(t, cfg, nil, testBudget)
	for _, tc := range []struct {
		name string
		c    call.Call
		want string
	}{
		{"a name", call.Call{ID: "n1", CLI: "+31 6 1111 2222", CLIName: "Bakkerij Jansen & Zn"}, "https://crm.example/new?phone=%2B31611112222&name=Bakkerij+Jansen+%26+Zn"},
		{"a placeholder", call.Call{ID: "n2", CLI: "+31 6 1111 2222", CLIName: "Anonymous"}, "https://crm.example/new?phone=%2B31611112222&name="},
		{"the number as name", call.Call{ID: "n3", CLI: "+31 6 1111 2222", CLIName: "+31611112222"}, "https://crm.example/new?phone=%2B31611112222&name="},
		{"privacy", call.Call{ID: "n4", CLI: "+31622223333", CLIName: "Jan Jansen", Privacy: true}, ""},
	} {
		d := te.router.Decide(context.Background(), tc.c)
		if d.Match != call.MatchMiss || d.PopURL != tc.want {
			t.Errorf("%s: %s pop url %q, want %q", tc.name, d.Match, d.PopURL, tc.want)
		}
	}
}
