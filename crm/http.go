package crm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/callpop/callpop/call"
)

// httpSource asks a CRM's JSON API. See SourceConfig for the keys.
type httpSource struct {
	name     string
	tmpl     string
	queryAt  int    // index of '?' in tmpl, -1 when none: placeholders after it are query-escaped
	etmpl    string // url_by_email; "" = no e-mail look-ups
	equeryAt int    // index of '?' in etmpl
	headers  http.Header
	fields   map[string]path
	extra    map[string]path
	lists    map[string]path
	listMap  map[string]map[string]path // list → item field → path in the item
	maxBody  int64
	client   *http.Client
	log      *slog.Logger
	defaults bool // no field mapping: read id,name,tier,language,url from the top level
}

var customerFields = []string{"id", "name", "tier", "language", "url", "phones"}

func newHTTPSource(sc SourceConfig, log *slog.Logger) (*httpSource, error) {
	s := &httpSource{
		name:     sc.Name,
		tmpl:     sc.URL,
		queryAt:  strings.IndexByte(sc.URL, '?'),
		etmpl:    sc.URLByEmail,
		equeryAt: strings.IndexByte(sc.URLByEmail, '?'),
		headers:  http.Header{},
		fields:   map[string]path{},
		extra:    map[string]path{},
		lists:    map[string]path{},
		listMap:  map[string]map[string]path{},
		maxBody:  sc.MaxBody,
		log:      log.With("source", sc.Name),
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBody
	}
	for k, v := range sc.Headers {
		v = expandEnv(v)
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("crm/http: header %s: value holds a line break", k)
		}
		s.headers.Set(k, v)
	}
	if s.headers.Get("Accept") == "" {
		s.headers.Set("Accept", "application/json")
	}
	if s.headers.Get("User-Agent") == "" {
		s.headers.Set("User-Agent", "callpop")
	}
	for f, p := range sc.Fields {
		s.fields[f] = parsePath(p)
	}
	for f, p := range sc.Extra {
		s.extra[f] = parsePath(p)
	}
	for name, p := range sc.Lists {
		s.lists[name] = parsePath(strings.TrimSpace(p))
	}
	for name, fm := range sc.ListFields {
		s.listMap[name] = map[string]path{}
		for f, p := range fm {
			s.listMap[name][f] = parsePath(p)
		}
	}
	if len(s.fields) == 0 {
		s.defaults = true
		for _, f := range customerFields {
			s.fields[f] = path{f}
		}
	}
	client, err := httpClient(sc)
	if err != nil {
		return nil, err
	}
	s.client = client
	return s, nil
}

// httpClient is a source's client: TLS verified (against ca_file too, when
// set), at most max_conns connections, redirects only to the same host and
// never from https to http.
func httpClient(sc SourceConfig) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12} // verification always on
	if sc.CAFile != "" {
		pem, err := os.ReadFile(sc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("crm/http: ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("crm/http: ca_file %s: no PEM certificates", sc.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	// Held look-ups queue for one of max_conns connections (within their
	// timeout) rather than each opening its own: a stalled CRM must not cost
	// a connection, two goroutines and their buffers per waiting call.
	tr.MaxConnsPerHost = sc.MaxConns
	if tr.MaxConnsPerHost <= 0 {
		tr.MaxConnsPerHost = DefaultMaxConns
	}
	tr.MaxIdleConnsPerHost = tr.MaxConnsPerHost
	// tr.Proxy stays http.ProxyFromEnvironment: HTTPS_PROXY/NO_PROXY are honoured.
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("crm/http: too many redirects")
			}
			first := via[0].URL
			if req.URL.Host != first.Host || (first.Scheme == "https" && req.URL.Scheme != "https") {
				return fmt.Errorf("crm/http: redirect to another host refused")
			}
			return nil
		},
	}, nil
}

func (s *httpSource) Name() string { return s.name }

// Emails reports whether url_by_email is set.
func (s *httpSource) Emails() bool { return s.etmpl != "" }

