package arisim

import (
	"context"
	"sync"
)

// subHold holds subscription requests (POST /applications/{app}/subscription)
// until released: a test's way to show that nothing on a call's path waits
// for one.
type subHold struct {
	mu      sync.Mutex
	gate    chan struct{} // nil = not holding
	waiting int
}

// HoldSubscriptions makes subscription requests wait, unanswered, until the
// returned release is called (or the request's client gives up).
func (s *Server) HoldSubscriptions() (release func()) {
	s.hold.mu.Lock()
	defer s.hold.mu.Unlock()
	gate := make(chan struct{})
	s.hold.gate = gate
	var once sync.Once
	return func() {
		once.Do(func() {
			s.hold.mu.Lock()
			if s.hold.gate == gate {
				s.hold.gate = nil
			}
			s.hold.mu.Unlock()
			close(gate)
		})
	}
}

// HeldSubscriptions is how many subscription requests wait now.
func (s *Server) HeldSubscriptions() int {
	s.hold.mu.Lock()
	defer s.hold.mu.Unlock()
	return s.hold.waiting
}

// holdSubscription waits while subscriptions are held.
func (s *Server) holdSubscription(ctx context.Context) {
	s.hold.mu.Lock()
	gate := s.hold.gate
	if gate == nil {
		s.hold.mu.Unlock()
		return
	}
	s.hold.waiting++
	s.hold.mu.Unlock()
	defer func() {
		s.hold.mu.Lock()
		s.hold.waiting--
		s.hold.mu.Unlock()
	}()
	select {
	case <-gate:
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
}
