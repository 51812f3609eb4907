package popper

import (
	"encoding/json"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/callpop/callpop/call"
)

// Pop is one step of one call as one agent sees it: the JSON body of an SSE
// event and of a webhook POST.
type Pop struct {
	ID     string `json:"id"` // event id, also the SSE id
	CallID string `json:"call_id"`
	Agent  string `json:"agent"`
	State  string `json:"state"` // ringing, answered, retracted, ended; offered (a contact)
	// Channel is how the contact came in: voice (a call), chat, email, sms,
	// social (POST /v1/contacts) or callback (a web callback).
	Channel string `json:"channel"`
	// Subject is a contact's subject or a web callback's note, cleaned
	// (call.CleanValueN, at most MaxSubject runes); "" = none.
	Subject string `json:"subject,omitempty"`
	// Email is the contact's e-mail address (cleaned); omitted for a call.
	Email    string     `json:"email,omitempty"`
	Match    call.Match `json:"match"`
	Customer *Customer  `json:"customer,omitempty"`
	// Candidates are the customers sharing the number when Match is
	// multiple (Customer is the best of them); Chosen is the one the agent
	// picked, on a chosen event.
	Candidates []call.Candidate `json:"candidates,omitempty"`
	Chosen     *call.Candidate  `json:"chosen,omitempty"`
	Number     string           `json:"number,omitempty"` // E.164; omitted when the caller asked for privacy
	// NetworkName is the caller name the PBX saw (CALLERID(name),
	// caller_id_name, a carrier's CNAM); omitted when the caller asked for
	// privacy or the network gave none.
	NetworkName string    `json:"network_name,omitempty"`
	Privacy     bool      `json:"privacy,omitempty"`
	Priority    int       `json:"priority"`
	Queue       string    `json:"queue,omitempty"`
	Flags       []string  `json:"flags"`
	Links       []Link    `json:"links"`
	Actions     []Action  `json:"actions,omitempty"` // the one-click actions (popper.actions) the panel offers
	Cause       string    `json:"cause,omitempty"`   // why the pop was retracted or ended
	PBX         string    `json:"pbx,omitempty"`     // the PBX the agent's leg is on (pbxes[].name), else the one the call entered on
	At          time.Time `json:"at"`
}

// Action is a one-click action button on the pop card; pressing it asks
// callpop (POST /v1/pops/{id}/actions/{name}), which sends the request.
type Action struct {
	Name  string `json:"name"`
	Label string `json:"label"`
}

// LogValue keeps personal data out of logs.
func (p Pop) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", p.ID), slog.String("call_id", p.CallID), slog.String("agent", p.Agent),
		slog.String("state", p.State), slog.String("match", string(p.Match)), slog.String("number", call.MaskNumber(p.Number)))
}

// Customer is the customer part of a pop: the fixed fields plus the CRM's
// extra fields (open tickets, recent interactions, ...) at the same level.
type Customer struct {
	ID       string
	Name     string
	Tier     string
	Language string
	URL      string
	Lists    map[string][]map[string]any // named lists (history, tickets, ...), as "lists"
	Extra    map[string]any
}

// MarshalJSON flattens Extra next to the fixed fields; fixed fields win.
func (c Customer) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(c.Extra)+5)
	for k, v := range c.Extra {
		m[k] = v
	}
	m["id"] = c.ID
	m["name"] = c.Name
	m["tier"] = c.Tier
	m["language"] = c.Language
	if c.URL != "" {
		m["url"] = c.URL
	} else {
		delete(m, "url")
	}
	if len(c.Lists) > 0 {
		m["lists"] = c.Lists
	} else {
		delete(m, "lists")
	}
	return json.Marshal(m)
}

// UnmarshalJSON is the reverse of MarshalJSON (pops cross Redis as JSON).
func (c *Customer) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	str := func(k string) string {
		s, _ := m[k].(string)
		delete(m, k)
		return s
	}
	c.ID, c.Name, c.Tier, c.Language, c.URL = str("id"), str("name"), str("tier"), str("language"), str("url")
	if raw, ok := m["lists"].(map[string]any); ok {
		c.Lists = make(map[string][]map[string]any, len(raw))
		for name, v := range raw {
			items, _ := v.([]any)
			for _, it := range items {
				if x, ok := it.(map[string]any); ok {
					c.Lists[name] = append(c.Lists[name], x)
				}
			}
		}
	}
	delete(m, "lists")
	if len(m) > 0 {
		c.Extra = m
	}
	return nil
}

