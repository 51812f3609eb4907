package popper

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/internal/testredis"
)

// startInstanceWith is startInstance with a hook run before Run starts.
func startInstanceWith(t testing.TB, cfg Config, deps Deps, before func(*Popper)) *instance {
	t.Helper()
	if cfg.TokenSecret == "" {
		cfg.TokenSecret = testSecret
	}
	p, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(p)
	}
	in := &instance{p: p, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	in.srv = httptest.NewServer(p.Handler())
	go func() { in.done <- p.Run(ctx) }()
	t.Cleanup(in.stop)
	waitFor(t, func() bool { ok, _ := p.Ready(); return ok })
	return in
}

// agentsInGroups returns n agent ids whose groups all differ.
func agentsInGroups(prefix string, n, groups int, taken map[int]bool) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		a := fmt.Sprintf("%s%d", prefix, i)
		if g := agentGroup(a, groups); !taken[g] {
			taken[g] = true
			out = append(out, a)
		}
	}
	return out
}

// received is what an instance got from Redis.
func (in *instance) received() int64 {
	return in.p.stats.delivered.Load() + in.p.stats.notOurs.Load()
}

// popCall reads the call id of a pop event.
func popCall(t testing.TB, m sseMsg) string {
	t.Helper()
	var p Pop
	if err := json.Unmarshal([]byte(m.Data), &p); err != nil {
		t.Fatalf("pop %q: %v", m.Data, err)
	}
	return p.CallID
}

// The group hash is part of the wire format between instances of
// different versions: it must not change.
func TestAgentGroupStable(t *testing.T) {
	for agent, want := range map[string]int{"1001": 129, "alice": 71, "agent-7@example": 88} {
		if g := agentGroup(agent, 256); g != want {
			t.Errorf("agentGroup(%q, 256) = %d, want %d", agent, g, want)
		}
	}
	if got := groupChannel("callpop:pops", 17); got != "callpop:pops:{17}" {
		t.Errorf("channel %q", got)
	}
}

