package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/popper"
)

// streamedPop is what a test reads of a pop on the agent's stream.
type streamedPop struct {
	CallID   string         `json:"call_id"`
	Agent    string         `json:"agent"`
	State    string         `json:"state"`
	Match    string         `json:"match"`
	Number   string         `json:"number"`
	Customer map[string]any `json:"customer"`
	PBX      string         `json:"pbx"`
	Channel  string         `json:"channel"`
	Subject  string         `json:"subject"`
}

// openPops opens agent's pop stream on a running callpop (token from the
// secret in CALLPOP_POPPER_TOKEN_SECRET) and returns its pops.
func openPops(t *testing.T, base, secret, agent string) <-chan streamedPop {
	t.Helper()
	tok, err := popper.IssueToken([]byte(secret), agent, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return openPopsToken(t, base, agent, tok)
}

// openPopsToken opens agent's pop stream with token tok and returns its pops.
func openPopsToken(t *testing.T, base, agent, tok string) <-chan streamedPop {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/agents/"+agent+"/pops?token="+tok, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		cancel()
		t.Fatalf("pop stream: %d", resp.StatusCode)
	}
	out := make(chan streamedPop, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var p streamedPop
			if json.Unmarshal([]byte(data), &p) == nil {
				select {
				case out <- p:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

// expectPops reads the next pops of a stream: the states in order, each of
// call id with the caller's record and number.
func expectPops(t *testing.T, pops <-chan streamedPop, id, number, name string, states ...string) {
	t.Helper()
	for _, st := range states {
		select {
		case p := <-pops:
			if p.CallID != id || p.State != st || p.Match != "hit" || p.Number != number || p.Customer == nil || p.Customer["name"] != name {
				t.Fatalf("pop %+v, want %s of call %s with %s's record", p, st, id, name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s pop for call %s", st, id)
		}
	}
}

// logged waits for a log line matching re and returns its first group.
func logged(t *testing.T, logs *syncBuffer, re *regexp.Regexp) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no log line %s:\n%s", re, logs.String())
	return ""
}

const popSecret = "test-token-secret-0123456789abcdef"

// Asterisk without Stasis: a call decided over FastAGI (agi_uniqueid) and
// one over `CURL(…/v1/route?…&call_id=${UNIQUEID})` pop to the agent its
// Dial rings, with the caller's record, as a Stasis call does.
//   - Dial at once: the session and the HTTP answer end only once Asterisk
//     has answered callpop's subscription to the channel (held a while
//     here), so a Dial issued the moment they end is seen ringing.
//   - subscription never answered: the session and the HTTP answer still
//     end, with the whole decision, by the call's budget (the call is then
//     not followed: the subscription request times out).
func TestRunPopsDialplanCallsOnAsterisk(t *testing.T) {
	sim, err := arisim.New(arisim.Options{Username: "callpop", Password: "test-ari-secret", App: "callpop-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	t.Setenv("CALLPOP_PBX_ASTERISK_PASSWORD", "test-ari-secret")
	t.Setenv("CALLPOP_POPPER_TOKEN_SECRET", popSecret)
	base, logs, stop := startRun(t, writeConfig(t, asteriskRunConfig(sim.URL())))
	defer func() { _ = stop() }()
	waitPBXReady(t, base)
	agiAddr := logged(t, logs, regexp.MustCompile(`"msg":"fastagi listening".*"addr":"([^"]+)"`))
	pops := openPops(t, base, popSecret, "1002")
	spec := arisim.CallSpec{CLI: "+14155550123", CLIName: "Caller", DNIS: "1000",
		Agents: []string{"PJSIP/1002"}, Answer: 0, RingFor: 50 * time.Millisecond, TalkFor: 50 * time.Millisecond}

	// Each way in decides for channel id and returns the caller's name it was told.
	ways := map[string]func(t *testing.T, id string) string{
		"fastagi": func(t *testing.T, id string) string {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			vars, err := sim.RunAGI(ctx, id, agiAddr, "route")
			if err != nil || vars["CALLPOP_MATCH"] != "hit" || vars["__CALLPOP_CALL_ID"] != id || vars["CALLPOP_NAME"] == "" || vars["CALLPOP_QUEUE"] == "" || vars["QUEUE_PRIO"] == "" {
				t.Fatalf("FastAGI session: %v, set %v", err, vars)
			}
			return vars["CALLPOP_NAME"]
		},
		"http": func(t *testing.T, id string) string {
			code, body := get(t, base+"/v1/route?number=%2B14155550123&dnis=1000&field=match,name,queue&call_id="+url.QueryEscape(id))
			q, err := url.ParseQuery(body)
			if code != 200 || err != nil || q.Get("match") != "hit" || q.Get("name") == "" || q.Get("queue") == "" {
				t.Fatalf("/v1/route: %d %q", code, body)
			}
			return q.Get("name")
		},
	}
	for _, way := range []string{"fastagi", "http"} {
		t.Run(way+", Dial at once", func(t *testing.T) {
			id := sim.NewDialplanChannel(spec)
			release := sim.HoldSubscriptions()
			defer release()
			released := make(chan struct{})
			go func() { // Asterisk answers the subscription late, within the budget
				defer close(released)
				for deadline := time.Now().Add(10 * time.Second); sim.HeldSubscriptions() != 1 && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(100 * time.Millisecond)
				release()
			}()
			defer func() { <-released }()
			name := ways[way](t, id)
			sim.RunAgents(id) // the dialplan's Dial, the moment callpop let the call go on
			expectPops(t, pops, id, "+14155550123", name, popper.StateRinging, popper.StateAnswered, popper.StateEnded)
		})
		t.Run(way+", subscription never answered", func(t *testing.T) {
			id := sim.NewDialplanChannel(spec)
			release := sim.HoldSubscriptions()
			defer release()
			ways[way](t, id)
			// Answered by the budget, the decision whole, while Asterisk
			// still holds the subscription.
			if sim.Subscribed("callpop-test", id) {
				t.Fatal("subscribed while held")
			}
		})
	}

	// Without the call's id nothing is followed or popped.
	t.Run("no id", func(t *testing.T) {
		id := sim.NewDialplanChannel(spec)
		if code, _ := get(t, base+"/v1/route?number=%2B14155550123&dnis=1000&field=match"); code != 200 {
			t.Fatalf("/v1/route: %d", code)
		}
		if sim.HeldSubscriptions() != 0 || sim.Subscribed("callpop-test", id) {
			t.Fatal("a call without an id was subscribed")
		}
	})
}

// FreeSWITCH without the outbound socket: a call decided over
// `${curl(…/v1/route?…&call_id=${uuid})}`, whose dialplan exports
// callpop_call_id to its legs, pops to the agent its bridge rings, through
// the adapter's event connection.
func TestRunPopsRouteCallsOnFreeSWITCH(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: "test-esl-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	t.Setenv("CALLPOP_PBX_FREESWITCH_PASSWORD", "test-esl-secret")
	t.Setenv("CALLPOP_POPPER_TOKEN_SECRET", popSecret)
	cfg := runConfig + `
call: {budget: 2s}
pbx:
  kind: freeswitch
  freeswitch:
    mode: outbound
    listen: 127.0.0.1:0
    events: true
    address: ` + sim.Addr() + `
    reconnect_min: 20ms
    reconnect_max: 200ms
`
	base, logs, stop := startRun(t, writeConfig(t, cfg))
	defer func() { _ = stop() }()
	logged(t, logs, regexp.MustCompile(`"msg":"(event socket connected)"`))
	pops := openPops(t, base, popSecret, "1002")

	uuid := eslsim.NewUUID()
	code, name := get(t, base+"/v1/route?number=%2B14155550123&dnis=1000&field=name&call_id="+uuid)
	if code != 200 || name == "" {
		t.Fatalf("/v1/route: %d %q", code, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sim.RingAgents(ctx, uuid, eslsim.Ring{Agents: []string{"1001", "1002"}, Answer: 1, RingFor: 50 * time.Millisecond, TalkFor: 50 * time.Millisecond})
	expectPops(t, pops, uuid, "+14155550123", name, popper.StateRinging, popper.StateAnswered, popper.StateEnded)
}
