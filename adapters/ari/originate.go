package ari

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callpop/callpop/call"
)

var _ call.Originator = (*Adapter)(nil)

// Bounds of what an originate may name. Asterisk keeps at most 79
// characters of a context or extension (AST_MAX_CONTEXT, AST_MAX_EXTENSION)
// and 149 of a channel id; a dial string has no fixed bound, but one this
// long is not a telephone number.
const (
	maxOriginID       = 128
	maxOriginEndpoint = 256
	maxOriginPlace    = 79
)

// originWait is an originate waiting for its channel's outcome, fed by the
// event reader (ChannelStateChange, ChannelDestroyed).
type originWait struct {
	once sync.Once
	done chan struct{}
	res  call.OriginateResult // set before done is closed

	mu         sync.Mutex
	dialStatus string // the originate's own Dial event's last dialstatus (BUSY, NOANSWER…)
}

func (w *originWait) finish(res call.OriginateResult) {
	w.once.Do(func() {
		w.res = res
		close(w.done)
	})
}

// originState is a ChannelStateChange: "Up" is the customer answering.
func (a *Adapter) originState(chanID, state string) {
	if state != "Up" {
		return
	}
	if w, ok := a.origins.Load(chanID); ok {
		w.(*originWait).finish(call.OriginateResult{Outcome: call.OutcomeConnected, Channel: chanID})
	}
}

// originDial is the originate's own Dial event (no caller, the new channel
// as peer): its dialstatus is kept for originEnded.
func (a *Adapter) originDial(chanID, status string) {
	if status == "" {
		return
	}
	if w, ok := a.origins.Load(chanID); ok {
		ow := w.(*originWait)
		ow.mu.Lock()
		ow.dialStatus = status
		ow.mu.Unlock()
	}
}

// originEnded is a ChannelDestroyed: before Up, its cause says why — or,
// when it carries none (0), the originate's last Dial status: a busy reached
// through a Local channel ends with Dial BUSY and cause 0, a congestion
// with Dial CONGESTION and cause 0 (seen on Asterisk 22.10.1). A cause
// always wins over the status, which is coarser: an unallocated number
// there ends with Dial NOANSWER and cause 1.
func (a *Adapter) originEnded(chanID string, cause int, causeTxt string) {
	w, ok := a.origins.Load(chanID)
	if !ok {
		return
	}
	ow := w.(*originWait)
	ow.mu.Lock()
	status := ow.dialStatus
	ow.mu.Unlock()
	outcome, text := outcomeOfCause(cause), causeText(cause, causeTxt)
	if o, ok := outcomeOfDialStatus(status); ok && cause == 0 {
		outcome, text = o, status+" ("+text+")"
	}
	ow.finish(call.OriginateResult{Outcome: outcome, Cause: text, Channel: chanID})
}

// outcomeOfDialStatus maps the originate's last Dial status; ok is false
// for a status that says nothing of the outcome (RINGING, PROGRESS, ANSWER:
// the channel's state says that).
func outcomeOfDialStatus(status string) (call.Outcome, bool) {
	switch status {
	case "BUSY":
		return call.OutcomeBusy, true
	case "NOANSWER":
		return call.OutcomeNoAnswer, true
	case "CHANUNAVAIL", "CONGESTION":
		return call.OutcomeFailed, true
	}
	return "", false
}

// outcomeOfCause maps the Q.850 cause of a channel destroyed before it was
// answered: 17 user busy and 21 call rejected are busy; 18 no user
// response, 19 no answer, 20 subscriber absent, 16 normal clearing (many
// trunks' way of ringing out) and 0 (Asterisk's own dial timeout leaves no
// cause) are no answer; anything else (1 unallocated number, 3 no route, 22
// number changed, 27 destination out of order, 28 invalid number format,
// 34/38/41/42 congestion and network failures…) is failed.
func outcomeOfCause(cause int) call.Outcome {
	switch cause {
	case 17, 21:
		return call.OutcomeBusy
	case 0, 16, 18, 19, 20:
		return call.OutcomeNoAnswer
	}
	return call.OutcomeFailed
}

