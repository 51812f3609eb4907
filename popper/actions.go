package popper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callpop/callpop/call"
)

// ActionConfig is one entry of popper.actions: a button on the pop card
// that makes callpop send a request to a CRM (log the call, open a ticket).
// The browser never holds the CRM's credential: callpop signs the request.
type ActionConfig struct {
	Name  string `mapstructure:"name"`
	Label string `mapstructure:"label"`
	// URL is a template like a link's ({customer_id}, {call_id}, {agent}, ...,
	// query-escaped); its scheme and host are fixed (no placeholder) and the
	// host must be listed in popper.action_hosts.
	URL string `mapstructure:"url"`
	// Method is POST (default), PUT, PATCH or GET (GET sends no body).
	Method string `mapstructure:"method"`
	// Body is sent as a JSON object; each value is a template ({customer_id}, ...).
	Body map[string]string `mapstructure:"body"`
	// SecretFile holds the key the request is signed with (as webhooks are);
	// or env CALLPOP_POPPER_ACTIONS_<index>_SECRET. None: sent unsigned.
	SecretFile string `mapstructure:"secret_file"`
}

// actionTimeout bounds one action request to the CRM.
const actionTimeout = 5 * time.Second

// maxActionsInFlight bounds the action requests under way at once.
const maxActionsInFlight = 32

// HeaderAction names the action on its request (X-Callpop-Event is "action").
const HeaderAction = "X-Callpop-Action"

// checkActions checks popper.actions and popper.action_hosts.
func (c *Config) checkActions(bad badFunc) {
	for i, h := range c.ActionHosts {
		u, err := url.Parse("//" + h)
		if h == "" || err != nil || u.Host != h || u.User != nil || strings.ContainsAny(h, "/?#{}") {
			bad(fmt.Sprintf("action_hosts[%d]", i), "must be a host or host:port like crm.example.com, not %q", h)
		}
	}
	seen := map[string]bool{}
	for i, a := range c.Actions {
		key := fmt.Sprintf("actions[%d]", i)
		switch {
		case a.Name == "" || call.CleanToken(a.Name) != a.Name:
			bad(key+".name", "must be set, letters, digits, - _ . only")
		case seen[a.Name]:
			bad(key+".name", "%q is used twice", a.Name)
		}
		seen[a.Name] = true
		switch strings.ToUpper(a.Method) {
		case "", http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodGet:
		default:
			bad(key+".method", "must be POST, PUT, PATCH or GET, not %q", a.Method)
		}
		if _, err := actionHost(a.URL, c.ActionHosts); err != nil {
			bad(key+".url", "%v", err)
		}
		for k := range a.Body {
			if k == "" {
				bad(key+".body", "has an empty field name")
			}
		}
	}
}

// actionHost checks an action's URL template as CRM source URLs are
// checked (http or https, a host) and its host against the allowed hosts;
// it returns the scheme://host every expansion must keep.
func actionHost(tmpl string, hosts []string) (string, error) {
	if tmpl == "" {
		return "", errors.New("must be set")
	}
	rest, ok := strings.CutPrefix(strings.ToLower(tmpl), "https://")
	scheme := "https"
	if !ok {
		if rest, ok = strings.CutPrefix(strings.ToLower(tmpl), "http://"); !ok {
			return "", errors.New("must be an http or https URL")
		}
		scheme = "http"
	}
	authority, _, _ := strings.Cut(rest, "/")
	authority, _, _ = strings.Cut(authority, "?")
	authority, _, _ = strings.Cut(authority, "#")
	if strings.ContainsAny(authority, "{}@") {
		return "", errors.New("its host must be written out: no {placeholder} and no user@ before the path")
	}
	u, err := url.Parse(scheme + "://" + authority)
	if err != nil || u.Host == "" {
		return "", errors.New("has no host")
	}
	if !hostAllowed(u, hosts) {
		return "", fmt.Errorf("host %q is not in popper.action_hosts", u.Host)
	}
	return scheme + "://" + u.Host, nil
}

// hostAllowed says whether u's host is listed: as host:port, or as a bare
// host standing for any port.
func hostAllowed(u *url.URL, hosts []string) bool {
	for _, h := range hosts {
		h = strings.ToLower(h)
		if h == strings.ToLower(u.Host) {
			return true
		}
		if _, _, err := net.SplitHostPort(h); err != nil && h == strings.ToLower(u.Hostname()) {
			return true
		}
	}
	return false
}

