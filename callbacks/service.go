package callbacks

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/callerid"
	"github.com/callpop/callpop/internal/loglimit"
)

// Deps is what main hands a Service.
type Deps struct {
	// Decider decides at dial time: the pipeline's decider (router, with the
	// popper's softphone fields), as for an incoming call.
	Decider call.Decider
	// Check decides when a request comes in (nil: Decider): the router
	// alone, so the request is not listed as a call.
	Check call.Decider
	// Originator places the calls: the PBX adapter named by callbacks.pbx.
	Originator call.Originator
	Numbers    *callerid.Normalizer
	// Region reads national numbers (numbers.default_region).
	Region string
	// Redis keeps the requests, shared by every instance; nil means an
	// in-process store: one instance only, lost on restart (callpop demo).
	Redis redis.UniversalClient
	// KeySecret keys the HMAC of numbers in Redis keys (cache.key_secret).
	KeySecret []byte
	Logger    *slog.Logger
	// Budget bounds each decision (call.budget).
	Budget time.Duration
	// PBX is the dialling PBX's name (Call.PBX); Kind its kind (asterisk, freeswitch).
	PBX  string
	Kind string
	// Location is the hours' time zone (nil: UTC).
	Location *time.Location
	// Now is the wall clock of hours and schedules (nil: time.Now). Deadlines
	// use the monotonic clock whatever it says.
	Now func() time.Time
	// LeaseTTL is the lease on a request being dialled, renewed every third
	// of it while the attempt lasts (0: 15s).
	LeaseTTL time.Duration
	// Backoff is the first wait after the PBX could not be asked, doubling
	// up to maxBackoff (0: 1s).
	Backoff time.Duration
}

// Bounds.
const (
	maxBackoff   = time.Minute
	pbxGiveUp    = time.Hour // the PBX unreachable this long since the first try: failed
	maxInFlight  = 32        // attempts one instance makes at once
	dueBatch     = 64        // ids read from the due set at once
	maxNameLen   = 1024
	maxNoteLen   = 4096
	maxBodyBytes = 16 << 10
	idBytes      = 12
	numberWindow = time.Hour
)

var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Service takes callback requests and dials them.
type Service struct {
	cfg       Config
	deps      Deps
	hours     Hours
	allowed   []string
	store     store
	log       *slog.Logger
	owner     string // this instance's lease token
	wake      chan struct{}
	sem       chan struct{}
	inFlight  sync.WaitGroup
	pbxWarn   loglimit.Limiter
	storeWarn loglimit.Limiter
}

