package popper

import (
	"strconv"
	"testing"
	"time"

	"github.com/callpop/callpop/call"
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
