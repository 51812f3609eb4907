package esl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/fsvars"
)

var _ call.Originator = (*Adapter)(nil)

// ErrNoEvents is Originate's error when the adapter has no event
// connection to FreeSWITCH configured (outbound mode with events: false).
var ErrNoEvents = errors.New("adapters/esl: originate needs the event connection (pbx.freeswitch.events: true in outbound mode)")

// OutcomeUnknown is the Cause of an attempt whose outcome was lost with the
// event connection: FreeSWITCH's result went out while callpop was
// reconnecting and the channel was gone by then (reported as no_answer).
const OutcomeUnknown = "OUTCOME_UNKNOWN"

// lostResultGrace is how long Originate waits, after a reconnect found the
// channel gone, for the job's result (FreeSWITCH fires it just after the
// channel ends) before it calls the outcome unknown.
var lostResultGrace = time.Second

// origWait is one originate in flight: its job's result and the channel's
// answer and hang-up, from whichever event connection sees them.
type origWait struct {
	id, job  string
	result   chan string // the BACKGROUND_JOB body
	answered chan struct{}
	ended    chan string // Hangup-Cause
	once     sync.Once
}

// Originate places a callback (call.Originator): `bgapi originate
// {vars}<endpoint> <extension> XML <context>` on the event connection, the
// decision's variables on the new channel from its creation (its uuid is
// o.ID), the call registered with the LegSink and its agent legs followed,
// and the outcome from the job's result. See docs/freeswitch.md, "Callbacks".
func (a *Adapter) Originate(ctx context.Context, o call.Originate) (res call.OriginateResult, err error) {
	defer func() {
		outcome := string(res.Outcome)
		if err != nil {
			outcome = "error"
		}
		a.m.originate.WithLabelValues(outcome).Inc()
	}()
	if !a.cfg.needsSocket() {
		return call.OriginateResult{}, ErrNoEvents
	}
	cmd, err := originateCommand(o)
	if err != nil {
		return call.OriginateResult{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, a.cfg.CommandTimeout)
	cn, err := a.current(cctx)
	cancel()
	if err != nil {
		return call.OriginateResult{}, fmt.Errorf("adapters/esl: originate: no event connection to %s: %w", a.cfg.Address, err)
	}
	w := &origWait{id: o.ID, job: eslwire.NewUUID(), result: make(chan string, 1), answered: make(chan struct{}), ended: make(chan string, 1)}
	if !a.addOriginate(w) {
		return call.OriginateResult{}, fmt.Errorf("adapters/esl: originate: call id %s already being originated", o.ID)
	}
	defer a.dropOriginate(w)

	// registered before the channel exists, so its first events are seen
	c := o.Call
	c.ID, c.Channel = o.ID, call.ChannelCallback
	c.PBX = cmp.Or(c.PBX, "freeswitch")
	d := o.Decision
	d.CallID = o.ID
	a.legs.enriched(o.ID, o.ID)
	a.deps.Sink.CallEnriched(call.Enriched{CallID: o.ID, Call: c, Decision: d, PBX: cmp.Or(a.deps.PBX, defaultPBX)})
	a.log.Info("originating callback", "call", o.ID, "callback", call.CleanToken(o.CallbackID),
		"number", call.MaskNumber(o.Number), "extension", o.Extension, "context", o.Context)

	sctx, cancel := context.WithTimeout(ctx, a.cfg.CommandTimeout)
	sent, err := cn.bgapiStart(sctx, cmd, w.job, w.result)
	cancel()
	if err != nil && !sent {
		a.abandon(o.ID)
		return call.OriginateResult{}, fmt.Errorf("adapters/esl: originate: %w", err)
	}
	defer cn.forgetJob(w.job)
	// sent but not confirmed (the reply overdue, the connection gone): it
	// may run; the channel tells
	res, err = a.awaitOriginate(ctx, cn, o, d, w, err != nil)
	if err != nil { // FreeSWITCH did not run originate (-USAGE, not loaded…)
		a.abandon(o.ID)
		return call.OriginateResult{}, err
	}
	if res.Outcome != call.OutcomeConnected {
		// a channel never created sends no hang-up: the call ends here (once:
		// whichever of this and the hang-up event comes first)
		a.abandon(o.ID)
	}
	return res, nil
}

// awaitOriginate waits for the outcome of a sent originate; unsure: its
// command reply was lost, so the channel is looked at at once.
func (a *Adapter) awaitOriginate(ctx context.Context, cn *conn, o call.Originate, d call.Decision, w *origWait, unsure bool) (call.OriginateResult, error) {
	lost := false
	for {
		var answered <-chan struct{}
		var ended <-chan string
		if lost { // the job's result may be gone: the channel's events decide
			answered, ended = w.answered, w.ended
		}
		var gone <-chan struct{} = cn.done
		if unsure {
			closed := make(chan struct{})
			close(closed)
			gone, unsure = closed, false
		}
		select {
		case body := <-w.result:
			res, err := jobOutcome(body)
			if err != nil {
				return call.OriginateResult{}, err
			}
			a.setCallInfo(ctx, o, d, res)
			return res, nil
		case <-answered:
			res := call.OriginateResult{Outcome: call.OutcomeConnected, Channel: o.ID}
			a.setCallInfo(ctx, o, d, res)
			return res, nil
		case cause := <-ended:
			return causeOutcome(cause), nil
		case <-ctx.Done():
			return a.cancelOriginate(cn, w), nil
		case <-gone:
			lost = true
			a.log.Warn("callback placed but its result may be lost (event connection down or reply overdue); checking its channel", "call", o.ID)
			next, r, ok := a.afterLoss(ctx, w)
			if ok {
				if r.Outcome == call.OutcomeConnected {
					a.setCallInfo(ctx, o, d, r)
				}
				return r, nil
			}
			if next == nil { // ctx ended with no connection: FreeSWITCH's originate_timeout ends the ringing
				return call.OriginateResult{Outcome: call.OutcomeNoAnswer, Cause: "ORIGINATOR_CANCEL", Channel: o.ID}, nil
			}
			cn = next
		}
	}
}

// afterLoss looks at the channel once a new event connection is up: answered
// → connected; gone → the result or events that arrived meanwhile, else the
// outcome is unknown (no_answer, OutcomeUnknown); still ringing → go on
// waiting on next (ok false). next is nil when ctx ended first.
func (a *Adapter) afterLoss(ctx context.Context, w *origWait) (next *conn, res call.OriginateResult, ok bool) {
	for {
		cn, err := a.current(ctx)
		if err != nil {
			if r, done := w.settled(); done {
				return nil, r, true
			}
			return nil, call.OriginateResult{}, false
		}
		if r, done := w.settled(); done {
			return cn, r, true
		}
		dctx, cancel := context.WithTimeout(ctx, a.cfg.CommandTimeout)
		dump, err := cn.api(dctx, "uuid_dump "+w.id)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, call.OriginateResult{}, false
			}
			continue // that connection went too
		}
		if !strings.HasPrefix(dump, "-ERR") {
			hs, _, _ := eslwire.ParseHeaderBlock([]byte(dump))
			if eslwire.Decode(hs.Get("Answer-State")) == "answered" {
				return cn, call.OriginateResult{Outcome: call.OutcomeConnected, Channel: w.id}, true
			}
			return cn, call.OriginateResult{}, false // ringing: its events and result come on cn
		}
		t := time.NewTimer(lostResultGrace)
		defer t.Stop()
		select {
		case body := <-w.result:
			if r, err := jobOutcome(body); err == nil {
				return cn, r, true
			}
		case cause := <-w.ended:
			if r, done := w.settled(); done {
				return cn, r, true
			}
			return cn, causeOutcome(cause), true
		case <-w.answered:
			return cn, call.OriginateResult{Outcome: call.OutcomeConnected, Channel: w.id}, true
		case <-t.C:
		case <-ctx.Done():
		}
		return cn, call.OriginateResult{Outcome: call.OutcomeNoAnswer, Cause: OutcomeUnknown, Channel: w.id}, true
	}
}

