package callerid

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/callpop/callpop/call"
)

func newTest(t testing.TB, mod func(*Config)) *Normalizer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Profiles = []Profile{
		{DNIS: []string{"+31 800 123456", "0800123456"}, Region: "NL"},
		{DNIS: []string{"4420*"}, Region: "GB"},
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

func TestParse(t *testing.T) {
	n := newTest(t, nil)
	tests := []struct {
		name, raw, region string
		e164              string // "" = invalid
	}{
		{"US national", "(415) 555-0123", "US", "+14155550123"},
		{"US national with 1", "1-415-555-0123", "US", "+14155550123"},
		{"US dots", "415.555.0123", "US", "+14155550123"},
		{"E.164", "+14155550123", "NL", "+14155550123"},
		{"US fixture 011 from US", "011 31 20 123 4567", "US", "+31201234567"},
		{"00 from NL", "0031201234567", "NL", "+31201234567"},
		{"00 from US (not its IDD)", "0031201234567", "US", "+31201234567"},
		{"NL national fixture", "0201234567", "NL", "+31201234567"},
		{"NL national spaced", "020 123 4567", "NL", "+31201234567"},
		{"NL toll free", "0800123456", "NL", "+31800123456"},
		{"NL (0) after country code", "+31 (0)20-123 4567", "US", "+31201234567"},
		{"GB from US", "+44 20 7946 0000", "US", "+442079460000"},
		{"default region", "4155550123", "", "+14155550123"},
		{"lower-case region", "0201234567", "nl", "+31201234567"},
		{"tel URI", "tel:+1-415-555-0123;phone-context=example.com", "US", "+14155550123"},
		{"sip URI", "sip:+14155550123@host;user=phone", "NL", "+14155550123"},
		{"sips URI national", "sips:0201234567@pbx.example", "NL", "+31201234567"},
		{"sip URI in angle brackets", "<sip:+14155550123@host;user=phone>", "US", "+14155550123"},
		{"angle brackets without URI", "<+14155550123>", "US", ""},
		{"sip URI escaped plus", "sip:%2B14155550123@host", "US", "+14155550123"},
		{"SIP upper-case scheme", "SIP:+14155550123@host", "US", "+14155550123"},
		{"Arabic-Indic digits", "+١٤١٥٥٥٥٠١٢٣", "US", "+14155550123"},
		{"fullwidth digits", "＋１４１５５５５０１２３", "US", "+14155550123"},
		{"Devanagari national", "०२०१२३४५६७", "NL", "+31201234567"},
		{"NBSP and en dash", "020\u00a0123–4567", "NL", "+31201234567"},
		{"junk fixture", "+31 (0)20-123 4567 ext.12 ABC#*;x=1\"q'%&<>", "NL", ""},
		{"91 digits fixture", "0012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789", "NL", ""},
		{"40 digits", "1234567890123456789012345678901234567890", "US", ""},
		{"letters", "CALLME", "US", ""},
		{"vanity letters", "1-800-FLOWERS", "US", ""},
		{"control char", "+1415555\x000123", "US", ""},
		{"newline", "+14155550123\r\nX-Evil: 1", "US", ""},
		{"bidi control", "+1415\u202e5550123", "US", ""},
		{"invalid UTF-8", "+1415\xff5550123", "US", ""},
		{"plus inside", "1+4155550123", "US", ""},
		{"US number starting 0", "0201234567", "US", ""},
		{"too short", "1003", "US", ""},
		{"unassigned NL", "020000001", "NL", ""},
		{"empty", "", "US", ""},
		{"only punctuation", "()--", "US", ""},
		{"anonymous word", "anonymous", "US", ""},
		{"shell", "$(reboot)", "US", ""},
		{"long", string(make([]byte, 4000)), "US", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for round := 0; round < 2; round++ { // cold, then memoised
				got, err := n.Parse(tt.raw, tt.region)
				if tt.e164 == "" {
					if err == nil || !errors.Is(err, ErrInvalid) {
						t.Fatalf("round %d: Parse(%q) = %+v, %v; want ErrInvalid", round, tt.raw, got, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("round %d: Parse(%q): %v", round, tt.raw, err)
				}
				if got.E164 != tt.e164 || got.Digits != tt.e164[1:] {
					t.Fatalf("round %d: Parse(%q) = %s / %s, want %s", round, tt.raw, got.E164, got.Digits, tt.e164)
				}
			}
		})
	}
}

func TestNumberVariants(t *testing.T) {
	n := newTest(t, nil)
	got, err := n.Parse("0201234567", "NL")
	if err != nil {
		t.Fatal(err)
	}
	want := Number{E164: "+31201234567", National: "201234567", NationalFormat: "020 123 4567", Digits: "31201234567",
		CountryCode: 31, Region: "NL", Type: "fixed_line"}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for range 2 { // the second answer is the memo's
		if g := n.Geo(got); g != "Amsterdam" {
			t.Fatalf("Geo = %q, want Amsterdam", g)
		}
	}
	us, err := n.Parse("+14155550123", "")
	if err != nil {
		t.Fatal(err)
	}
	if us.National != "4155550123" || us.NationalFormat != "(415) 555-0123" || us.Region != "US" || us.CountryCode != 1 {
		t.Fatalf("US variants: %+v", us)
	}
	if s := fmt.Sprint(us.LogValue()); s == "" || strings.Contains(s, "4155550123") {
		t.Fatalf("LogValue leaks the number: %s", s)
	}
}

func TestAnonymous(t *testing.T) {
	n := newTest(t, func(c *Config) { c.Anonymous = append(c.Anonymous, "Geheim") })
	tests := []struct {
		raw  string
		want bool
	}{
		{"", true}, {"   ", true}, {"anonymous", true}, {"Anonymous", true}, {"UNKNOWN", true},
		{"restricted", true}, {"Private", true}, {"unavailable", true}, {"withheld", true}, {"geheim", true},
		{"0000000000", true}, {"0", true}, {"+00 000", true},
		{"sip:anonymous@anonymous.invalid", true}, {"sip:@host", true},
		{"+14155550123", false}, {"0201234567", false}, {"anon", false}, {"000a", false}, {"1003", false},
	}
	for _, tt := range tests {
		if got := n.Anonymous(tt.raw); got != tt.want {
			t.Errorf("Anonymous(%q) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestPick(t *testing.T) {
	n := newTest(t, nil)
	tests := []struct {
		name       string
		cli, ani   string
		privacy    bool
		region     string
		status     call.Match
		source     call.Source
		e164       string
		wantPrivAt bool
	}{
		{"CLI valid", "+14155550123", "+442079460000", false, "US", "", call.SourceCLI, "+14155550123", false},
		{"CLI national in NL", "0201234567", "", false, "NL", "", call.SourceCLI, "+31201234567", false},
		{"CLI invalid, ANI valid", "1003", "+14155550123", false, "US", "", call.SourceANI, "+14155550123", false},
		{"CLI junk, ANI valid", "ABC#", "4155550123", false, "US", "", call.SourceANI, "+14155550123", false},
		{"CLI empty, ANI valid", "", "+14155550123", false, "US", "", call.SourceANI, "+14155550123", false},
		{"CLI withheld, ANI valid", "anonymous", "+14155550123", false, "US", "", call.SourceANI, "+14155550123", true},
		{"privacy with number", "+14155550123", "", true, "US", "", call.SourceCLI, "+14155550123", true},
		{"anonymous", "anonymous", "", false, "US", call.MatchAnonymous, "", "", true},
		{"empty both", "", "", false, "US", call.MatchAnonymous, "", "", true},
		{"all zeros", "0000000000", "", false, "US", call.MatchAnonymous, "", "", true},
		{"empty, privacy", "", "", true, "US", call.MatchAnonymous, "", "", true},
		{"junk", "+31 (0)20-123 4567 ext.12 ABC#*;x=1\"q'%&<>", "", false, "NL", call.MatchInvalid, "", "", false},
		{"junk both", "1003", "CALLME", false, "US", call.MatchInvalid, "", "", false},
		{"junk CLI, anonymous ANI", "12", "anonymous", false, "US", call.MatchInvalid, "", "", false},
		{"anonymous CLI, junk ANI", "anonymous", "12", false, "US", call.MatchAnonymous, "", "", true},
		{"junk CLI, privacy", "ABC", "", true, "US", call.MatchAnonymous, "", "", true},
		{"default region", "4155550123", "", false, "", "", call.SourceCLI, "+14155550123", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := n.Pick(tt.cli, tt.ani, tt.privacy, tt.region)
			if r.Status != tt.status || r.Source != tt.source || r.Number.E164 != tt.e164 || r.Privacy != tt.wantPrivAt {
				t.Fatalf("Pick = %+v", r)
			}
			if tt.status == call.MatchInvalid && !errors.Is(r.Err, ErrInvalid) {
				t.Fatalf("invalid without ErrInvalid: %v", r.Err)
			}
			if tt.status != call.MatchInvalid && r.Err != nil {
				t.Fatalf("unexpected Err: %v", r.Err)
			}
		})
	}
}

func TestRegionFor(t *testing.T) {
	n := newTest(t, nil)
	tests := []struct{ dnis, want string }{
		{"0800123456", "NL"}, {"+31800123456", "NL"}, {"31 800 123 456", "NL"},
		{"+442079460000", "GB"}, {"+4412", "US"}, {"", "US"}, {"sales", "US"}, {"1003", "US"},
	}
	for _, tt := range tests {
		if got := n.RegionFor(tt.dnis); got != tt.want {
			t.Errorf("RegionFor(%q) = %q, want %q", tt.dnis, got, tt.want)
		}
	}
}

func TestMemoBounded(t *testing.T) {
	n := newTest(t, func(c *Config) { c.CacheSize = 8 })
	for i := 0; i < 100; i++ {
		_, _ = n.Parse(fmt.Sprintf("415555%04d", i), "US")
	}
	if l := n.memo.Len(); l != 8 {
		t.Fatalf("memo holds %d entries, want 8", l)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"default ok", func(*Config) {}, ""},
		{"bad region", func(c *Config) { c.DefaultRegion = "XX" }, "numbers.default_region"},
		{"empty region", func(c *Config) { c.DefaultRegion = "" }, "numbers.default_region"},
		{"negative cache", func(c *Config) { c.CacheSize = -1 }, "numbers.cache_size"},
		{"empty anonymous entry", func(c *Config) { c.Anonymous = []string{"x", " "} }, "numbers.anonymous[1]"},
		{"profile no dnis", func(c *Config) { c.Profiles = []Profile{{Region: "NL"}} }, "numbers.profiles[0].dnis"},
		{"profile bad dnis", func(c *Config) { c.Profiles = []Profile{{DNIS: []string{"sales"}, Region: "NL"}} }, "numbers.profiles[0].dnis[0]"},
		{"profile bad region", func(c *Config) { c.Profiles = []Profile{{DNIS: []string{"1"}, Region: "Holland"}} }, "numbers.profiles[0].region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want+":") {
				t.Fatalf("error %v does not name %s", err, tt.want)
			}
		})
	}
	if _, err := New(Config{DefaultRegion: "ZZ"}, nil); err == nil {
		t.Fatal("New accepted a bad config")
	}
}