// Three instances on a three-master Cluster, agents spread over two of
// them: every pop reaches exactly the instances holding its agent (one
// agent has a panel on two), the third instance receives nothing, and the
// channels are sharded ones.
func TestGroupsFanOutCluster(t *testing.T) {
	cl := testredis.StartCluster(t, 3)
	var ins []*instance
	for i := range 3 {
		addrs := append(append([]string(nil), cl.Addrs[i:]...), cl.Addrs[:i]...)
		ins = append(ins, startInstance(t, Config{}, Deps{Redis: newRedis(t, addrs...)}))
	}
	a, b, c := ins[0], ins[1], ins[2]
	if m := a.p.mode.Load(); m == nil || !m.sharded {
		t.Fatalf("Redis 7 cluster not detected as sharded: %+v", m)
	}
	taken := map[int]bool{}
	onA := agentsInGroups("a", 3, 256, taken)
	onB := agentsInGroups("b", 3, 256, taken)
	both := agentsInGroups("ab", 1, 256, taken)[0]
	streams := map[string][]*stream{}
	for _, ag := range onA {
		streams[ag] = append(streams[ag], openStream(t, a.srv.URL, ag, token(t, ag), nil))
	}
	for _, ag := range onB {
		streams[ag] = append(streams[ag], openStream(t, b.srv.URL, ag, token(t, ag), nil))
	}
	streams[both] = append(streams[both], openStream(t, a.srv.URL, both, token(t, both), nil),
		openStream(t, b.srv.URL, both, token(t, both), nil))
	waitFor(t, func() bool { return a.p.groups.held() == 4 && b.p.groups.held() == 4 })
	if n := c.p.groups.held(); n != 0 {
		t.Fatalf("instance without agents holds %d groups", n)
	}

	// The shard that owns each group's slot has exactly the subscribers holding it.
	admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs})
	defer admin.Close()
	ctx := context.Background()
	// held() counts a group once its subscription is asked for; the shard
	// lists it once the SSUBSCRIBE has reached it: wait for that.
	wrong := func() (bad []string) {
		for ag, ss := range streams {
			ch := groupChannel("callpop:pops", agentGroup(ag, 256))
			var n int64
			for _, addr := range cl.Addrs {
				node := redis.NewClient(&redis.Options{Addr: addr})
				m, err := node.PubSubShardNumSub(ctx, ch).Result()
				node.Close()
				if err != nil {
					t.Fatal(err)
				}
				n += m[ch]
			}
			if n != int64(len(ss)) {
				bad = append(bad, fmt.Sprintf("%s: %d shard subscribers, want %d", ch, n, len(ss)))
			}
		}
		return bad
	}
	for deadline := time.Now().Add(10 * time.Second); len(wrong()) > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	for _, b := range wrong() {
		t.Error(b)
	}

	// Pops from every instance, c included (its adapter sees calls too).
	agents := append(append(append([]string(nil), onA...), onB...), both)
	want := 0
	for i := range 10 {
		for j, ag := range agents {
			id := fmt.Sprintf("f%d-%d", i, j)
			from := ins[(i+j)%3].p
			enrich(from, id, hitDecision())
			ring(from, id, ag)
			for _, s := range streams[ag] {
				if got := popCall(t, s.next(t, 10*time.Second)); got != id {
					t.Fatalf("%s: got %s, want %s", ag, got, id)
				}
				want++
			}
		}
	}
	// The counters move just after the stream has the pop: wait for them.
	var published int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		published = 0
		for _, in := range ins {
			published += in.p.stats.published.Load()
		}
		if published == int64(10*len(agents)) && a.received()+b.received() == int64(want) {
			break
		}
	}
	if published != int64(10*len(agents)) {
		t.Errorf("published %d, want %d", published, 10*len(agents))
	}
	if got := a.received() + b.received() + c.received(); got != int64(want) {
		t.Errorf("deliveries %d, want %d (one per stream instance and pop)", got, want)
	}
	if n := c.received(); n != 0 {
		t.Errorf("the instance with no agents received %d pops", n)
	}
	if n := a.p.stats.notOurs.Load() + b.p.stats.notOurs.Load(); n != 0 {
		t.Errorf("%d pops received for agents not held", n)
	}
}

// An agent whose panel moves from one instance to another keeps its pops:
// the new instance loads the group's log, replays after Last-Event-ID, and
// the old one lets the group go.
func TestGroupsAgentMoves(t *testing.T) {
	cl := testredis.StartCluster(t, 3)
	a := startInstance(t, Config{}, Deps{Redis: newRedis(t, cl.Addrs...)})
	b := startInstance(t, Config{}, Deps{Redis: newRedis(t, cl.Addrs[1], cl.Addrs[2], cl.Addrs[0])})
	src := startInstance(t, Config{}, Deps{Redis: newRedis(t, cl.Addrs[2], cl.Addrs[0], cl.Addrs[1])})
	const ag = "mover"
	s := openStream(t, a.srv.URL, ag, token(t, ag), nil)
	var ids []string
	for i := range 6 {
		id := "m" + itoa(i)
		enrich(src.p, id, hitDecision())
		ring(src.p, id, ag)
		ids = append(ids, s.next(t, 10*time.Second).ID)
	}
	s.Close()
	waitFor(t, func() bool { return a.p.groups.held() == 0 })
	// Two pops while the agent is on no instance at all.
	for i := 6; i < 8; i++ {
		id := "m" + itoa(i)
		enrich(src.p, id, hitDecision())
		ring(src.p, id, ag)
	}
	waitFor(t, func() bool { return src.p.stats.published.Load() == 8 })
	// On b, resuming after the third pop: the fourth to the eighth.
	s2 := openStream(t, b.srv.URL, ag, token(t, ag), map[string]string{"Last-Event-ID": ids[2]})
	for i := 3; i < 8; i++ {
		if got := popCall(t, s2.next(t, 10*time.Second)); got != "m"+itoa(i) {
			t.Fatalf("replay on b: got %s, want m%d", got, i)
		}
	}
	before := a.received()
	enrich(src.p, "m8", hitDecision())
	ring(src.p, "m8", ag)
	if got := popCall(t, s2.next(t, 10*time.Second)); got != "m8" {
		t.Fatalf("live on b: %s", got)
	}
	if n := a.received() - before; n != 0 {
		t.Errorf("the instance the agent left still received %d pops", n)
	}
}