// settled is what the events seen so far say about the attempt.
func (w *origWait) settled() (call.OriginateResult, bool) {
	select {
	case body := <-w.result:
		if r, err := jobOutcome(body); err == nil {
			return r, true
		}
	default:
	}
	select {
	case <-w.answered:
		return call.OriginateResult{Outcome: call.OutcomeConnected, Channel: w.id}, true
	default:
	}
	select {
	case cause := <-w.ended:
		return causeOutcome(cause), true
	default:
	}
	return call.OriginateResult{}, false
}

// cancelOriginate ends a ringing attempt whose ctx ended: `uuid_kill <id>
// ORIGINATOR_CANCEL`, no_answer. An attempt already answered is connected
// and left alone.
func (a *Adapter) cancelOriginate(cn *conn, w *origWait) call.OriginateResult {
	select {
	case <-w.answered:
		return call.OriginateResult{Outcome: call.OutcomeConnected, Channel: w.id}
	default:
	}
	kctx, cancel := context.WithTimeout(context.Background(), a.cfg.CommandTimeout)
	defer cancel()
	out, err := cn.bgapi(kctx, "uuid_kill "+w.id+" ORIGINATOR_CANCEL")
	if err != nil {
		if nc, cerr := a.current(kctx); cerr == nil && nc != cn {
			out, err = nc.bgapi(kctx, "uuid_kill "+w.id+" ORIGINATOR_CANCEL")
		}
	}
	if err != nil {
		a.log.Warn("callback not cancelled; FreeSWITCH's originate_timeout ends it", "call", w.id, "err", err)
	} else if !strings.HasPrefix(out, "+OK") {
		// gone already: its result may be in
		if r, done := w.settled(); done {
			return r
		}
	}
	return call.OriginateResult{Outcome: call.OutcomeNoAnswer, Cause: "ORIGINATOR_CANCEL", Channel: w.id}
}

