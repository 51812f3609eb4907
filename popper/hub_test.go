package popper

import (
	"strconv"
	"testing"
	"time"
)

// A stream that does not read is dropped (it reconnects and replays), and
// the others keep getting their pops: one slow browser never stalls the hub.
func TestHubDropsSlowSubscriber(t *testing.T) {
	h := newHub(10)
	now := time.Now()
	slow, _ := h.Subscribe("1001", "", now)
	fast, _ := h.Subscribe("1001", "", now)
	for i := range subBuffer + 10 {
		h.Deliver(Pop{ID: strconv.Itoa(i + 1), Agent: "1001", At: now})
		<-fast.ch
	}
	select {
	case <-slow.gone:
	default:
		t.Fatal("slow subscriber kept")
	}
	select {
	case <-fast.gone:
		t.Fatal("reading subscriber dropped")
	default:
	}
	// The backlog is bounded and replays after an id.
	_, replay := h.Subscribe("1001", strconv.Itoa(subBuffer+5), now)
	if len(replay) != 5 || replay[0].ID != strconv.Itoa(subBuffer+6) {
		t.Fatalf("replay %d pops from %v", len(replay), replay)
	}
	_, today := h.Subscribe("1001", "", now)
	if len(today) != 10 {
		t.Fatalf("backlog %d, want 10", len(today))
	}
	// Pops of another day are not today's.
	h2 := newHub(10)
	h2.Deliver(Pop{ID: "1", Agent: "a", At: now.Add(-48 * time.Hour)})
	if _, r := h2.Subscribe("a", "", now); len(r) != 0 {
		t.Fatalf("yesterday's pop replayed: %v", r)
	}
	h2.Sweep(now.Add(25 * time.Hour))
	if len(h2.agents) != 1 {
		t.Fatal("agent with a live subscription swept")
	}
}
