package router

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/crm"
)

// fakeCRM is a real HTTP CRM (httptest) answering from a table keyed by the
// E.164 number in the `phone` query parameter; unknown numbers are 404.
type fakeCRM struct {
	srv      *httptest.Server
	mu       sync.Mutex
	records  map[string]any // a record, or a list of them (several customers on one number)
	delay    time.Duration
	requests atomic.Int64
}

func newFakeCRM(t testing.TB) *fakeCRM {
	t.Helper()
	f := &fakeCRM{records: map[string]any{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.mu.Lock()
		rec, ok := f.records[r.URL.Query().Get("phone")]
		delay := f.delay
		f.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rec)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCRM) add(e164 string, rec map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records[e164] = rec
}

// addAll makes several customers own e164 (the CRM answers a JSON array).
func (f *fakeCRM) addAll(e164 string, recs ...map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records[e164] = recs
}

func (f *fakeCRM) setDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// standardRecords are the customers most tests use.
func (f *fakeCRM) standardRecords() {
	f.add("+31201234567", map[string]any{"id": "C-1001", "name": "Jan de Vries", "tier": "vip", "language": "nl",
		"url": "https://crm.example/c/1001", "phones": []string{"+31201234567", "+31612345678"}, "region": "NL"})
	f.add("+31301112233", map[string]any{"id": "C-1002", "name": "Anne Bakker", "tier": "gold", "language": "de",
		"url": "https://crm.example/c/1002", "phones": []string{"+31301112233"}, "region": "DE"})
	f.add("+14155550123", map[string]any{"id": "C-2001", "name": "ACME Corp", "tier": "standard", "language": "en",
		"url": "https://crm.example/c/2001", "region": "US"})
	// Hostile CRM data: control characters, quotes, dialplan and ESL syntax.
	f.add("+31209999999", map[string]any{"id": "C-6666\r\nEXEC System rm", "name": "Evil\" ${SHELL(id)}\nHANGUP\\",
		"tier": "gold;x", "language": "nl\x00", "url": "https://crm.example/c/6666\r\nX-Injected: 1\" onclick", "region": "NL"})
}

type testEnv struct {
	router  *Router
	crm     *crm.CRM
	numbers *callerid.Normalizer
	fake    *fakeCRM
	log     *slog.Logger
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newTestEnv builds a router over a real HTTP CRM with the standard records,
// numbers read in NL by default, and an in-process cache (rdb may be nil).
func newTestEnv(t testing.TB, cfg Config, rdb redis.UniversalClient, budget time.Duration) *testEnv {
	t.Helper()
	log := testLogger(t)
	ncfg := callerid.DefaultConfig()
	ncfg.DefaultRegion = "NL"
	numbers, err := callerid.New(ncfg, log)
	if err != nil {
		t.Fatal(err)
	}
	fake := newFakeCRM(t)
	fake.standardRecords()
	ccfg := crm.DefaultConfig()
	ccfg.Sources = []crm.SourceConfig{{Name: "main", Kind: "http", URL: fake.srv.URL + "/customers?phone={e164}",
		Extra: map[string]string{"region": "region"}, Lists: map[string]string{"tickets": "tickets", "history": "history"}}}
	cache := crm.DefaultCacheConfig()
	cache.KeySecret = "router-test-key-secret-0123456789" // Redis needs one of its own
	c, err := crm.New(ccfg, cache, rdb, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r, err := New(cfg, Deps{Numbers: numbers, CRM: c, Redis: rdb, Budget: budget, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{router: r, crm: c, numbers: numbers, fake: fake, log: log}
}

// writeFile writes a file under t.TempDir and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Timezone = "UTC"
	cfg.FastAGI.Listen = ""
	cfg.NewCustomerURL = "https://crm.example/new?phone={e164}"
	return cfg
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func numberFacts(region string, cc int) callerid.Number {
	return callerid.Number{E164: "+" + fmt.Sprint(cc) + "201234567", Region: region, CountryCode: cc}
}

// testBudget is the call budget of tests that are not about timing: generous,
// so a loaded machine under -race does not turn hits into timeouts.
const testBudget = 2 * time.Second
