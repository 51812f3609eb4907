package bench

import (
	"bytes"
	"context"
	"html"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
	"github.com/callpop/callpop/adapters/pbxsim/arisim"
	"github.com/callpop/callpop/adapters/pbxsim/eslsim"
)

// docSnippet returns the code block of docs/performance.md whose first line is first.
func docSnippet(t *testing.T, lang, first string) string {
	t.Helper()
	b, err := os.ReadFile("../docs/performance.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)```" + lang + "\n(.*?)```")
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		if strings.HasPrefix(m[1], first) {
			return m[1]
		}
	}
	t.Fatalf("docs/performance.md has no %s block starting %q", lang, first)
	return ""
}

const (
	realUser = "callpop-bench"
	realPass = "bench-secret"
)

// realARISim is an ARI simulator running the documented bench context.
func realARISim(t *testing.T) *arisim.Server {
	t.Helper()
	sim, err := arisim.New(arisim.Options{Username: realUser, Password: realPass, Dialplan: docSnippet(t, "ini", "[callpop-bench]")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

func realARIOptions(url string, ways ...string) RealOptions {
	return RealOptions{ARIURL: url, ARIUser: realUser, ARIPassword: realPass, Ways: ways, Rate: 20, Duration: time.Second,
		Budget: 300 * time.Millisecond, Population: 50}
}

func TestRealARIWays(t *testing.T) {
	sim := realARISim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var progress bytes.Buffer
	o := realARIOptions(sim.URL(), WayARI, WayFastAGI, WayHTTP)
	o.Progress = &progress
	rep, err := RunReal(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if len(rep.Ways) != 3 {
		t.Fatalf("ways: %+v", rep.Ways)
	}
	var offered int64
	for _, w := range rep.Ways {
		for who, s := range map[string]SideReport{"callpop": w.Callpop, "bare": w.Bare} {
			offered += s.Offered
			if s.Offered < 5 || s.Completed != s.Offered || s.Clean == 0 {
				t.Errorf("%s %s: offered %d, completed %d, clean %d (notes %v)", w.Way, who, s.Offered, s.Completed, s.Clean, w.Notes)
			}
			if s.StepP50 <= 0 || s.StepP99 < s.StepP50 || s.StepP99 > 1000 {
				t.Errorf("%s %s: step p50 %.3f p99 %.3f ms", w.Way, who, s.StepP50, s.StepP99)
			}
			if s.CleanCPS <= 0 {
				t.Errorf("%s %s: clean calls/s %.1f", w.Way, who, s.CleanCPS)
			}
		}
		if w.Ratio["step_p50"] <= 0 || w.Ratio["clean_calls_per_second"] <= 0 {
			t.Errorf("%s: ratios %v", w.Way, w.Ratio)
		}
		switch w.Way {
		case WayARI:
			// callpop: GET caller vars, POST /variables, continue (+ the subscription); bare: the same four.
			if w.Callpop.RequestsPerCall < 3 || w.Callpop.RequestsPerCall > 6 || w.Bare.RequestsPerCall != 4 {
				t.Errorf("ari requests per call: callpop %.2f, bare %.2f", w.Callpop.RequestsPerCall, w.Bare.RequestsPerCall)
			}
		case WayFastAGI:
			// the dialplan passes ani=: one EXEC MSet with the whole decision, which
			// the simulator's AGI runs as Asterisk 22 does (no SET VARIABLE fallback)
			if w.Callpop.RequestsPerCall != 1 || w.Bare.RequestsPerCall != 0 {
				t.Errorf("fastagi commands per call: callpop %.2f, bare %.2f", w.Callpop.RequestsPerCall, w.Bare.RequestsPerCall)
			}
		case WayHTTP:
			if w.Callpop.RequestsPerCall != 1 || w.Bare.RequestsPerCall != 1 {
				t.Errorf("http requests per call: callpop %.2f, bare %.2f", w.Callpop.RequestsPerCall, w.Bare.RequestsPerCall)
			}
		}
	}
	if st := sim.Stats(); st.Originated != offered {
		t.Errorf("simulator originated %d calls, the bench offered %d", st.Originated, offered)
	}
	// The simulator listens in this test process, so its CPU is never taken
	// for Asterisk's, even when a real Asterisk runs on this host.
	if !strings.Contains(rep.CPU, "not measured") || !strings.Contains(rep.CPU, "not asterisk") {
		t.Errorf("the simulator's port is served by this test, yet CPU: %q", rep.CPU)
	}
	// Every call was hung up: nothing left on the PBX.
	deadline := time.Now().Add(5 * time.Second)
	for sim.Stats().Waiting > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if w := sim.Stats().Waiting; w > 0 {
		t.Errorf("%d channels left in Stasis", w)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	for _, want := range []string{"ari", "fastagi", "http", "clean calls/s", "step p50", "not measured"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRealRefusesLiveChannels(t *testing.T) {
	sim := realARISim(t)
	sim.NewDialplanChannel(arisim.CallSpec{CLI: "+15550000001"}) // a live call on the PBX
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := realARIOptions(sim.URL(), WayHTTP)
	o.Duration = 200 * time.Millisecond
	_, err := RunReal(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "1 live channels") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("want a refusal naming the live channel and --force, got %v", err)
	}
	if n := sim.Stats().Originated; n != 0 {
		t.Fatalf("refused, yet %d calls originated", n)
	}
	o.Force = true
	rep, err := RunReal(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ways[0].Callpop.Completed == 0 {
		t.Fatalf("--force: no call completed: %+v", rep.Ways[0])
	}
}

func TestRealOptionsErrors(t *testing.T) {
	ok := realARIOptions("http://127.0.0.1:8088", WayARI)
	for _, c := range []struct {
		name string
		edit func(*RealOptions)
		want string
	}{
		{"both PBXs", func(o *RealOptions) { o.ESLAddress, o.ESLPassword = "127.0.0.1:8021", "x" }, "--ari-url and --esl-address: one PBX at a time"},
		{"no user", func(o *RealOptions) { o.ARIUser = "" }, "--ari-user: required"},
		{"no password", func(o *RealOptions) { o.ARIPassword = "" }, "CALLPOP_PBX_ASTERISK_PASSWORD: not set"},
		{"bad url", func(o *RealOptions) { o.ARIURL = "127.0.0.1:8088" }, "--ari-url"},
		{"ari url with path", func(o *RealOptions) { o.ARIURL = "http://127.0.0.1:8088/ari" }, "--ari-url"},
		{"esl way on asterisk", func(o *RealOptions) { o.Ways = []string{WayESLOutbound} }, `--way: "esl-outbound" is not a way into Asterisk`},
		{"unknown way", func(o *RealOptions) { o.Ways = []string{"sip"} }, `--way: "sip"`},
		{"no way", func(o *RealOptions) { o.Ways = nil }, "--way: give one or more"},
		{"ramp", func(o *RealOptions) { o.Rate = 0 }, "--rate"},
		{"listen any", func(o *RealOptions) { o.Listen = "0.0.0.0:0" }, "--listen"},
		{"fastagi on freeswitch", func(o *RealOptions) {
			o.ARIURL, o.ESLAddress, o.ESLPassword, o.Ways = "", "127.0.0.1:8021", "x", []string{WayFastAGI}
		}, `--way: "fastagi" is not a way into FreeSWITCH`},
		{"esl no password", func(o *RealOptions) { o.ARIURL, o.ESLAddress, o.Ways = "", "127.0.0.1:8021", []string{WayHTTP} }, "CALLPOP_PBX_FREESWITCH_PASSWORD: not set"},
		{"esl bad address", func(o *RealOptions) {
			o.ARIURL, o.ESLAddress, o.ESLPassword, o.Ways = "", "pbx", "x", []string{WayHTTP}
		}, "--esl-address"},
	} {
		o := ok
		c.edit(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want %q, got %v", c.name, c.want, err)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("good options: %v", err)
	}
}

func TestRealFreeSWITCHWays(t *testing.T) {
	const pass = "bench-ClueCon"
	// ParkDelay: the socket app's channel thread parks only after every
	// handler is done, so a handler without resume leaves its calls stuck
	sim, err := eslsim.NewInbound(eslsim.Options{Password: pass, ParkDelay: time.Hour,
		Dialplan: docSnippet(t, "xml", "<include>\n  <context name=\"callpop-bench\">"), CIDLookupURL: cidlookupURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var progress bytes.Buffer
	ways := []string{WayESLOutbound, WayHTTP, WayMultiset, WayCIDLookup}
	o := RealOptions{ESLAddress: sim.Addr(), ESLPassword: pass, Ways: ways, Rate: 20, Duration: time.Second,
		Budget: 300 * time.Millisecond, Population: 50, Progress: &progress}
	rep, err := RunReal(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	var out bytes.Buffer
	_ = rep.WriteTable(&out)
	t.Log("\n" + out.String())
	if rep.Kind != "freeswitch" || len(rep.Ways) != len(ways) {
		t.Fatalf("report: %+v", rep)
	}
	for _, w := range rep.Ways {
		for who, s := range map[string]SideReport{"callpop": w.Callpop, "bare": w.Bare} {
			if s.Offered < 5 || s.Completed != s.Offered || s.Clean == 0 || s.StepP50 <= 0 || s.StepP99 < s.StepP50 {
				t.Errorf("%s %s: %+v (notes %v)", w.Way, who, s, w.Notes)
			}
		}
		switch w.Way {
		case WayESLOutbound:
			// callpop: connect, resume, the variables, exit at least; bare: connect, resume, exit.
			if w.Callpop.RequestsPerCall < 4 || w.Bare.RequestsPerCall != 3 {
				t.Errorf("esl-outbound commands per call: callpop %.2f, bare %.2f", w.Callpop.RequestsPerCall, w.Bare.RequestsPerCall)
			}
			// (Whether the socket's end waits for FreeSWITCH's 20 ms wake-up
			// depends on how fast the handler was: a timing, not asserted.)
		case WayHTTP, WayMultiset, WayCIDLookup:
			if w.Callpop.RequestsPerCall != 1 || w.Bare.RequestsPerCall != 1 {
				t.Errorf("%s requests per call: callpop %.2f, bare %.2f", w.Way, w.Callpop.RequestsPerCall, w.Bare.RequestsPerCall)
			}
		}
	}
	// cidlookup: each turn pointed mod_cidlookup's global url at its side, and the bench emptied it at the end.
	if got := eslAPI(t, sim.Addr(), pass, "global_getvar "+CIDLookupURLVar); got != "" {
		t.Errorf("%s left as %q", CIDLookupURLVar, got)
	}
	if len(sim.Parked()) > 0 {
		t.Errorf("%d channels left parked", len(sim.Parked()))
	}
}

func TestRealFreeSWITCHRefusesLiveChannels(t *testing.T) {
	const pass = "bench-ClueCon"
	sim, err := eslsim.NewInbound(eslsim.Options{Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	sim.OfferCall(eslsim.Caller{Number: "+15550000001"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = RunReal(ctx, RealOptions{ESLAddress: sim.Addr(), ESLPassword: pass, Ways: []string{WayHTTP}, Rate: 20, Duration: 200 * time.Millisecond,
		Budget: 300 * time.Millisecond, Population: 5})
	if err == nil || !strings.Contains(err.Error(), "1 live channels") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("want a refusal, got %v", err)
	}
	_, err = RunReal(ctx, RealOptions{ESLAddress: sim.Addr(), ESLPassword: "wrong", Ways: []string{WayHTTP}, Rate: 20, Duration: 200 * time.Millisecond,
		Budget: 300 * time.Millisecond, Population: 5})
	if err == nil || !strings.Contains(err.Error(), "auth") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("want an auth error without the password, got %v", err)
	}
}

// The PBX's CPU time comes from /proc/<pid>/stat of the process listening
// on the port the bench reaches: checked on this test process, which listens
// and burns CPU until its reading moves.
func TestPBXCPUReadsProc(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc")
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		addr := "127.0.0.1:0"
		if network == "tcp6" {
			addr = "[::1]:0"
		}
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Logf("%s: %v", network, err)
			continue
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if pid, err := listenerPID(port); err != nil || pid != os.Getpid() {
			t.Errorf("%s: listenerPID(%d) = %d, %v; want this process, %d", network, port, pid, err, os.Getpid())
		}
		ln.Close()
		if pid, err := listenerPID(port); err != nil || pid != 0 {
			t.Errorf("%s: listenerPID(%d) after close = %d, %v; want 0", network, port, pid, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	esl := &realESL{o: RealOptions{ESLAddress: ln.Addr().String()}}
	if d := newPBXCPU(esl).describe(); !strings.Contains(d, "not freeswitch") {
		t.Errorf("a port served by this test is not FreeSWITCH: %q", d)
	}
	c := &pbxCPU{pid: os.Getpid(), name: "self"}
	t0 := c.ticks()
	deadline := time.Now().Add(30 * time.Second)
	x := 0
	for c.ticks() == t0 && time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
	}
	if c.ticks() <= t0 {
		t.Fatalf("CPU ticks stayed at %d while burning CPU (%d)", t0, x)
	}
	if !localHost("127.0.0.1") || !localHost("localhost") || localHost("192.0.2.1") {
		t.Error("localHost: loopback is local, a documentation address is not")
	}
	if d := newPBXCPU(&realARI{o: RealOptions{ARIURL: "http://192.0.2.1:8088"}}).describe(); !strings.Contains(d, "not on this host") {
		t.Errorf("remote PBX: %q", d)
	}
}

// A PBX without the bench context: every call goes unreported, and the run
// says what to check instead of printing empty figures.
func TestRealWithoutBenchContext(t *testing.T) {
	sim, err := arisim.New(arisim.Options{Username: realUser, Password: realPass})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := realARIOptions(sim.URL(), WayHTTP)
	o.Duration, o.Rate = 100*time.Millisecond, 10
	_, err = RunReal(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "callpop-bench context loaded") {
		t.Fatalf("want the bench context named, got %v", err)
	}
}

// cidlookupURL is cidlookup.conf.xml's url as docs/performance.md has it.
func cidlookupURL(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`<param name="url" value="([^"]*)"/>`).FindStringSubmatch(docSnippet(t, "xml", "<configuration name=\"cidlookup.conf\""))
	if m == nil {
		t.Fatal("docs/performance.md: the cidlookup.conf.xml block has no url param")
	}
	return html.UnescapeString(m[1])
}

// eslAPI runs one api command on an inbound Event Socket and returns its body.
func eslAPI(t *testing.T, addr, pass, cmd string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	rd := eslwire.NewReader(c)
	for _, line := range []string{"", "auth " + pass, "api " + cmd} {
		if line != "" {
			if _, err := c.Write([]byte(line + "\n\n")); err != nil {
				t.Fatal(err)
			}
		}
		f, err := rd.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if f.ContentType() == eslwire.TypeAPIResponse {
			return string(f.Body)
		}
	}
	t.Fatal("no api/response")
	return ""
}
