package popper

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/call"
)

// ContactTTL is how long an offered contact waits for its end (POST
// /v1/contacts/{id}/end): after it, the contact is forgotten (its Redis
// entry expires, its in-process entry is swept) and its end is a 404. The
// agent's pop stays in the panel's list as offered.
const ContactTTL = 24 * time.Hour

// maxLocalContacts bounds the contacts kept in-process (no Redis, or Redis
// failing); the oldest go first.
const maxLocalContacts = 100_000

// Contact-pop causes (the ended pop's cause).
const causeContactEnded = "contact_ended"

// offerScript records a contact's offered pop: KEYS[1] the contact's key;
// ARGV the pop (JSON) and its TTL in ms. Only commands of the documented
// ACL (HSET, PEXPIRE).
var offerScript = redis.NewScript(`
redis.call('HSET', KEYS[1], 'pop', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`)

// endScript takes a contact's pop and forgets it, at once (HGET, DEL): of
// two ends, on any instances, one gets the pop, the other nil.
var endScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'pop')
if v then redis.call('DEL', KEYS[1]) end
return v`)

// contacts are the offered contacts kept in this instance: all of them
// without Redis, those Redis did not take with it.
type contacts struct {
	mu    sync.Mutex
	byID  map[string]localContact
	order []string // ids, oldest first (some ended already)
}

type localContact struct {
	pop     Pop
	expires time.Time
}

func (cs *contacts) put(id string, p Pop, now time.Time) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.byID == nil {
		cs.byID = map[string]localContact{}
	}
	cs.sweepLocked(now)
	for len(cs.byID) >= maxLocalContacts && len(cs.order) > 0 {
		delete(cs.byID, cs.order[0])
		cs.order = cs.order[1:]
	}
	cs.byID[id] = localContact{pop: p, expires: now.Add(ContactTTL)}
	cs.order = append(cs.order, id)
}

// take returns the contact's pop and forgets it.
func (cs *contacts) take(id string, now time.Time) (Pop, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	lc, ok := cs.byID[id]
	if !ok {
		return Pop{}, false
	}
	delete(cs.byID, id)
	if now.After(lc.expires) {
		return Pop{}, false
	}
	return lc.pop, true
}

// sweepLocked forgets the expired contacts and compacts the order. Caller holds mu.
func (cs *contacts) sweepLocked(now time.Time) {
	for len(cs.order) > 0 {
		lc, ok := cs.byID[cs.order[0]]
		if ok && !now.After(lc.expires) {
			break
		}
		if ok {
			delete(cs.byID, cs.order[0])
		}
		cs.order = cs.order[1:]
	}
	if len(cs.order) > 2*len(cs.byID)+64 {
		live := make([]string, 0, len(cs.byID))
		for _, id := range cs.order {
			if _, ok := cs.byID[id]; ok {
				live = append(live, id)
			}
		}
		cs.order = live
	}
}

// Sweep forgets the expired contacts.
func (cs *contacts) Sweep(now time.Time) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.sweepLocked(now)
}

// Len is the number of contacts kept in this instance.
func (cs *contacts) Len() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.byID)
}

func (p *Popper) contactKey(id string) string { return p.cfg.Channel + ":contact:" + id }

// OfferContact pops a contact to agent at once (state offered): the
// customer card as for a call, with its channel and subject. e.CallID is
// the contact's id (e.Call.Channel its channel). The contact is kept
// (in Redis when configured, so any instance can end it; else, or when
// Redis fails, in this instance) until EndContact or ContactTTL.
func (p *Popper) OfferContact(ctx context.Context, e call.Enriched, agent string) error {
	if agent == "" || cleanAgent(agent) != agent {
		return errors.New("popper: not an agent id")
	}
	if e.CallID == "" {
		return errors.New("popper: contact without an id")
	}
	eventsTotal.WithLabelValues("contact").Inc()
	now := time.Now()
	b := newPopBase(e)
	pop := Pop{
		ID: p.corr.ids.next(now), CallID: b.callID, Agent: agent, State: StateOffered,
		Channel: b.channel, Subject: b.subject, Email: b.email, Match: b.match,
		Customer: b.customer, Candidates: b.candidates, Number: b.number, NetworkName: b.network,
		Privacy: b.privacy, Priority: b.priority, Queue: b.queue, Flags: b.flags,
		Links: b.links(p.cfg.Links, agent), Actions: actionButtons(p.cfg.Actions), PBX: b.pbx, At: now,
	}
	stored := false
	if p.rdb != nil {
		raw, err := json.Marshal(pop)
		if err != nil {
			return err
		}
		if err := offerScript.Run(ctx, p.rdb, []string{p.contactKey(b.callID)}, raw, ContactTTL.Milliseconds()).Err(); err != nil {
			p.publishWarn.Warn(p.log, "could not keep the contact in Redis; only this instance can end it", "contact", b.callID, "err", err)
		} else {
			stored = true
		}
	}
	if !stored {
		p.contacts.put(b.callID, pop, now)
	}
	p.dispatch(pop, now)
	return nil
}

// EndContact sends the contact's agent the ended pop and forgets the
// contact; false when there is none by that id (never offered, ended
// already, expired). Any instance ends a contact kept in Redis.
func (p *Popper) EndContact(ctx context.Context, id string) (bool, error) {
	now := time.Now()
	pop, ok := p.contacts.take(id, now)
	if !ok && p.rdb != nil {
		raw, err := endScript.Run(ctx, p.rdb, []string{p.contactKey(id)}).Text()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return false, err
		default:
			if err := json.Unmarshal([]byte(raw), &pop); err != nil {
				return false, err
			}
			ok = true
		}
	}
	if !ok {
		return false, nil
	}
	eventsTotal.WithLabelValues("contact_end").Inc()
	pop.ID, pop.State, pop.Cause, pop.At = p.corr.ids.next(now), StateEnded, causeContactEnded, now
	p.dispatch(pop, now)
	return true, nil
}
