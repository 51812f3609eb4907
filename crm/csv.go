package crm

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callerid"
	"github.com/fsnotify/fsnotify"
)

//go:embed sample/customers.csv
var sampleCSV []byte

// The sample CRM's lists, keyed by customer_id.
var (
	//go:embed sample/history.csv
	sampleHistory []byte
	//go:embed sample/tickets.csv
	sampleTickets []byte
)

// SampleCSV returns the embedded sample CRM (the default source).
func SampleCSV() []byte { return bytes.Clone(sampleCSV) }

// csvSource serves customers from a CSV file held in memory, indexed by every
// E.164 number a customer owns. A file source reloads when the file changes; a
// failed reload keeps the last good index.
type csvSource struct {
	name     string
	path     string // "" = embedded
	region   string
	norm     *callerid.Normalizer
	log      *slog.Logger
	lists    map[string]string // list name → CSV file keyed by customer_id ("" path = embedded)
	embedded map[string][]byte // the embedded sample's lists
	index    atomic.Pointer[map[string][]*call.Customer]
	count    atomic.Int64
	emails   atomic.Bool // the file has an email column: e-mail look-ups are answered
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex // serialises reloads
	lastMod  time.Time
	lastSize int64
}

func newCSV(name, path, region string, log *slog.Logger) (*csvSource, error) {
	if region == "" {
		region = "US"
	}
	ncfg := callerid.DefaultConfig()
	ncfg.DefaultRegion = region
	ncfg.CacheSize = 1
	norm, err := callerid.New(ncfg, log)
	if err != nil {
		return nil, fmt.Errorf("crm/csv: region: %w", err)
	}
	s := &csvSource{name: name, path: path, region: region, norm: norm, log: log.With("source", name)}
	empty := map[string][]*call.Customer{}
	s.index.Store(&empty)
	return s, nil
}

func newSampleSource(region string, log *slog.Logger) (*csvSource, error) {
	s, err := newCSV("sample", "", region, log)
	if err != nil {
		return nil, err
	}
	idx, n, _, emails, err := s.parse(bytes.NewReader(sampleCSV))
	if err != nil {
		return nil, fmt.Errorf("crm/csv: embedded sample: %w", err)
	}
	s.embedded = map[string][]byte{"history": sampleHistory, "tickets": sampleTickets}
	if err := s.attachLists(idx); err != nil {
		return nil, fmt.Errorf("crm/csv: embedded sample: %w", err)
	}
	s.swap(idx, n, emails)
	return s, nil
}

// newCSVFileSource loads path now (an unreadable file is an error) and
// watches it until ctx ends or Close.
// lists name the files of the customers' lists (CSV files with a
// customer_id column), read and watched with it.
func newCSVFileSource(ctx context.Context, name, path, region string, lists map[string]string, log *slog.Logger) (*csvSource, error) {
	s, err := newCSV(name, path, region, log)
	if err != nil {
		return nil, err
	}
	s.lists = lists
	if err := s.reload(); err != nil {
		return nil, err
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go s.watch(ctx)
	return s, nil
}

func (s *csvSource) Name() string { return s.name }

// Len is the number of customers loaded.
func (s *csvSource) Len() int { return int(s.count.Load()) }

// Emails reports whether the file has an email column.
func (s *csvSource) Emails() bool { return s.emails.Load() }

// Lookup finds the customer owning q.E164, or with e-mail address q.Email
// (the file's first, when several do).
func (s *csvSource) Lookup(ctx context.Context, q Query) (*call.Customer, error) {
	if cs := (*s.index.Load())[csvKey(q)]; len(cs) > 0 {
		return cs[0], nil
	}
	return nil, ErrNotFound
}

// LookupAll finds every customer owning q.E164, or with e-mail address
// q.Email, in the file's order.
func (s *csvSource) LookupAll(ctx context.Context, q Query) ([]*call.Customer, error) {
	if cs := (*s.index.Load())[csvKey(q)]; len(cs) > 0 {
		return cs, nil
	}
	return nil, ErrNotFound
}

// csvKey is q's key in the index: the E.164, or emailKeyPrefix and the
// address (never a number's key).
func csvKey(q Query) string {
	if q.Email != "" {
		return emailKeyPrefix + q.Email
	}
	return q.E164
}

// Close stops watching the file.
func (s *csvSource) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return nil
}

func (s *csvSource) swap(idx map[string][]*call.Customer, customers int, emails bool) {
	s.index.Store(&idx)
	s.emails.Store(emails)
	s.count.Store(int64(customers))
}

