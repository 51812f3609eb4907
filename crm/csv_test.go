package crm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testCSV = `id,name,tier,language,url,phones,company
C1,Multi Number,vip,nl,https://crm/c/1,"+31 20 123 4567; 06-12345678 | 0031 10 123 4567",Acme
C2,Space Separated,gold,en,https://crm/c/2,+1 415 555 0123 +1 (212) 555-0142,
C3,Bad Numbers,standard,en,,not-a-number;12;+44 20 7946 0018,Widgets
C4,Duplicate,standard,en,,+31201234567,
`

func TestCSVSourceMultiNumber(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customers.csv")
	if err := os.WriteFile(path, []byte(testCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := newCSVFileSource(context.Background(), "csv", path, "NL", nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct{ e164, id string }{
		{"+31201234567", "C1"}, {"+31612345678", "C1"}, {"+31101234567", "C1"},
		{"+14155550123", "C2"}, {"+12125550142", "C2"},
		{"+442079460018", "C3"},
		{"+31999999999", ""},
	}
	for _, tt := range tests {
		c, err := s.Lookup(context.Background(), q(tt.e164))
		if tt.id == "" {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s: %+v, %v; want a miss", tt.e164, c, err)
			}
			continue
		}
		if err != nil || c.ID != tt.id {
			t.Fatalf("%s: %+v, %v; want %s", tt.e164, c, err, tt.id)
		}
	}
	c, _ := s.Lookup(context.Background(), q("+31612345678"))
	if len(c.Phones) != 3 || c.Extra["company"] != "Acme" || c.Tier != "vip" || c.URL != "https://crm/c/1" {
		t.Fatalf("record: %+v", c)
	}
	if s.Len() != 4 {
		t.Fatalf("Len = %d, want 4", s.Len())
	}
}

func TestCSVSourceReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "customers.csv")
	if err := os.WriteFile(path, []byte("id,name,phones\nC1,Before,+14155550123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := newCSVFileSource(context.Background(), "csv", path, "US", nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c, err := s.Lookup(context.Background(), q("+14155550123")); err != nil || c.Name != "Before" {
		t.Fatalf("before: %+v, %v", c, err)
	}
	// Replace the file the way editors and deploy tools do: write + rename.
	tmp := filepath.Join(dir, ".customers.csv.tmp")
	if err := os.WriteFile(tmp, []byte("id,name,phones\nC1,After,+14155550123\nC2,New,+12125550142\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the CSV reload", func() bool {
		c, err := s.Lookup(context.Background(), q("+12125550142"))
		return err == nil && c.Name == "New"
	})
	if c, _ := s.Lookup(context.Background(), q("+14155550123")); c == nil || c.Name != "After" {
		t.Fatalf("after: %+v", c)
	}
	// A broken file keeps the last good data.
	if err := os.WriteFile(path, []byte("no,header,here\n\"unterminated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if c, err := s.Lookup(context.Background(), q("+12125550142")); err != nil || c.Name != "New" {
		t.Fatalf("after a broken file: %+v, %v", c, err)
	}
}

func TestCSVSourceErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := newCSVFileSource(context.Background(), "csv", filepath.Join(dir, "missing.csv"), "US", nil, quietLog()); err == nil {
		t.Fatal("missing file accepted")
	}
	bad := filepath.Join(dir, "bad.csv")
	_ = os.WriteFile(bad, []byte("id,name\nC1,No phones column\n"), 0o644)
	if _, err := newCSVFileSource(context.Background(), "csv", bad, "US", nil, quietLog()); err == nil || !strings.Contains(err.Error(), "phones") {
		t.Fatalf("CSV without phones column: %v", err)
	}
}

// TestSampleCSV: the embedded default CRM loads, holds ~20 customers, and the
// fixture numbers hit.
func TestSampleCSV(t *testing.T) {
	c := newTestCRM(t, DefaultConfig(), testCacheConfig(), nil)
	if got := c.Sources(); len(got) != 1 || got[0] != "sample" {
		t.Fatalf("default sources: %v", got)
	}
	for _, tt := range []struct{ e164, name, tier string }{
		{"+31201234567", "Anna de Vries", "vip"},
		{"+14155550123", "Jane Doe", "gold"},
		{"+31701234567", "Fleur van Dijk", "standard"},
	} {
		r, err := c.Lookup(context.Background(), q(tt.e164))
		if err != nil || customerName(r.Customer) != tt.name || r.Customer.Tier != tt.tier || r.Source != "sample" {
			t.Fatalf("%s: %+v, %v", tt.e164, r, err)
		}
	}
	s, err := newSampleSource("US", quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() < 20 {
		t.Fatalf("sample has %d customers, want ≥ 20", s.Len())
	}
	if len(SampleCSV()) == 0 {
		t.Fatal("SampleCSV empty")
	}
}
