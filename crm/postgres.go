package crm

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgSource runs a parameterised query ($1 = E.164) against PostgreSQL. The
// first row's columns id, name, tier, language, url (and phones, a text array
// or text) fill the customer; other columns go to Extra.
type pgSource struct {
	name  string
	query string
	pool  *pgxpool.Pool
	log   *slog.Logger
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
	return &pgSource{name: sc.Name, query: sc.Query, pool: pool, log: log.With("source", sc.Name)}, nil
}

func (s *pgSource) Name() string { return s.name }

// Lookup runs the query; no row is a miss.
func (s *pgSource) Lookup(ctx context.Context, q Query) (*call.Customer, error) {
	rows, err := s.pool.Query(ctx, s.query, q.E164)
	if err != nil {
		return nil, fmt.Errorf("crm/postgres: query: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("crm/postgres: query: %w", err)
		}
		return nil, ErrNotFound
	}
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
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("crm/postgres: rows: %w", err)
	}
	if c.ID == "" && c.Name == "" {
		return nil, ErrNotFound
	}
	return c, nil
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
