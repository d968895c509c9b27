package cluster

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Queued events are written once each, however many flushes run at once:
// the state watcher flushes every tick while Enable Offline Workflow
// flushes too, and two flushes at the same head used to spool it twice
// and then pop past the end of the queue (a panic in the request).
func TestQueuedEventsFlushOnceUnderConcurrentFlushes(t *testing.T) {
	ctx := context.Background()
	timing := DefaultTiming()
	timing.Heartbeat, timing.Election, timing.LeaderLease = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	n, st := startInternalNode(t, timing)
	defer n.Shutdown()
	select {
	case <-n.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("node not ready")
	}
	// Isolated as Enable Offline Workflow leaves it, so that flushes spool.
	since := time.Now().UTC()
	if err := n.setMode(Mode{State: StateIsolated, Reason: "test", Since: since}); err != nil {
		t.Fatal(err)
	}
	if err := n.swapRaft(func() error { return st.SaveOfflineBase(ctx, since) }, true); err != nil {
		t.Fatal(err)
	}
	if !n.Isolated() {
		t.Fatal("the node is not isolated")
	}

	const events = 40
	for i := range events {
		n.events.push(Command{Type: CmdRecordEvent, At: since.Add(time.Duration(i) * time.Millisecond), Actor: "system",
			Event: &EventSpec{Type: "ApplianceStateChanged", Details: map[string]string{"n": string(rune('a' + i))}}})
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(n.flushEvents)
	}
	wg.Wait()

	if left := n.PendingEvents(); left != 0 {
		t.Errorf("%d events still queued after the flushes", left)
	}
	spooled, err := st.UnmergedOfflineEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range spooled {
		if e.Type == "ApplianceStateChanged" {
			seen[e.Details["n"]]++
		}
	}
	if len(seen) != events {
		t.Errorf("%d distinct events spooled; want %d", len(seen), events)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("event %q spooled %d times; want once", k, c)
		}
	}
}
