package popper

import (
	"strconv"
	"strings"
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

// Pops loaded from a group's log join the recent pops in id order, without
// duplicates; an open stream gets only those newer than what it had.
func TestHubBackfill(t *testing.T) {
	h := newHub(4)
	now := time.Now()
	s, _ := h.Subscribe("1001", "", now)
	h.Deliver(Pop{ID: "100", Agent: "1001", At: now})
	<-s.ch
	h.Backfill([]Pop{
		{ID: "90", Agent: "1001", At: now}, {ID: "100", Agent: "1001", At: now},
		{ID: "95", Agent: "1001", At: now}, {ID: "110", Agent: "1001", At: now},
		{ID: "80", Agent: "1001", At: now}, {ID: "5", Agent: "1002", At: now},
	})
	select {
	case p := <-s.ch:
		if p.ID != "110" {
			t.Fatalf("open stream got %s, want 110", p.ID)
		}
	default:
		t.Fatal("open stream did not get the newer pop")
	}
	select {
	case p := <-s.ch:
		t.Fatalf("open stream got an older pop %s", p.ID)
	default:
	}
	_, replay := h.Subscribe("1001", "1", now)
	var ids []string
	for _, p := range replay {
		ids = append(ids, p.ID)
	}
	if got := strings.Join(ids, ","); got != "90,95,100,110" {
		t.Fatalf("backlog %s, want 90,95,100,110 (in order, at most 4)", got)
	}
	if !h.Deliver(Pop{ID: "110", Agent: "1001", At: now}) {
		t.Fatal("Deliver of a known pop: agent has a stream")
	}
	if n := h.backlogLen("1001"); n != 4 {
		t.Fatalf("a pop delivered twice was kept twice: %d", n)
	}
	if h.Deliver(Pop{ID: "6", Agent: "1002", At: now}) {
		t.Fatal("1002 has no stream here")
	}
}
