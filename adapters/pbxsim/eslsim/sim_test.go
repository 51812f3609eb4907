package eslsim

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
)

// client is a bare ESL client for checking the simulator byte by byte.
type client struct {
	t       *testing.T
	nc      net.Conn
	r       *eslwire.Reader
	skipped []*eslwire.Frame // events read while waiting for a reply, for event
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, nc: nc, r: eslwire.NewReader(nc)}
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// next reads frames until one that is not an event; the events it passes
// are kept for event (one may come before the api reply that caused it).
func (c *client) next() *eslwire.Frame {
	c.t.Helper()
	for {
		f, err := c.r.ReadFrame()
		if err != nil {
			c.t.Fatal(err)
		}
		if f.ContentType() != eslwire.TypeEventPlain {
			return f
		}
		c.skipped = append(c.skipped, f)
	}
}

func (c *client) event(name string) *eslwire.Event {
	c.t.Helper()
	for {
		var f *eslwire.Frame
		if len(c.skipped) > 0 {
			// an event can overtake the reply to the command that caused it
			f, c.skipped = c.skipped[0], c.skipped[1:]
		} else {
			var err error
			if f, err = c.r.ReadFrame(); err != nil {
				c.t.Fatal(err)
			}
		}
		if f.ContentType() == eslwire.TypeEventPlain {
			ev, err := eslwire.ParseEvent(f.Body)
			if err != nil {
				c.t.Fatal(err)
			}
			if ev.Name() == name {
				return ev
			}
		}
	}
}

func (c *client) api(cmd string) string {
	c.t.Helper()
	c.write("api " + cmd + "\n\n")
	f := c.next()
	if f.ContentType() != eslwire.TypeAPIResponse {
		c.t.Fatalf("api %s: %s", cmd, f.ContentType())
	}
	return string(f.Body)
}

