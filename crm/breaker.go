package crm

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"
)

// newBreaker builds a circuit breaker that opens after cfg.Failures
// consecutive failures and tries again after cfg.Cooldown. ok reports which
// errors are not failures (a miss, a cache miss). Failures = 0 → nil: no breaker.
func newBreaker[T any](name string, cfg BreakerConfig, ok func(error) bool, log *slog.Logger) *gobreaker.CircuitBreaker[T] {
	if cfg.Failures <= 0 {
		return nil
	}
	breakerState.WithLabelValues(name).Set(0)
	failures := uint32(cfg.Failures)
	return gobreaker.NewCircuitBreaker[T](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     cfg.Cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsSuccessful: func(err error) bool {
			return err == nil || ok(err)
		},
		// The caller giving up is no fault of the back-end.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			breakerState.WithLabelValues(name).Set(float64(to))
			log.Warn("circuit breaker state change", "breaker", name, "from", from.String(), "to", to.String())
		},
	})
}

// run calls f through cb (straight when cb is nil).
func run[T any](cb *gobreaker.CircuitBreaker[T], f func() (T, error)) (T, error) {
	if cb == nil {
		return f()
	}
	return cb.Execute(f)
}

// isOpen reports whether err says the breaker refused the call.
func isOpen(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
}

// duration helpers used by several files.
func since(t time.Time) float64 { return time.Since(t).Seconds() }
