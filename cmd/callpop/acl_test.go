package main

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/testredis"
	"github.com/callpop/callpop/popper"
)

// aclPassword replaces the ACL line's placeholder password.
const aclPassword = "acl-pass-0123456789abcdef"

// aclPopSecret signs the agent token of the pop stream the test opens.
const aclPopSecret = "acl-popper-token-secret-0123456789"

// The Redis ACL user docs/security.md gives is enough for everything callpop
// run does with Redis (cache read, write and forget, the block list, the pop
// channels with their logs and health-check pings), on one server and on a Cluster with
// the permissions the page adds for it: Redis logs no command, key or
// channel refused to it.
func TestRedisACLOfTheDocs(t *testing.T) {
	raw, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	var acl []any
	for line := range strings.SplitSeq(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[0] == "ACL" && f[1] == "SETUSER" {
			for _, a := range f {
				acl = append(acl, strings.Replace(a, ">the-password", ">"+aclPassword, 1))
			}
			break
		}
	}
	m := regexp.MustCompile("A Redis Cluster also needs `([^`]+)`").FindStringSubmatch(strings.Join(strings.Fields(string(raw)), " "))
	if acl == nil || m == nil {
		t.Fatal("docs/security.md: no ACL SETUSER line, or no Cluster permissions")
	}
	clusterACL := append([]any(nil), acl...)
	for _, p := range strings.Fields(m[1]) {
		clusterACL = append(clusterACL, p)
	}
	t.Setenv("CALLPOP_CACHE_REDIS_USERNAME", "callpop")
	t.Setenv("CALLPOP_CACHE_REDIS_PASSWORD", aclPassword)
	t.Setenv("CALLPOP_CACHE_KEY_SECRET", "test-key-secret-for-hmac-0123456789")
	t.Setenv("CALLPOP_ROUTER_FLAGS_BLOCK_LIST_REDIS_KEY", "callpop:blocklist")
	t.Setenv("CALLPOP_POPPER_TOKEN_SECRET", aclPopSecret)

	t.Run("server", func(t *testing.T) {
		srv := testredis.Start(t)
		runAsACLUser(t, acl, srv.Addr, []string{srv.Addr})
	})
	t.Run("cluster", func(t *testing.T) {
		c := testredis.StartCluster(t, 3)
		runAsACLUser(t, clusterACL, strings.Join(c.Addrs, ","), c.Addrs)
	})
}

// runAsACLUser creates the user on every node, runs callpop with it
// (cache.redis.addrs = addrs) and exercises each Redis use.
func runAsACLUser(t *testing.T, acl []any, addrs string, nodes []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admins := make([]*redis.Client, len(nodes))
	for i, n := range nodes {
		admins[i] = redis.NewClient(&redis.Options{Addr: n})
		defer admins[i].Close()
		if err := admins[i].Do(ctx, acl...).Err(); err != nil {
			t.Fatalf("%v: %v", acl, err)
		}
	}
	admin := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(addrs, ",")})
	defer admin.Close()
	if err := admin.SAdd(ctx, "callpop:blocklist", "+14155550123").Err(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CALLPOP_CACHE_REDIS_ADDRS", addrs)
	base, logs, stop := startRun(t, writeConfig(t, runConfig))
	defer func() { _ = stop() }()

	// The block list (SISMEMBER) and the cache (HGET, HSET, PEXPIRE).
	if code, body := get(t, base+"/v1/lookup?number=%2B14155550123"); code != 200 || !strings.Contains(body, `"fraud_suspect"`) {
		t.Fatalf("look-up of a blocked number: %d %s\n%s", code, body, logs.String())
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, body := get(t, base+"/v1/lookup?number=%2B14155550123"); code == 200 && strings.Contains(body, `"cached":true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("look-ups not served from Redis\n%s", logs.String())
		}
	}
	// DEL.
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, base+"/v1/cache/%2B14155550123", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("cache forget: %d\n%s", resp.StatusCode, logs.String())
	}
	// The pop channels: callpop subscribes to the group of an agent whose
	// stream it serves, and its idle subscription pings (every 3s); a pop
	// published by another instance as the same user (the group's log
	// script) reaches that stream.
	pops := openPops(t, base, aclPopSecret, "1001")
	seen := func(check func(*redis.Client) bool) bool {
		for _, a := range admins {
			if check(a) {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if seen(func(a *redis.Client) bool {
			clients, _ := a.ClientList(ctx).Result()
			return regexp.MustCompile(`(?m)^.* (sub=1 psub=0|ssub=1) .*cmd=ping .*user=callpop `).MatchString(clients)
		}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no subscription to the agent's pop channel that pinged\n%s", logs.String())
		}
	}
	user := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(addrs, ","), Username: "callpop",
		Password: aclPassword, ClientName: "callpop", DisableIdentity: true})
	defer user.Close()
	other, err := popper.New(popper.Config{}, popper.Deps{Redis: user})
	if err != nil {
		t.Fatal(err)
	}
	octx, ocancel := context.WithCancel(ctx)
	odone := make(chan struct{})
	go func() { _ = other.Run(octx); close(odone) }()
	for ok, _ := other.Ready(); !ok; ok, _ = other.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	other.CallEnriched(call.Enriched{CallID: "acl-call", Call: call.Call{ID: "acl-call", PBX: "asterisk"},
		Decision: call.Decision{CallID: "acl-call", Match: call.MatchMiss}})
	other.AgentLeg(call.LegEvent{CallID: "acl-call", Leg: "acl-leg", Endpoint: "PJSIP/1001-0000000a", State: call.LegRinging})
	select {
	case p := <-pops:
		if p.CallID != "acl-call" || p.State != popper.StateRinging {
			t.Errorf("pop from the other instance: %+v", p)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("no pop published as the ACL user reached the stream\n%s", logs.String())
	}
	// A contact offered by the other instance (HSET, PEXPIRE in a script)
	// is ended through this one (HGET, DEL in a script).
	const contactID = "ct-aclAAAAAAAAAAAAAAAAAAA"
	if err := other.OfferContact(ctx, call.Enriched{CallID: contactID, Call: call.Call{ID: contactID, PBX: "http", Channel: call.ChannelChat},
		Decision: call.Decision{CallID: contactID, Match: call.MatchAnonymous}}, "1001"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{popper.StateOffered, popper.StateEnded} {
		if want == popper.StateEnded {
			resp, err := http.Post(base+"/v1/contacts/"+contactID+"/end", "application/json", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("contact end: %d\n%s", resp.StatusCode, logs.String())
			}
		}
		select {
		case p := <-pops:
			if p.CallID != contactID || p.State != want || p.Channel != "chat" {
				t.Errorf("contact pop: %+v, want %s", p, want)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("no %s contact pop reached the stream\n%s", want, logs.String())
		}
	}
	ocancel()
	<-odone
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for i, a := range admins {
		if denied, err := a.Do(ctx, "ACL", "LOG").Slice(); err != nil || len(denied) > 0 {
			t.Errorf("Redis %s refused the ACL user (%v):\n%v", nodes[i], err, denied)
		}
	}
	if t.Failed() {
		t.Log(logs.String())
	}
}
