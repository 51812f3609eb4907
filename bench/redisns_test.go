package bench

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/testredis"
)

// sidecarChildEnv makes the test binary act as `callpop bench --sidecar-child`.
const sidecarChildEnv = "CALLPOP_BENCH_TEST_SIDECAR_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(sidecarChildEnv) == "1" {
		if err := RunSidecar(context.Background(), os.Stdin, os.Stdout, slog.New(slog.DiscardHandler)); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// dumpKeys returns every key of the Redis behind rdb (each master of a
// cluster) with its DUMP.
func dumpKeys(t *testing.T, rdb redis.UniversalClient) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	keys := map[string]string{}
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, "*", 1000).Iterator()
		for it.Next(ctx) {
			v, err := c.Dump(ctx, it.Val()).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			mu.Lock()
			keys[it.Val()] = v
			mu.Unlock()
		}
		return it.Err()
	}
	if err := eachNode(ctx, rdb, scan); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return keys
}

// prefill leaves in the Redis at addrs what production (and an earlier
// bench) left there: cache entries under callpop:c: for every customer of a
// population-sized stub and for the in-flight phase's numbers, and a block
// list. A cache write that missed its 100 ms timeout on a busy machine is
// made again by the next round's fresh pipeline.
func prefill(t *testing.T, addrs string, rdb redis.UniversalClient, population, inflight int) {
	t.Helper()
	stub, err := StartCRMStub(population, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Close()
	ctx := context.Background()
	if err := rdb.SAdd(ctx, "callpop:blocklist", "+15550100").Err(); err != nil {
		t.Fatal(err)
	}
	numbers := make([]string, 0, population+inflight)
	for i := range population {
		numbers = append(numbers, CustomerNumber(i))
	}
	for i := range inflight {
		numbers = append(numbers, unknownNumber(5_000_000+i))
	}
	count := func() (n int) {
		for k := range dumpKeys(t, rdb) {
			if strings.HasPrefix(k, "callpop:c:") {
				n++
			}
		}
		return n
	}
	n := 0
	for range 10 {
		p, err := NewPipeline(PipelineConfig{CRMURL: stub.SourceURL(), RedisAddr: addrs, Budget: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range numbers {
			p.Router.Decide(ctx, call.Call{ID: "prefill", PBX: "bench", CLI: e, DNIS: dnis, Received: time.Now()})
		}
		// The cache is written after the answer; closing the CRM cancels writes under way.
		for deadline := time.Now().Add(2 * time.Second); n < len(numbers) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			n = count()
		}
		p.Close()
		if n = count(); n == len(numbers) {
			return
		}
	}
	t.Fatalf("prefill left %d keys under callpop:c:, want %d", n, len(numbers))
}

// progressHook calls hook once, on the first progress note holding trigger.
type progressHook struct {
	mu      sync.Mutex
	trigger string
	hook    func()
}

func (p *progressHook) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hook != nil && strings.Contains(string(b), p.trigger) {
		p.hook()
		p.hook = nil
	}
	return len(b), nil
}

// TestRunOnSharedRedis runs the Redis phases of the bench (load, burst, in
// flight) on a Redis that already holds callpop's production keys: the
// figures must be the bench's own (one CRM request per burst number, every
// in-flight call held), the production keys must stay as they were, and
// nothing the run wrote may remain, also when the run is interrupted.
func TestRunOnSharedRedis(t *testing.T) {
	needRedis(t)
	tests := []struct {
		name      string
		pbx       string
		child     bool // the in-flight phase in a sidecar child process
		cluster   bool
		interrupt bool // cancel the run when the in-flight phase starts
	}{
		{name: "in process", pbx: PBXDirect},
		{name: "sidecar child", pbx: PBXAsterisk, child: true},
		{name: "interrupted", pbx: PBXDirect, interrupt: true},
		{name: "cluster", pbx: PBXDirect, cluster: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addrs []string
			if tt.cluster {
				addrs = testredis.StartCluster(t, 3).Addrs
			} else {
				addrs = []string{testredis.Start(t).Addr}
			}
			rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
			defer rdb.Close()
			o := DefaultOptions()
			o.PBX, o.Redis = tt.pbx, strings.Join(addrs, ",")
			o.Rate, o.Duration, o.BareDuration = 50, 300*time.Millisecond, 0
			o.Population = 60
			o.CRMLatency, o.CRMJitter = time.Millisecond, 0
			o.BurstNumbers, o.BurstCalls = 2, 20
			o.InFlight = 40
			o.Budget = 2 * time.Second // generous: -race on a shared machine
			o.Logger = slog.New(slog.DiscardHandler)
			if tt.child {
				t.Setenv(sidecarChildEnv, "1")
				o.SidecarCommand = []string{os.Args[0], "-test.run=^$"}
			}
			prefill(t, o.Redis, rdb, o.Population, o.InFlight)
			before := dumpKeys(t, rdb)

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			var during int // keys when the in-flight phase starts: the run's own are there
			o.Progress = &progressHook{trigger: "in flight: holding", hook: func() {
				during = len(dumpKeys(t, rdb))
				if tt.interrupt {
					cancel()
				}
			}}
			rep, err := Run(ctx, o)
			if during <= len(before) {
				t.Errorf("%d keys when the in-flight phase started, %d before the run: the run wrote nothing to this Redis", during, len(before))
			}
			if tt.interrupt {
				if err == nil {
					t.Error("interrupted run returned no error")
				}
			} else if err != nil {
				t.Fatal(err)
			} else {
				if rep.Burst.Numbers != o.BurstNumbers || rep.Burst.RequestsMean != 1 || rep.Burst.RequestsMax != 1 {
					t.Errorf("burst: %d numbers, %.2f CRM requests per number (max %d); want %d numbers, exactly 1 each",
						rep.Burst.Numbers, rep.Burst.RequestsMean, rep.Burst.RequestsMax, o.BurstNumbers)
				}
				if rep.InFlight.Reached != o.InFlight {
					t.Errorf("in flight: held %d / %d", rep.InFlight.Reached, o.InFlight)
				}
				for _, n := range rep.Notes {
					if strings.HasPrefix(n, "in flight:") || strings.HasPrefix(n, "redis:") {
						t.Errorf("note: %s", n)
					}
				}
			}
			after := dumpKeys(t, rdb)
			if !maps.Equal(before, after) {
				var left, changed []string
				for k, v := range after {
					if w, ok := before[k]; !ok {
						left = append(left, k)
					} else if w != v {
						changed = append(changed, k)
					}
				}
				var gone int
				for k := range before {
					if _, ok := after[k]; !ok {
						gone++
					}
				}
				t.Errorf("after the run: %d keys left by it (e.g. %q), %d pre-existing keys changed (e.g. %q), %d gone",
					len(left), left[:min(len(left), 3)], len(changed), changed[:min(len(changed), 3)], gone)
			}
		})
	}
}
