package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// CRMStub is a real HTTP CRM on 127.0.0.1 that owns a generated population
// (customer i has CustomerNumber(i)), answers after a configurable latency and
// counts requests per number. GET /customers?phone=+1… → 200 JSON or 404.
type CRMStub struct {
	URL string // base URL, "http://127.0.0.1:port"

	population int

	latency atomic.Int64 // fixed part, ns
	jitter  atomic.Int64 // uniform extra, ns

	gate   atomic.Pointer[chan struct{}] // non-nil: requests wait for it to close (Hold)
	held   atomic.Int64
	total  atomic.Int64
	mu     sync.Mutex
	counts map[string]int

	srv *http.Server
	ln  net.Listener
}

// StartCRMStub starts the stub with population customers.
func StartCRMStub(population int, latency, jitter time.Duration) (*CRMStub, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: crm stub: %w", err)
	}
	s := &CRMStub{
		URL:        "http://" + ln.Addr().String(),
		population: population,
		counts:     make(map[string]int),
		ln:         ln,
	}
	s.SetLatency(latency, jitter)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /customers", s.serve)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }() // ends with Close
	return s, nil
}

// SourceURL is the URL template for a crm.sources entry.
func (s *CRMStub) SourceURL() string { return s.URL + "/customers?phone={e164}" }

// SetLatency changes the answer latency: fixed + uniform [0, jitter).
func (s *CRMStub) SetLatency(fixed, jitter time.Duration) {
	s.latency.Store(int64(fixed))
	s.jitter.Store(int64(jitter))
}

// Hold makes requests wait until Release.
func (s *CRMStub) Hold() {
	g := make(chan struct{})
	s.gate.Store(&g)
}

// Release lets held requests (and later ones) through.
func (s *CRMStub) Release() {
	if g := s.gate.Swap(nil); g != nil {
		close(*g)
	}
}

// Held returns the number of requests waiting for Release.
func (s *CRMStub) Held() int64 { return s.held.Load() }

// stubCustomer is the JSON an HTTP source reads with no field mapping.
type stubCustomer struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Tier     string `json:"tier"`
	Language string `json:"language"`
	URL      string `json:"url"`
}

var (
	tiers     = [...]string{"gold", "silver", "bronze", "bronze", "vip"}
	languages = [...]string{"en", "en", "es", "nl", "fr"}
)

func (s *CRMStub) serve(w http.ResponseWriter, r *http.Request) {
	phone := r.URL.Query().Get("phone")
	s.total.Add(1)
	s.mu.Lock()
	s.counts[phone]++
	s.mu.Unlock()
	if g := s.gate.Load(); g != nil {
		s.held.Add(1)
		select {
		case <-*g:
		case <-r.Context().Done():
		}
		s.held.Add(-1)
		if r.Context().Err() != nil {
			return
		}
	}
	d := time.Duration(s.latency.Load())
	if j := s.jitter.Load(); j > 0 {
		d += time.Duration(rand.Int64N(j))
	}
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	i, ok := customerIndex(phone)
	if !ok || i >= s.population {
		http.NotFound(w, r)
		return
	}
	id := "C" + strconv.Itoa(i)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(stubCustomer{
		ID:       id,
		Name:     "Customer " + strconv.Itoa(i),
		Tier:     tiers[i%len(tiers)],
		Language: languages[i%len(languages)],
		URL:      "https://crm.example/customers/" + id,
	})
}

// Requests returns how many requests asked for e164.
func (s *CRMStub) Requests(e164 string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[e164]
}

// Total returns the number of requests served.
func (s *CRMStub) Total() int64 { return s.total.Load() }

// Close stops the server.
func (s *CRMStub) Close() error {
	s.Release()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return s.srv.Close()
}
