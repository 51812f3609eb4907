package esl

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/callpop/callpop/adapters"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
	"github.com/callpop/callpop/call"
	"github.com/callpop/callpop/internal/fsvars"
)

// hostile are the strings the issue names, plus random ones below.
var hostile = []string{
	"${system(touch /tmp/callpop_pwned)}", "$${domain}", "${", "}", "a\r\nEvil-Header: x", "x\n\napi uuid_kill all\n\n",
	"x\r\n\r\nbgapi originate loopback/666", "nul\x00byte", `"dq" 'sq' it's Bob's`, `back\slash \s\t\n`, "^^:a=b:c=d",
	"ARRAY::x|:y", "a=b;c=d", "   padded   ", "100% %41 %zz", "Jürgen Groß 東京 😀", strings.Repeat("v", 10<<10),
	"\u2028line\u2029sep\u200bzw", "\xff\xfe bad utf8", "`backtick` <b>&amp;</b>",
}

func randomHostile(r *rand.Rand) string {
	alphabet := []string{"$", "{", "}", "\\", "'", "\"", "\n", "\r", "\x00", ";", ",", "=", "^", " ", "%", "a", "Z", "ü", "\t", "${system(id)}", "\n\n", "ARRAY::"}
	var b strings.Builder
	for n := r.IntN(40); n > 0; n-- {
		b.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

// hostileDecider puts the value everywhere a CRM or caller could.
func hostileDecider(v string) call.Decider {
	return call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		return call.Decision{
			Match: call.MatchHit, E164: "+49201234567" + v, Source: call.SourceCLI,
			Customer: &call.Customer{ID: v, Name: v, Tier: v, Language: v, URL: "https://crm.example/" + v},
			Queue:    v, Skill: v, Flags: []string{v, "vip"}, PopURL: "https://crm.example/p?q=" + v,
			CallerName: v, InfoURL: "https://crm.example/i/" + v, Extra: map[string]string{"note" + v: v, "segment": v},
		}
	})
}

// checkSafe checks the channel after one call: one set per variable, the
// value sent is the sanitised value, and nothing was or will be expanded.
func checkSafe(t *testing.T, v string, ch eslsim.Channel) {
	t.Helper()
	if len(ch.Expansions) != 0 {
		t.Fatalf("value %q: expansion happened: %q", v, ch.Expansions)
	}
	seen := map[string]int{}
	for _, s := range ch.Sets {
		seen[s.Var]++
		if strings.Contains(s.Var, "=") || s.Var != strings.TrimSpace(s.Var) || s.Var == "" {
			t.Fatalf("value %q split the command: variable %q", v, s.Var)
		}
		if s.Var == "sip_h_Call-Info" {
			continue
		}
		if strings.ContainsAny(s.Value, "${}\\'\"`\r\n\x00;") || s.Value != strings.TrimSpace(s.Value) || !utf8.ValidString(s.Value) {
			t.Fatalf("value %q: %s stored unsafe %q", v, s.Var, s.Value)
		}
		if strings.HasPrefix(s.Value, "^^") || strings.HasPrefix(strings.ToUpper(s.Value), "ARRAY::") {
			t.Fatalf("value %q: %s keeps a list prefix: %q", v, s.Var, s.Value)
		}
	}
	for name, n := range seen {
		if n != 1 {
			t.Fatalf("value %q: %s set %d times", v, name, n)
		}
	}
	if want := fsvars.Text(v); ch.Vars["callpop_name"] != want {
		t.Fatalf("value %q: callpop_name = %q, want the sanitised %q", v, ch.Vars["callpop_name"], want)
	}
	if ch.Vars["callpop_call_id"] != ch.UUID {
		t.Fatalf("value %q: call id %q", v, ch.Vars["callpop_call_id"])
	}
}

func injectionValues() []string {
	r := rand.New(rand.NewPCG(4, 4))
	vals := append([]string(nil), hostile...)
	for i := 0; i < 60; i++ {
		vals = append(vals, randomHostile(r))
	}
	return vals
}

func TestInjectionOutbound(t *testing.T) {
	var current string
	dec := call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		return hostileDecider(current).Decide(ctx, c)
	})
	a := startAdapter(t, outboundConfig(), adapters.Deps{Decider: dec, Budget: roomyBudget})
	sim := eslsim.NewOutbound(waitAddr(t, a), eslsim.Options{})
	for _, v := range injectionValues() {
		current = v
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := sim.Call(ctx, eslsim.Caller{Number: "0201234567" + v, Name: v})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if !res.Exit {
			t.Fatalf("value %q: released by %s", v, res.ReleasedBy)
		}
		checkSafe(t, v, res.Channel)
	}
	if st := sim.Stats(); st.Expansions != 0 || st.Sendmsgs != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestInjectionInbound(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	var current string
	dec := call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		return hostileDecider(current).Decide(ctx, c)
	})
	a := startAdapter(t, inboundConfig(sim.Addr()), adapters.Deps{Decider: dec, Budget: roomyBudget})
	waitFor(t, 5*time.Second, "ready", func() bool { ok, _ := a.Ready(); return ok })
	for _, v := range injectionValues() {
		current = v
		id := sim.OfferCall(eslsim.Caller{Number: v, Name: v})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := sim.WaitReleased(ctx, id)
		cancel()
		if err != nil {
			t.Fatalf("value %q: %v", v, err)
		}
		ch, _ := sim.Channel(id)
		if ch.ReleasedBy != "transfer" {
			t.Fatalf("value %q: released by %s", v, ch.ReleasedBy)
		}
		checkSafe(t, v, ch)
	}
}

// TestSimulatorExpands proves the injection tests can fail: the simulator's
// `execute set` expands like FreeSWITCH and records it.
func TestSimulatorExpands(t *testing.T) {
	sim, err := eslsim.NewInbound(eslsim.Options{Password: testPassword, ExecDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	cfg := inboundConfig(sim.Addr())
	a := startAdapter(t, cfg, adapters.Deps{Decider: call.DeciderFunc(func(ctx context.Context, c call.Call) call.Decision {
		return call.Decision{Match: call.MatchMiss}
	})})
	waitFor(t, 5*time.Second, "ready", func() bool { ok, _ := a.Ready(); return ok })
	id := sim.ParkWithoutEvent(eslsim.Caller{Number: "0201234567", Context: "elsewhere"})
	cn, err := a.current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f, err := cn.command(ctx, "sendmsg "+id, headerList{{"call-command", "execute"}, {"execute-app-name", "set"}, {"execute-app-arg", "crm_sys=${system(touch /tmp/x)}"}}.h(), nil)
	if err != nil || !strings.HasPrefix(f.ReplyText(), "+OK") {
		t.Fatalf("sendmsg: %v %v", f, err)
	}
	waitFor(t, time.Second, "expansion", func() bool { ch, _ := sim.Channel(id); return len(ch.Expansions) > 0 })
	ch, _ := sim.Channel(id)
	if !strings.Contains(strings.Join(ch.Expansions, " "), "system:touch /tmp/x") {
		t.Fatalf("expansions = %q", ch.Expansions)
	}
	// and uuid_setvar of a ${…} value is flagged as a deferred expansion
	if out, err := cn.api(ctx, "uuid_setvar "+id+" crm_raw ${version()}"); err != nil || !strings.HasPrefix(out, "+OK") {
		t.Fatalf("uuid_setvar: %q %v", out, err)
	}
	ch, _ = sim.Channel(id)
	if !strings.Contains(strings.Join(ch.Expansions, " "), "deferred:crm_raw") {
		t.Fatalf("expansions = %q", ch.Expansions)
	}
}