// setCallInfo finishes a connected attempt: the softphone's Call-Info header
// for the agent legs (not set at originate: it would go to the customer).
func (a *Adapter) setCallInfo(ctx context.Context, o call.Originate, d call.Decision, res call.OriginateResult) {
	if res.Outcome != call.OutcomeConnected {
		return
	}
	ci, ok := fsvars.CallInfo(d)
	if !ok {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.CommandTimeout)
	defer cancel()
	out, err := a.bgapi(sctx, "uuid_setvar "+o.ID+" "+ci.Name+" "+ci.Value)
	if err == nil {
		err = replyErr(out)
	}
	if err != nil {
		a.log.Info("callback: Call-Info not set", "call", o.ID, "err", err)
	}
}

// abandon undoes the registration of an attempt that did not happen.
func (a *Adapter) abandon(id string) {
	if a.legs.forget(id) {
		a.deps.Sink.CallEnded(call.CallEnd{CallID: id, CallerChannel: id, At: time.Now()})
	}
}

func (a *Adapter) addOriginate(w *origWait) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.origs == nil {
		a.origs, a.origJobs = map[string]*origWait{}, map[string]*origWait{}
	}
	if _, busy := a.origs[w.id]; busy {
		return false
	}
	a.origs[w.id], a.origJobs[w.job] = w, w
	a.origN.Add(1)
	return true
}

func (a *Adapter) dropOriginate(w *origWait) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.origs, w.id)
	delete(a.origJobs, w.job)
	a.origN.Add(-1)
}

// originateEvent hands an originate's events to its waiter: the job's
// result arriving on another connection than the one it was sent on, the
// channel's answer and hang-up. On the read goroutine: never blocks.
func (a *Adapter) originateEvent(ev *eslwire.Event) {
	if a.origN.Load() == 0 {
		return
	}
	a.mu.Lock()
	if len(a.origs) == 0 {
		a.mu.Unlock()
		return
	}
	var w *origWait
	name := ev.Name()
	if name == "BACKGROUND_JOB" {
		w = a.origJobs[ev.Raw("Job-UUID")]
	} else {
		w = a.origs[ev.Get("Unique-ID")]
	}
	a.mu.Unlock()
	if w == nil {
		return
	}
	switch name {
	case "BACKGROUND_JOB":
		select {
		case w.result <- string(ev.Body):
		default:
		}
	case "CHANNEL_ANSWER":
		w.once.Do(func() { close(w.answered) })
	case "CHANNEL_HANGUP_COMPLETE":
		select {
		case w.ended <- call.CleanToken(ev.Get("Hangup-Cause")):
		default:
		}
	}
}

