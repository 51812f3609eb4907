package arisim

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CallSpec describes one inbound call to offer.
type CallSpec struct {
	ID       string // channel id; empty = generated ("1795311890.13" form)
	Name     string // channel name; empty = "PJSIP/trunk-0000000n"
	CLI      string // CALLERID(num), verbatim (may be "anonymous", "", junk)
	CLIName  string // CALLERID(name)
	ANI      string // CALLERID(ani); absent from the event JSON, readable over REST
	NumPres  string // CALLERID(num-pres); "" = allowed_not_screened
	RDNIS    string // shows as channel.caller_rdnis when set
	DNIS     string // dialplan exten; default 0800123456
	Context  string // dialplan context; default from-pstn
	App      string // Stasis app; default Options.App
	Args     []string
	Kind     string        // free label for demos and stats ("known", "junk", ...)
	Silent   bool          // the StasisStart is lost (never sent): only a reconcile can find the channel
	HangupIn time.Duration // the caller hangs up this long after StasisStart, if still in Stasis
	// Vars are channel variables set before Stasis (a trunk leg's
	// CALLPOP_CALL_ID, from the X-Callpop-Call-Id header).
	Vars map[string]string

	// Agent legs after continue, like Queue(ringall): every agent rings, the
	// one at Answer answers (Answer < 0: nobody), the others are cancelled.
	Agents  []string // endpoints, e.g. "Local/1002@agents" or "PJSIP/1002"
	Answer  int
	RingFor time.Duration // time from ringing to answer (or to giving up)
	TalkFor time.Duration // time from answer to the caller hanging up
}

type channel struct {
	id, name, state       string
	linkedid              string // the first channel of the call (the caller's id for agent legs)
	callerNum, callerName string
	connNum, connName     string
	ani, numPres, rdnis   string
	context, exten, app   string
	appData               string
	priority              int
	created               time.Time
	vars                  map[string]string
	stasisApp             string // "" = not in Stasis
	args                  []string
	subs                  map[string]bool // apps subscribed to channel:<id>
	spec                  CallSpec
	inherit               map[string]bool // variables set with __ (inherited by agent legs)
	continued, hungUp     bool
	channelVars           []string // Options.ChannelVars
	inApps                []string // apps whose index holds this channel
	destroyed             bool
	gone                  chan struct{}       // dialplan channels: closed at the hang-up
	resume                chan ContinueTarget // dialplan channels in Stasis: the continue's target
	watched               chan struct{}       // an originate's Outcome.Watched: closed at the first subscription
}

func (ch *channel) json() channelJSON {
	j := channelJSON{
		ID: ch.id, Name: ch.name, State: ch.state,
		Caller:    callerJSON{Name: ch.callerName, Number: ch.callerNum},
		Connected: callerJSON{Name: ch.connName, Number: ch.connNum},
		Dialplan: dialplanJSON{Context: ch.context, Exten: ch.exten, Priority: ch.priority,
			AppName: ch.app, AppData: ch.appData},
		CreationTime: stamp(ch.created), Language: "en", CallerRDNIS: ch.rdnis,
	}
	if len(ch.channelVars) > 0 {
		j.ChannelVars = make(channelVars, len(ch.channelVars))
		for i, name := range ch.channelVars {
			v, _, _ := ch.read(name) // unset or unknown: ""
			j.ChannelVars[i] = nameValue{name, v}
		}
	}
	return j
}

func (s *Server) newID() string {
	return fmt.Sprintf("%d.%d", s.epoch, s.seq.Add(1))
}