// url fills the template (url_by_email for an e-mail query); each
// placeholder is escaped for where it stands.
func (s *httpSource) url(q Query) string {
	if q.Email != "" {
		return fillURL(s.etmpl, s.equeryAt, map[string]string{"{email}": q.Email})
	}
	return fillURL(s.tmpl, s.queryAt, map[string]string{"{e164}": q.E164, "{national}": q.National, "{digits}": q.Digits})
}

// fillURL replaces t's placeholders by vals' values, query-escaped after
// queryAt (the '?', -1 when none), path-escaped before.
func fillURL(t string, queryAt int, vals map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(t); {
		if t[i] == '{' {
			matched := false
			for ph, v := range vals {
				if strings.HasPrefix(t[i:], ph) {
					if queryAt >= 0 && i > queryAt {
						b.WriteString(url.QueryEscape(v))
					} else {
						b.WriteString(url.PathEscape(v))
					}
					i += len(ph)
					matched = true
					break
				}
			}
			if matched {
				continue
			}
		}
		b.WriteByte(t[i])
		i++
	}
	return b.String()
}

// Lookup asks the CRM: the first customer of LookupAll.
func (s *httpSource) Lookup(ctx context.Context, q Query) (*call.Customer, error) {
	all, err := s.LookupAll(ctx, q)
	if err != nil {
		return nil, err
	}
	return all[0], nil
}

// LookupAll asks the CRM. 404, 204, an empty array/object or records without
// id and name are a miss; any other non-2xx, an oversized or non-JSON body is
// an error. Several records (see records) are several customers.
func (s *httpSource) LookupAll(ctx context.Context, q Query) ([]*call.Customer, error) {
	if q.Email != "" && s.etmpl == "" {
		return nil, ErrNotFound
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url(q), nil)
	if err != nil {
		return nil, fmt.Errorf("crm/http: %w", err)
	}
	req.Header = s.headers.Clone()
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL holds the caller's number: keep it out of logs
		}
		return nil, fmt.Errorf("crm/http: request: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusNoContent:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, ErrNotFound
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("crm/http: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("crm/http: read body: %w", err)
	}
	if int64(len(body)) > s.maxBody {
		return nil, fmt.Errorf("crm/http: body larger than max_body (%d bytes)", s.maxBody)
	}
	return s.decode(body)
}

func (s *httpSource) decode(body []byte) ([]*call.Customer, error) {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("crm/http: body is not JSON: %w", errors.Unwrap(err))
	}
	if dec.More() {
		return nil, errors.New("crm/http: body is not one JSON value")
	}
	var out []*call.Customer
	var err error
	for _, r := range s.records(v) {
		switch r.v.(type) {
		case nil:
			continue
		case map[string]any:
		default:
			if s.defaults {
				err = errors.New("crm/http: body is not a JSON object")
				continue
			}
		}
		if c, ok := s.mapCustomer(r); ok {
			out = append(out, c)
			if len(out) >= call.MaxCandidates {
				break
			}
		}
	}
	if len(out) == 0 {
		if err != nil {
			return nil, err
		}
		return nil, ErrNotFound
	}
	return out, nil
}

// record is one customer's place in an answer: the value the paths start
// from, and, for a record inside an array the paths index (data.0.name),
// which path segment (at) stands for the record's index (i).
type record struct {
	v  any
	at int // -1: the paths are used as configured
	i  string
}