// ResolveSecret returns action i's secret: env CALLPOP_POPPER_ACTIONS_<i>_SECRET, else secret_file.
func (a ActionConfig) ResolveSecret(i int) ([]byte, error) {
	return resolveSecret(fmt.Sprintf(EnvActionSecret, i), a.SecretFile, "", fmt.Sprintf("popper.actions[%d].secret_file", i))
}

// actionButtons is what the pop tells the panel about the actions.
func actionButtons(cfg []ActionConfig) []Action {
	if len(cfg) == 0 {
		return nil
	}
	out := make([]Action, 0, len(cfg))
	for _, a := range cfg {
		label := a.Label
		if label == "" {
			label = a.Name
		}
		out = append(out, Action{Name: a.Name, Label: call.CleanValue(label)})
	}
	return out
}

// action sends one configured action's requests.
type action struct {
	cfg    ActionConfig
	base   string // scheme://host every request goes to
	hosts  []string
	secret []byte
	client *http.Client
}

func newAction(i int, cfg ActionConfig, hosts []string) (*action, error) {
	sec, err := cfg.ResolveSecret(i)
	if err != nil {
		return nil, err
	}
	base, err := actionHost(cfg.URL, hosts)
	if err != nil {
		return nil, fmt.Errorf("popper.actions[%d].url: %w", i, err)
	}
	cfg.Method = strings.ToUpper(cfg.Method)
	if cfg.Method == "" {
		cfg.Method = http.MethodPost
	}
	return &action{cfg: cfg, base: base, hosts: hosts, secret: sec, client: &http.Client{
		Timeout: actionTimeout,
		// A redirect would take the request (and its signature) elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// popVars are the values an action's templates may use: those of the
// pop's links, with the agent's chosen candidate as the customer.
func popVars(p Pop, chosen *call.Candidate) map[string]string {
	v := map[string]string{
		"call_id": p.CallID,
		"agent":   p.Agent,
		"queue":   p.Queue,
		"match":   string(p.Match),
		"state":   p.State,
	}
	if !p.Privacy && p.Number != "" {
		v["e164"] = p.Number
		v["digits"] = strings.TrimPrefix(p.Number, "+")
		v["network_name"] = p.NetworkName
	}
	if c := p.Customer; c != nil {
		v["customer_id"], v["name"], v["tier"] = c.ID, c.Name, c.Tier
		v["topics"] = topics(c.Extra)
	}
	if chosen != nil {
		v["customer_id"], v["name"], v["tier"] = chosen.ID, chosen.Name, chosen.Tier
	}
	return v
}

// actionResult is what the panel shows on the card.
type actionResult struct {
	OK     bool   `json:"ok"`
	Status int    `json:"status,omitempty"` // the CRM's HTTP status
	Error  string `json:"error,omitempty"`
}

// send makes the request for pop and says how the CRM answered.
func (a *action) send(ctx context.Context, p Pop, chosen *call.Candidate) actionResult {
	vars := popVars(p, chosen)
	target := expand(a.cfg.URL, vars, url.QueryEscape)
	u, err := url.Parse(target)
	if err != nil || strings.ToLower(u.Scheme+"://"+u.Host) != a.base || !hostAllowed(u, a.hosts) {
		return actionResult{Error: "the action's address did not hold"}
	}
	var body []byte
	if a.cfg.Method != http.MethodGet {
		fields := make(map[string]string, len(a.cfg.Body))
		for k, t := range a.cfg.Body {
			fields[k] = expand(t, vars, nil)
		}
		if body, err = json.Marshal(fields); err != nil {
			return actionResult{Error: "could not build the request"}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, a.cfg.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return actionResult{Error: "could not build the request"}
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "callpop-popper")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderEvent, "action")
	req.Header.Set(HeaderAction, a.cfg.Name)
	req.Header.Set(HeaderDelivery, p.ID+"."+a.cfg.Name)
	if len(a.secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(a.secret, ts, body))
	}
	resp, err := a.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return actionResult{Error: "the CRM did not answer in time"}
		}
		return actionResult{Error: "the CRM could not be reached"}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return actionResult{Status: resp.StatusCode, Error: fmt.Sprintf("the CRM answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))}
	}
	return actionResult{OK: true, Status: resp.StatusCode}
}

// choices remembers each agent's pick among a call's candidates, so the
// actions of that call use it; bounded, oldest forgotten first.
type choices struct {
	mu    sync.Mutex
	m     map[string]call.Candidate
	order []string
}

const maxChoices = 4096

func choiceKey(agent, callID string) string { return agent + "\x00" + callID }

func (c *choices) set(agent, callID string, cand call.Candidate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]call.Candidate)
	}
	k := choiceKey(agent, callID)
	if _, ok := c.m[k]; !ok {
		c.order = append(c.order, k)
	}
	c.m[k] = cand
	for len(c.order) > maxChoices {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
}

