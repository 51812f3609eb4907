package router

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The JSON of `callpop lookup` and /v1/lookup is a contract for scripts:
// compared with testdata golden files.
func TestDecisionJSONGolden(t *testing.T) {
	tests := []struct {
		name string
		d    call.Decision
	}{
		{"hit", call.Decision{CallID: "1763780000.42", Match: call.MatchHit, E164: "+31201234567", Source: call.SourceCLI,
			Customer: &call.Customer{ID: "C-1001", Name: "Jan de Vries", Tier: "vip", Language: "nl", URL: "https://crm.example/c/1001",
				Extra: map[string]any{"region": "NL"}},
			Priority: 10, QueuePrio: 10, BaseScore: 600, Queue: "vip", Skill: "senior", Language: "nl",
			Flags: []string{"vip", "ani_verified"}, PopURL: "https://crm.example/c/1001", Profile: "default",
			Rules: []string{"vip-first"}, Extra: map[string]string{"SEGMENT": "enterprise"}, Elapsed: 1500 * time.Microsecond}},
		{"multiple", call.Decision{CallID: "1763780000.43", Match: call.MatchMultiple, E164: "+442079460018", Source: call.SourceCLI,
			Customer: &call.Customer{ID: "C1022", Name: "Siobhan O'Brien", Tier: "gold", Language: "en", URL: "https://crm.example/customers/C1022",
				Lists: map[string][]map[string]any{
					"history": {{"at": "2026-12-02T09:05:00Z", "channel": "phone", "summary": "Called about the open order"}},
					"tickets": {{"at": "2026-12-02T09:10:00Z", "status": "open", "summary": "Open order 88120", "url": "https://crm.example/tickets/T-4733"}}}},
			Candidates: []call.Candidate{{ID: "C1022", Name: "Siobhan O'Brien", Tier: "gold", URL: "https://crm.example/customers/C1022"},
				{ID: "C1003", Name: "Liam O'Brien", Tier: "standard", URL: "https://crm.example/customers/C1003"}},
			Priority: 5, QueuePrio: 5, BaseScore: 300, Queue: "support", Language: "en",
			PopURL: "https://crm.example/customers/C1022", Profile: "default", Elapsed: 900 * time.Microsecond}},
		{"anonymous", call.Decision{Match: call.MatchAnonymous, Privacy: true, Priority: 1, QueuePrio: 1, BaseScore: 60,
			Queue: "general", Profile: "default", Rules: []string{"unknown-caller"}, Elapsed: 20 * time.Microsecond}},
		{"hostile", call.Decision{Match: call.MatchHit, E164: "+31209999999\n", Source: call.SourceCLI,
			Customer: &call.Customer{ID: "C-6666\r\nX", Name: "Evil\" ${SHELL(id)}\nHANGUP\\", URL: "https://x.example/\"><script>"},
			Queue:    "q;${x}", PopURL: "https://x.example/a b\"c", Err: "bad\nline"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := EncodeJSON(&b, DecisionJSON(tt.d), "  "); err != nil {
				t.Fatal(err)
			}
			got := b.Bytes()
			path := filepath.Join("testdata", "decision-"+tt.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Fatalf("DecisionJSON differs from %s\n got:\n%s", path, got)
			}
		})
	}
}