// A shard master restarted while pops flow: the publisher keeps what Redis
// refused and publishes it again, the subscriber subscribes again and
// reads what it missed from the group's log. Every pop arrives, once.
func TestGroupsShardRestartLosesNothing(t *testing.T) {
	cl := testredis.StartCluster(t, 3)
	a := startInstance(t, Config{}, Deps{Redis: newRedis(t, cl.Addrs...)})
	b := startInstance(t, Config{}, Deps{Redis: newRedis(t, cl.Addrs[1], cl.Addrs[2], cl.Addrs[0])})
	const ag = "steady"
	s := openStream(t, b.srv.URL, ag, token(t, ag), nil)
	waitFor(t, func() bool { return b.p.groups.held() == 1 })

	// The master owning the agent's group.
	ctx := context.Background()
	admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs})
	defer admin.Close()
	slot, err := admin.ClusterKeySlot(ctx, groupLogKey("callpop:pops", agentGroup(ag, 256))).Result()
	if err != nil {
		t.Fatal(err)
	}
	slots, err := admin.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var owner *testredis.Server
	for _, r := range slots {
		if int64(r.Start) <= slot && slot <= int64(r.End) {
			for _, n := range cl.Nodes {
				if n.Addr == r.Nodes[0].Addr {
					owner = n
				}
			}
		}
	}
	if owner == nil {
		t.Fatalf("no owner for slot %d in %+v", slot, slots)
	}

	seen := map[string]int{}
	send := func(from, to int) {
		for i := from; i < to; i++ {
			id := "s" + itoa(i)
			enrich(a.p, id, hitDecision())
			ring(a.p, id, ag)
		}
	}
	read := func(n int) {
		for range n {
			seen[popCall(t, s.next(t, 30*time.Second))]++
		}
	}
	send(0, 10)
	read(10)
	owner.Stop()
	send(10, 20) // refused: a keeps them
	waitFor(t, func() bool { return a.p.stats.published.Load() == 10 })
	owner.Restart()
	send(20, 30)
	read(20)
	for i := range 30 {
		if n := seen["s"+itoa(i)]; n != 1 {
			t.Errorf("pop s%d arrived %d times", i, n)
		}
	}
	// Nothing more arrives (no duplicate behind the 30).
	enrich(a.p, "last", hitDecision())
	ring(a.p, "last", ag)
	if got := popCall(t, s.next(t, 30*time.Second)); got != "last" {
		t.Errorf("after the 30: %s", got)
	}
}