// OfferCall creates an inbound channel that runs Stasis(app[,args]). With the
// app connected it sends StasisStart and the channel waits until continued
// or hung up; with no app connected Stasis() fails at once (STASISSTATUS=FAILED)
// and the call is recorded as Failed. It returns the channel id.
func (s *Server) OfferCall(spec CallSpec) string {
	if spec.App == "" {
		spec.App = s.opts.App
	}
	id, name := s.specDefaults(&spec)
	now := time.Now()
	ch := &channel{
		id: id, linkedid: id, name: name, state: "Ring", channelVars: s.opts.ChannelVars,
		callerNum: spec.CLI, callerName: spec.CLIName, ani: spec.ANI, numPres: spec.NumPres, rdnis: spec.RDNIS,
		context: spec.Context, exten: spec.DNIS, priority: 2, app: "Stasis",
		appData: strings.Join(append([]string{spec.App}, spec.Args...), ","),
		created: now, vars: map[string]string{}, subs: map[string]bool{}, inherit: map[string]bool{},
		args: spec.Args, spec: spec,
	}
	for k, v := range spec.Vars {
		ch.vars[k] = v
	}
	s.stats.offered.Add(1)

	s.mu.Lock()
	rec := s.addRecordLocked(id, spec)
	a := s.apps[spec.App]
	if a == nil || a.conn == nil {
		rec.Failed = true
		s.mu.Unlock()
		s.stats.failed.Add(1)
		return id
	}
	ch.stasisApp = spec.App
	s.channels[id] = ch
	s.indexLocked(ch)
	args := spec.Args
	if args == nil {
		args = []string{}
	}
	rec.Offered = time.Now()
	if !spec.Silent {
		s.emitLocked(ch, func(app string) []byte {
			return mustJSON(stasisStartJSON{Type: "StasisStart", Timestamp: stamp(now), Args: args,
				Channel: ch.json(), AsteriskID: asteriskID, Application: app})
		})
	}
	s.mu.Unlock()
	if spec.HangupIn > 0 {
		s.after(spec.HangupIn, func() { s.Hangup(id) })
	}
	return id
}

// specDefaults fills spec's dialplan defaults and returns the channel's id and name.
func (s *Server) specDefaults(spec *CallSpec) (id, name string) {
	if spec.DNIS == "" {
		spec.DNIS = "0800123456"
	}
	if spec.Context == "" {
		spec.Context = "from-pstn"
	}
	id, name = spec.ID, spec.Name
	if id == "" {
		id = s.newID()
	}
	if name == "" {
		name = fmt.Sprintf("PJSIP/trunk-%08x", s.seq.Add(1))
	}
	return id, name
}

// Hangup hangs up channel id as the caller would.
func (s *Server) Hangup(id string) { s.hangup(id, 16) }

// hangup ends channel id with a hang-up cause (Q.850): ChannelHangupRequest,
// StasisEnd when in Stasis, ChannelDestroyed with the cause and its text.
func (s *Server) hangup(id string, cause int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[id]
	if ch == nil || ch.hungUp {
		return
	}
	ch.hungUp = true
	if ch.gone != nil {
		close(ch.gone)
	}
	now := time.Now()
	j := ch.json()
	s.emitLocked(ch, func(app string) []byte {
		return mustJSON(hangupRequestJSON{Cause: cause, Type: "ChannelHangupRequest", Timestamp: stamp(now),
			Channel: j, AsteriskID: asteriskID, Application: app})
	})
	if ch.stasisApp != "" {
		s.stats.hungUp.Add(1)
		if r := s.records[id]; r != nil {
			r.HungUp = true
		}
		s.emitLocked(ch, func(app string) []byte {
			return mustJSON(channelEventJSON{Type: "StasisEnd", Timestamp: stamp(now), Channel: j,
				AsteriskID: asteriskID, Application: app})
		})
		ch.stasisApp = ""
	}
	ch.app, ch.appData = "", ""
	ch.destroyed = true
	s.indexLocked(ch)
	j = ch.json()
	s.emitLocked(ch, func(app string) []byte {
		return mustJSON(destroyedJSON{Type: "ChannelDestroyed", Timestamp: stamp(now), Cause: cause,
			CauseTxt: causeText(cause), Channel: j, AsteriskID: asteriskID, Application: app})
	})
	delete(s.channels, id)
}

