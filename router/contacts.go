package router

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/crm"
	"github.com/callpop/callpop/internal/jsonbody"
)

// Bounds of a POST /v1/contacts request.
const (
	maxContactBody    = 16 << 10 // the whole JSON body
	maxContactName    = 1 << 10  // from.name, bytes
	maxContactSubject = 4 << 10  // subject, bytes
	maxContactField   = maxParamLen
	maxContactIDLen   = 64
)

// contactIDPrefix starts every contact id: "ct-" and 22 URL-safe random
// characters (16 random bytes).
const contactIDPrefix = "ct-"

// ContactPops gives a contact's agent its pop: Offer pops the contact to
// the agent a chat platform assigned (state offered), End sends that agent
// the ended pop and forgets the contact (false: no such contact, or it
// ended already). The popper satisfies it; the wiring hands it over
// (SetContactPops), so the router does not import the popper.
type ContactPops interface {
	OfferContact(ctx context.Context, e call.Enriched, agent string) error
	EndContact(ctx context.Context, id string) (bool, error)
}

// SetContactPops makes POST /v1/contacts with an agent pop the contact to
// that agent through cp. Call it before serving; without it a request
// naming an agent is refused (503), one without is decided as usual.
func (r *Router) SetContactPops(cp ContactPops) {
	r.contactPops.Store(&cp)
}

func (r *Router) contactPopper() ContactPops {
	if cp := r.contactPops.Load(); cp != nil {
		return *cp
	}
	return nil
}

// contactRequest is the body of POST /v1/contacts.
type contactRequest struct {
	Channel string      `json:"channel"`
	From    contactFrom `json:"from"`
	To      string      `json:"to"`
	Subject string      `json:"subject"`
	Agent   string      `json:"agent"`
}

