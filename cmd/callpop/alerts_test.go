package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// alertRules is a Prometheus rules file, as deploy/prometheus/alerts.yaml
// writes it.
type alertRules struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// declaredMetrics are the metric names the project's (non-test) Go source
// declares.
func declaredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	re := regexp.MustCompile(`Name:\s*"(callpop_[a-z0-9_]+)"`)
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// The alert rules decode strictly, cover what operations.md promises
// (budget misses, CRM breaker open, PBX disconnected, reconcile spikes),
// and name only metrics callpop has.
func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	if err := yaml.UnmarshalStrict(raw, &rules); err != nil {
		t.Fatal(err)
	}
	declared := declaredMetrics(t)
	if !declared["callpop_ari_budget_miss_total"] {
		t.Fatalf("found %d declared metrics, not callpop_ari_budget_miss_total", len(declared))
	}
	seen := map[string]bool{}
	ops, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			seen[r.Alert] = true
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("rule %q: want alert, expr, labels.severity, annotations.summary and description", r.Alert)
			}
			for _, m := range regexp.MustCompile(`callpop_[a-z0-9_]+`).FindAllString(r.Expr, -1) {
				if !declared[m] {
					t.Errorf("%s: metric %s is not one callpop declares", r.Alert, m)
				}
			}
			// The adapters' metrics are per PBX (pbx label): a rule that
			// aggregated it away would hide one Asterisk down behind another.
			if strings.Contains(r.Expr, "callpop_ari_") || strings.Contains(r.Expr, "callpop_esl_") {
				for _, by := range regexp.MustCompile(`\bby\s*\(([^)]*)\)`).FindAllStringSubmatch(r.Expr, -1) {
					if !regexp.MustCompile(`\bpbx\b`).MatchString(by[1]) {
						t.Errorf("%s: groups the adapters' metrics by (%s), without pbx", r.Alert, by[1])
					}
				}
			}
			if !strings.Contains(string(ops), r.Alert) {
				t.Errorf("docs/operations.md does not explain %s", r.Alert)
			}
		}
	}
	for _, want := range []string{"CallpopBudgetMisses", "CallpopCRMBreakerOpen", "CallpopAsteriskDisconnected", "CallpopFreeSWITCHReconnecting", "CallpopReconcileSpike"} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}
}