func newAuthed(t *testing.T) (*Inbound, *client) {
	t.Helper()
	in, err := NewInbound(Options{Password: "pw", ExecDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	c := dial(t, in.Addr())
	if f := c.next(); f.ContentType() != eslwire.TypeAuthRequest {
		t.Fatalf("banner %q", f.ContentType())
	}
	c.write("auth pw\n\n")
	if got := c.next().ReplyText(); got != "+OK accepted" {
		t.Fatalf("auth: %q", got)
	}
	return in, c
}

func TestAuth(t *testing.T) {
	in, err := NewInbound(Options{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	c := dial(t, in.Addr())
	c.next()
	c.write("api status\n\n")
	if got := c.next().ReplyText(); got != "-ERR command not found" {
		t.Fatalf("before auth: %q", got)
	}
	c.write("auth WrongPassword\n\n")
	if got := c.next().ReplyText(); got != "-ERR invalid" {
		t.Fatalf("bad auth: %q", got)
	}
	f := c.next()
	if f.ContentType() != eslwire.TypeDisconnect || !strings.HasPrefix(string(f.Body), "Disconnected, goodbye.") {
		t.Fatalf("after bad auth: %q %q", f.ContentType(), f.Body)
	}
}

// uuid_setvar as FreeSWITCH 1.10.12 was recorded storing it (docs/freeswitch.md, "Values are made safe").
func TestSetvarQuirks(t *testing.T) {
	in, c := newAuthed(t)
	id := in.ParkWithoutEvent(Caller{Number: "0201234567"})
	tests := []struct{ sent, stored string }{
		{"O'Brien", "O'Brien"},
		{"it's Bob's", "its Bobs"},
		{"'quoted  value'", "quoted  value"},
		{`"dq value"`, `"dq value"`},
		{`a\nb`, "a\nb"},
		{`x\sy\tz\\w`, "x y\tz\\w"},
		{"${uuid}", "${uuid}"},
		{"a=b;c=d", "a=b;c=d"},
		{"   padded   ", "padded"},
		{`'single' "double" back\slash ${caller_id_number} $${domain}`, `single "double" back lash ${caller_id_number} $${domain}`},
		{"hello  world  with   spaces ", "hello  world  with   spaces"},
	}
	for _, tt := range tests {
		if got := c.api("uuid_setvar " + id + " t " + tt.sent); got != "+OK\n" {
			t.Fatalf("setvar %q: %q", tt.sent, got)
		}
		if got := c.api("uuid_getvar " + id + " t"); got != tt.stored {
			t.Errorf("setvar %q stored %q, want %q", tt.sent, got, tt.stored)
		}
	}
	if got := c.api("uuid_setvar_multi " + id + " a=1;b=x;y;c=3"); got != "+OK\n" {
		t.Fatal(got)
	}
	for v, want := range map[string]string{"a": "1", "b": "x", "c": "3", "y": "_undef_"} {
		if got := c.api("uuid_getvar " + id + " " + v); got != want {
			t.Errorf("multi %s = %q, want %q", v, got, want)
		}
	}
	if got := c.api("uuid_setvar " + id + " t"); got != "+OK\n" || c.api("uuid_getvar "+id+" t") != "_undef_" {
		t.Error("setvar without a value does not unset")
	}
	ch, _ := in.Channel(id)
	if len(ch.Expansions) == 0 {
		t.Error("stored ${...} values not flagged as deferred expansions")
	}
}

// A blank line ends a command: the rest runs as a new command (the injection
// the adapter must make impossible).
func TestBlankLineSplitsCommands(t *testing.T) {
	in, c := newAuthed(t)
	id := in.ParkWithoutEvent(Caller{Number: "0201234567"})
	c.write("api uuid_setvar " + id + " my_var before\n\napi uuid_setvar " + id + " injected yes\n\n")
	c.next()
	c.next()
	if got := c.api("uuid_getvar " + id + " injected"); got != "yes" {
		t.Fatalf("injected = %q", got)
	}
}

func TestSendmsgSetExpands(t *testing.T) {
	in, c := newAuthed(t)
	id := in.ParkWithoutEvent(Caller{Number: "0201234567"})
	c.write("event plain CHANNEL_EXECUTE_COMPLETE\n\n")
	c.next()
	c.write("sendmsg " + id + "\ncall-command: execute\nexecute-app-name: set\nexecute-app-arg: crm_expr=${version()}\nevent-lock: true\n\n")
	if got := c.next().ReplyText(); got != "+OK" {
		t.Fatalf("sendmsg: %q", got)
	}
	ev := c.event("CHANNEL_EXECUTE_COMPLETE")
	if ev.Get("Application") != "set" || !strings.HasPrefix(ev.Get("Application-Data"), "crm_expr=FreeSWITCH Version 1.10.12") {
		t.Fatalf("execute complete: %q %q", ev.Get("Application"), ev.Get("Application-Data"))
	}
	if got := c.api("uuid_getvar " + id + " crm_expr"); got != Version {
		t.Fatalf("crm_expr = %q", got)
	}
	// argument in a body: newlines kept, nothing split
	c.write("sendmsg " + id + "\ncall-command: execute\nexecute-app-name: set\ncontent-type: text/plain\ncontent-length: 31\n\ncrm_note=first line\nsecond line")
	c.next()
	c.event("CHANNEL_EXECUTE_COMPLETE")
	if got := c.api("uuid_getvar " + id + " crm_note"); got != "first line\nsecond line" {
		t.Fatalf("crm_note = %q", got)
	}
}

func TestDeadUUIDAndUnknown(t *testing.T) {
	_, c := newAuthed(t)
	const dead = "b99cd718-12a1-4e0d-92db-b506a2e26a5f"
	for _, cmd := range []string{"uuid_setvar " + dead + " v x", "uuid_getvar " + dead + " v", "uuid_transfer " + dead + " 1001 XML default", "uuid_kill " + dead} {
		if got := c.api(cmd); got != "-ERR No such channel!\n" {
			t.Errorf("%s: %q", cmd, got)
		}
	}
	c.write("sendmsg " + dead + "\ncall-command: execute\nexecute-app-name: set\nexecute-app-arg: my_prio=1\n\n")
	if got := c.next().ReplyText(); got != "-ERR invalid session id ["+dead+"]" {
		t.Errorf("sendmsg: %q", got)
	}
	if got := c.api("no_such_command foo"); got != "-ERR no_such_command Command not found!\n" {
		t.Errorf("unknown api: %q", got)
	}
	c.write("bogus\n\n")
	if got := c.next().ReplyText(); got != "-ERR command not found" {
		t.Errorf("unknown command: %q", got)
	}
}

func TestBgapiJobUUID(t *testing.T) {
	in, c := newAuthed(t)
	id := in.ParkWithoutEvent(Caller{Number: "0201234567", Vars: map[string]string{"bg_var": "from_bgapi"}})
	c.write("event plain BACKGROUND_JOB\n\n")
	c.next()
	c.write("bgapi uuid_getvar " + id + " bg_var\nJob-UUID: 11111111-2222-3333-4444-555555555555\n\n")
	f := c.next()
	if f.ReplyText() != "+OK Job-UUID: 11111111-2222-3333-4444-555555555555" || f.Headers.Get("Job-UUID") != "11111111-2222-3333-4444-555555555555" {
		t.Fatalf("bgapi reply %q", f.ReplyText())
	}
	ev := c.event("BACKGROUND_JOB")
	if ev.Raw("Job-UUID") != "11111111-2222-3333-4444-555555555555" || string(ev.Body) != "from_bgapi" {
		t.Fatalf("job %q body %q", ev.Raw("Job-UUID"), ev.Body)
	}
}

func TestParkShowDumpTransfer(t *testing.T) {
	in, c := newAuthed(t)
	c.write("event plain CHANNEL_PARK\n\n")
	c.next()
	id := in.OfferCall(Caller{Number: "+14155550123", Name: "John Doe", HideNumber: true})
	ev := c.event("CHANNEL_PARK")
	if ev.Get("Unique-ID") != id || ev.Raw("Caller-Caller-ID-Number") != "%2B14155550123" || ev.Get("Caller-Privacy-Hide-Number") != "true" || ev.Get("Call-Direction") != "inbound" || ev.Get("Caller-Context") != "callpop" {
		t.Fatalf("park event: %q %q", ev.Get("Unique-ID"), ev.Raw("Caller-Caller-ID-Number"))
	}
	if got := c.api("show channels as json"); !strings.Contains(got, `"uuid":"`+id+`"`) || !strings.Contains(got, `"application":"park"`) {
		t.Fatalf("show channels: %s", got)
	}
	dump := c.api("uuid_dump " + id)
	hs, _, _ := eslwire.ParseHeaderBlock([]byte(dump))
	if eslwire.Decode(hs.Get("Caller-Caller-ID-Name")) != "John Doe" {
		t.Fatalf("dump: %s", dump[:200])
	}
	if got := c.api("uuid_transfer " + id + " 3000 XML agents"); got != "+OK\n" {
		t.Fatal(got)
	}
	if got := c.api("show channels as json"); strings.Contains(got, `"application":"park"`) {
		t.Fatalf("still parked: %s", got)
	}
	ch, _ := in.Channel(id)
	if ch.ReleasedBy != "transfer" || ch.TransferTo != "3000 XML agents" {
		t.Fatalf("%+v", ch)
	}
}

// Outbound: the connect reply is the whole channel with Content-Type near the
// end and no Content-Length; exit gives +OK bye and a disconnect notice.
func TestOutboundConnectAndExit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out := NewOutbound(ln.Addr().String(), Options{ParkDelay: -1}) // parked before exit: no resume needed
	got := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer nc.Close()
		r := eslwire.NewReader(nc)
		_, _ = nc.Write([]byte("connect\n\n"))
		f, err := r.ReadFrame()
		if err != nil {
			got <- err
			return
		}
		if len(f.Headers) < 100 || f.ContentType() != eslwire.TypeReply || f.Headers[len(f.Headers)-1].Name != "Control" || f.Body != nil {
			t.Errorf("connect reply: %d headers, last %q", len(f.Headers), f.Headers[len(f.Headers)-1].Name)
		}
		_, _ = nc.Write([]byte("api uuid_setvar " + eslwire.Decode(f.Headers.Get("Unique-ID")) + " my_prio 42\n\nexit\n\n"))
		for i := 0; i < 3; i++ {
			if _, err := r.ReadFrame(); err != nil {
				got <- err
				return
			}
		}
		got <- nil
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := out.Call(ctx, Caller{Number: "0201234567", Name: "Erika Mustermann"})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if !res.Exit || res.Vars["my_prio"] != "42" {
		t.Fatalf("exit=%v my_prio=%q", res.Exit, res.Vars["my_prio"])
	}
}

func TestShutdown(t *testing.T) {
	in, c := newAuthed(t)
	c.write("event plain SHUTDOWN\n\n")
	c.next()
	go in.Shutdown()
	ev := c.event("SHUTDOWN")
	if ev.Name() != "SHUTDOWN" {
		t.Fatal(ev.Name())
	}
	f := c.next()
	if f.ContentType() != eslwire.TypeDisconnect || string(f.Body) != "The system is being shut down.\n" {
		t.Fatalf("%q %q", f.ContentType(), f.Body)
	}
}

// An outbound session that ends before the socket app's channel thread has
// parked leaves the call parked for good unless the handler sent resume, as
// the real FreeSWITCH 1.10.12 does (mod_event_socket.c socket_function:
// switch_ivr_park after the listener thread cleared CF_CONTROLLED).
func TestOutboundEndBeforeParkNeedsResume(t *testing.T) {
	for _, tc := range []struct {
		name   string
		park   time.Duration
		script string // written at once; "" = close without a word
		stuck  bool
		by     string
	}{
		{"connect exit", time.Hour, "connect\n\nexit\n\n", true, ""},
		{"connect resume exit", time.Hour, "connect\n\nresume\n\nexit\n\n", false, "exit"},
		{"close before connect", time.Hour, "", true, ""},
		{"resume close", time.Hour, "resume\n\n", false, "close"},
		{"connect exit after park", -1, "connect\n\nexit\n\n", false, "exit"},
		{"connect close after park", -1, "connect\n\n", false, "close"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			out := NewOutbound(ln.Addr().String(), Options{ParkDelay: tc.park})
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				defer nc.Close()
				_, _ = nc.Write([]byte(tc.script))
				if strings.HasPrefix(tc.script, "connect") {
					_, _ = eslwire.NewReader(nc).ReadFrame() // the connect reply
				}
			}()
			// A released call ends Call by itself; a stuck one is parked for
			// good, and Call ends once the handler's session end has left it
			// stuck (not at a fixed deadline a loaded machine can beat the
			// handler to: the simulator's own close at that deadline would
			// then be what ended the session). 10 s bounds a wrong outcome.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.stuck {
				go func() {
					defer cancel()
					for ctx.Err() == nil && out.Stats().Stuck == 0 {
						time.Sleep(5 * time.Millisecond)
					}
				}()
			}
			res, err := out.Call(ctx, Caller{Number: "0201234567"})
			if tc.stuck != (err != nil) || res.Stuck != tc.stuck || res.ReleasedBy != tc.by || out.Stats().Stuck != btoi(tc.stuck) {
				t.Fatalf("stuck %v (err %v), released by %q, stats %d; want stuck %v, by %q", res.Stuck, err, res.ReleasedBy, out.Stats().Stuck, tc.stuck, tc.by)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
