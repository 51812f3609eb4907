package router

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/callpop/callpop/call"
)

// decisionJSON is the shape of `callpop lookup`, /v1/lookup and /v1/route.
type decisionJSON struct {
	CallID     string            `json:"call_id,omitempty"`
	Match      call.Match        `json:"match"`
	E164       string            `json:"e164"`
	Source     call.Source       `json:"source"`
	Privacy    bool              `json:"privacy"`
	Customer   *customerJSON     `json:"customer"`
	Candidates []call.Candidate  `json:"candidates,omitempty"` // match multiple: every customer owning the number, best (customer) first
	Priority   int               `json:"priority"`
	QueuePrio  int               `json:"queue_prio"`
	BaseScore  int               `json:"cc_base_score"`
	Queue      string            `json:"queue"`
	Skill      string            `json:"skill"`
	Language   string            `json:"language"`
	Flags      []string          `json:"flags"`
	PopURL     string            `json:"pop_url"`
	Profile    string            `json:"profile"`
	Rules      []string          `json:"rules"`
	Vars       map[string]string `json:"vars"`
	Cached     bool              `json:"cached"`
	ElapsedMS  float64           `json:"elapsed_ms"`
	CallerName string            `json:"caller_name,omitempty"` // popper.softphone.caller_name, when configured
	InfoURL    string            `json:"info_url,omitempty"`    // popper.softphone.info_url, when configured
	Error      string            `json:"error,omitempty"`
	Explain    []RuleTrace       `json:"explain,omitempty"`
}

type customerJSON struct {
	ID       string                      `json:"id"`
	Name     string                      `json:"name"`
	Tier     string                      `json:"tier"`
	Language string                      `json:"language"`
	URL      string                      `json:"url"`
	Extra    map[string]any              `json:"extra,omitempty"`
	Lists    map[string][]map[string]any `json:"lists,omitempty"`
}

// DecisionJSON is the JSON shape of `callpop lookup` and /v1/lookup: match,
// e164, source, customer{id,name,tier,language,url}, vars{...}, cached,
// elapsed_ms, plus the routing outputs and the rules that matched.
func DecisionJSON(d call.Decision) any {
	return decisionToJSON(d, nil)
}

func decisionToJSON(d call.Decision, trace []RuleTrace) *decisionJSON {
	out := &decisionJSON{
		CallID: call.CleanValue(d.CallID), Match: d.Match, E164: call.CleanToken(d.E164), Source: d.Source,
		Privacy: d.Privacy, Priority: d.Priority, QueuePrio: d.QueuePrio, BaseScore: d.BaseScore,
		Queue: call.CleanValue(d.Queue), Skill: call.CleanValue(d.Skill), Language: call.CleanValue(d.Language),
		Flags: d.Flags, PopURL: call.CleanURL(d.PopURL), Profile: d.Profile, Rules: d.Rules,
		Vars: map[string]string{}, Cached: d.Cached, ElapsedMS: float64(d.Elapsed.Microseconds()) / 1000,
		Error: call.CleanValue(d.Err), Explain: trace,
		CallerName: call.CleanValue(d.CallerName), InfoURL: call.CleanURL(d.InfoURL),
	}
	if out.Flags == nil {
		out.Flags = []string{}
	}
	if out.Rules == nil {
		out.Rules = []string{}
	}
	if c := d.Customer; c != nil {
		out.Customer = &customerJSON{ID: call.CleanValue(c.ID), Name: call.CleanValue(c.Name), Tier: call.CleanValue(c.Tier),
			Language: call.CleanValue(c.Language), URL: call.CleanURL(c.URL), Extra: c.Extra, Lists: c.Lists}
	}
	for _, c := range d.Candidates {
		out.Candidates = append(out.Candidates, call.Candidate{ID: call.CleanValue(c.ID), Name: call.CleanValue(c.Name),
			Tier: call.CleanValue(c.Tier), URL: call.CleanURL(c.URL)})
	}
	for _, v := range d.Vars() {
		out.Vars[v.Name] = v.Value
	}
	return out
}

// Explain decides for c and returns the decision's JSON with, under
// "explain", every rule evaluated: its condition, whether it matched, what it
// set. For `callpop lookup`.
func (r *Router) Explain(ctx context.Context, c call.Call) any {
	if c.Received.IsZero() {
		c.Received = time.Now()
	}
	trace := []RuleTrace{}
	d := r.decideWait(ctx, c, &trace)
	if trace == nil {
		trace = []RuleTrace{}
	}
	return decisionToJSON(d, trace)
}

// EncodeJSON writes v and a newline to w, indented by indent ("" = one
// line), without HTML escaping: every JSON answer of callpop (lookup,
// /v1/lookup, /v1/route) goes through it, so a rule's && or a customer's
// "Smith & Sons" read as written. HTTP answers carry nosniff, so no browser
// takes one for HTML.
func EncodeJSON(w io.Writer, v any, indent string) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	return enc.Encode(v)
}