// causeText is "17 User busy": the number and Asterisk's text (cleaned).
func causeText(cause int, txt string) string {
	s := strconv.Itoa(cause)
	if t := call.CleanValueN(txt, 64); t != "" {
		s += " " + t
	}
	return s
}

// Originate calls a customer back (call.Originator): POST /channels dials
// o.Endpoint with the decision's variables set on the new channel at
// creation (the same variables, through the same sanitiser, as an incoming
// call gets, plus CALLPOP_CALLBACK_ID and the customer's number as
// CALLERID(num), the caller the agents' phones show; the customer's phone
// shows o.CallerID*, which Asterisk sends from the channel's connected
// line). Answered, the channel runs o.Context/o.Extension priority 1. The
// call is reported to the LegSink as enriched and its agent legs are
// followed as an incoming call's are. It returns once the customer
// answered (connected) or the channel ended before (busy, no_answer,
// failed by its hang-up cause); when ctx ends first the channel is hung up
// and the outcome is no_answer. An error (and no result) means Asterisk
// could not be asked or refused the request: no call was placed.
func (a *Adapter) Originate(ctx context.Context, o call.Originate) (call.OriginateResult, error) {
	res, err := a.originate(ctx, o)
	outcome := string(res.Outcome)
	if err != nil {
		outcome = "error"
	}
	a.m.originate.WithLabelValues(outcome).Inc()
	return res, err
}

func (a *Adapter) originate(ctx context.Context, o call.Originate) (call.OriginateResult, error) {
	if err := checkOriginate(o); err != nil {
		return call.OriginateResult{}, err
	}
	if ok, why := a.Ready(); !ok {
		// Without the event socket the outcome could never be seen.
		return call.OriginateResult{}, fmt.Errorf("adapters/ari: originate: not connected: %s", why)
	}
	d := o.Decision
	d.CallID = o.ID
	body, err := json.Marshal(struct {
		Variables map[string]string `json:"variables"`
	}{originVars(o, d)})
	if err != nil {
		return call.OriginateResult{}, fmt.Errorf("adapters/ari: originate: %w", err)
	}
	q := url.Values{
		"endpoint":  {o.Endpoint},
		"context":   {o.Context},
		"extension": {o.Extension},
		"priority":  {"1"},
		"channelId": {o.ID},
	}
	if cid := originCallerID(o.CallerIDName, o.CallerIDNumber); cid != "" {
		q.Set("callerId", cid)
	}
	if o.Timeout > 0 {
		q.Set("timeout", strconv.Itoa(int(math.Ceil(o.Timeout.Seconds()))))
	}

	// Registered before the request: the answer may race its first events.
	w := &originWait{done: make(chan struct{})}
	if _, dup := a.origins.LoadOrStore(o.ID, w); dup {
		return call.OriginateResult{}, fmt.Errorf("adapters/ari: originate: call id %q is being originated already", o.ID)
	}
	defer a.origins.Delete(o.ID)

	rctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	answer, err := a.rest.doWith(a.rest.ctl, rctx, http.MethodPost, "/channels", q.Encode(), body, true)
	cancel()
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) {
			return call.OriginateResult{}, fmt.Errorf("adapters/ari: originate refused: %w", se)
		}
		// No answer (a timeout, a dropped connection): Asterisk may have
		// created the channel all the same; the id is ours, so hang up
		// whatever rings under it rather than leave it unfollowed.
		a.hangupOrigin(o.ID)
		return call.OriginateResult{}, fmt.Errorf("adapters/ari: originate: %w", err)
	}
	var ch struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(answer, &ch) != nil || ch.ID != o.ID {
		// Not the channel asked for: hang up whatever was created.
		if ch.ID != "" {
			a.hangupOrigin(ch.ID)
		}
		return call.OriginateResult{}, errors.New("adapters/ari: originate: Asterisk answered without the channel asked for")
	}

	c := o.Call
	c.ID, c.Channel = o.ID, call.ChannelCallback
	if c.PBX == "" {
		c.PBX = "asterisk"
	}
	if c.Received.IsZero() {
		c.Received = time.Now()
	}
	a.sink().CallEnriched(call.Enriched{CallID: o.ID, Call: c, Decision: d, PBX: a.deps.PBX})
	followed := a.cfg.FollowLegs && a.follow.add(o.ID, o.ID)

	// Events of the channel reach the app only once it is subscribed; the
	// subscription can only be made now that the channel exists.
	sctx, scancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	err = a.rest.subscribe(sctx, a.cfg.App, o.ID)
	scancel()
	var se *StatusError
	switch {
	case err == nil:
	case errors.As(err, &se) && se.Code == http.StatusUnprocessableEntity:
		// 422 "Event source does not exist": it ended before it could be
		// watched (or its ChannelDestroyed, sent to nobody, is lost).
		if followed {
			a.follow.callerGone(o.ID, time.Now(), true)
		}
		return a.lostOrigin(w, o.ID), nil
	default:
		// Its outcome cannot be seen: hang it up rather than leave a
		// call nobody follows ringing.
		a.m.restErrors.WithLabelValues("subscribe").Inc()
		a.log.Warn("originate: subscribing to the callback's channel failed; hanging it up", "chan", o.ID, "err", err)
		a.hangupOrigin(o.ID)
		if followed {
			a.follow.callerGone(o.ID, time.Now(), true)
		}
		select {
		case <-w.done:
			return w.res, nil
		default:
		}
		// Not the number's fault: no_answer leaves a retry possible.
		return call.OriginateResult{Outcome: call.OutcomeNoAnswer, Cause: "not followed: " + call.CleanValueN(err.Error(), 96), Channel: o.ID}, nil
	}
	// An event sent before the subscription is lost: ask for the state.
	snapCtx, stopSnap := context.WithCancel(ctx)
	var snap sync.WaitGroup
	snap.Add(1)
	go func() { defer snap.Done(); a.originSnapshot(snapCtx, w, o.ID) }()
	defer snap.Wait()
	defer stopSnap()

	select {
	case <-w.done:
		res := w.res
		if res.Outcome == call.OutcomeConnected && !followed {
			a.unsubscribeOrigin(o.ID)
		}
		return res, nil
	case <-ctx.Done():
	}
	select {
	case <-w.done: // answered (or ended) as ctx ended: that stands
		return w.res, nil
	default:
	}
	a.hangupOrigin(o.ID)
	return call.OriginateResult{Outcome: call.OutcomeNoAnswer, Cause: "timeout", Channel: o.ID}, nil
}

