package eslsim

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// switch_separate_string's behaviour, as FreeSWITCH's source has it.
func TestSeparateString(t *testing.T) {
	for _, c := range []struct {
		in    string
		delim byte
		max   int
		want  []string
	}{
		{"a 'b c' d", ' ', 10, []string{"a", "b c", "d"}},
		{"  a   b  ", ' ', 10, []string{"a", "b"}},
		{`a\sb c`, ' ', 10, []string{"a b", "c"}},
		{`a\'b c`, ' ', 10, []string{"a'b", "c"}},
		{`a\,b c`, ' ', 10, []string{`a\,b`, "c"}}, // `\,` is no escape of a blank split
		{"a b c d", ' ', 2, []string{"a", "b c d"}},
		{`x=1,y='2,3',z=4\,5`, ',', 10, []string{"x=1", "y=2,3", "z=4,5"}},
		{"it's,x", ',', 10, []string{"it's", "x"}}, // a lone quote is kept
		{"^^:a:b,c", ',', 10, []string{"a", "b,c"}},
		{"k=v=w", '=', 2, []string{"k", "v=w"}},
		{"k=", '=', 2, []string{"k"}},
		{`a\qb`, ',', 10, []string{`a\qb`}},
	} {
		if got := SeparateString(c.in, c.delim, c.max); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q %q: %q, want %q", c.in, c.delim, got, c.want)
		}
	}
}

func TestCreateBrackets(t *testing.T) {
	vars, rest, ok := CreateBrackets(`{a=1,b='x,y',c=p\,q,d,e=f=g}sofia/gw/t/1`, '{', '}', ',')
	want := []Var{{"a", "1"}, {"b", "x,y"}, {"c", "p,q"}, {"e", "f=g"}}
	if !ok || rest != "sofia/gw/t/1" || !reflect.DeepEqual(vars, want) {
		t.Errorf("%v %q %v", vars, rest, ok)
	}
	vars, _, _ = CreateBrackets(`{^^;a=1,2;b=3}x`, '{', '}', ',')
	if !reflect.DeepEqual(vars, []Var{{"a", "1,2"}, {"b", "3"}}) {
		t.Errorf("^^; list: %v", vars)
	}
	if _, _, ok := CreateBrackets(`{a=1`, '{', '}', ','); ok {
		t.Error("unbalanced list accepted")
	}
}

// eventClient starts an inbound simulator (password "pw") and a client
// authenticated and subscribed to events ("event plain <events>").
func eventClient(t *testing.T, opts Options, events string) (*Inbound, *client) {
	t.Helper()
	opts.Password = "pw"
	in, err := NewInbound(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	c := dial(t, in.Addr())
	c.next()
	c.write("auth pw\n\n")
	c.next()
	c.write("event plain " + events + "\n\n")
	if got := c.next().ReplyText(); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("event: %q", got)
	}
	return in, c
}

func originateClient(t *testing.T, opts Options) (*Inbound, *client) {
	t.Helper()
	return eventClient(t, opts, "CHANNEL_CREATE CHANNEL_PROGRESS CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB")
}