func (s *Server) listChannels(w http.ResponseWriter) {
	s.mu.Lock()
	out := make([]channelJSON, 0, len(s.channels))
	for _, ch := range s.channels {
		out = append(out, ch.json())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b channelJSON) int { return strings.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getChannel(w http.ResponseWriter, id string) {
	s.mu.Lock()
	ch := s.channels[id]
	var j channelJSON
	if ch != nil {
		j = ch.json()
	}
	s.mu.Unlock()
	if ch == nil {
		writeMsg(w, http.StatusNotFound, "Channel not found")
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (s *Server) getVar(w http.ResponseWriter, id string, q url.Values) {
	s.stats.gets.Add(1)
	s.wait(s.opts.GetDelay)
	name := q.Get("variable")
	if name == "" {
		writeMsg(w, http.StatusBadRequest, "Variable name is required")
		return
	}
	s.mu.Lock()
	ch := s.channels[id]
	var val string
	found, fnErr := false, false
	if ch != nil {
		val, found, fnErr = ch.read(name)
	}
	s.mu.Unlock()
	switch {
	case ch == nil:
		writeMsg(w, http.StatusNotFound, "Provided channel was not found")
	case fnErr:
		writeMsg(w, http.StatusInternalServerError, "Unable to read provided function")
	case !found:
		writeMsg(w, http.StatusNotFound, "Provided variable was not found")
	default:
		writeJSON(w, http.StatusOK, map[string]string{"value": val})
	}
}

// read evaluates a variable or the dialplan functions the simulator knows.
func (ch *channel) read(name string) (val string, found, fnErr bool) {
	switch name {
	case "CALLERID(num)":
		return ch.callerNum, true, false
	case "CALLERID(name)":
		return ch.callerName, true, false
	case "CALLERID(all)":
		return fmt.Sprintf("%q <%s>", ch.callerName, ch.callerNum), true, false
	case "CALLERID(ani)":
		return ch.ani, true, false
	case "CALLERID(num-pres)", "CALLERID(name-pres)":
		if ch.numPres == "" {
			return "allowed_not_screened", true, false
		}
		return ch.numPres, true, false
	case "CALLERID(dnid)":
		return "", true, false
	case "CALLERID(rdnis)":
		return ch.rdnis, true, false
	case "CHANNEL(name)":
		return ch.name, true, false
	case "CHANNEL(linkedid)":
		if ch.linkedid != "" {
			return ch.linkedid, true, false
		}
		return ch.id, true, false
	}
	if strings.Contains(name, "(") {
		return "", false, true
	}
	v, ok := ch.vars[name]
	return v, ok, false
}

func (s *Server) setVar(w http.ResponseWriter, r *http.Request, id string, q url.Values) {
	p := params(r, q)
	name := p.Get("variable")
	value, hasValue := p.Get("value"), p.Has("value")
	if name == "" {
		writeMsg(w, http.StatusBadRequest, "Variable name is required")
		return
	}
	s.delaySet()
	s.mu.Lock()
	ch, ok := s.controlLocked(w, id)
	if !ok {
		s.mu.Unlock()
		return
	}
	s.setLocked(ch, name, value, hasValue)
	s.mu.Unlock()
	writeNoContent(w)
}

// controlLocked finds a channel callpop may act on, as Asterisk's
// find_control does: 404 when it does not exist, 409 when it is not in
// Stasis (both counted on its record as a failed set).
func (s *Server) controlLocked(w http.ResponseWriter, id string) (*channel, bool) {
	ch := s.channels[id]
	if ch != nil && ch.stasisApp != "" {
		return ch, true
	}
	if rec := s.records[id]; rec != nil {
		rec.SetErrors++
	}
	if ch == nil {
		writeMsg(w, http.StatusNotFound, "Channel not found")
	} else {
		writeMsg(w, http.StatusConflict, "Channel not in Stasis application")
	}
	return nil, false
}

// setLocked sets one variable (or the functions the simulator knows) and
// emits its ChannelVarset, as pbx_builtin_setvar_helper does.
func (s *Server) setLocked(ch *channel, name, value string, hasValue bool) {
	s.stats.sets.Add(1)
	bare := strings.TrimLeft(name, "_")
	switch {
	case name == "CALLERID(name)":
		ch.callerName = value
	case name == "CALLERID(num)":
		ch.callerNum = value
	case strings.Contains(name, "("):
		// an unknown function: 204 and nothing happens
	case !hasValue:
		delete(ch.vars, bare)
		delete(ch.inherit, bare)
	default:
		ch.vars[bare] = value
		if strings.HasPrefix(name, "__") {
			ch.inherit[bare] = true
		}
	}
	if rec := s.records[ch.id]; rec != nil {
		rec.SetOrder = append(rec.SetOrder, name)
		if hasValue {
			rec.Vars[name] = value
		} else {
			delete(rec.Vars, name)
		}
	}
	if !strings.Contains(name, "(") {
		now := time.Now()
		j := ch.json()
		s.emitLocked(ch, func(app string) []byte {
			return mustJSON(varsetJSON{Variable: name, Value: value, Type: "ChannelVarset", Timestamp: stamp(now),
				Channel: j, AsteriskID: asteriskID, Application: app})
		})
	}
}

func (s *Server) continueChannel(w http.ResponseWriter, r *http.Request, id string, q url.Values) {
	p := params(r, q)
	s.mu.Lock()
	ch := s.channels[id]
	switch {
	case ch == nil:
		s.mu.Unlock()
		writeMsg(w, http.StatusNotFound, "Channel not found")
		return
	case ch.stasisApp == "":
		s.mu.Unlock()
		writeMsg(w, http.StatusConflict, "Channel not in Stasis application")
		return
	}
	label := p.Get("label")
	if label != "" && s.opts.Labels != nil && !slices.Contains(s.opts.Labels, label) {
		s.mu.Unlock()
		writeMsg(w, http.StatusNotFound, "Requested label can not be found")
		return
	}
	prio, _ := strconv.Atoi(p.Get("priority"))
	now := time.Now()
	if rec := s.records[id]; rec != nil {
		rec.Continued = now
		rec.Target = ContinueTarget{Context: p.Get("context"), Extension: p.Get("extension"), Label: label, Priority: prio}
	}
	app, resume := ch.stasisApp, ch.resume
	ch.stasisApp, ch.resume = "", nil
	s.indexLocked(ch)
	ch.continued = true
	j := ch.json()
	if ctx := p.Get("context"); ctx != "" {
		ch.context = ctx
	}
	if ext := p.Get("extension"); ext != "" {
		ch.exten = ext
	}
	ch.priority++
	ch.app, ch.appData = "", ""
	if len(ch.spec.Agents) > 0 {
		ch.app, ch.appData = "Queue", "support"
	}
	s.mu.Unlock()
	s.stats.continued.Add(1)
	writeNoContent(w)
	if f := s.opts.OnContinue; f != nil {
		f(id, now)
	}

	s.after(s.opts.EndDelay, func() {
		s.mu.Lock()
		// StasisEnd goes to the app the channel left, and to subscribers.
		s.emitToLocked(ch, []string{app}, func(a string) []byte {
			return mustJSON(channelEventJSON{Type: "StasisEnd", Timestamp: stamp(time.Now()), Channel: j,
				AsteriskID: asteriskID, Application: a})
		})
		s.mu.Unlock()
		if resume != nil { // a dialplan channel: its dialplan goes on
			resume <- ContinueTarget{Context: p.Get("context"), Extension: p.Get("extension"), Label: label, Priority: prio}
		} else if len(ch.spec.Agents) > 0 {
			s.runAgents(id)
		} else if s.opts.Linger > 0 {
			s.after(s.opts.Linger, func() { s.Hangup(id) })
		}
	})
}

// runAgents plays the agent legs of a queue call: Dial offered, RINGING,
// ANSWER for one and CANCEL (twice, as app_queue does) for the others, then the
// caller hangs up after TalkFor.
func (s *Server) runAgents(id string) {
	s.mu.Lock()
	ch := s.channels[id]
	var spec CallSpec
	if ch != nil {
		spec = ch.spec
	}
	s.mu.Unlock()
	s.ringAgents(id, Queue{Agents: spec.Agents, Answer: spec.Answer, RingFor: spec.RingFor, TalkFor: spec.TalkFor})
}

// ringAgents plays q's agent legs for channel id, as runAgents describes.
func (s *Server) ringAgents(id string, spec Queue) {
	s.mu.Lock()
	ch := s.channels[id]
	if ch == nil || len(spec.Agents) == 0 {
		s.mu.Unlock()
		return
	}
	type leg struct{ peer *channel }
	legs := make([]leg, len(spec.Agents))
	now := time.Now()
	for i, ep := range spec.Agents {
		p := &channel{
			linkedid: ch.linkedid, channelVars: s.opts.ChannelVars,
			id: s.newID(), name: fmt.Sprintf("%s-%08x;1", ep, s.seq.Add(1)), state: "Down",
			callerNum: ch.exten, connNum: ch.callerNum, connName: ch.callerName,
			context: "agents", exten: ch.exten, priority: 1, app: "AppQueue", appData: "(Outgoing Line)",
			created: now, vars: map[string]string{}, subs: map[string]bool{}, inherit: map[string]bool{},
		}
		for k := range ch.inherit {
			p.vars[k] = ch.vars[k]
			p.inherit[k] = true
		}
		legs[i] = leg{p}
		s.dialLocked(ch, p, "", ep)
	}
	s.mu.Unlock()
	ringFor, talkFor := spec.RingFor, spec.TalkFor
	if ringFor <= 0 {
		ringFor = 200 * time.Millisecond
	}
	if talkFor <= 0 {
		talkFor = 500 * time.Millisecond
	}
	s.after(20*time.Millisecond, func() {
		s.mu.Lock()
		if ch.hungUp { // the caller left while the legs were offered
			s.mu.Unlock()
			return
		}
		for i, l := range legs {
			l.peer.state = "Ringing"
			s.dialLocked(ch, l.peer, "RINGING", "")
			_ = i
		}
		s.mu.Unlock()
		s.after(ringFor, func() {
			s.mu.Lock()
			if ch.hungUp {
				s.mu.Unlock()
				return
			}
			for i, l := range legs {
				if i == spec.Answer {
					l.peer.state = "Up"
					s.dialLocked(ch, l.peer, "ANSWER", "")
					ch.state = "Up"
					continue
				}
				s.dialLocked(ch, l.peer, "CANCEL", "")
				s.dialLocked(ch, l.peer, "CANCEL", spec.Agents[i])
			}
			s.mu.Unlock()
			if spec.Answer >= 0 && spec.Answer < len(legs) {
				s.after(talkFor, func() { s.Hangup(id) })
			} else {
				s.Hangup(id)
			}
		})
	})
}

func (s *Server) dialLocked(caller, peer *channel, status, dialstring string) {
	now := time.Now()
	cj, pj := caller.json(), peer.json()
	s.emitLocked(caller, func(app string) []byte {
		return mustJSON(dialJSON{Type: "Dial", Timestamp: stamp(now), Dialstatus: status, Dialstring: dialstring,
			Caller: cj, Peer: pj, AsteriskID: asteriskID, Application: app})
	})
}

func (s *Server) getApp(w http.ResponseWriter, name string) {
	s.mu.Lock()
	j, ok := s.appJSONLocked(name)
	s.mu.Unlock()
	if !ok {
		writeMsg(w, http.StatusNotFound, "Application not found")
		return
	}
	writeRaw(w, http.StatusOK, j)
}

// appJSONLocked is GET /applications/<name>'s answer (a subscription's too),
// from the app's index: no scan of every channel, and encoded once until
// the app's channels change.
func (s *Server) appJSONLocked(name string) ([]byte, bool) {
	a := s.apps[name]
	x := s.appIndex[name]
	if x == nil || len(x.ids) == 0 {
		if a == nil || a.conn == nil {
			return nil, false
		}
		return mustJSON(applicationJSON{Name: name, ChannelIDs: []string{}, BridgeIDs: []string{}, EndpointIDs: []string{},
			DeviceNames: []string{}, EventsAllowed: []string{}, EventsDisallowed: []string{}}), true
	}
	if x.answer == nil {
		b := append(make([]byte, 0, 128+len(x.ids)*24), `{"name":`...)
		b = appendJSONString(b, name)
		b = append(b, `,"channel_ids":[`...)
		for i, id := range x.ids {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, id)
		}
		x.answer = append(b, `],"bridge_ids":[],"endpoint_ids":[],"device_names":[],"events_allowed":[],"events_disallowed":[]}`...)
	}
	return x.answer, true
}

// appIndex is the channels an application holds (in Stasis there or
// subscribed to), in no particular order (Asterisk's is a hash order).
type appIndex struct {
	ids    []string
	pos    map[string]int
	answer []byte // cached appJSONLocked; nil after a change
}

// indexLocked brings the app index up to date with ch's Stasis app and
// subscriptions (none once it is destroyed).
func (s *Server) indexLocked(ch *channel) {
	want := ch.inApps[:0:0]
	if !ch.destroyed {
		if ch.stasisApp != "" {
			want = append(want, ch.stasisApp)
		}
		for name := range ch.subs {
			if name != ch.stasisApp {
				want = append(want, name)
			}
		}
	}
	for _, name := range ch.inApps {
		if !slices.Contains(want, name) {
			x := s.appIndex[name]
			i := x.pos[ch.id]
			last := len(x.ids) - 1
			x.ids[i] = x.ids[last]
			x.pos[x.ids[i]] = i
			x.ids = x.ids[:last]
			delete(x.pos, ch.id)
			x.answer = nil
		}
	}
	for _, name := range want {
		if !slices.Contains(ch.inApps, name) {
			x := s.appIndex[name]
			if x == nil {
				x = &appIndex{pos: map[string]int{}}
				s.appIndex[name] = x
			}
			x.pos[ch.id] = len(x.ids)
			x.ids = append(x.ids, ch.id)
			x.answer = nil
		}
	}
	ch.inApps = want
}

func (s *Server) subscription(w http.ResponseWriter, appName, source string, add bool) {
	if source == "" {
		writeMsg(w, http.StatusBadRequest, "Missing parameter eventSource")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[appName]; a == nil || a.conn == nil {
		writeMsg(w, http.StatusNotFound, "Application not found")
		return
	}
	var chans []*channel
	for _, src := range strings.Split(source, ",") {
		id, ok := strings.CutPrefix(src, "channel:")
		ch := s.channels[id]
		if !ok || ch == nil {
			writeMsg(w, http.StatusUnprocessableEntity, "Event source does not exist")
			return
		}
		chans = append(chans, ch)
	}
	for _, ch := range chans {
		if add && ch.watched != nil {
			close(ch.watched)
			ch.watched = nil
		}
		if add {
			ch.subs[appName] = true
		} else {
			delete(ch.subs, appName)
		}
		s.indexLocked(ch)
	}
	j, _ := s.appJSONLocked(appName)
	writeRaw(w, http.StatusOK, j)
}

// Reenter sends channel id back into Stasis (the dialplan runs Stasis()
// again, e.g. after a transfer back to the inbound route). It reports false
// when the channel is gone, still in Stasis, or its app is not connected.
func (s *Server) Reenter(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[id]
	if ch == nil || ch.stasisApp != "" || ch.hungUp {
		return false
	}
	a := s.apps[ch.spec.App]
	if a == nil || a.conn == nil {
		return false
	}
	ch.stasisApp = ch.spec.App
	s.indexLocked(ch)
	ch.app, ch.appData = "Stasis", strings.Join(append([]string{ch.spec.App}, ch.spec.Args...), ",")
	if r := s.records[id]; r != nil {
		r.Continued = time.Time{}
		r.Offered = time.Now()
	}
	args := ch.args
	if args == nil {
		args = []string{}
	}
	j := ch.json()
	now := time.Now()
	s.emitLocked(ch, func(app string) []byte {
		return mustJSON(stasisStartJSON{Type: "StasisStart", Timestamp: stamp(now), Args: args,
			Channel: j, AsteriskID: asteriskID, Application: app})
	})
	return true
}

// Subscribed reports whether app holds a channel:<id> subscription.
func (s *Server) Subscribed(app, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[id]
	return ch != nil && ch.subs[app]
}