// Without sharded Pub/Sub (forced here; an older Redis) the same per-group
// channels are used with PUBLISH/SUBSCRIBE: an instance subscribes only to
// its agents' groups.
func TestGroupsPlainPubSub(t *testing.T) {
	srv := testredis.Start(t)
	plain := func(p *Popper) { p.forcePlain = true }
	a := startInstanceWith(t, Config{}, Deps{Redis: newRedis(t, srv.Addr)}, plain)
	b := startInstanceWith(t, Config{}, Deps{Redis: newRedis(t, srv.Addr)}, plain)
	s := openStream(t, b.srv.URL, "1001", token(t, "1001"), nil)
	waitFor(t, func() bool { return b.p.groups.held() == 1 })
	ctx := context.Background()
	rdb := newRedis(t, srv.Addr)
	ch := groupChannel("callpop:pops", agentGroup("1001", 256))
	// held() counts the group once its subscription is asked for; Redis
	// lists it once the SUBSCRIBE has reached it.
	waitFor(t, func() bool {
		n, err := rdb.PubSubNumSub(ctx, ch).Result()
		return err == nil && n[ch] == 1
	})
	if chans, err := rdb.PubSubChannels(ctx, "*").Result(); err != nil || len(chans) != 1 {
		t.Fatalf("channels subscribed: %v %v", chans, err)
	}
	for i := range 5 {
		id := "p" + itoa(i)
		enrich(a.p, id, hitDecision())
		ring(a.p, id, "1001")
		if got := popCall(t, s.next(t, 10*time.Second)); got != id {
			t.Fatalf("got %s, want %s", got, id)
		}
	}
	if m := a.p.mode.Load(); m == nil || m.sharded {
		t.Fatalf("mode %+v", m)
	}
	if n := a.received(); n != 0 {
		t.Errorf("instance without agents received %d", n)
	}
	s.Close()
	waitFor(t, func() bool {
		chans, _ := rdb.PubSubChannels(ctx, "*").Result()
		return len(chans) == 0 && b.p.groups.held() == 0
	})
	if !strings.HasPrefix(ch, "callpop:pops:{") {
		t.Fatal(ch)
	}
}

// The slot of an agent's group moves to another master while pops flow
// (Redis ends the sharded subscription with an SUNSUBSCRIBE): the instance
// subscribes again where the slot went, and no pop is lost.
func TestGroupsSlotMoves(t *testing.T) {
	cl := testredis.StartCluster(t, 3)
	a := startInstance(t, Config{}, Deps{Redis: newRedis(t, cl.Addrs...)})
	b := startInstance(t, Config{}, Deps{Redis: newRedis(t, cl.Addrs[1], cl.Addrs[2], cl.Addrs[0])})
	const ag = "wanderer"
	s := openStream(t, b.srv.URL, ag, token(t, ag), nil)
	waitFor(t, func() bool { return b.p.groups.held() == 1 })
	send := func(from, to int) {
		for i := from; i < to; i++ {
			id := "w" + itoa(i)
			enrich(a.p, id, hitDecision())
			ring(a.p, id, ag)
		}
	}
	seen := map[string]int{}
	read := func(n int) {
		for range n {
			seen[popCall(t, s.next(t, 30*time.Second))]++
		}
	}
	send(0, 5)
	read(5)

	ctx := context.Background()
	key := groupLogKey("callpop:pops", agentGroup(ag, 256))
	nodes := map[string]*redis.Client{}
	ids := map[string]string{}
	for _, addr := range cl.Addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		nodes[addr] = c
		id, err := c.Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		ids[addr] = id
	}
	slot, err := nodes[cl.Addrs[0]].ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	var src, dst string
	for _, addr := range cl.Addrs {
		n, _ := nodes[addr].ClusterCountKeysInSlot(ctx, int(slot)).Result()
		if n > 0 {
			src = addr
		}
	}
	if src == "" {
		t.Fatal("the group's log is on no node")
	}
	for _, addr := range cl.Addrs {
		if addr != src {
			dst = addr
			break
		}
	}
	must := func(c *redis.Client, args ...any) {
		t.Helper()
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	must(nodes[dst], "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
	must(nodes[src], "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
	host, port, _ := strings.Cut(dst, ":")
	keys, err := nodes[src].ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		must(nodes[src], "MIGRATE", host, port, k, 0, 5000)
	}
	for _, addr := range cl.Addrs {
		must(nodes[addr], "CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
	}
	send(5, 15)
	read(10)
	for i := range 15 {
		if n := seen["w"+itoa(i)]; n != 1 {
			t.Errorf("pop w%d arrived %d times", i, n)
		}
	}
	// The subscription is on the slot's new master.
	waitFor(t, func() bool {
		m, _ := nodes[dst].PubSubShardNumSub(ctx, groupChannel("callpop:pops", agentGroup(ag, 256))).Result()
		return m[groupChannel("callpop:pops", agentGroup(ag, 256))] == 1
	})
}