// jobOutcome reads originate's reply: `+OK <uuid>` (answered and sent into
// the dialplan) or `-ERR <CAUSE>`; anything else (-USAGE, "-ERR originate
// Command not found!", "-ERR permission denied") is an error: no call was placed.
func jobOutcome(body string) (call.OriginateResult, error) {
	body = strings.TrimSpace(body)
	if rest, ok := strings.CutPrefix(body, "+OK"); ok {
		return call.OriginateResult{Outcome: call.OutcomeConnected, Channel: call.CleanToken(strings.TrimSpace(rest))}, nil
	}
	if rest, ok := strings.CutPrefix(body, "-ERR "); ok && isCause(rest) {
		return causeOutcome(rest), nil
	}
	return call.OriginateResult{}, fmt.Errorf("adapters/esl: originate: %s", call.CleanValue(body))
}

// isCause reports whether s is a FreeSWITCH cause name (switch_channel_cause2str).
func isCause(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// causeOutcome maps the cause an unanswered attempt ended with (FreeSWITCH's
// names, switch_channel.c CAUSE_CHART; Q.850 in brackets):
//   - busy: USER_BUSY (17), CALL_REJECTED (21: declined, SIP 603);
//   - no_answer: it rang out or nobody responded: NO_ANSWER (19: the
//     originate_timeout, SIP 480/408 from some carriers), NO_USER_RESPONSE
//     (18), ALLOTTED_TIMEOUT, PROGRESS_TIMEOUT, RECOVERY_ON_TIMER_EXPIRE
//     (102: SIP 408, no final answer in time), SUBSCRIBER_ABSENT (20: SIP
//     480, the phone unreachable for now), ORIGINATOR_CANCEL (callpop gave up);
//   - failed: the rest: UNALLOCATED_NUMBER (1), NO_ROUTE_DESTINATION (3),
//     INVALID_NUMBER_FORMAT (28), NORMAL_TEMPORARY_FAILURE (41),
//     DESTINATION_OUT_OF_ORDER (27), NORMAL_CIRCUIT_CONGESTION (34),
//     GATEWAY_DOWN, NORMAL_CLEARING (what a malformed originate reports)…
func causeOutcome(cause string) call.OriginateResult {
	cause = strings.TrimSpace(cause)
	r := call.OriginateResult{Outcome: call.OutcomeFailed, Cause: cause}
	switch cause {
	case "USER_BUSY", "CALL_REJECTED":
		r.Outcome = call.OutcomeBusy
	case "NO_ANSWER", "NO_USER_RESPONSE", "ALLOTTED_TIMEOUT", "PROGRESS_TIMEOUT", "RECOVERY_ON_TIMER_EXPIRE",
		"SUBSCRIBER_ABSENT", "ORIGINATOR_CANCEL":
		r.Outcome = call.OutcomeNoAnswer
	}
	return r
}

// ---- the command --------------------------------------------------------

// originateCommand renders `originate {vars}<endpoint> <extension> XML
// <context>` for o, or refuses what the command line cannot carry.
func originateCommand(o call.Originate) (string, error) {
	if !isCallID(o.ID) {
		return "", errors.New("adapters/esl: originate: id: want 1 to 64 of [A-Za-z0-9._-]")
	}
	if err := checkEndpoint(o.Endpoint); err != nil {
		return "", err
	}
	if !isToken(o.Extension) || strings.EqualFold(o.Extension, "undef") {
		return "", errors.New("adapters/esl: originate: extension: want 1 to 64 of [A-Za-z0-9+*#._-]")
	}
	if !isToken(o.Context) || strings.EqualFold(o.Context, "undef") {
		return "", errors.New("adapters/esl: originate: context: want 1 to 64 of [A-Za-z0-9+*#._-]")
	}
	var b strings.Builder
	b.WriteString("originate {")
	for i, v := range originateVars(o) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(v.Name)
		b.WriteByte('=')
		b.WriteString(BraceValue(v.Value))
	}
	b.WriteByte('}')
	b.WriteString(o.Endpoint)
	b.WriteByte(' ')
	b.WriteString(o.Extension)
	b.WriteString(" XML ")
	b.WriteString(o.Context)
	return b.String(), nil
}

