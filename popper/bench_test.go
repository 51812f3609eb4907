package popper

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/testredis"
)

// BenchmarkRingToPop: adapter report (ringing) → the event read from the
// agent's SSE stream over loopback HTTP.
func BenchmarkRingToPop(b *testing.B) {
	in := startInstance(b, Config{}, Deps{})
	s := openStream(b, in.srv.URL, "1001", token(b, "1001"), nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := "b" + strconv.Itoa(i)
		enrich(in.p, id, hitDecision())
		ring(in.p, id, "1001")
		s.next(b, 5*time.Second)
		in.p.CallEnded(call.CallEnd{CallID: id})
		s.next(b, 5*time.Second)
	}
}

// BenchmarkCorrelate: the correlator alone, a ring-all of three agents per call.
func BenchmarkCorrelate(b *testing.B) {
	c := newCorrelator(Config{}.withDefaults(), func(Pop) {})
	now := time.Now()
	d := hitDecision()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		id := "c" + strconv.Itoa(i)
		c.Enriched(call.Enriched{CallID: id, Call: call.Call{ID: id}, Decision: d}, now)
		for _, a := range []string{"1001", "1002", "1003"} {
			c.Leg(call.LegEvent{CallID: id, Leg: id + a, Endpoint: "PJSIP/" + a + "-00000001", State: call.LegRinging}, now)
		}
		c.Leg(call.LegEvent{CallID: id, Leg: id + "1002", Endpoint: "PJSIP/1002-00000001", State: call.LegAnswered}, now)
		c.End(call.CallEnd{CallID: id}, now)
	}
}

// BenchmarkPopsFanOut: six instances on a three-master Redis Cluster, 15
// agents with a stream on each; every instance's adapter produces pops for
// all 90 agents. It reports deliveries per pop (pops received from Redis by
// all instances / pops published), the Redis CPU the cluster spent per pop
// (INFO cpu used_cpu_sys + used_cpu_user of the three nodes, after − before)
// and pops/s, for the single shared channel with PUBLISH (how pops travelled
// before agent groups: channel_groups 1) and per-group sharded channels.
//
//	go test ./popper -run '^$' -bench PopsFanOut -benchtime 10000x -count 3
func BenchmarkPopsFanOut(b *testing.B) {
	cl := testredis.StartCluster(b, 3)
	const instances, perInstance = 6, 15
	// Agent ids: extension numbers (1000, 1001, …), or ids that hash like
	// random ones (u<8 hex digits>, from a fixed seed).
	ids := map[string]func(n int) string{
		"ext": func(n int) string { return strconv.Itoa(1000 + n) },
		"random": func(n int) string {
			r := rand.New(rand.NewPCG(19, uint64(n)))
			return fmt.Sprintf("u%08x", r.Uint32())
		},
	}
	for _, v := range []struct {
		name   string
		groups int
		plain  bool
		ids    string
	}{
		{"single-channel-publish/ext", 1, true, "ext"},
		{"sharded-groups-256/ext", 256, false, "ext"},
		{"sharded-groups-256/random", 256, false, "random"},
		{"sharded-groups-1024/random", 1024, false, "random"},
	} {
		b.Run(v.name, func(b *testing.B) {
			// Each round (N=1, then N) has its own instances: the
			// previous round's are cleaned up when it ends.
			var ins []*instance
			var agents []string
			streams := map[string]*stream{}
			{
				for i := range instances {
					k := i % len(cl.Addrs)
					addrs := append(append([]string(nil), cl.Addrs[k:]...), cl.Addrs[:k]...)
					ins = append(ins, startInstanceWith(b, Config{ChannelGroups: v.groups},
						Deps{Redis: newRedis(b, addrs...), Logger: slog.New(slog.DiscardHandler)},
						func(p *Popper) { p.forcePlain = v.plain }))
				}
				for i, in := range ins {
					for j := range perInstance {
						ag := ids[v.ids](i*perInstance + j)
						agents = append(agents, ag)
						// Resuming from now: no replay of earlier rounds' pops
						// (the group logs outlive a round).
						streams[ag] = openStream(b, in.srv.URL, ag, token(b, ag),
							map[string]string{"Last-Event-ID": strconv.FormatInt(time.Now().UnixMicro(), 10)})
					}
				}
				for _, in := range ins {
					waitFor(b, func() bool { return in.p.groups.held() > 0 })
				}
			}
			count := func() (published, received int64) {
				for _, in := range ins {
					published += in.p.stats.published.Load()
					received += in.received()
				}
				return
			}
			run := strconv.FormatInt(time.Now().UnixNano(), 36)
			pub0, recv0 := count()
			cpu0 := clusterCPU(b, cl)
			b.ResetTimer()
			const window = 300
			for start := 0; start < b.N; start += window {
				want := map[string]int{}
				for i := start; i < min(start+window, b.N); i++ {
					id := v.name + "-" + run + "-" + strconv.Itoa(i)
					ag := agents[i%len(agents)]
					from := ins[i%instances].p
					enrich(from, id, hitDecision())
					ring(from, id, ag)
					want[ag]++
				}
				for ag, n := range want {
					for range n {
						streams[ag].next(b, 30*time.Second)
					}
				}
			}
			b.StopTimer()
			// The counters move just after the streams have the pops.
			pub1, recv1 := count()
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				p, r := count()
				if p == pub1 && r == recv1 && p-pub0 >= int64(b.N) {
					break
				}
				pub1, recv1 = p, r
			}
			cpu := clusterCPU(b, cl) - cpu0
			published, received := pub1-pub0, recv1-recv0
			b.ReportMetric(float64(received)/float64(published), "deliveries/pop")
			b.ReportMetric(cpu*1e6/float64(published), "redis-cpu-µs/pop")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pops/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// clusterCPU is the CPU seconds (system + user) the cluster's nodes used so far.
func clusterCPU(b *testing.B, cl *testredis.Cluster) float64 {
	b.Helper()
	var total float64
	for _, addr := range cl.Addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		info, err := c.Info(context.Background(), "cpu").Result()
		c.Close()
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.SplitSeq(info, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			if k == "used_cpu_sys" || k == "used_cpu_user" {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
	}
	return total
}