type contactFrom struct {
	Phone string `json:"phone"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// contactJSON is POST /v1/contacts's answer: /v1/lookup's JSON with the
// contact's id, its channel and the agent offered it (when one was).
type contactJSON struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	Agent   string `json:"agent,omitempty"`
	*decisionJSON
}

// headerContactID names the contact in every answer of the contact
// endpoints (the audit line reads it).
const headerContactID = "X-Callpop-Contact-Id"

// newContactID returns a fresh random contact id.
func newContactID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return contactIDPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// validContactID reports whether id has the form of a contact id (so no
// other text reaches a store key or a log line).
func validContactID(id string) bool {
	if !strings.HasPrefix(id, contactIDPrefix) || len(id) > maxContactIDLen || len(id) <= len(contactIDPrefix) {
		return false
	}
	for i := len(contactIDPrefix); i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validAgent reports whether s is an agent id as the popper's tokens define
// them: letters, digits or + - _ . @ :, at most 64.
func validAgent(s string) bool {
	return s != "" && call.CleanToken(s) == s
}

// readContact reads and checks a POST /v1/contacts body: strict JSON
// (jsonbody: no unknown field, one object), the channel one of
// call.ContactChannels, the e-mail address valid, every text bounded. The
// error names the field.
func readContact(w http.ResponseWriter, req *http.Request) (contactRequest, *jsonbody.Error) {
	var cr contactRequest
	if e := jsonbody.Decode(w, req, maxContactBody, &cr); e != nil {
		if strings.HasPrefix(e.Msg, "unknown field") {
			e.Msg += " (allowed: channel, from.phone, from.email, from.name, to, subject, agent)"
		}
		return cr, e
	}
	bad := func(field, msg string) (contactRequest, *jsonbody.Error) {
		return cr, &jsonbody.Error{Status: http.StatusBadRequest, Field: field, Msg: msg}
	}
	if !slices.Contains(call.ContactChannels, cr.Channel) {
		return bad("channel", fmt.Sprintf("%q is not one of %s", call.CleanValueN(cr.Channel, 32), strings.Join(call.ContactChannels, ", ")))
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"from.phone", cr.From.Phone, maxContactField}, {"from.email", cr.From.Email, maxContactField},
		{"from.name", cr.From.Name, maxContactName}, {"to", cr.To, maxContactField},
		{"subject", cr.Subject, maxContactSubject}, {"agent", cr.Agent, maxContactField},
	} {
		if len(f.v) > f.max {
			return bad(f.name, fmt.Sprintf("longer than %d bytes", f.max))
		}
	}
	if cr.From.Email != "" {
		if _, err := crm.NormalizeEmail(cr.From.Email); err != nil {
			return bad("from.email", "not an e-mail address (local@domain, nothing else)")
		}
	}
	if cr.Agent != "" && !validAgent(cr.Agent) {
		return bad("agent", "must be letters, digits or + - _ . @ : (at most 64)")
	}
	return cr, nil
}

// contactFail answers a refused contact request as POST /v1/callbacks
// does: JSON {"error": what is wrong, "field": the field it is about},
// field "body" for the body as a whole.
func contactFail(w http.ResponseWriter, status int, field, msg string) {
	if field == "" {
		field = "body"
	}
	jsonbody.WriteError(w, status, field, msg)
}

// handleContact: POST /v1/contacts → the contact's decision as /v1/lookup
// answers it, with its id; with agent, that agent's pop at once.
func (r *Router) handleContact(w http.ResponseWriter, req *http.Request) {
	cr, e := readContact(w, req)
	if e != nil {
		contactFail(w, e.Status, e.Field, e.Msg)
		return
	}
	pops := r.contactPopper()
	if cr.Agent != "" && pops == nil {
		contactFail(w, http.StatusServiceUnavailable, "agent", "this callpop pops to no agent (no popper); send the contact without agent")
		return
	}
	c := call.Call{
		ID: newContactID(), PBX: "http", Channel: cr.Channel,
		CLI: cr.From.Phone, CLIName: cr.From.Name, Email: cr.From.Email,
		DNIS: cr.To, Subject: cr.Subject, Received: time.Now(),
	}
	w.Header().Set(headerContactID, c.ID)
	d := r.endpointDecide(req.Context(), c)
	w.Header().Set("X-Callpop-Match", string(d.Match))
	out := contactJSON{ID: c.ID, Channel: c.Channel, decisionJSON: decisionToJSON(d, nil)}
	if cr.Agent != "" {
		// The pop must not depend on the platform's connection staying open.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), max(r.deps.Budget, time.Second))
		// No PBX: a contact's pop names none.
		err := pops.OfferContact(ctx, call.Enriched{CallID: c.ID, Call: c, Decision: d}, cr.Agent)
		cancel()
		if err != nil {
			r.log.Warn("contact pop failed", "contact", c.ID, "agent", cr.Agent, "err", err)
			contactFail(w, http.StatusServiceUnavailable, "agent", "the pop could not be offered: "+call.CleanValue(err.Error()))
			return
		}
		out.Agent = cr.Agent
	}
	writeJSON(w, out)
}

// handleContactEnd: POST /v1/contacts/{id}/end → the agent's pop ends.
func (r *Router) handleContactEnd(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("id")
	pops := r.contactPopper()
	if !validContactID(id) || pops == nil {
		contactFail(w, http.StatusNotFound, "id", "no such contact")
		return
	}
	w.Header().Set(headerContactID, id)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), max(r.deps.Budget, time.Second))
	defer cancel()
	ok, err := pops.EndContact(ctx, id)
	switch {
	case err != nil:
		r.log.Warn("contact end failed", "contact", id, "err", err)
		contactFail(w, http.StatusServiceUnavailable, "id", "could not be ended: "+call.CleanValue(err.Error()))
	case !ok:
		contactFail(w, http.StatusNotFound, "id", "no such contact (never offered to an agent, ended already, or expired)")
	default:
		writeJSON(w, map[string]any{"id": id, "ended": true})
	}
}
