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
	"os"
	"path/filepath"
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
	index    atomic.Pointer[map[string]*call.Customer]
	count    atomic.Int64
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
	empty := map[string]*call.Customer{}
	s.index.Store(&empty)
	return s, nil
}

func newSampleSource(region string, log *slog.Logger) (*csvSource, error) {
	s, err := newCSV("sample", "", region, log)
	if err != nil {
		return nil, err
	}
	idx, n, _, err := s.parse(bytes.NewReader(sampleCSV))
	if err != nil {
		return nil, fmt.Errorf("crm/csv: embedded sample: %w", err)
	}
	s.swap(idx, n)
	return s, nil
}

// newCSVFileSource loads path now (an unreadable file is an error) and
// watches it until ctx ends or Close.
func newCSVFileSource(ctx context.Context, name, path, region string, log *slog.Logger) (*csvSource, error) {
	s, err := newCSV(name, path, region, log)
	if err != nil {
		return nil, err
	}
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

// Lookup finds the customer owning q.E164.
func (s *csvSource) Lookup(ctx context.Context, q Query) (*call.Customer, error) {
	if c, ok := (*s.index.Load())[q.E164]; ok {
		return c, nil
	}
	return nil, ErrNotFound
}

// Close stops watching the file.
func (s *csvSource) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return nil
}

func (s *csvSource) swap(idx map[string]*call.Customer, customers int) {
	s.index.Store(&idx)
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
	if st, err := f.Stat(); err == nil {
		s.lastMod, s.lastSize = st.ModTime(), st.Size()
	}
	idx, n, warnings, err := s.parse(f)
	if err != nil {
		return fmt.Errorf("crm/csv: %s: %w", s.path, err)
	}
	s.swap(idx, n)
	s.log.Info("crm csv loaded", "path", s.path, "customers", s.Len(), "numbers", len(idx), "skipped", warnings)
	return nil
}

// watch reloads on change: fsnotify on the directory (editors replace files),
// with a modification-time poll as a fallback.
func (s *csvSource) watch(ctx context.Context) {
	defer s.wg.Done()
	var events chan fsnotify.Event
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(s.path)); err == nil {
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
	base := filepath.Clean(s.path)
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
			if filepath.Clean(ev.Name) == base && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				debounce = time.After(100 * time.Millisecond)
			}
		case <-poll.C:
			st, err := os.Stat(s.path)
			s.mu.Lock()
			changed := err == nil && (!st.ModTime().Equal(s.lastMod) || st.Size() != s.lastSize)
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

// parse reads the CSV: a header row naming id,name,tier,language,url,phones
// (any order, case-insensitive); other columns become Extra. Numbers that do
// not parse are skipped and counted.
func (s *csvSource) parse(r io.Reader) (idx map[string]*call.Customer, customers, skipped int, err error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("header: %w", err)
	}
	h, err := readCSVHeader(header)
	if err != nil {
		return nil, 0, 0, err
	}
	idx = map[string]*call.Customer{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, 0, fmt.Errorf("line %d: %w", line, err)
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
		for _, n := range c.Phones {
			if prev, dup := idx[n]; dup && prev.ID != c.ID {
				s.log.Warn("crm csv: number owned by two customers; the first wins", "line", line, "number", call.MaskNumber(n))
				continue
			}
			idx[n] = c
		}
	}
	return idx, customers, skipped, nil
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