// originateVars are the variables of the {…} list, in order, every value in
// its FreeSWITCH-safe form (as the incoming-call path sets them:
// fsvars.Vars through fsvars.Text), not yet escaped for the list; empty
// values and odd names left out.
func originateVars(o call.Originate) []call.Var {
	d := o.Decision
	d.CallID = o.ID
	vars := []call.Var{{Name: "origination_uuid", Value: o.ID}}
	if id := call.CleanToken(o.CallbackID); id != "" {
		vars = append(vars, call.Var{Name: "callpop_callback_id", Value: id})
	}
	dv, _ := fsvars.FitExtras(fsvars.Vars(d, o.ID, fsvars.Text, func(_ string, add []string) string {
		return fsvars.AppendList("", add...)
	}), fsvars.SetvarMultiMax)
	vars = append(vars, dv...)
	if n := fsvars.Text(o.CallerIDName); n != "" {
		vars = append(vars, call.Var{Name: "origination_caller_id_name", Value: n})
	}
	if n := call.CleanToken(o.CallerIDNumber); n != "" {
		vars = append(vars, call.Var{Name: "origination_caller_id_number", Value: n})
	}
	if o.Timeout > 0 {
		s := int64((o.Timeout + time.Second - 1) / time.Second)
		vars = append(vars, call.Var{Name: "originate_timeout", Value: strconv.FormatInt(s, 10)})
	}
	out := vars[:0]
	for _, v := range vars {
		if v.Value != "" && fsvars.IsVarName(v.Name) {
			out = append(out, v)
		}
	}
	return out
}

// BraceValue escapes a value (already fsvars.Text or fsvars.URL) for its
// place in originate's `{name=value,…}` list, which FreeSWITCH parses
// twice (switch_separate_string, switch_utils.c): originate's argument is
// split on blanks, unescaping `\s` `\'` `\\` and removing quote pairs, and
// the list is then split on `,` and on the first `=`, unescaping `\,`
// `\'` and removing quote pairs again. So a space is sent `\s` (it would
// split the argument) and a comma `\,` (it would end the variable). ":_:"
// anywhere in the argument makes originate an enterprise originate of
// several dial strings (switch_ivr_originate): it is sent `:\'_\':`, which
// the first pass turns into `:'_':` and the second, removing the pair, back
// into ":_:". `'` `\` `{` `}` `$` `"` and control characters, which the
// value forms never hold, are dropped.
func BraceValue(v string) string {
	var b strings.Builder
	b.Grow(len(v) + 8)
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == ' ':
			b.WriteString(`\s`)
		case c == ',':
			b.WriteString(`\,`)
		case c == '\'' || c == '\\' || c == '{' || c == '}' || c == '$' || c == '"' || c < 0x20 || c == 0x7f:
		case c == ':' && strings.HasPrefix(v[i:], ":_:"):
			b.WriteString(`:\'_\'`)
			i++ // the `_`; the closing ':' is written next
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// checkEndpoint refuses a dial string originate cannot carry as one
// endpoint: a blank (splits the argument), `,` `|` (several endpoints),
// ":_:" (an enterprise originate), brackets (variable lists), quotes,
// backslashes, `$` (expansion), `^` `&` `!` `~` and control characters.
func checkEndpoint(ep string) error {
	if ep == "" || len(ep) > 512 || strings.EqualFold(ep, "undef") || strings.Contains(ep, ":_:") || !strings.Contains(ep, "/") {
		return errors.New("adapters/esl: originate: endpoint: want one dial string such as sofia/gateway/<gateway>/<number>")
	}
	for i := 0; i < len(ep); i++ {
		c := ep[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("/@.:_-+%=;#*", c) >= 0:
		default:
			return fmt.Errorf("adapters/esl: originate: endpoint: %q cannot be carried in originate's dial string", string(c))
		}
	}
	return nil
}

func isCallID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