// originSnapshot reads the channel once subscribed: one answered (or gone)
// before the subscription sent its event to nobody.
func (a *Adapter) originSnapshot(ctx context.Context, w *originWait, chanID string) {
	rctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	body, err := a.rest.doWith(a.rest.ctl, rctx, http.MethodGet, "/channels/"+url.PathEscape(chanID), "", nil, true)
	switch {
	case err == nil:
		var ch struct {
			State string `json:"state"`
		}
		if json.Unmarshal(body, &ch) == nil && ch.State == "Up" {
			w.finish(call.OriginateResult{Outcome: call.OutcomeConnected, Channel: chanID})
		}
	case errors.Is(err, ErrGone):
		// Destroyed since the subscription: its ChannelDestroyed is on
		// the way; wait a moment for the cause it carries.
		t := time.NewTimer(a.cfg.RequestTimeout)
		defer t.Stop()
		select {
		case <-w.done:
		case <-ctx.Done():
		case <-t.C:
			a.lostOrigin(w, chanID)
		}
	}
}

// lostOrigin ends an originate whose channel ended unseen: no cause is
// known; no answer is the outcome that leaves a retry possible.
func (a *Adapter) lostOrigin(w *originWait, chanID string) call.OriginateResult {
	w.finish(call.OriginateResult{Outcome: call.OutcomeNoAnswer, Cause: "unknown: the channel ended before it could be followed", Channel: chanID})
	return w.res
}

