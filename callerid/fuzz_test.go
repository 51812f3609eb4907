package callerid

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any input parses or fails with ErrInvalid, never panics, and a
// parsed number is plain E.164.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"+31 (0)20-123 4567 ext.12 ABC#*;x=1\"q'%&<>",
		"0012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
		"anonymous", "0000000000", "sip:+14155550123@host;user=phone", "+14155550123", "0201234567",
		"tel:+1-415-555-0123;phone-context=x", "０２０１２３４５６７", "", "sip:%2B1@h",
	} {
		f.Add(s, "US")
		f.Add(s, "NL")
	}
	n := newTest(f, nil)
	f.Fuzz(func(t *testing.T, raw, region string) {
		if len(region) > 3 {
			region = region[:3]
		}
		num, err := n.Parse(raw, region)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrInvalid", raw, err)
			}
		} else {
			if !strings.HasPrefix(num.E164, "+") || len(num.E164) > 16 || strings.Trim(num.Digits, "0123456789") != "" {
				t.Fatalf("Parse(%q) = %+v: not E.164", raw, num)
			}
		}
		_ = n.Anonymous(raw)
		r := n.Pick(raw, raw, false, region)
		if r.Status == "" && r.Number.E164 == "" {
			t.Fatalf("Pick(%q) usable without a number: %+v", raw, r)
		}
		_ = n.RegionFor(raw)
	})
}