// Link is a link or action on the pop card; URL is always http(s).
type Link struct {
	Name  string `json:"name"`
	Label string `json:"label"`
	URL   string `json:"url"`
}

// popBase is what a call's pops share; built once when the call is enriched.
type popBase struct {
	callID     string
	match      call.Match
	customer   *Customer
	candidates []call.Candidate
	network    string // the caller name the PBX saw; "" under privacy
	number     string
	digits     string
	privacy    bool
	priority   int
	queue      string
	flags      []string
	popURL     string // the router's CALLPOP_POP_URL: CRM record, or the new-customer form on a miss
	pbx        string // the PBX the call entered on
	channel    string // voice, chat, email, sms, social, callback
	subject    string // cleaned
	email      string // cleaned
}

// MaxSubject bounds a pop's subject, in runes.
const MaxSubject = 4096

// knownChannels are the channels a pop names; a Call carrying any other
// (never expected) pops as "other".
var knownChannels = map[string]bool{
	call.ChannelVoice: true, call.ChannelChat: true, call.ChannelEmail: true,
	call.ChannelSMS: true, call.ChannelSocial: true, call.ChannelCallback: true,
}

// popChannel is c's channel as a pop names it.
func popChannel(c call.Call) string {
	if ch := call.ChannelOf(c); knownChannels[ch] {
		return ch
	}
	return "other"
}

func newPopBase(e call.Enriched) popBase {
	d := e.Decision
	b := popBase{
		callID:   e.CallID,
		match:    d.Match,
		privacy:  d.Privacy || e.Call.Privacy,
		priority: d.Priority,
		queue:    d.Queue,
		flags:    append([]string(nil), d.Flags...),
		popURL:   safeURL(d.PopURL),
		pbx:      call.CleanToken(e.PBX),
		channel:  popChannel(e.Call),
		subject:  call.CleanValueN(e.Call.Subject, MaxSubject),
	}
	if b.callID == "" {
		b.callID = d.CallID
	}
	if b.callID == "" {
		b.callID = e.Call.ID
	}
	if b.match == "" {
		b.match = call.MatchError
	}
	b.digits = strings.TrimPrefix(d.E164, "+")
	if !b.privacy {
		b.number = d.E164
		b.network = call.NetworkName(e.Call.CLIName)
		b.email = call.CleanValueN(strings.TrimSpace(e.Call.Email), 254)
	}
	for _, c := range d.Candidates {
		if len(b.candidates) == call.MaxCandidates {
			break
		}
		b.candidates = append(b.candidates, call.Candidate{ID: call.CleanValue(c.ID), Name: call.CleanValue(c.Name), Tier: call.CleanValue(c.Tier), URL: safeURL(c.URL)})
	}
	if b.privacy && b.popURL != "" && holdsNumber(b.popURL, b.digits) {
		b.popURL = "" // the link would show the number the caller withheld
	}
	if c := d.Customer; c != nil {
		lang := c.Language
		if lang == "" {
			lang = d.Language
		}
		b.customer = &Customer{ID: c.ID, Name: c.Name, Tier: c.Tier, Language: lang, URL: safeURL(c.URL), Lists: c.Lists, Extra: c.Extra}
		if b.privacy && d.E164 != "" {
			// Extra fields and list items may carry the number; drop the obvious ones.
			b.customer.Extra = withoutNumber(c.Extra, b.digits)
			if c.Lists != nil {
				ls := make(map[string][]map[string]any, len(c.Lists))
				for name, items := range c.Lists {
					for _, it := range items {
						ls[name] = append(ls[name], withoutNumber(it, b.digits))
					}
				}
				b.customer.Lists = ls
			}
		}
	}
	if b.flags == nil {
		b.flags = []string{}
	}
	return b
}

