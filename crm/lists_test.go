package crm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/testpg"
	"github.com/jackc/pgx/v5"
)

// jsonServer answers every request with body (a real HTTP server on loopback).
func jsonServer(t *testing.T, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// bigItems is n list items of fields scalar fields each, one string of 10 KB.
func bigItems(n, fields int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		it := map[string]any{"summary": strings.Repeat("s", 10<<10)}
		for f := 1; len(it) < fields; f++ {
			it[fmt.Sprintf("f%02d", f)] = f
		}
		it["nested"] = map[string]any{"dropped": true} // not a scalar: never kept
		out[i] = it
	}
	return out
}

// checkBounds fails unless every list of c holds at most MaxListItems items
// of at most MaxItemFields scalar fields, strings capped.
func checkBounds(t *testing.T, c *call.Customer, list string, wantItems int) {
	t.Helper()
	items, ok := c.Lists[list]
	if !ok || len(items) != wantItems {
		t.Fatalf("list %s: %d items (present %v), want %d", list, len(items), ok, wantItems)
	}
	for i, it := range items {
		if len(it) > MaxItemFields {
			t.Fatalf("list %s item %d: %d fields, want at most %d", list, i, len(it), MaxItemFields)
		}
		for k, v := range it {
			switch v := v.(type) {
			case string:
				if len(v) > maxFieldLen {
					t.Fatalf("list %s item %d field %s: %d bytes", list, i, k, len(v))
				}
			case float64, bool, int32, int64:
			default:
				t.Fatalf("list %s item %d field %s: %T is not a scalar", list, i, k, v)
			}
		}
	}
}

func TestHTTPSourceLists(t *testing.T) {
	answer := map[string]any{"data": []any{map[string]any{
		"id": "C1", "name": "Jane Doe", "tier": "gold",
		"interactions": []any{
			map[string]any{"at": "2026-01-02T10:00:00Z", "channel": "phone", "summary": "called", "meta": map[string]any{"x": 1}},
			map[string]any{"at": "2026-01-01T10:00:00Z", "channel": "mail", "summary": "wrote"},
			"not an object",
		},
		"tickets": []any{map[string]any{"created": "2026-01-03", "subject": "Broken", "state": "open", "link": "https://crm/t/1", "secret": "x"}},
		"big":     bigItems(MaxListItems+1, MaxItemFields+1),
	}}}
	b, _ := json.Marshal(answer)
	srv := jsonServer(t, string(b))
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "api", Kind: "http", URL: srv.URL + "/?p={e164}",
		Fields:     map[string]string{"id": "data.0.id", "name": "data.0.name", "tier": "data.0.tier"},
		Lists:      map[string]string{"history": "data.0.interactions", "tickets": "data.0.tickets", "big": "data.0.big", "absent": "data.0.nope"},
		ListFields: map[string]map[string]string{"tickets": {"at": "created", "summary": "subject", "status": "state", "url": "link"}}}}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	r, err := c.Lookup(context.Background(), q("+14155550123"))
	if err != nil || r.Customer == nil || r.Candidates != nil {
		t.Fatalf("lookup: %+v, %v", r, err)
	}
	cu := r.Customer
	h := cu.Lists["history"]
	if len(h) != 2 || h[0]["summary"] != "called" || h[0]["channel"] != "phone" || h[1]["at"] != "2026-01-01T10:00:00Z" || len(h[0]) != 3 {
		t.Fatalf("history: %#v", h)
	}
	tk := cu.Lists["tickets"]
	if len(tk) != 1 || len(tk[0]) != 4 || tk[0]["status"] != "open" || tk[0]["summary"] != "Broken" || tk[0]["url"] != "https://crm/t/1" || tk[0]["at"] != "2026-01-03" {
		t.Fatalf("tickets (list_fields): %#v", tk)
	}
	if _, ok := cu.Lists["absent"]; ok {
		t.Fatalf("a list the answer lacks: %#v", cu.Lists)
	}
	checkBounds(t, cu, "big", MaxListItems)
	if cu.Extra != nil {
		t.Fatalf("extra: %#v", cu.Extra)
	}
}

