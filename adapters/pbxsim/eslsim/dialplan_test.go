package eslsim

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callpop/callpop/adapters/esl/eslwire"
)

const testFSDialplan = `<include>
  <context name="bench">
    <extension name="t">
      <condition field="destination_number" expression="^t$">
        <action application="set" data="t0=${strmicroepoch()}"/>
        <action application="event" data="Event-Name=CUSTOM,Event-Subclass=test::bench,id=${bench_id},t0=${t0},who=${origination_caller_id_number}"/>
        <action application="hangup"/>
      </condition>
    </extension>
  </context>
</include>`

// originate of a loopback leg runs the -b leg through the dialplan, with
// the originate's variables (mod_loopback's __loopback_vars__); the event
// app fires a CUSTOM event to its subscribers; other endpoints and unknown
// extensions fail as FreeSWITCH answers them.
func TestOriginateLoopbackDialplan(t *testing.T) {
	in, c := eventClient(t, Options{Dialplan: testFSDialplan, RingTime: 10 * time.Millisecond}, "CUSTOM test::bench")
	if got := c.api("originate sofia/gateway/x/1000 &park()"); !strings.HasPrefix(got, "+OK ") {
		t.Errorf("sofia originate: %q", got)
	} else if parked := in.Parked(); len(parked) != 1 || parked[0] != strings.TrimSpace(got[4:]) {
		t.Errorf("the answered leg is not parked: %v", parked)
	} else {
		in.Hangup(parked[0])
	}
	if got := c.api("originate loopback/nope/bench &park()"); got != "-ERR NO_ROUTE_DESTINATION\n" {
		t.Errorf("no extension: %q", got)
	}
	got := c.api("originate {origination_caller_id_number='(212) 234-0000',bench_id=b-1}loopback/t/bench &park()")
	if !strings.HasPrefix(got, "+OK ") {
		t.Fatalf("originate: %q", got)
	}
	ev := c.event("CUSTOM")
	get := func(n string) string { return eslwire.Decode(ev.Headers.Get(n)) }
	if get("Event-Subclass") != "test::bench" || get("id") != "b-1" || get("who") != "(212) 234-0000" {
		t.Errorf("event headers: subclass %q id %q who %q", get("Event-Subclass"), get("id"), get("who"))
	}
	if us := get("t0"); len(us) != 16 || time.Since(time.UnixMicro(mustInt(t, us))) > time.Minute {
		t.Errorf("strmicroepoch: %q", us)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(c.api("show channels as json"), `"row_count":0`) {
		if time.Now().After(deadline) {
			t.Fatal("the loopback pair was not hung up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("%q is not a number", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

const testFSMultisetDialplan = `<include>
  <context name="bench">
    <extension name="m">
      <condition field="destination_number" expression="^m$">
        <action application="multiset" data="${curl(${crm}?n=${origination_caller_id_number} timeout 2)}"/>
        <action application="cidlookup" data="${caller_id_number}"/>
        <action application="event" data="Event-Name=CUSTOM,Event-Subclass=test::bench,q=${callpop_queue},s=${callpop_skill},x=${gone},src=${cidlookup_source},name=${caller_id_name}"/>
        <action application="hangup"/>
      </condition>
    </extension>
  </context>
</include>`

// multiset(${curl(…)}) sets every name=value of the body (an empty value
// unsets; a custom delimiter keeps spaces); cidlookup GETs the configured url
// with the caller's digits and global variables only, and the name it gets
// becomes the caller ID name.
func TestDialplanMultisetCurlCIDLookup(t *testing.T) {
	var got []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Path+"?"+r.URL.RawQuery+" "+r.UserAgent())
		mu.Unlock()
		if r.URL.Path == "/name" {
			_, _ = w.Write([]byte("Alice Example"))
			return
		}
		_, _ = w.Write([]byte("^^|callpop_queue=sales|callpop_skill=en a b|gone="))
	}))
	defer srv.Close()
	_, c := eventClient(t, Options{Dialplan: testFSMultisetDialplan, CIDLookupURL: "${cid_base}/name?number=${caller_id_number}&u=${uuid}"}, "CUSTOM test::bench")
	// a value with "=" is a conditional set, refused here: cid_base is not "x"
	for _, set := range []string{"cid_base=" + srv.URL, "cid_base=http://127.0.0.1:1/?a=x"} {
		if r := c.api("global_setvar " + set); r != "+OK" {
			t.Fatalf("global_setvar: %q", r)
		}
	}
	if r := c.api("global_getvar cid_base"); r != srv.URL {
		t.Errorf("global_getvar cid_base: %q", r)
	}
	if r := c.api("originate {origination_caller_id_number=+1-212-234-0000,gone=1,crm=" + srv.URL + "/route}loopback/m/bench &park()"); !strings.HasPrefix(r, "+OK ") {
		t.Fatalf("originate: %q", r)
	}
	ev := c.event("CUSTOM")
	get := func(n string) string { return eslwire.Decode(ev.Headers.Get(n)) }
	if get("q") != "sales" || get("s") != "en a b" || get("x") != "" || get("src") != "url" || get("name") != "Alice Example" {
		t.Errorf("after multiset and cidlookup: q %q s %q x %q src %q name %q", get("q"), get("s"), get("x"), get("src"), get("name"))
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"/route?n=+1-212-234-0000 freeswitch-curl/1.0", "/name?number=12122340000&u= freeswitch-cidlookup/1.0"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
