package popper

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// subBuffer is how many pops a slow stream may fall behind before it is
// closed (the browser reconnects and replays from Last-Event-ID).
const subBuffer = 256

// hub fans pops out to the agents' streams connected to this instance and
// keeps each agent's recent pops for the panel list and reconnect replay.
type hub struct {
	mu     sync.Mutex
	agents map[string]*agentHub
	recent int
}

type agentHub struct {
	subs    map[*subscriber]struct{}
	backlog []Pop // oldest first, at most recent
	last    time.Time
}

type subscriber struct {
	ch   chan *Pop     // shared, read-only
	gone chan struct{} // closed when the hub drops a slow subscriber
	once sync.Once
}

func (s *subscriber) drop() { s.once.Do(func() { close(s.gone) }) }

func newHub(recent int) *hub {
	return &hub{agents: make(map[string]*agentHub), recent: recent}
}

func (h *hub) agent(a string) *agentHub {
	ah := h.agents[a]
	if ah == nil {
		ah = &agentHub{subs: make(map[*subscriber]struct{})}
		h.agents[a] = ah
	}
	return ah
}

// Deliver hands p to the agent's streams; it never blocks. It reports
// whether the agent has a stream here.
func (h *hub) Deliver(p Pop) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ah := h.agent(p.Agent)
	ah.last = time.Now()
	if ah.has(p.ID) {
		return len(ah.subs) > 0 // same pop twice (delivered here while Redis was away, then published)
	}
	if len(ah.backlog) >= h.recent {
		copy(ah.backlog, ah.backlog[1:])
		ah.backlog = ah.backlog[:len(ah.backlog)-1]
	}
	ah.backlog = append(ah.backlog, p)
	ah.fanOut(&p)
	return len(ah.subs) > 0
}

// Find returns the agent's recent pop with this id.
func (h *hub) Find(agent, id string) (Pop, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ah := h.agents[agent]
	if ah == nil || id == "" {
		return Pop{}, false
	}
	for i := len(ah.backlog) - 1; i >= 0; i-- {
		if ah.backlog[i].ID == id {
			return ah.backlog[i], true
		}
	}
	return Pop{}, false
}

// has reports whether the backlog holds the pop with this id.
func (ah *agentHub) has(id string) bool {
	for i := len(ah.backlog) - 1; i >= 0; i-- {
		if ah.backlog[i].ID == id {
			return true
		}
	}
	return false
}

// Backfill adds pops read from Redis (a group's log, oldest first) to the
// agents' recent pops; streams that start now replay them. A stream already
// open (it started before the group was caught up, Redis being slow) gets
// those newer than anything it had. The backlogs stay in id order, at most
// recent each.
func (h *hub) Backfill(pops []Pop) {
	h.mu.Lock()
	defer h.mu.Unlock()
	newest := make(map[*agentHub]string) // the backlog's last id before the backfill
	for _, p := range pops {
		ah := h.agent(p.Agent)
		if ah.has(p.ID) {
			continue
		}
		if _, ok := newest[ah]; !ok {
			newest[ah] = ""
			if n := len(ah.backlog); n > 0 {
				newest[ah] = ah.backlog[n-1].ID
			}
		}
		ah.backlog = append(ah.backlog, p)
		if cmpPopID(p.ID, newest[ah]) <= 0 {
			continue
		}
		ah.fanOut(&p)
	}
	for ah := range newest {
		ah.last = time.Now()
		slices.SortStableFunc(ah.backlog, func(a, b Pop) int { return cmpPopID(a.ID, b.ID) })
		if n := len(ah.backlog); n > h.recent {
			ah.backlog = slices.Delete(ah.backlog, 0, n-h.recent)
		}
	}
}

// cmpPopID orders pop ids (decimal microseconds) numerically.
func cmpPopID(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// Subscribe registers a stream for agent and returns the pops to replay
// first: those after lastID when the client resumes, else today's.
func (h *hub) Subscribe(agent, lastID string, now time.Time) (*subscriber, []Pop) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ah := h.agent(agent)
	ah.last = now
	s := &subscriber{ch: make(chan *Pop, subBuffer), gone: make(chan struct{})}
	ah.subs[s] = struct{}{}
	var replay []Pop
	if last, err := strconv.ParseInt(lastID, 10, 64); err == nil && lastID != "" {
		for _, p := range ah.backlog {
			if id, _ := strconv.ParseInt(p.ID, 10, 64); id > last {
				replay = append(replay, p)
			}
		}
	} else {
		y, m, d := now.Date()
		today := time.Date(y, m, d, 0, 0, 0, 0, now.Location())
		for _, p := range ah.backlog {
			if !p.At.Before(today) {
				replay = append(replay, p)
			}
		}
	}
	return s, replay
}

// Unsubscribe removes a stream.
func (h *hub) Unsubscribe(agent string, s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ah := h.agents[agent]; ah != nil {
		delete(ah.subs, s)
	}
}

// Sweep forgets agents with no stream and no pop for a day.
func (h *hub) Sweep(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for a, ah := range h.agents {
		if len(ah.subs) == 0 && now.Sub(ah.last) > 24*time.Hour {
			delete(h.agents, a)
		}
	}
}

// fanOut hands p to each of the agent's streams without blocking; a stream
// whose buffer is full is dropped (its browser reconnects and replays).
// The hub's lock is held.
func (ah *agentHub) fanOut(p *Pop) {
	for s := range ah.subs {
		select {
		case s.ch <- p:
		default:
			delete(ah.subs, s)
			s.drop()
			streamDropsTotal.Inc()
		}
	}
}