func TestHTTPSourceSeveralMatches(t *testing.T) {
	t.Run("top-level array", func(t *testing.T) {
		srv := jsonServer(t, `[{"id":"A","name":"Ann","tier":"standard","history":[{"at":"2026-01-01"}]},{"id":"B","name":"Bob","tier":"vip"},{"nobody":1},{"id":"C","name":"Cy"}]`)
		cfg := DefaultConfig()
		cfg.Sources = []SourceConfig{{Name: "api", Kind: "http", URL: srv.URL + "/?p={e164}", Lists: map[string]string{"history": "history"}}}
		c := newTestCRM(t, cfg, testCacheConfig(), nil)
		r, err := c.Lookup(context.Background(), q("+14155550123"))
		if err != nil || len(r.Candidates) != 3 || r.Customer != r.Candidates[0] {
			t.Fatalf("lookup: %+v, %v", r, err)
		}
		if ids := []string{r.Candidates[0].ID, r.Candidates[1].ID, r.Candidates[2].ID}; strings.Join(ids, ",") != "A,B,C" {
			t.Fatalf("candidates %v", ids)
		}
		if len(r.Candidates[0].Lists["history"]) != 1 || r.Candidates[0].Extra["history"] != nil {
			t.Fatalf("A: %+v", r.Candidates[0])
		}
	})
	t.Run("mapped array, each record's lists", func(t *testing.T) {
		var recs []any
		for i := range 12 {
			recs = append(recs, map[string]any{"crm_id": i, "n": fmt.Sprintf("Person %d", i), "tickets": []any{map[string]any{"s": fmt.Sprint("t", i)}}})
		}
		b, _ := json.Marshal(map[string]any{"data": recs})
		srv := jsonServer(t, string(b))
		cfg := DefaultConfig()
		cfg.Sources = []SourceConfig{{Name: "api", Kind: "http", URL: srv.URL + "/?p={e164}",
			Fields: map[string]string{"id": "data.0.crm_id", "name": "data.0.n"}, Lists: map[string]string{"tickets": "data.0.tickets"}}}
		c := newTestCRM(t, cfg, testCacheConfig(), nil)
		r, err := c.Lookup(context.Background(), q("+14155550123"))
		if err != nil || len(r.Candidates) != call.MaxCandidates {
			t.Fatalf("lookup: %d candidates, %v", len(r.Candidates), err)
		}
		for i, cu := range r.Candidates {
			if cu.ID != fmt.Sprint(i) || cu.Name != fmt.Sprintf("Person %d", i) || cu.Lists["tickets"][0]["s"] != fmt.Sprint("t", i) {
				t.Fatalf("candidate %d: %+v", i, cu)
			}
		}
	})
}

func TestListConfigValidation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{
		{Name: "a", Kind: "http", URL: "https://crm.example/?p={e164}", Lists: map[string]string{"Bad-Name": "x", "ok": "y"},
			ListFields: map[string]map[string]string{"other": {"a": "b"}}},
		{Name: "b", Kind: "postgres", DSN: "postgres://127.0.0.1/x", Query: "SELECT 1 WHERE $1 = ''", Lists: map[string]string{"history": "SELECT 1"},
			ListFields: map[string]map[string]string{"history": {"a": "b"}}},
		{Name: "c", Kind: "csv", Path: "x.csv", Lists: map[string]string{"tickets": " "}},
	}
	err := cfg.Validate()
	for _, want := range []string{"crm.sources[0].lists.Bad-Name", "crm.sources[0].list_fields.other", "crm.sources[1].lists.history: the query must use $1",
		"crm.sources[1].list_fields: only for kind http", "crm.sources[2].lists.tickets: empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("want %q in %v", want, err)
		}
	}
}

const pgListSchema = `
CREATE TABLE people (id text PRIMARY KEY, name text NOT NULL, tier text, phone text, updated timestamptz);
CREATE TABLE interactions (customer_id text, at timestamptz, channel text, summary text);
CREATE TABLE wide (customer_id text, n int, ` + "%s" + `);
INSERT INTO people VALUES ('P1', 'Solo', 'gold', '+14155550123', now()),
	('P2', 'Ann Family', 'standard', '+31201234567', now()), ('P3', 'Bob Family', 'vip', '+31201234567', now());
INSERT INTO interactions SELECT 'P1', now() - make_interval(days => g), 'phone', 'call ' || g FROM generate_series(1, 3) g;
INSERT INTO interactions VALUES ('P3', now(), 'chat', 'hello');
INSERT INTO wide SELECT 'P1', g, ` + "%s" + ` FROM generate_series(1, 21) g;
`