// hangupOrigin hangs up an originated channel (DELETE /channels/{id},
// reason no_answer), on a context of its own: ctx has ended already.
func (a *Adapter) hangupOrigin(chanID string) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.RequestTimeout)
	defer cancel()
	_, err := a.rest.doWith(a.rest.ctl, ctx, http.MethodDelete, "/channels/"+url.PathEscape(chanID), "reason=no_answer", nil, false)
	if err != nil && !errors.Is(err, ErrGone) {
		a.m.restErrors.WithLabelValues("hangup").Inc()
		a.log.Warn("originate: hanging up the callback's channel failed", "chan", chanID, "err", err)
	}
}

func (a *Adapter) unsubscribeOrigin(chanID string) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.RequestTimeout)
	defer cancel()
	if err := a.rest.unsubscribe(ctx, a.cfg.App, chanID); err != nil && !errors.Is(err, ErrGone) {
		a.log.Debug("originate: unsubscribing from the callback's channel failed", "chan", chanID, "err", err)
	}
}

// originVars are the variables an originated channel gets at creation:
// those of an incoming call (channelVars: the CALLPOP_* contract,
// QUEUE_PRIO, __CALLPOP_CALL_ID, the caller-name and info-URL rewrites),
// CALLPOP_CALLBACK_ID and the customer's number as CALLERID(num). Empty
// values are left out: a new channel has none of them.
func originVars(o call.Originate, d call.Decision) map[string]string {
	vars := channelVars(o.ID, d)
	vars = append(vars,
		call.Var{Name: "CALLPOP_CALLBACK_ID", Value: call.CleanToken(o.CallbackID)},
		call.Var{Name: "CALLERID(num)", Value: dialNumber(o.Number)},
	)
	vars = slices.DeleteFunc(vars, func(v call.Var) bool { return v.Value == "" })
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	return m
}

// originCallerID is callerId, `"name" <number>`: the name through the
// value sanitiser without <>, the number reduced to 0-9 + * #.
func originCallerID(name, number string) string {
	name = strings.NewReplacer("<", "", ">", "").Replace(call.CleanValue(name))
	number = dialNumber(number)
	switch {
	case name == "" && number == "":
		return ""
	case name == "":
		return number
	}
	return `"` + name + `" <` + number + `>`
}

// dialNumber keeps the characters of a dialled number: 0-9 + * #, at
// most 32.
func dialNumber(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 32; i++ {
		if c := s[i]; c >= '0' && c <= '9' || c == '+' || c == '*' || c == '#' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// checkOriginate refuses what ARI or the dialplan cannot take safely: the
// call id (the channel id) outside [A-Za-z0-9._-], a dial string that is
// not tech/resource or holds anything beyond letters, digits and
// + - _ . @ / : # * = ; ~ !, a context or extension beyond what Asterisk's
// own names use.
func checkOriginate(o call.Originate) error {
	bad := func(field, why string) error {
		return fmt.Errorf("adapters/ari: originate: %s: %s", field, why)
	}
	if o.ID == "" || len(o.ID) > maxOriginID || !only(o.ID, "._-") {
		return bad("id", "must be 1 to 128 of A-Z a-z 0-9 . _ -")
	}
	tech, res, ok := strings.Cut(o.Endpoint, "/")
	switch {
	case !ok || tech == "" || res == "":
		return bad("endpoint", "must be tech/resource (PJSIP/+442079460018@trunk)")
	case len(o.Endpoint) > maxOriginEndpoint || !only(o.Endpoint, "+-_.@/:#*=;~!"):
		return bad("endpoint", "holds characters a dial string cannot take safely (or is too long)")
	}
	if o.Context == "" || len(o.Context) > maxOriginPlace || !only(o.Context, "+-_.") {
		return bad("context", "must be 1 to 79 of A-Z a-z 0-9 + - _ .")
	}
	if o.Extension == "" || len(o.Extension) > maxOriginPlace || !only(o.Extension, "+-_.*#") {
		return bad("extension", "must be 1 to 79 of A-Z a-z 0-9 + - _ . * #")
	}
	if o.Timeout < 0 {
		return bad("timeout", "must not be negative")
	}
	return nil
}

// only reports whether s holds ASCII letters, digits and extra alone.
func only(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}
