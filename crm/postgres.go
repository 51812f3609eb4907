package crm

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgSource runs a parameterised query ($1 = E.164) against PostgreSQL. Each
// row's columns id, name, tier, language, url (and phones, a text array or
// text) fill a customer (several rows: several customers); other columns go
// to Extra. On a hit the list queries ($1 = the customer's id) fill Lists.
type pgSource struct {
	name   string
	query  string
	equery string            // query_by_email; "" = no e-mail look-ups
	lists  map[string]string // list name → query, $1 = the customer's id
	pool   *pgxpool.Pool
	log    *slog.Logger
}

func newPGSource(ctx context.Context, sc SourceConfig, log *slog.Logger) (*pgSource, error) {
	dsn, err := readSecret(sc.DSN, sc.DSNFile, dsnEnv(sc.Name), "dsn")
	if err != nil {
		return nil, err
	}
	dsn = strings.TrimSpace(expandEnv(dsn))
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN (and its password): do not wrap it.
		return nil, fmt.Errorf("crm/postgres: dsn does not parse")
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = 2 * time.Second
	}
	if pcfg.ConnConfig.RuntimeParams == nil {
		pcfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "callpop"
	if sc.MaxConns > 0 {
		pcfg.MaxConns = int32(min(sc.MaxConns, 1<<20))
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg) // connects lazily
	if err != nil {
		return nil, fmt.Errorf("crm/postgres: pool: %w", err)
	}
	return &pgSource{name: sc.Name, query: sc.Query, equery: sc.QueryByEmail, lists: sc.Lists, pool: pool, log: log.With("source", sc.Name)}, nil
}

func (s *pgSource) Name() string { return s.name }

// Emails reports whether query_by_email is set.
func (s *pgSource) Emails() bool { return s.equery != "" }

// Lookup runs the query: the first customer of LookupAll.
func (s *pgSource) Lookup(ctx context.Context, q Query) (*call.Customer, error) {
	all, err := s.LookupAll(ctx, q)
	if err != nil {
		return nil, err
	}
	return all[0], nil
}

// LookupAll runs the query: each row (at most call.MaxCandidates) is a
// customer; no row, or rows without id and name, is a miss. On a hit the
// list queries run for every customer with an id, in one round trip, within
// the same ctx (the source's timeout).
func (s *pgSource) LookupAll(ctx context.Context, q Query) ([]*call.Customer, error) {
	query, arg := s.query, q.E164
	if q.Email != "" {
		if s.equery == "" {
			return nil, ErrNotFound
		}
		query, arg = s.equery, q.Email
	}
	rows, err := s.pool.Query(ctx, query, arg)
	if err != nil {
		return nil, fmt.Errorf("crm/postgres: query: %w", err)
	}
	defer rows.Close()
	var out []*call.Customer
	for len(out) < call.MaxCandidates && rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, fmt.Errorf("crm/postgres: row: %w", err)
		}
		c := &call.Customer{}
		for i, fd := range rows.FieldDescriptions() {
			if i >= len(vals) || vals[i] == nil {
				continue
			}
			setPGColumn(c, strings.ToLower(fd.Name), vals[i])
		}
		if c.ID != "" || c.Name != "" {
			out = append(out, c)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("crm/postgres: rows: %w", err)
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	if err := s.readLists(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// readLists runs every list query for every customer with an id, queued in
// one batch (one round trip); each list keeps its first MaxListItems rows,
// their columns as item fields.
func (s *pgSource) readLists(ctx context.Context, custs []*call.Customer) error {
	if len(s.lists) == 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(s.lists))
	b := &pgx.Batch{}
	type slot struct {
		c    *call.Customer
		name string
	}
	var slots []slot
	for _, c := range custs {
		if c.ID == "" {
			continue
		}
		for _, name := range names {
			b.Queue(s.lists[name], c.ID)
			slots = append(slots, slot{c, name})
		}
	}
	if len(slots) == 0 {
		return nil
	}
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	for _, sl := range slots {
		items, err := pgListRows(br)
		if err != nil {
			return fmt.Errorf("crm/postgres: list %s: %w", sl.name, err)
		}
		if sl.c.Lists == nil {
			sl.c.Lists = map[string][]map[string]any{}
		}
		sl.c.Lists[sl.name] = items
	}
	return br.Close()
}

// pgListRows reads one list query's rows from a batch.
func pgListRows(br pgx.BatchResults) ([]map[string]any, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	items := []map[string]any{}
	for rows.Next() {
		if len(items) >= MaxListItems {
			continue // read to the end: the batch goes on after it
		}
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		item := map[string]any{}
		for i, fd := range rows.FieldDescriptions() {
			if i >= len(vals) || vals[i] == nil {
				continue
			}
			if x, ok := scalar(vals[i]); ok {
				item[strings.ToLower(fd.Name)] = x
			} else if t := pgText(vals[i]); t != "" {
				item[strings.ToLower(fd.Name)] = t
			}
		}
		if len(item) > 0 {
			items = append(items, item)
		}
	}
	return items, rows.Err()
}

// setPGColumn sets the customer field a column (lower-cased name, non-nil
// value) stands for; a column of another name goes to Extra.
func setPGColumn(c *call.Customer, name string, v any) {
	switch name {
	case "id":
		c.ID = pgText(v)
	case "name":
		c.Name = pgText(v)
	case "tier":
		c.Tier = pgText(v)
	case "language":
		c.Language = pgText(v)
	case "url":
		c.URL = pgText(v)
	case "phones": // an array, or one number
		if p, ok := v.([]any); ok {
			for _, x := range p {
				if t := pgText(x); t != "" {
					c.Phones = append(c.Phones, t)
				}
			}
		} else if t := pgText(v); t != "" {
			c.Phones = []string{t}
		}
	default:
		if c.Extra == nil {
			c.Extra = map[string]any{}
		}
		if x, ok := scalar(v); ok {
			c.Extra[name] = x
		} else if t := pgText(v); t != "" {
			c.Extra[name] = t
		}
	}
}

// pgText renders a column value as text: strings as is, times as RFC 3339,
// other scalars in their usual spelling; composite values are dropped.
func pgText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case time.Time:
		return v.Format(time.RFC3339)
	case fmt.Stringer:
		return v.String()
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, bool:
		return fmt.Sprint(v)
	}
	return ""
}

// Close closes the pool.
func (s *pgSource) Close() error {
	s.pool.Close()
	return nil
}
