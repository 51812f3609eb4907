package callerid

import "testing"

// One rule for numbers.profiles and router.profiles: an exact entry of any
// list wins over every prefix, the longest prefix over a shorter one, the
// earlier list on a tie; entries and numbers compared by their digits.
func TestDNISMatcher(t *testing.T) {
	m := NewDNISMatcher([][]string{
		{"+44*"},                             // 0: the country
		{"+44207946*"},                       // 1: a London range, listed before its own line
		{"+442079460018"},                    // 2: one line in that range
		{"+44207946*", "+44 20 7946 0018"},   // 3: both again: the earlier lists win
		{"0800 123*", "0800123456", "0900*"}, // 4
		{"0800*"},                            // 5: shorter than 4's 0800123*
	})
	tests := []struct {
		dnis string
		want int
	}{
		{"+442079460018", 2},      // exact beats the earlier prefixes
		{"+44 (20) 7946-0018", 2}, // digits compared
		{"tel:+442079460018", 2},
		{"+442079460019", 1}, // longest prefix beats the earlier, shorter one; the tie goes to the earlier list
		{"+44207946", 1},     // a prefix matches the number equal to it
		{"+441130000000", 0},
		{"0800123456", 4},
		{"0800123999", 4}, // 0800123* is longer than 0800*
		{"0800999999", 5},
		{"09001", 4},
		{"0700", -1},
		{"", -1},
		{"anonymous", -1},
	}
	for _, tt := range tests {
		if got := m.Match(tt.dnis); got != tt.want {
			t.Errorf("Match(%q) = %d, want %d", tt.dnis, got, tt.want)
		}
	}
	if got := NewDNISMatcher(nil).Match("0800123456"); got != -1 {
		t.Errorf("no lists: %d", got)
	}
}

// numbers.profiles follows the rule: the region of the exact entry's
// profile, though a prefix that also matches is listed first.
func TestRegionForExactBeforePrefix(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DefaultRegion = "US"
	cfg.Profiles = []Profile{
		{DNIS: []string{"+44*"}, Region: "GB"},
		{DNIS: []string{"+44207946*"}, Region: "IE"},
		{DNIS: []string{"+442079460018"}, Region: "NL"},
	}
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for dnis, want := range map[string]string{
		"+442079460018": "NL", "+442079460019": "IE", "+441130000000": "GB", "0800123456": "US", "": "US",
	} {
		if got := n.RegionFor(dnis); got != want {
			t.Errorf("RegionFor(%q) = %q, want %q", dnis, got, want)
		}
	}
}