// bgapi originate of a device: the command reply, the new channel's events
// with its variables as parsed, the scripted outcome in BACKGROUND_JOB and
// CHANNEL_HANGUP_COMPLETE, the answered leg sent into the dialplan.
func TestOriginateDevice(t *testing.T) {
	in, c := originateClient(t, Options{RingTime: 20 * time.Millisecond, Dialplan: `<include><context name="callbacks">
  <extension name="cb"><condition field="destination_number" expression="^cb$"><action application="set" data="reached=yes"/></condition></extension>
</context></include>`})
	in.ScriptDial("+4411", Dial{Cause: "USER_BUSY"})
	id1, id2 := NewUUID(), NewUUID()
	arg := func(id string) string {
		return `{origination_uuid=` + id + `,callpop_x=a\sb\,c,callpop_q=:\'_\':,originate_timeout=5}sofia/gateway/t/+4411 cb XML callbacks`
	}
	c.write("bgapi originate " + arg(id1) + "\nJob-UUID: job-1\n\n")
	if got := c.next().ReplyText(); got != "+OK Job-UUID: job-1" {
		t.Fatalf("reply %q", got)
	}
	ev := c.event("CHANNEL_CREATE")
	if ev.Get("Unique-ID") != id1 || ev.Get("Call-Direction") != "outbound" || ev.Get("variable_callpop_x") != "a b,c" || ev.Get("variable_callpop_q") != ":_:" {
		t.Errorf("create: %q %q %q %q", ev.Get("Unique-ID"), ev.Get("Call-Direction"), ev.Get("variable_callpop_x"), ev.Get("variable_callpop_q"))
	}
	if ev := c.event("CHANNEL_HANGUP_COMPLETE"); ev.Get("Hangup-Cause") != "USER_BUSY" || ev.Get("Unique-ID") != id1 {
		t.Errorf("hangup %q", ev.Get("Hangup-Cause"))
	}
	if ev := c.event("BACKGROUND_JOB"); ev.Raw("Job-UUID") != "job-1" || string(ev.Body) != "-ERR USER_BUSY\n" {
		t.Errorf("job %q %q", ev.Raw("Job-UUID"), ev.Body)
	}

	c.write("bgapi originate " + arg(id2) + "\nJob-UUID: job-2\n\n")
	c.next()
	c.event("CHANNEL_PROGRESS")
	if ev := c.event("CHANNEL_ANSWER"); ev.Get("Unique-ID") != id2 || ev.Get("Answer-State") != "answered" {
		t.Errorf("answer %q", ev.Get("Answer-State"))
	}
	if ev := c.event("BACKGROUND_JOB"); string(ev.Body) != "+OK "+id2+"\n" {
		t.Errorf("job %q", ev.Body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for in.Vars(id2)["reached"] != "yes" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ch, _ := in.Channel(id2)
	if ch.TransferTo != "cb XML callbacks" || ch.Vars["reached"] != "yes" {
		t.Errorf("dialplan: %q %v", ch.TransferTo, ch.Vars["reached"])
	}
	reqs := in.Originates()
	if len(reqs) != 2 || reqs[1].Endpoint != "sofia/gateway/t/+4411" || reqs[1].Number != "+4411" || reqs[1].Context != "callbacks" ||
		reqs[1].Var("callpop_x") != "a b,c" || reqs[1].Timeout != 5*time.Second || reqs[0].Result != "-ERR USER_BUSY\n" {
		t.Errorf("record %+v", reqs)
	}
}

// A ":_:" anywhere in originate's dial string is an enterprise originate; a
// `,` outside the list dials two endpoints; uuid_kill of a ringing leg ends
// the originate with the kill's cause; NO_ANSWER rings until the timeout.
func TestOriginateDeviceEdges(t *testing.T) {
	in, c := originateClient(t, Options{RingTime: 20 * time.Millisecond})
	if got := c.api("originate {a=x:_:y}sofia/gw/t/1 cb"); !strings.HasPrefix(got, "-ERR") {
		t.Errorf("enterprise: %q", got)
	}
	if got := c.api("originate {a=1}sofia/gw/t/1,sofia/gw/t/2 cb"); !strings.HasPrefix(got, "-ERR") {
		t.Errorf("two endpoints: %q", got)
	}
	if got := c.api("originate sofia/gw/t/1"); !strings.HasPrefix(got, "-USAGE") {
		t.Errorf("one argument: %q", got)
	}
	reqs := in.Originates()
	if len(reqs) != 3 || !reqs[0].Enterprise || reqs[1].Endpoints != 2 {
		t.Errorf("records %+v", reqs)
	}

	in.ScriptDial("77", Dial{RingFor: time.Minute})
	id := NewUUID()
	c.write("bgapi originate {origination_uuid=" + id + "}user/77@example cb XML default\nJob-UUID: j\n\n")
	c.next()
	c.event("CHANNEL_PROGRESS")
	if got := c.api("uuid_kill " + id + " ORIGINATOR_CANCEL"); got != "+OK\n" {
		t.Errorf("kill %q", got)
	}
	if ev := c.event("BACKGROUND_JOB"); string(ev.Body) != "-ERR ORIGINATOR_CANCEL\n" {
		t.Errorf("job %q", ev.Body)
	}

	in.ScriptDial("78", Dial{Cause: "NO_ANSWER"})
	start := time.Now()
	if got := c.api("originate {originate_timeout=1}user/78 cb XML default"); got != "-ERR NO_ANSWER\n" {
		t.Errorf("no answer: %q", got)
	}
	if time.Since(start) < time.Second {
		t.Error("NO_ANSWER before the originate timeout")
	}
}

// With no dialplan (callpop demo), an answered originate is queued to the
// agents: their legs ring with cc_member_session_uuid and the exported call id.
func TestOriginateDemoQueue(t *testing.T) {
	_, c := originateClient(t, Options{RingTime: 10 * time.Millisecond, Agents: []string{"1001", "1002"},
		AgentRing: Ring{RingFor: 10 * time.Millisecond, TalkFor: 10 * time.Millisecond}})
	id := NewUUID()
	if got := c.api("originate {origination_uuid=" + id + ",callpop_call_id=" + id + ",cc_export_vars=callpop_call_id}sofia/gateway/t/+4412 callback XML callbacks"); got != "+OK "+id+"\n" {
		t.Fatalf("originate %q", got)
	}
	seen := map[string]bool{}
	for len(seen) < 2 {
		ev := c.event("CHANNEL_CREATE")
		if ev.Get("Unique-ID") == id {
			continue
		}
		if ev.Get("variable_cc_member_session_uuid") != id || ev.Get("variable_callpop_call_id") != id || ev.Get("Call-Direction") != "outbound" {
			t.Fatalf("agent leg %q %q", ev.Get("variable_cc_member_session_uuid"), ev.Get("variable_callpop_call_id"))
		}
		seen[ev.Get("variable_dialed_user")] = true
	}
	if !seen["1001"] || !seen["1002"] {
		t.Errorf("agents %v", seen)
	}
}