// withoutNumber returns m less its string values holding the number.
func withoutNumber(m map[string]any, digits string) map[string]any {
	if m == nil {
		return nil
	}
	x := make(map[string]any, len(m))
	for k, v := range m {
		if s, ok := v.(string); ok && strings.Contains(strings.ReplaceAll(s, " ", ""), digits) {
			continue
		}
		x[k] = v
	}
	return x
}

// linkVars are the values a link template may use.
func (b popBase) linkVars(agent string) map[string]string {
	v := map[string]string{
		"call_id": b.callID,
		"agent":   agent,
		"queue":   b.queue,
	}
	if !b.privacy {
		v["e164"] = b.number
		v["digits"] = b.digits
		v["network_name"] = b.network
	}
	if b.customer != nil {
		v["customer_id"] = b.customer.ID
		v["name"] = b.customer.Name
		v["topics"] = topics(b.customer.Extra)
	}
	return v
}

// topics joins the subjects of the customer's open tickets for a KB search.
func topics(extra map[string]any) string {
	var out []string
	for _, key := range []string{"topics", "open_tickets"} {
		switch v := extra[key].(type) {
		case []any:
			for _, t := range v {
				switch t := t.(type) {
				case string:
					out = append(out, t)
				case map[string]any:
					for _, k := range []string{"topic", "subject", "title"} {
						if s, ok := t[k].(string); ok && s != "" {
							out = append(out, s)
							break
						}
					}
				}
			}
		case string:
			out = append(out, v)
		}
		if len(out) > 0 {
			break
		}
	}
	if len(out) > 5 {
		out = out[:5]
	}
	return strings.Join(out, " ")
}

// links renders the configured link templates for one agent's pop.
func (b popBase) links(cfg []LinkConfig, agent string) []Link {
	out := []Link{}
	var vars map[string]string
	if len(cfg) > 0 {
		vars = b.linkVars(agent)
	}
	hit := b.customer != nil
	for _, l := range cfg {
		switch l.When {
		case "hit":
			if !hit {
				continue
			}
		case "miss":
			if hit || b.match != call.MatchMiss {
				continue
			}
		}
		u := expand(l.URL, vars, url.QueryEscape)
		if u = safeURL(u); u == "" {
			continue
		}
		label := l.Label
		if label == "" {
			label = l.Name
		}
		out = append(out, Link{Name: call.CleanToken(l.Name), Label: call.CleanValue(label), URL: u})
	}
	// Without templates, the router's pop URL and the CRM's own link still show.
	switch {
	case hit && !hasLink(out, "crm"):
		if u := firstNonEmpty(b.customer.URL, b.popURL); u != "" {
			out = append(out, Link{Name: "crm", Label: "CRM record", URL: u})
		}
	case !hit && b.match == call.MatchMiss && b.popURL != "" && !hasLink(out, "new_customer"):
		out = append(out, Link{Name: "new_customer", Label: "New customer", URL: b.popURL})
	}
	return out
}

// holdsNumber reports whether s contains the number (its last 9 digits).
func holdsNumber(s, digits string) bool {
	if len(digits) > 9 {
		digits = digits[len(digits)-9:]
	}
	return digits != "" && strings.Contains(s, digits)
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func hasLink(ls []Link, name string) bool {
	for _, l := range ls {
		if l.Name == name {
			return true
		}
	}
	return false
}

// expand replaces {name} placeholders with esc(value); unknown names become "".
func expand(tmpl string, vars map[string]string, esc func(string) string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			break
		}
		j := strings.IndexByte(tmpl[i:], '}')
		if j < 0 {
			b.WriteString(tmpl)
			break
		}
		b.WriteString(tmpl[:i])
		name := tmpl[i+1 : i+j]
		if esc != nil {
			b.WriteString(esc(vars[name]))
		} else {
			b.WriteString(vars[name])
		}
		tmpl = tmpl[i+j+1:]
	}
	return b.String()
}

// safeURL returns u cleaned when it is an absolute http(s) URL, else "".
func safeURL(u string) string {
	if u == "" {
		return ""
	}
	p, err := url.Parse(strings.TrimSpace(u))
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return ""
	}
	return call.CleanURL(p.String())
}

// sortedAgents returns the keys of m in order, for deterministic output.
func sortedAgents[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