func (s *csvSource) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("crm/csv: %w", err)
	}
	defer f.Close()
	s.lastMod, s.lastSize = s.stamp()
	idx, n, warnings, emails, err := s.parse(f)
	if err != nil {
		return fmt.Errorf("crm/csv: %s: %w", s.path, err)
	}
	if err := s.attachLists(idx); err != nil {
		return fmt.Errorf("crm/csv: %w", err)
	}
	s.swap(idx, n, emails)
	s.log.Info("crm csv loaded", "path", s.path, "customers", s.Len(), "numbers", len(idx), "skipped", warnings)
	return nil
}

// watch reloads on change: fsnotify on the directory (editors replace files),
// with a modification-time poll as a fallback.
func (s *csvSource) watch(ctx context.Context) {
	defer s.wg.Done()
	var events chan fsnotify.Event
	files := s.files()
	w, err := fsnotify.NewWatcher()
	if err == nil {
		for _, f := range files {
			if err = w.Add(filepath.Dir(f)); err != nil {
				break
			}
		}
		if err == nil {
			events = w.Events
			defer w.Close()
			go func() { // drain errors so the watcher never blocks; ends when w closes
				for range w.Errors {
				}
			}()
		} else {
			_ = w.Close()
		}
	}
	if err != nil {
		s.log.Warn("crm csv: no file watcher, polling", "err", err)
	}
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	var debounce <-chan time.Time
	watched := map[string]bool{}
	for _, f := range files {
		watched[filepath.Clean(f)] = true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			s.log.Debug("crm csv: file event", "event", ev.String())
			if !ok {
				events = nil
				continue
			}
			if watched[filepath.Clean(ev.Name)] && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				debounce = time.After(100 * time.Millisecond)
			}
		case <-poll.C:
			s.mu.Lock()
			changed := s.changed()
			s.mu.Unlock()
			if changed {
				debounce = time.After(0)
			}
		case <-debounce:
			debounce = nil
			if err := s.reload(); err != nil {
				s.log.Warn("crm csv reload failed; keeping the previous data", "err", err)
			}
		}
	}
}

// files are the source's files: the customers', then its lists'.
func (s *csvSource) files() []string {
	out := []string{s.path}
	for _, name := range slices.Sorted(maps.Keys(s.lists)) {
		out = append(out, s.lists[name])
	}
	return out
}

// stamp sums up the files' state: the newest modification time and the
// total size (a file that can not be read counts nothing).
func (s *csvSource) stamp() (mod time.Time, size int64) {
	for _, f := range s.files() {
		if st, err := os.Stat(f); err == nil {
			if st.ModTime().After(mod) {
				mod = st.ModTime()
			}
			size += st.Size()
		}
	}
	return mod, size
}

// changed reports whether a file changed since the last load (s.mu held).
func (s *csvSource) changed() bool {
	mod, size := s.stamp()
	return !mod.Equal(s.lastMod) || size != s.lastSize
}

// attachLists reads the list files and gives each customer of idx its
// items: every row whose customer_id is the customer's id, in file order,
// the first MaxListItems kept, the other non-empty columns as fields.
func (s *csvSource) attachLists(idx map[string][]*call.Customer) error {
	names := slices.Sorted(maps.Keys(s.lists))
	for name := range s.embedded {
		if _, ok := s.lists[name]; !ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	byID := map[string][]*call.Customer{}
	for _, cs := range idx {
		for _, c := range cs {
			if c.ID != "" && !slices.Contains(byID[c.ID], c) {
				byID[c.ID] = append(byID[c.ID], c)
			}
		}
	}
	for _, name := range names {
		var data []byte
		if p, ok := s.lists[name]; ok {
			b, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("list %s: %w", name, err)
			}
			data = b
		} else {
			data = s.embedded[name]
		}
		items, err := readListCSV(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("list %s: %w", name, err)
		}
		for id, cs := range byID {
			for _, c := range cs {
				if c.Lists == nil {
					c.Lists = map[string][]map[string]any{}
				}
				c.Lists[name] = items[id]
				if c.Lists[name] == nil {
					c.Lists[name] = []map[string]any{}
				}
			}
		}
	}
	return nil
}

// readListCSV reads a list file: a header with a customer_id column; each
// row an item of that customer (the first MaxListItems), its other
// non-empty columns the item's fields.
func readListCSV(r io.Reader) (map[string][]map[string]any, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	key := -1
	for i, name := range header {
		name = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(name, "\ufeff")))
		header[i] = name
		if name == "customer_id" {
			key = i
		}
	}
	if key < 0 {
		return nil, errors.New("header has no customer_id column")
	}
	out := map[string][]map[string]any{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if key >= len(rec) {
			continue
		}
		id := strings.TrimSpace(rec[key])
		if id == "" || len(out[id]) >= MaxListItems {
			continue
		}
		item := map[string]any{}
		for i, v := range rec {
			if i == key || i >= len(header) || header[i] == "" {
				continue
			}
			if v = strings.TrimSpace(v); v != "" {
				item[header[i]] = v
			}
		}
		if len(item) > 0 {
			out[id] = append(out[id], item)
		}
	}
}

