package crm

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/callpop/callpop/internal/testpg"
	"github.com/jackc/pgx/v5"
)

const pgSchema = `
CREATE TABLE customers (
	id text PRIMARY KEY, name text NOT NULL, tier text, language text, url text,
	since date, balance numeric, vip_note text, score int
);
CREATE TABLE customer_phones (e164 text PRIMARY KEY, customer_id text NOT NULL REFERENCES customers(id));
INSERT INTO customers VALUES
	('C1', 'Jane Doe', 'vip', 'en', 'https://crm/c/1', '2019-03-01', 12.50, 'likes tea', 7),
	('C2', 'Anna de Vries', 'gold', 'nl', NULL, NULL, NULL, NULL, NULL);
INSERT INTO customer_phones VALUES ('+14155550123', 'C1'), ('+12125550142', 'C1'), ('+31201234567', 'C2');
`

const pgQuery = `SELECT c.id, c.name, c.tier, c.language, c.url, c.since, c.vip_note, c.score,
	ARRAY(SELECT e164 FROM customer_phones WHERE customer_id = c.id ORDER BY e164) AS phones
FROM customers c JOIN customer_phones p ON p.customer_id = c.id WHERE p.e164 = $1`

func TestPostgresSource(t *testing.T) {
	pg := testpg.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, pgSchema); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)

	t.Setenv("CALLPOP_CRM_SQL_DSN", pg.DSN) // the DSN from the environment, not inline
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "sql", Kind: "postgres", Query: pgQuery}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := newTestCRM(t, cfg, testCacheConfig(), nil)
	tests := []struct {
		e164, id, name string
	}{
		{"+14155550123", "C1", "Jane Doe"},
		{"+12125550142", "C1", "Jane Doe"}, // multi-number customer
		{"+31201234567", "C2", "Anna de Vries"},
		{"+442079460000", "", ""},
		{"'; DROP TABLE customers; --", "", ""}, // $1 is a parameter, never SQL
	}
	for _, tt := range tests {
		r, err := c.Lookup(ctx, q(tt.e164))
		if err != nil {
			t.Fatalf("%s: %v", tt.e164, err)
		}
		if tt.id == "" {
			if r.Customer != nil {
				t.Fatalf("%s: %+v, want a miss", tt.e164, r.Customer)
			}
			continue
		}
		if r.Customer == nil || r.Customer.ID != tt.id || r.Customer.Name != tt.name || r.Source != "sql" {
			t.Fatalf("%s: %+v", tt.e164, r)
		}
	}
	r, _ := c.Lookup(ctx, q("+14155550123"))
	cu := r.Customer
	if cu.Tier != "vip" || cu.Language != "en" || cu.URL != "https://crm/c/1" || len(cu.Phones) != 2 {
		t.Fatalf("columns: %+v", cu)
	}
	if cu.Extra["vip_note"] != "likes tea" || cu.Extra["since"] != "2019-03-01T00:00:00Z" || cu.Extra["score"] != int32(7) {
		t.Fatalf("extra columns: %#v", cu.Extra)
	}

	// A broken query is an error, not a miss.
	bad := DefaultConfig()
	bad.Sources = []SourceConfig{{Name: "sql", Kind: "postgres", DSN: pg.DSN, Query: "SELECT id FROM nope WHERE x = $1"}}
	cb := newTestCRM(t, bad, testCacheConfig(), nil)
	if _, err := cb.Lookup(ctx, q("+14155550123")); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("broken query: %v", err)
	}
}

// TestPostgresDown: a database nobody listens on is an error (not a miss),
// and the look-up does not sit out the source's connect_timeout (5 s) or
// crm.timeout (10 s). No bound nearer the budget: a loaded machine breaks it.
func TestPostgresDown(t *testing.T) {
	const connectTimeout = 5 * time.Second
	cfg := DefaultConfig()
	cfg.Timeout = 10 * time.Second
	cfg.Sources = []SourceConfig{{Name: "sql", Kind: "postgres", DSN: "postgres://nobody@127.0.0.1:1/x?sslmode=disable&connect_timeout=5", Query: "SELECT 1 WHERE $1 = ''"}}
	c := newTestCRM(t, cfg, testCacheConfig(), nil) // lazy: starts without the database
	r, err, took := lookupWithin(t, c, q("+14155550123"), budget)
	if err == nil || errors.Is(err, ErrNotFound) || r.Customer != nil || took >= connectTimeout {
		t.Fatalf("database down: %+v, %v in %s", r, err, took)
	}
}