// New builds a Service from a validated Config.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Decider == nil || deps.Originator == nil || deps.Numbers == nil {
		return nil, errors.New("callbacks: a decider, an originator and a number normaliser are required")
	}
	if deps.Kind != KindAsterisk && deps.Kind != KindFreeSWITCH {
		return nil, fmt.Errorf("callbacks: unknown PBX kind %q", deps.Kind)
	}
	if err := cfg.CheckDial(deps.Kind); err != nil {
		return nil, err
	}
	if deps.Redis != nil && len(deps.KeySecret) == 0 {
		return nil, errors.New("callbacks: a key secret (cache.key_secret) is required with Redis: numbers are hashed in keys")
	}
	if deps.Check == nil {
		deps.Check = deps.Decider
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Budget <= 0 {
		deps.Budget = 300 * time.Millisecond
	}
	if deps.Location == nil {
		deps.Location = time.UTC
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.LeaseTTL <= 0 {
		deps.LeaseTTL = 15 * time.Second
	}
	if deps.Backoff <= 0 {
		deps.Backoff = time.Second
	}
	hours, _ := ParseHours(cfg.Hours) // validated
	s := &Service{
		cfg: cfg, deps: deps, hours: hours,
		log:   deps.Logger.With("component", "callbacks"),
		owner: randomID(),
		wake:  make(chan struct{}, 1),
		sem:   make(chan struct{}, maxInFlight),
	}
	for _, r := range cfg.AllowedRegions {
		s.allowed = append(s.allowed, strings.ToUpper(strings.TrimSpace(r)))
	}
	if deps.Redis != nil {
		s.store = newRedisStore(deps.Redis)
	} else {
		s.store = newMemStore()
	}
	return s, nil
}

// Request is the body of POST /v1/callbacks.
type Request struct {
	Number string `json:"number"`
	Name   string `json:"name"`
	When   string `json:"when"`
	Queue  string `json:"queue"`
	Note   string `json:"note"`
}

// Status is what the endpoints answer about a request: nothing the client
// did not send, beyond the request's own state.
type Status struct {
	ID              string     `json:"id"`
	State           State      `json:"state"`
	Number          string     `json:"number"`
	ScheduledFor    time.Time  `json:"scheduled_for"`
	Attempts        int        `json:"attempts"`
	MaxAttempts     int        `json:"max_attempts"`
	NextAttemptAt   *time.Time `json:"next_attempt_at,omitempty"`
	LastOutcome     string     `json:"last_outcome,omitempty"`
	LastCause       string     `json:"last_cause,omitempty"`
	CancelRequested bool       `json:"cancel_requested,omitempty"`
	Created         time.Time  `json:"created"`
	Updated         time.Time  `json:"updated"`
}

func statusOf(r *Record) Status {
	st := Status{
		ID: r.ID, State: r.State, Number: r.Number, ScheduledFor: r.Scheduled.UTC(), Attempts: r.Attempts,
		MaxAttempts: r.MaxAttempts, LastOutcome: r.LastOutcome, LastCause: r.LastCause,
		CancelRequested: r.CancelRequested, Created: r.Created.UTC(), Updated: r.Updated.UTC(),
	}
	if r.State == StatePending {
		t := r.NextAt.UTC()
		st.NextAttemptAt = &t
	}
	return st
}

// Error is a refused request: the HTTP status, the field at fault and why.
type Error struct {
	Status int
	Field  string
	Msg    string
	// RetryAfter, on a 429, is when the client may try again.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func badField(field, format string, a ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Field: field, Msg: fmt.Sprintf(format, a...)}
}

// validated is a request that passed the checks.
type validated struct {
	number callerid.Number
	name   string
	note   string
	queue  string
	when   time.Time
}

// validate checks req field by field; the first problem is the answer.
func (s *Service) validate(req Request, now time.Time) (validated, error) {
	var v validated
	if strings.TrimSpace(req.Number) == "" {
		return v, badField("number", "required")
	}
	n, err := s.deps.Numbers.Parse(req.Number, s.deps.Region)
	if err != nil {
		return v, badField("number", "not a valid phone number (%s)", strings.TrimPrefix(err.Error(), callerid.ErrInvalid.Error()+": "))
	}
	switch n.Type {
	case "premium_rate":
		return v, badField("number", "premium-rate numbers are not called back")
	case "shared_cost":
		return v, badField("number", "shared-cost numbers are not called back")
	}
	if !slices.Contains(s.allowed, n.Region) {
		return v, badField("number", "numbers of region %s are not called back (callbacks.allowed_regions: %s)", n.Region, strings.Join(s.allowed, ", "))
	}
	if !e164.MatchString(n.E164) {
		return v, badField("number", "not a valid phone number")
	}
	v.number = n
	if !utf8.ValidString(req.Name) || len(req.Name) > maxNameLen {
		return v, badField("name", "at most %d bytes of UTF-8", maxNameLen)
	}
	if !utf8.ValidString(req.Note) || len(req.Note) > maxNoteLen {
		return v, badField("note", "at most %d bytes of UTF-8", maxNoteLen)
	}
	v.name, v.note = req.Name, req.Note
	if req.Queue != "" && !queueName.MatchString(req.Queue) {
		return v, badField("queue", "1 to 64 letters, digits, _ or -")
	}
	v.queue = req.Queue
	v.when = now
	if req.When != "" {
		t, err := time.Parse(time.RFC3339, req.When)
		if err != nil {
			return v, badField("when", "not an RFC 3339 time (2006-01-02T15:04:05Z or with an offset)")
		}
		if t.After(now.Add(s.cfg.MaxAhead)) {
			return v, badField("when", "more than %s ahead (callbacks.max_ahead)", s.cfg.MaxAhead)
		}
		if t.After(now) {
			v.when = t
		}
	}
	return v, nil
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{5,14}$`)

// schedule moves t into the hours.
func (s *Service) schedule(t time.Time) time.Time {
	n, _ := s.hours.Next(t, s.deps.Location)
	return n.Truncate(time.Millisecond)
}

// numberKey is the number's part of a key: an HMAC, so keys hold no numbers.
func (s *Service) numberKey(e164 string) string {
	m := hmac.New(sha256.New, s.deps.KeySecret)
	m.Write([]byte("callbacks\x00" + e164))
	return hex.EncodeToString(m.Sum(nil))
}

// Submit takes a request: it validates it, decides for it as for an
// incoming call, and stores it, or updates the number's pending request.
// created says a new request was made.
func (s *Service) Submit(ctx context.Context, req Request) (st Status, created bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout+s.deps.Budget)
	defer cancel()
	now := s.deps.Now()
	v, err := s.validate(req, now)
	if err != nil {
		requestsTotal.WithLabelValues("invalid").Inc()
		return Status{}, false, err
	}
	nk := s.numberKey(v.number.E164)
	n, err := s.store.count(ctx, "n:"+nk+":"+windowName(now, numberWindow), numberWindow+time.Minute)
	if err != nil {
		requestsTotal.WithLabelValues("error").Inc()
		return Status{}, false, fmt.Errorf("callbacks: store: %w", err)
	}
	if n > int64(s.cfg.MaxPerNumber) {
		requestsTotal.WithLabelValues("rate_limited").Inc()
		return Status{}, false, &Error{Status: http.StatusTooManyRequests, Field: "number",
			Msg:        fmt.Sprintf("too many requests for this number (callbacks.max_per_number: %d an hour)", s.cfg.MaxPerNumber),
			RetryAfter: windowEnd(now, numberWindow).Sub(now)}
	}
	// Decide as for an incoming call: it warms the CRM cache for the dial
	// and checks the decision path takes it. Nothing of it is answered.
	dctx, cancel := context.WithTimeout(ctx, s.deps.Budget)
	d := s.deps.Check.Decide(dctx, s.callFor(v.number.E164, v.name, v.note, ""))
	cancel()
	sched := s.schedule(v.when)
	rec, err := s.store.upsert(ctx, nk, func(cur *Record) (*Record, error) {
		created = cur == nil
		if cur == nil {
			return &Record{
				ID: randomID(), Number: v.number.E164, Name: v.name, Note: v.note, Queue: v.queue,
				State: StatePending, Created: now, Updated: now, Scheduled: sched, NextAt: sched,
				MaxAttempts: s.cfg.Attempts,
			}, nil
		}
		cur.Name, cur.Note, cur.Queue, cur.Updated = v.name, v.note, v.queue, now
		if cur.State == StatePending {
			cur.Scheduled, cur.NextAt = sched, sched
		}
		return cur, nil
	})
	if err != nil {
		requestsTotal.WithLabelValues("error").Inc()
		return Status{}, false, fmt.Errorf("callbacks: store: %w", err)
	}
	result := "updated"
	if created {
		result = "created"
	}
	requestsTotal.WithLabelValues(result).Inc()
	s.log.Info("callback "+result, "id", rec.ID, "number", call.MaskNumber(rec.Number), "name", call.MaskName(rec.Name),
		"scheduled_for", rec.Scheduled.UTC().Format(time.RFC3339), "match", string(d.Match), "state", string(rec.State))
	s.poke()
	return statusOf(rec), created, nil
}

// Get returns the request's status; ok is false when there is none.
func (s *Service) Get(ctx context.Context, id string) (Status, bool, error) {
	if !validID(id) {
		return Status{}, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	r, err := s.store.get(ctx, id)
	if err != nil || r == nil {
		return Status{}, false, err
	}
	return statusOf(r), true, nil
}

// ErrTerminal: the request is over; it cannot be cancelled.
var ErrTerminal = errors.New("callbacks: the request is over")

// Cancel cancels a pending request (its state becomes cancelled), or one
// being dialled: the attempt under way goes on, no other follows
// (CancelRequested; cancelled unless the customer answers). ok is false
// when there is no such request; ErrTerminal when it is over.
func (s *Service) Cancel(ctx context.Context, id string) (Status, bool, error) {
	if !validID(id) {
		return Status{}, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	var terminal bool
	r, err := s.store.update(ctx, id, func(r *Record) error {
		terminal = false
		switch r.State {
		case StatePending:
			r.State = StateCancelled
		case StateDialing:
			if r.CancelRequested {
				return errNoChange
			}
			r.CancelRequested = true
		default:
			terminal = true
			return errNoChange
		}
		r.Updated = s.deps.Now()
		return nil
	})
	if err != nil || r == nil {
		return Status{}, false, err
	}
	if terminal {
		return statusOf(r), true, ErrTerminal
	}
	s.log.Info("callback cancelled", "id", r.ID, "number", call.MaskNumber(r.Number), "state", string(r.State))
	return statusOf(r), true, nil
}

// callFor is the call a decision is made for. Received is the real clock's
// now: the decision's budget counts from it.
func (s *Service) callFor(number, name, note, id string) call.Call {
	return call.Call{ID: id, PBX: s.deps.PBX, Channel: call.ChannelCallback, CLI: number, CLIName: name, Subject: note, Received: time.Now()}
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func randomID() string {
	b := make([]byte, idBytes)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var idPattern = regexp.MustCompile(`^[0-9a-f]{24}$`)

func validID(id string) bool { return idPattern.MatchString(id) }

// window names the window of length d t falls in.
func windowName(t time.Time, d time.Duration) string {
	return fmt.Sprint(t.UnixMilli() / d.Milliseconds())
}

func windowEnd(t time.Time, d time.Duration) time.Time {
	return time.UnixMilli((t.UnixMilli()/d.Milliseconds() + 1) * d.Milliseconds())
}