func TestPostgresLists(t *testing.T) {
	pg := testpg.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	var cols, vals []string
	for i := 1; i <= MaxItemFields; i++ { // with n and customer_id: 18 columns, 17 besides the key
		cols = append(cols, fmt.Sprintf("c%02d text", i))
		vals = append(vals, "repeat('x', 10240)")
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(pgListSchema, strings.Join(cols, ", "), strings.Join(vals, ", "))); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "sql", Kind: "postgres", DSN: pg.DSN,
		Query: "SELECT id, name, tier FROM people WHERE phone = $1 ORDER BY id",
		Lists: map[string]string{
			"history": "SELECT at, channel, summary FROM interactions WHERE customer_id = $1 ORDER BY at DESC LIMIT 5",
			"wide":    "SELECT * FROM wide WHERE customer_id = $1 ORDER BY n",
		}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	r, err := c.Lookup(ctx, q("+14155550123"))
	if err != nil || r.Customer == nil || r.Candidates != nil {
		t.Fatalf("hit: %+v, %v", r, err)
	}
	h := r.Customer.Lists["history"]
	if len(h) != 3 || h[0]["summary"] != "call 1" || h[2]["summary"] != "call 3" || h[0]["channel"] != "phone" || h[0]["at"] == nil {
		t.Fatalf("history: %#v", h)
	}
	checkBounds(t, r.Customer, "wide", MaxListItems)

	r, err = c.Lookup(ctx, q("+31201234567"))
	if err != nil || len(r.Candidates) != 2 || r.Candidates[0].ID != "P2" || r.Candidates[1].ID != "P3" {
		t.Fatalf("several rows: %+v, %v", r, err)
	}
	if len(r.Candidates[0].Lists["history"]) != 0 || r.Candidates[1].Lists["history"][0]["summary"] != "hello" {
		t.Fatalf("each candidate's lists: %#v / %#v", r.Candidates[0].Lists, r.Candidates[1].Lists)
	}

	// A miss runs no list query; a broken list query is the source's error.
	bad := DefaultConfig()
	bad.Sources = []SourceConfig{{Name: "sql", Kind: "postgres", DSN: pg.DSN, Query: "SELECT id, name FROM people WHERE phone = $1",
		Lists: map[string]string{"history": "SELECT * FROM nope WHERE customer_id = $1"}}}
	cb := newTestCRM(t, bad, testCacheConfig(), nil)
	if r, err := cb.Lookup(ctx, q("+442079460000")); err != nil || r.Customer != nil {
		t.Fatalf("miss with a broken list query: %+v, %v", r, err)
	}
	if _, err := cb.Lookup(ctx, q("+14155550123")); err == nil || !strings.Contains(err.Error(), "list history") {
		t.Fatalf("broken list query on a hit: %v", err)
	}
}

func TestCSVListsAndSharedNumbers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var wide strings.Builder
	wide.WriteString("customer_id")
	for i := 1; i <= MaxItemFields+1; i++ {
		fmt.Fprintf(&wide, ",f%02d", i)
	}
	wide.WriteString("\n")
	for range MaxListItems + 1 {
		wide.WriteString("C1")
		for range MaxItemFields + 1 {
			wide.WriteString("," + strings.Repeat("w", 10<<10))
		}
		wide.WriteString("\n")
	}
	cust := write("customers.csv", "id,name,tier,phones\nC1,Ann,standard,+31201234567\nC2,Bob,vip,+31201234567;+31612345678\nC3,Cy,,+14155550123\n")
	hist := write("history.csv", "customer_id,at,summary\nC1,2026-01-02,second\nC2,2026-01-01,bob's\nC1,2026-01-01,first\n")
	wp := write("wide.csv", wide.String())
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "csv", Kind: "csv", Path: cust, Region: "NL", Lists: map[string]string{"history": hist, "wide": wp}}}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	r, err := c.Lookup(context.Background(), q("+31201234567"))
	if err != nil || len(r.Candidates) != 2 || r.Candidates[0].ID != "C1" || r.Candidates[1].ID != "C2" {
		t.Fatalf("several lines: %+v, %v", r, err)
	}
	h := r.Candidates[0].Lists["history"]
	if len(h) != 2 || h[0]["summary"] != "second" || h[1]["at"] != "2026-01-01" || h[0]["customer_id"] != nil {
		t.Fatalf("C1 history: %#v", h)
	}
	checkBounds(t, r.Candidates[0], "wide", MaxListItems)
	if r.Candidates[1].Lists["history"][0]["summary"] != "bob's" || len(r.Candidates[1].Lists["wide"]) != 0 {
		t.Fatalf("C2 lists: %#v", r.Candidates[1].Lists)
	}
	if r, err := c.Lookup(context.Background(), q("+31612345678")); err != nil || r.Customer.ID != "C2" || r.Candidates != nil {
		t.Fatalf("C2 alone: %+v, %v", r, err)
	}
	if r, err := c.Lookup(context.Background(), q("+14155550123")); err != nil || r.Customer.Lists["history"] == nil || len(r.Customer.Lists["history"]) != 0 {
		t.Fatalf("C3 without history: %+v, %v", r, err)
	}
	// A list file that can not be read fails the source at start.
	bad := DefaultConfig()
	bad.Sources = []SourceConfig{{Name: "csv", Kind: "csv", Path: cust, Lists: map[string]string{"history": filepath.Join(dir, "missing.csv")}}}
	if _, err := New(bad, testCacheConfig(), nil, quietLog()); err == nil || !strings.Contains(err.Error(), "list history") {
		t.Fatalf("missing list file: %v", err)
	}
}

