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
	"strings"

	"github.com/callpop/callpop/call"
)

// httpSource asks a CRM's JSON API. See SourceConfig for the keys.
type httpSource struct {
	name     string
	tmpl     string
	queryAt  int // index of '?' in tmpl, -1 when none: placeholders after it are query-escaped
	headers  http.Header
	fields   map[string]path
	extra    map[string]path
	maxBody  int64
	client   *http.Client
	log      *slog.Logger
	defaults bool // no field mapping: read id,name,tier,language,url from the top level
}

var customerFields = []string{"id", "name", "tier", "language", "url", "phones"}

func newHTTPSource(sc SourceConfig, log *slog.Logger) (*httpSource, error) {
	s := &httpSource{
		name:    sc.Name,
		tmpl:    sc.URL,
		queryAt: strings.IndexByte(sc.URL, '?'),
		headers: http.Header{},
		fields:  map[string]path{},
		extra:   map[string]path{},
		maxBody: sc.MaxBody,
		log:     log.With("source", sc.Name),
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

// url fills the template; each placeholder is escaped for where it stands.
func (s *httpSource) url(q Query) string {
	vals := map[string]string{"{e164}": q.E164, "{national}": q.National, "{digits}": q.Digits}
	var b strings.Builder
	t := s.tmpl
	for i := 0; i < len(t); {
		if t[i] == '{' {
			matched := false
			for ph, v := range vals {
				if strings.HasPrefix(t[i:], ph) {
					if s.queryAt >= 0 && i > s.queryAt {
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

// Lookup asks the CRM. 404, 204, an empty array/object or a record without id
// and name is a miss; any other non-2xx, an oversized or non-JSON body is an error.
func (s *httpSource) Lookup(ctx context.Context, q Query) (*call.Customer, error) {
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

func (s *httpSource) decode(body []byte) (*call.Customer, error) {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("crm/http: body is not JSON: %w", errors.Unwrap(err))
	}
	if dec.More() {
		return nil, errors.New("crm/http: body is not one JSON value")
	}
	if arr, ok := v.([]any); ok { // a list of results: the first one
		if len(arr) == 0 {
			return nil, ErrNotFound
		}
		v = arr[0]
	}
	switch v.(type) {
	case nil:
		return nil, ErrNotFound
	case map[string]any:
	default:
		if s.defaults {
			return nil, errors.New("crm/http: body is not a JSON object")
		}
	}
	return s.mapCustomer(v)
}

func (s *httpSource) mapCustomer(v any) (*call.Customer, error) {
	get := func(f string) any {
		p, ok := s.fields[f]
		if !ok {
			return nil
		}
		x, _ := p.get(v)
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
		return nil, ErrNotFound
	}
	c.Extra = map[string]any{}
	if len(s.extra) > 0 {
		for name, p := range s.extra {
			if x, ok := p.get(v); ok {
				if x, ok := scalar(x); ok {
					c.Extra[name] = x
				}
			}
		}
	} else if m, ok := v.(map[string]any); ok && s.defaults {
		// Unmapped top-level scalars are kept for pops.
		for k, x := range m {
			if _, core := s.fields[k]; core || len(c.Extra) >= maxExtra {
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
	return c, nil
}
