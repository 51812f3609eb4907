package popper

import (
	"context"
	"encoding/json"
	"errors"
	"hash/crc32"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pops cross instances on one channel per agent group,
// <popper.channel>:{<group>}, the group a stable hash of the agent id. An
// instance subscribes to the groups of the agents whose streams it serves,
// from the first stream of a group to the last. Each group also has a
// stream key, <popper.channel>:{<group>}:log, in the same slot: the publish
// script appends the pop to it and publishes "<stream id> <envelope>" in one
// step, so a subscriber sees a group's ids in order and catches up from the
// last id it saw after any (re)subscription.

// groupLogMax bounds each group's log (XADD MAXLEN ~); entries older than
// popper.call_ttl are trimmed too.
const groupLogMax = 4096

// pingEvery is how often an idle group subscription pings Redis; two pings
// unanswered and the subscription is made anew.
const pingEvery = 3 * time.Second

// agentGroup is the agent's group: CRC-32 (IEEE) of the id, modulo groups.
// CRC spreads ids that differ in a digit or two (extension numbers) over
// distinct groups better than a random hash would.
func agentGroup(agent string, groups int) int {
	return int(crc32.ChecksumIEEE([]byte(agent)) % uint32(groups))
}

func groupChannel(base string, g int) string { return base + ":{" + strconv.Itoa(g) + "}" }

func groupLogKey(base string, g int) string { return groupChannel(base, g) + ":log" }

// publishScript appends a pop to its group's log (bounded by count and by
// age) and publishes it with its log id. KEYS[1] the log; ARGV: channel,
// envelope, ttl ms, max entries, "s" (SPUBLISH) or "p" (PUBLISH), "1" when
// XTRIM MINID is there (Redis ≥ 6.2).
var publishScript = redis.NewScript(`
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'p', ARGV[2])
if ARGV[6] == '1' then
  local ms = tonumber(string.match(id, '^(%d+)'))
  local min = ms - tonumber(ARGV[3])
  if min > 0 then redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', min)) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local msg = id .. ' ' .. ARGV[2]
if ARGV[5] == 's' then redis.call('SPUBLISH', ARGV[1], msg) else redis.call('PUBLISH', ARGV[1], msg) end
return id
`)

// streamID is a Redis stream id, ordered.
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return streamID{ms, seq}, err1 == nil && err2 == nil
}

func (id streamID) after(o streamID) bool {
	return id.ms > o.ms || (id.ms == o.ms && id.seq > o.seq)
}

func (id streamID) String() string {
	return strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
}

// next is the smallest id after id (for an exclusive XRANGE start on any Redis).
func (id streamID) next() string {
	return streamID{id.ms, id.seq + 1}.String()
}

// groupSubs holds this instance's group subscriptions, counted by the
// streams that need them.
type groupSubs struct {
	p    *Popper
	mu   sync.Mutex
	subs map[int]*groupSub
	base context.Context // Run's; nil while not running
	wg   sync.WaitGroup
}

type groupSub struct {
	g      int
	refs   int
	ready  chan struct{} // closed once subscribed and caught up (first time)
	once   sync.Once
	cancel context.CancelFunc // nil until started
}

func newGroupSubs(p *Popper) *groupSubs {
	return &groupSubs{p: p, subs: make(map[int]*groupSub)}
}

// acquire holds agent's group subscription for one stream and waits (at most
// wait, or ctx) until it is in place; release gives it back.
func (gs *groupSubs) acquire(ctx context.Context, agent string, wait time.Duration) (release func()) {
	g := agentGroup(agent, gs.p.cfg.ChannelGroups)
	gs.mu.Lock()
	s := gs.subs[g]
	if s == nil {
		s = &groupSub{g: g, ready: make(chan struct{})}
		gs.subs[g] = s
		groupSubsGauge.Inc()
		if gs.base != nil {
			gs.start(s)
		}
	}
	s.refs++
	gs.mu.Unlock()
	t := time.NewTimer(wait)
	select {
	case <-s.ready:
	case <-ctx.Done():
	case <-t.C:
	}
	t.Stop()
	var once sync.Once
	return func() { once.Do(func() { gs.release(s) }) }
}

func (gs *groupSubs) release(s *groupSub) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	s.refs--
	if s.refs > 0 {
		return
	}
	delete(gs.subs, s.g)
	groupSubsGauge.Dec()
	if s.cancel != nil {
		s.cancel()
	}
}

// start runs s's subscription; gs.mu held, gs.base set.
func (gs *groupSubs) start(s *groupSub) {
	ctx, cancel := context.WithCancel(gs.base)
	s.cancel = cancel
	gs.wg.Go(func() { gs.p.followGroup(ctx, s) })
}

// run starts the subscriptions held so far and those acquired until ctx
// ends; it returns when all have ended.
func (gs *groupSubs) run(ctx context.Context) {
	gs.mu.Lock()
	gs.base = ctx
	for _, s := range gs.subs {
		gs.start(s)
	}
	gs.mu.Unlock()
	<-ctx.Done()
	gs.mu.Lock()
	gs.base = nil
	for _, s := range gs.subs {
		s.cancel = nil // the next Run starts them again
	}
	gs.mu.Unlock()
	gs.wg.Wait()
}