func TestSampleCRMListsAndSharedNumber(t *testing.T) {
	c, err := New(DefaultConfig(), testCacheConfig(), nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r, err := c.Lookup(context.Background(), q("+442079460018"))
	if err != nil || len(r.Candidates) != 2 || r.Candidates[0].ID != "C1003" || r.Candidates[1].ID != "C1022" {
		t.Fatalf("shared number: %+v, %v", r, err)
	}
	r, err = c.Lookup(context.Background(), q("+16465550167"))
	if err != nil || r.Customer.ID != "C1020" || len(r.Customer.Lists["tickets"]) != 3 || len(r.Customer.Lists["history"]) != 2 ||
		r.Customer.Lists["tickets"][0]["status"] != "open" {
		t.Fatalf("sample lists: %+v, %v", r.Customer, err)
	}
}

// TestListsAndCandidatesCached: lists and every candidate go through both
// cache tiers (a second instance reads them from a real Redis).
func TestListsAndCandidatesCached(t *testing.T) {
	_, rdb := startRedis(t)
	srv := jsonServer(t, `[{"id":"A","name":"Ann","tickets":[{"s":"one"},{"s":"two"}]},{"id":"B","name":"Bob","tickets":[]}]`)
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "api", Kind: "http", URL: srv.URL + "/?p={e164}", Lists: map[string]string{"tickets": "tickets"}}}
	a := newTestCRM(t, cfg, testCacheConfig(), rdb)
	if _, err := a.Lookup(context.Background(), q("+14155550123")); err != nil {
		t.Fatal(err)
	}
	settle(t, a)
	for name, c := range map[string]*CRM{"in-process": a, "redis": newTestCRM(t, cfg, testCacheConfig(), rdb)} {
		r, err := c.Lookup(context.Background(), q("+14155550123"))
		if err != nil || !r.Cached || len(r.Candidates) != 2 || r.Customer != r.Candidates[0] {
			t.Fatalf("%s: %+v, %v", name, r, err)
		}
		if tk := r.Customer.Lists["tickets"]; len(tk) != 2 || tk[1]["s"] != "two" || r.Candidates[1].Lists["tickets"] == nil {
			t.Fatalf("%s lists: %#v / %#v", name, r.Customer.Lists, r.Candidates[1].Lists)
		}
	}
}

// TestCSVListFileReload: a changed list file is read again with the customers.
func TestCSVListFileReload(t *testing.T) {
	dir := t.TempDir()
	cust := filepath.Join(dir, "customers.csv")
	hist := filepath.Join(dir, "history.csv")
	if err := os.WriteFile(cust, []byte("id,name,phones\nC1,Ann,+14155550123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hist, []byte("customer_id,summary\nC1,before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := newCSVFileSource(context.Background(), "csv", cust, "US", map[string]string{"history": hist}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	summary := func() any {
		c, err := s.Lookup(context.Background(), q("+14155550123"))
		if err != nil || len(c.Lists["history"]) == 0 {
			return nil
		}
		return c.Lists["history"][0]["summary"]
	}
	if got := summary(); got != "before" {
		t.Fatalf("history %v", got)
	}
	if err := os.WriteFile(hist, []byte("customer_id,summary\nC1,after the edit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the list file reloaded", func() bool { return summary() == "after the edit" })
}
