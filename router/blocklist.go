package router

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpop/callpop/callerid"
)

// maxBlockLine bounds one line of the block-list file.
const maxBlockLine = 1024

// blockList is the file-based block list: numbers (normalised on load) and
// E.164 prefixes ("+1900*"). The file is re-read when its modification time
// or size changes; the check runs at most every interval, off the call path.
type blockList struct {
	log     *slog.Logger
	numbers *callerid.Normalizer

	mu      sync.Mutex // serialises configure and loads; never taken on the call path
	path    string
	modTime time.Time
	size    int64

	watch atomic.Pointer[blockWatch]

	set       atomic.Pointer[blockSet]
	lastCheck atomic.Int64 // unix nanos
	checking  atomic.Bool
}

type blockWatch struct {
	path     string
	interval time.Duration
}

type blockSet struct {
	exact    map[string]struct{}
	prefixes []string // "+1900"
}

func newBlockList(log *slog.Logger, n *callerid.Normalizer) *blockList {
	b := &blockList{log: log, numbers: n}
	b.set.Store(&blockSet{})
	b.watch.Store(&blockWatch{})
	return b
}

// configure sets the file and loads it now; an unreadable file is an error.
func (b *blockList) configure(path string, interval time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if path == "" {
		b.path = ""
		b.watch.Store(&blockWatch{})
		b.set.Store(&blockSet{})
		blockListNumbers.Set(0)
		return nil
	}
	if err := b.loadLocked(path); err != nil {
		return fmt.Errorf("router.flags.block_list_file: %w", err)
	}
	b.path = path
	b.watch.Store(&blockWatch{path: path, interval: interval})
	b.lastCheck.Store(time.Now().UnixNano())
	return nil
}

// contains reports whether e164 is blocked, and starts a background re-read
// when the check interval has passed.
func (b *blockList) contains(e164 string) bool {
	b.maybeReload()
	s := b.set.Load()
	if _, ok := s.exact[e164]; ok {
		return true
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(e164, p) {
			return true
		}
	}
	return false
}

func (b *blockList) maybeReload() {
	now := time.Now().UnixNano()
	last := b.lastCheck.Load()
	w := b.watch.Load()
	if w.path == "" || w.interval <= 0 || now-last < int64(w.interval) {
		return
	}
	if !b.checking.CompareAndSwap(false, true) {
		return
	}
	b.lastCheck.Store(now)
	go func() { // bounded: one stat, at most one file read; never two at once
		defer b.checking.Store(false)
		b.reloadIfChanged()
	}()
}

// reloadIfChanged re-reads the file when it changed; on error the old set stays.
func (b *blockList) reloadIfChanged() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.path == "" {
		return
	}
	fi, err := os.Stat(b.path)
	if err != nil {
		blockListErrors.WithLabelValues("file").Inc()
		b.log.Warn("block list unreadable; keeping the loaded one", "path", b.path, "err", err)
		return
	}
	if fi.ModTime().Equal(b.modTime) && fi.Size() == b.size {
		return
	}
	if err := b.loadLocked(b.path); err != nil {
		blockListErrors.WithLabelValues("file").Inc()
		b.log.Warn("block list reload failed; keeping the loaded one", "path", b.path, "err", err)
	}
}

func (b *blockList) loadLocked(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	set, bad, err := parseBlockList(f, b.numbers)
	if err != nil {
		return err
	}
	for _, line := range bad {
		b.log.Warn("block list: line is not a number; skipped", "path", path, "line", line)
	}
	b.modTime, b.size = fi.ModTime(), fi.Size()
	b.set.Store(set)
	blockListNumbers.Set(float64(len(set.exact) + len(set.prefixes)))
	b.log.Info("block list loaded", "path", path, "numbers", len(set.exact), "prefixes", len(set.prefixes))
	return nil
}

// parseBlockList reads one number per line: any format the normaliser takes
// (national numbers in its default region), "#" comments, blank lines, and
// E.164 prefixes ending in "*". It returns the line numbers it skipped.
func parseBlockList(f io.Reader, n *callerid.Normalizer) (*blockSet, []int, error) {
	set := &blockSet{exact: map[string]struct{}{}}
	var bad []int
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxBlockLine)
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if pre, ok := strings.CutSuffix(s, "*"); ok {
			d := callerid.Digits(pre)
			pre = strings.TrimSpace(pre)
			switch {
			case strings.HasPrefix(pre, "+") && d != "":
				set.prefixes = append(set.prefixes, "+"+d)
			case strings.HasPrefix(pre, "00") && len(d) > 2:
				set.prefixes = append(set.prefixes, "+"+d[2:])
			default:
				bad = append(bad, line)
			}
			continue
		}
		num, err := n.Parse(s, "")
		if err != nil {
			bad = append(bad, line)
			continue
		}
		set.exact[num.E164] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("line %d: longer than %d bytes", line+1, maxBlockLine)
		}
		return nil, nil, err
	}
	return set, bad, nil
}