// parse reads the CSV: a header row naming id,name,tier,language,url,phones
// (any order, case-insensitive); other columns become Extra. Numbers that do
// not parse are skipped and counted.
// The index holds every number (E.164) and, when the file has an email
// column, every valid address (emailKeyPrefix + the normalised address; an
// invalid one is skipped); emails reports that column.
func (s *csvSource) parse(r io.Reader) (idx map[string][]*call.Customer, customers, skipped int, emails bool, err error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		return nil, 0, 0, false, fmt.Errorf("header: %w", err)
	}
	h, err := readCSVHeader(header)
	if err != nil {
		return nil, 0, 0, false, err
	}
	_, emails = h.col["email"]
	idx = map[string][]*call.Customer{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, 0, false, fmt.Errorf("line %d: %w", line, err)
		}
		c := h.customer(rec)
		if c == nil {
			continue
		}
		nums, bad := s.phones(h.cell(rec, "phones"))
		skipped += bad
		c.Phones = nums
		c = capCustomer(c)
		customers++
		keys := c.Phones
		if cell := h.cell(rec, "email"); cell != "" {
			if e, err := NormalizeEmail(cell); err == nil {
				keys = append(slices.Clip(keys), emailKeyPrefix+e)
			} else {
				skipped++
			}
		}
		for _, n := range keys {
			// Several customers may own a number (a switchboard, a family
			// line): all are kept, in file order; a row repeating an id
			// already there adds nothing.
			if slices.ContainsFunc(idx[n], func(p *call.Customer) bool { return p.ID == c.ID }) || len(idx[n]) >= call.MaxCandidates {
				continue
			}
			idx[n] = append(idx[n], c)
		}
	}
	return idx, customers, skipped, emails, nil
}

// csvHeader is a CSV file's header: its column names (lower-cased, trimmed,
// without a byte-order mark) and each name's column.
type csvHeader struct {
	names []string
	col   map[string]int
}

func readCSVHeader(header []string) (csvHeader, error) {
	h := csvHeader{col: map[string]int{}}
	for i, name := range header {
		name = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(name, "\ufeff")))
		h.names = append(h.names, name)
		h.col[name] = i
	}
	if _, ok := h.col["phones"]; !ok {
		return h, errors.New("header has no phones column")
	}
	if _, ok := h.col["id"]; !ok {
		return h, errors.New("header has no id column")
	}
	return h, nil
}

// cell is rec's value in the column name ("" when there is none).
func (h csvHeader) cell(rec []string, name string) string {
	if i, ok := h.col[name]; ok && i < len(rec) {
		return strings.TrimSpace(rec[i])
	}
	return ""
}

// customer is rec's customer without phones; nil when the row has neither
// an id nor a name. Columns other than the customer fields go to Extra.
func (h csvHeader) customer(rec []string) *call.Customer {
	c := &call.Customer{ID: h.cell(rec, "id"), Name: h.cell(rec, "name"), Tier: h.cell(rec, "tier"),
		Language: h.cell(rec, "language"), URL: h.cell(rec, "url")}
	if c.ID == "" && c.Name == "" {
		return nil
	}
	for i, name := range h.names {
		switch name {
		case "id", "name", "tier", "language", "url", "phones":
			continue
		}
		if i < len(rec) && strings.TrimSpace(rec[i]) != "" {
			if c.Extra == nil {
				c.Extra = map[string]any{}
			}
			c.Extra[name] = strings.TrimSpace(rec[i])
		}
	}
	return c
}

// phones splits a phones cell: numbers separated by ';', '|', ',' or white
// space, where a number may itself hold spaces ("020 123 4567"): adjacent
// space-separated pieces are joined until they make a valid number.
func (s *csvSource) phones(cell string) (nums []string, bad int) {
	for _, part := range strings.FieldsFunc(cell, func(r rune) bool { return r == ';' || r == '|' || r == ',' }) {
		if n, err := s.norm.Parse(part, ""); err == nil {
			nums = appendUnique(nums, n.E164)
			continue
		}
		toks := strings.Fields(part)
		for i := 0; i < len(toks); {
			found := false
			for j := i; j < len(toks) && j < i+6; j++ {
				if n, err := s.norm.Parse(strings.Join(toks[i:j+1], " "), ""); err == nil {
					nums = appendUnique(nums, n.E164)
					i = j + 1
					found = true
					break
				}
			}
			if !found {
				bad++
				i++
			}
		}
	}
	return nums, bad
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
