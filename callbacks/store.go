package callbacks

import (
	"context"
	"errors"
	"time"
)

// State is where a request is.
type State string

// The states of a request.
const (
	StatePending   State = "pending"   // waiting for its time (the first attempt, or the next)
	StateDialing   State = "dialing"   // an attempt is under way
	StateConnected State = "connected" // the customer answered: done
	StateFailed    State = "failed"    // the attempts are used, the number is wrong, or the PBX stayed down
	StateCancelled State = "cancelled" // DELETE /v1/callbacks/{id}
)

// Terminal says no attempt follows.
func (s State) Terminal() bool {
	return s == StateConnected || s == StateFailed || s == StateCancelled
}

// Record is one callback request as stored (JSON). It holds the number:
// the scheduler needs it to dial. Keys never do (numberKey hashes it).
type Record struct {
	ID        string    `json:"id"`
	Number    string    `json:"number"` // E.164, validated
	NumKey    string    `json:"nk"`     // the number's key (an HMAC of it), for its index
	Name      string    `json:"name,omitempty"`
	Note      string    `json:"note,omitempty"`
	Queue     string    `json:"queue,omitempty"`
	State     State     `json:"state"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
	Scheduled time.Time `json:"scheduled"` // the time asked, moved into the hours
	// NextAt is when the scheduler looks at the request next: the next
	// attempt while pending; while dialing, when the lease would have
	// expired (a dead instance's attempt is found then).
	NextAt      time.Time `json:"next_at"`
	Attempts    int       `json:"attempts"` // attempts made (busy, no answer, unknown)
	MaxAttempts int       `json:"max_attempts"`
	LastOutcome string    `json:"last_outcome,omitempty"` // connected, busy, no_answer, failed, unknown (the instance dialling died), pbx_error
	LastCause   string    `json:"last_cause,omitempty"`
	// CancelRequested: DELETE came while dialing; no attempt follows this one.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// PBXErrors counts attempts the PBX could not be asked for, in a row;
	// PBXErrorSince is the first of them.
	PBXErrors     int       `json:"pbx_errors,omitempty"`
	PBXErrorSince time.Time `json:"pbx_error_since,omitzero"`
	// Attempt is the attempt under way while dialing (1-based).
	Attempt int `json:"attempt,omitempty"`
}

// errNoChange: an update function leaves the record as it is.
var errNoChange = errors.New("no change")

// store keeps the requests. The Redis store is shared by every instance;
// the in-process one (newMemStore) serves a single instance and is lost on
// restart. Every write of a record also maintains its indexes: the due set
// (pending and dialing requests by NextAt), the number's active request
// (pending or dialing), and a terminal record's expiry.
type store interface {
	// upsert runs fn on the number's active request (nil when none) and
	// writes what fn returns, atomically against other writers.
	upsert(ctx context.Context, numKey string, fn func(cur *Record) (*Record, error)) (*Record, error)
	// get returns the request, nil when there is none.
	get(ctx context.Context, id string) (*Record, error)
	// update runs fn on the request and writes it back, atomically against
	// other writers; fn returning errNoChange writes nothing (no error).
	// A request that does not exist: nil, nil.
	update(ctx context.Context, id string, fn func(r *Record) error) (*Record, error)
	// due returns up to n ids whose NextAt is at or before now.
	due(ctx context.Context, now time.Time, n int) ([]string, error)
	// next returns the earliest NextAt; false when nothing is pending.
	next(ctx context.Context) (time.Time, bool, error)
	// lease takes the request's lease for owner for ttl; false when
	// another holds it. renew extends owner's lease (false: lost it);
	// release drops it if owner still holds it.
	lease(ctx context.Context, id, owner string, ttl time.Duration) (bool, error)
	renew(ctx context.Context, id, owner string, ttl time.Duration) (bool, error)
	release(ctx context.Context, id, owner string) error
	// count adds one to the counter name (a rate window) living ttl and
	// returns its value.
	count(ctx context.Context, name string, ttl time.Duration) (int64, error)
	// pending counts pending and dialing requests.
	pending(ctx context.Context) (int64, error)
}

// keepTerminal is how long a finished request stays readable.
const keepTerminal = 7 * 24 * time.Hour