// held is how many group subscriptions this instance holds.
func (gs *groupSubs) held() int {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return len(gs.subs)
}

// followGroup keeps group s subscribed until ctx ends: it (re)subscribes,
// reads what it missed from the group's log, then delivers what arrives.
func (p *Popper) followGroup(ctx context.Context, s *groupSub) {
	channel := groupChannel(p.cfg.Channel, s.g)
	var last streamID
	first := true
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			sleepCtx(ctx, min(time.Duration(attempt)*100*time.Millisecond, 2*time.Second))
			if ctx.Err() != nil {
				return
			}
		}
		mode, err := p.redisMode(ctx)
		if err != nil {
			continue
		}
		var ps *redis.PubSub
		if mode.sharded {
			ps = p.rdb.SSubscribe(ctx, channel)
		} else {
			ps = p.rdb.Subscribe(ctx, channel)
		}
		if p.receiveGroup(ctx, ps, s, &last, &first) {
			attempt = 0
		}
		ps.Close()
		// The group's slot may have moved (a Cluster answers MOVED, or ends
		// the subscription): have the client read the slot map again.
		if r, ok := p.rdb.(interface{ ReloadState(context.Context) }); ok && ctx.Err() == nil {
			r.ReloadState(ctx)
		}
	}
}

// receiveGroup reads one subscription until it fails; it reports whether
// the subscription had been confirmed.
func (p *Popper) receiveGroup(ctx context.Context, ps *redis.PubSub, s *groupSub, last *streamID, first *bool) (confirmed bool) {
	missed := 0
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		if err != nil {
			if ctx.Err() != nil {
				return confirmed
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && missed < 2 {
				missed++
				_ = ps.Ping(ctx)
				continue
			}
			if confirmed {
				pubsubErrorsTotal.WithLabelValues("subscribe").Inc()
			}
			return confirmed
		}
		missed = 0
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" && m.Kind != "ssubscribe" {
				// Redis ended the subscription (a Cluster does when the
				// group's slot moves to another master): subscribe again.
				return confirmed
			}
			// Subscribed (first time, or again after go-redis reconnected):
			// what was published before now is in the log.
			if err := p.catchUp(ctx, s.g, last, *first); err != nil {
				pubsubErrorsTotal.WithLabelValues("catch_up").Inc()
				p.subscribeWarn.Warn(p.log, "reading the group's log failed; subscribing again", "group", s.g, "err", err)
				return confirmed
			}
			confirmed, *first = true, false
			s.once.Do(func() { close(s.ready) })
		case *redis.Message:
			idStr, payload, _ := strings.Cut(m.Payload, " ")
			id, ok := parseStreamID(idStr)
			if !ok {
				pubsubErrorsTotal.WithLabelValues("decode").Inc()
				continue
			}
			if !id.after(*last) {
				continue // already read from the log
			}
			*last = id
			p.receive(payload, true)
		}
	}
	return confirmed
}

// catchUp reads the group's log after last. The first time (nothing seen
// yet) it loads the log's newest entries into the agents' recent pops
// without pushing them to streams (they replay them); later it delivers
// what was missed.
func (p *Popper) catchUp(ctx context.Context, g int, last *streamID, first bool) error {
	key := groupLogKey(p.cfg.Channel, g)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if first {
		msgs, err := p.rdb.XRevRangeN(cctx, key, "+", "-", groupLogMax).Result()
		if err != nil {
			return err
		}
		slices.Reverse(msgs)
		pops := make([]Pop, 0, len(msgs))
		for _, m := range msgs {
			if id, ok := parseStreamID(m.ID); ok && id.after(*last) {
				*last = id
			}
			// Only this group's agents (a log written under another
			// channel_groups holds others).
			if env, ok := decodeEnvelope(m.Values["p"]); ok && agentGroup(env.Pop.Agent, p.cfg.ChannelGroups) == g {
				pops = append(pops, env.Pop)
			}
		}
		p.hub.Backfill(pops)
		return nil
	}
	for {
		msgs, err := p.rdb.XRangeN(cctx, key, last.next(), "+", 512).Result()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			id, ok := parseStreamID(m.ID)
			if !ok || !id.after(*last) {
				continue
			}
			*last = id
			s, _ := m.Values["p"].(string)
			p.receive(s, false)
		}
		if len(msgs) < 512 {
			return nil
		}
	}
}

func decodeEnvelope(v any) (envelope, bool) {
	s, _ := v.(string)
	var env envelope
	if err := json.Unmarshal([]byte(s), &env); err != nil || env.Pop.Agent == "" {
		return env, false
	}
	return env, true
}

// receive hands a pop that came from Redis to this instance's streams.
func (p *Popper) receive(payload string, live bool) {
	env, ok := decodeEnvelope(payload)
	if !ok {
		pubsubErrorsTotal.WithLabelValues("decode").Inc()
		return
	}
	var recv time.Time
	if live && env.Received > 0 {
		recv = time.Unix(0, env.Received)
	}
	if p.deliverLocal(env.Pop, recv) {
		p.stats.delivered.Add(1)
		popsDeliveredTotal.Inc()
	} else {
		p.stats.notOurs.Add(1)
		popsNotOursTotal.Inc()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