func (c *choices) get(agent, callID string) *call.Candidate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if x, ok := c.m[choiceKey(agent, callID)]; ok {
		return &x
	}
	return nil
}

// agentPop authenticates the request (panel token or cookie) and finds the
// pop {id} of its agent among the recent pops held here.
func (p *Popper) agentPop(w http.ResponseWriter, r *http.Request) (Pop, bool) {
	agent, _, ok := p.tokenAgent(w, r)
	if !ok {
		return Pop{}, false
	}
	// A JSON body only: a cross-site form can not send one without a
	// preflight the origin check refuses.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "send Content-Type: application/json", http.StatusUnsupportedMediaType)
		return Pop{}, false
	}
	pop, ok := p.hub.Find(agent, r.PathValue("id"))
	if !ok {
		http.Error(w, "no such pop for this agent here", http.StatusNotFound)
		return Pop{}, false
	}
	return pop, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// serveChoice takes the agent's pick among a multiple match's candidates
// and sends it to the webhooks as a chosen event.
func (p *Popper) serveChoice(w http.ResponseWriter, r *http.Request) {
	pop, ok := p.agentPop(w, r)
	if !ok {
		return
	}
	var in struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil || in.ID == "" {
		http.Error(w, `send {"id": "<candidate id>"}`, http.StatusBadRequest)
		return
	}
	if pop.Match != call.MatchMultiple {
		http.Error(w, "this pop has no candidates to choose from", http.StatusConflict)
		return
	}
	var chosen *call.Candidate
	for _, c := range pop.Candidates {
		if c.ID == in.ID {
			chosen = &c
			break
		}
	}
	if chosen == nil {
		http.Error(w, "not one of this pop's candidates", http.StatusBadRequest)
		return
	}
	p.choices.set(pop.Agent, pop.CallID, *chosen)
	ev := pop
	ev.ID = pop.ID + "-chosen"
	ev.State = StateChosen
	ev.Chosen = chosen
	ev.At = time.Now()
	popsTotal.WithLabelValues(StateChosen).Inc()
	for _, h := range p.hooks {
		h.Offer(ev)
	}
	p.log.Info("agent chose a candidate", "pop", ev, "candidate", call.MaskName(chosen.Name))
	writeJSON(w, http.StatusOK, map[string]any{"chosen": chosen})
}

// serveAction sends the action {name} for the pop {id} and answers with
// how the CRM answered.
func (p *Popper) serveAction(w http.ResponseWriter, r *http.Request) {
	pop, ok := p.agentPop(w, r)
	if !ok {
		return
	}
	a := p.actions[r.PathValue("name")]
	if a == nil {
		http.Error(w, "no such action", http.StatusNotFound)
		return
	}
	select {
	case p.actionSlots <- struct{}{}:
		defer func() { <-p.actionSlots }()
	default:
		actionsTotal.WithLabelValues("busy").Inc()
		writeJSON(w, http.StatusServiceUnavailable, actionResult{Error: "too many actions under way; try again"})
		return
	}
	res := a.send(r.Context(), pop, p.choices.get(pop.Agent, pop.CallID))
	if !res.OK {
		actionsTotal.WithLabelValues("failed").Inc()
		p.log.LogAttrs(r.Context(), slog.LevelWarn, "action failed", slog.String("action", a.cfg.Name),
			slog.String("host", strings.TrimPrefix(strings.TrimPrefix(a.base, "https://"), "http://")),
			slog.Any("pop", pop), slog.Int("status", res.Status), slog.String("why", res.Error))
		writeJSON(w, http.StatusBadGateway, res)
		return
	}
	actionsTotal.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, res)
}