// records finds the customers of an answer: each element of a top-level
// array; else, when the id (or name) path indexes an array with element 0
// (data.0.id) and that array holds several, each of its elements, every path
// through that array read at the element's index; else the answer itself.
func (s *httpSource) records(v any) []record {
	if arr, ok := v.([]any); ok {
		out := make([]record, 0, min(len(arr), 4*call.MaxCandidates))
		for _, x := range arr[:min(len(arr), 4*call.MaxCandidates)] {
			out = append(out, record{v: x, at: -1})
		}
		return out
	}
	p := s.fields["id"]
	if p == nil {
		p = s.fields["name"]
	}
	for k, seg := range p {
		if seg != "0" {
			continue
		}
		arr, ok := p[:k].get(v)
		if a, isArr := arr.([]any); ok && isArr && len(a) > 1 {
			out := make([]record, 0, min(len(a), 4*call.MaxCandidates))
			for i := range min(len(a), 4*call.MaxCandidates) {
				out = append(out, record{v: v, at: k, i: strconv.Itoa(i)})
			}
			return out
		}
		break
	}
	return []record{{v: v, at: -1}}
}

// get reads path p of record r.
func (r record) get(p path) (any, bool) {
	if r.at >= 0 && len(p) > r.at && p[r.at] == "0" {
		q := slices.Clone(p)
		q[r.at] = r.i
		p = q
	}
	return p.get(r.v)
}

func (s *httpSource) mapCustomer(r record) (*call.Customer, bool) {
	v := r.v
	get := func(f string) any {
		p, ok := s.fields[f]
		if !ok {
			return nil
		}
		x, _ := r.get(p)
		return x
	}
	c := &call.Customer{
		ID:       text(get("id")),
		Name:     text(get("name")),
		Tier:     text(get("tier")),
		Language: text(get("language")),
		URL:      text(get("url")),
	}
	switch ph := get("phones").(type) {
	case string:
		c.Phones = []string{ph}
	case []any:
		for _, p := range ph {
			if t := text(p); t != "" {
				c.Phones = append(c.Phones, t)
			}
		}
	}
	if c.ID == "" && c.Name == "" {
		return nil, false
	}
	c.Extra = map[string]any{}
	if len(s.extra) > 0 {
		for name, p := range s.extra {
			if x, ok := r.get(p); ok {
				if x, ok := scalar(x); ok {
					c.Extra[name] = x
				}
			}
		}
	} else if m, ok := v.(map[string]any); ok && s.defaults {
		// Unmapped top-level scalars are kept for pops.
		for k, x := range m {
			if _, core := s.fields[k]; core || len(c.Extra) >= maxExtra || s.isList(k) {
				continue
			}
			if x, ok := scalar(x); ok {
				c.Extra[k] = x
			}
		}
	}
	if len(c.Extra) == 0 {
		c.Extra = nil
	}
	c.Lists = s.mapLists(r)
	return c, true
}

// isList reports whether a top-level key is the array of a configured list.
func (s *httpSource) isList(k string) bool {
	for _, p := range s.lists {
		if len(p) == 1 && p[0] == k {
			return true
		}
	}
	return false
}

// mapLists reads the configured lists of record r: each an array of
// objects, items beyond MaxListItems ignored, each item's scalar fields as
// they are or as list_fields maps them (bounded later by capCustomer). A
// list the answer lacks is absent; one that is not an array is empty.
func (s *httpSource) mapLists(r record) map[string][]map[string]any {
	if len(s.lists) == 0 {
		return nil
	}
	out := make(map[string][]map[string]any, len(s.lists))
	for name, p := range s.lists {
		x, ok := r.get(p)
		if !ok || x == nil {
			continue
		}
		arr, _ := x.([]any)
		items := make([]map[string]any, 0, min(len(arr), MaxListItems))
		for _, el := range arr {
			if len(items) >= MaxListItems {
				break
			}
			obj, ok := el.(map[string]any)
			if !ok {
				continue
			}
			item := map[string]any{}
			if fm := s.listMap[name]; len(fm) > 0 {
				for f, fp := range fm {
					if y, ok := fp.get(obj); ok {
						if y, ok := scalar(y); ok {
							item[f] = y
						}
					}
				}
			} else {
				for k, y := range obj {
					if y, ok := scalar(y); ok {
						item[k] = y
					}
				}
			}
			if len(item) > 0 {
				items = append(items, item)
			}
		}
		out[name] = items
	}
	return out
}
