package store_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"conclave/internal/testpg"
	"conclave/store"
)

// chainFixture is a database with five events recorded through Apply, and
// a direct connection to tamper with them.
func chainFixture(t *testing.T) (*store.Store, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	url := testpg.NewDatabase(t)
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC) // nanoseconds: kept as microseconds
	for i := 1; i <= 5; i++ {
		_, _, err := st.Apply(ctx, uint64(i), 1, func(tx *store.Tx) error {
			return tx.InsertEvent(ctx, store.Event{ID: fmt.Sprintf("ev-%d", i), Type: "UserCreated", Actor: "admin", MemberID: "m1",
				At: at.Add(time.Duration(i) * time.Second), Details: map[string]string{"user": fmt.Sprint("u", i), "b": "2", "a": "1"}})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A replayed event (same ID) does not take a place in the chain.
	st.Apply(ctx, 6, 1, func(tx *store.Tx) error {
		return tx.InsertEvent(ctx, store.Event{ID: "ev-3", Type: "UserCreated", At: at})
	})
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return st, conn
}

func TestAuditChain(t *testing.T) {
	ctx := context.Background()
	st, _ := chainFixture(t)
	check, err := st.VerifyEventChain(ctx)
	if err != nil || !check.Intact() || check.Checked != 5 {
		t.Fatalf("fresh chain: %+v %v", check, err)
	}

	cases := []struct {
		name, sql, broken, says string
	}{
		{"altered details", `update events set details = '{"user": "someone else", "a": "1", "b": "2"}' where id = 'ev-3'`, "ev-3", "altered"},
		{"altered actor", `update events set actor = 'nobody' where id = 'ev-2'`, "ev-2", "altered"},
		{"altered time", `update events set at = at - interval '1 hour' where id = 'ev-4'`, "ev-4", "altered"},
		{"removed event", `delete from events where id = 'ev-2'`, "ev-3", "missing"},
		{"removed first event", `delete from events where id = 'ev-1'`, "ev-2", "missing"},
		{"rehashed alone", `update events set actor = 'x', hash = 'abc' where id = 'ev-4'`, "ev-4", "altered"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, conn := chainFixture(t)
			if _, err := conn.Exec(ctx, c.sql); err != nil {
				t.Fatal(err)
			}
			check, err := st.VerifyEventChain(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if check.Intact() || check.Broken.ID != c.broken || !strings.Contains(check.Reason, c.says) {
				t.Fatalf("got %+v (%s), want broken at %s (%s)", check.Broken, check.Reason, c.broken, c.says)
			}
		})
	}
}

// BenchmarkVerifyEventChain verifies a chain of 10,000 events, as the
// Activity Center does on every view (target: well under 100 ms).
func BenchmarkVerifyEventChain(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, testpg.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	if _, _, err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for batch := range 10 {
		_, _, err := st.Apply(ctx, uint64(batch+1), 1, func(tx *store.Tx) error {
			for i := range 1000 {
				if err := tx.InsertEvent(ctx, store.Event{ID: fmt.Sprintf("ev-%d-%d", batch, i), Type: "UserLoggedIn", Actor: "admin", MemberID: "m1",
					At: at, Details: map[string]string{"address": "10.0.0.1", "method": "password"}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		check, err := st.VerifyEventChain(ctx)
		if err != nil || !check.Intact() || check.Checked != 10000 {
			b.Fatalf("%+v %v", check, err)
		}
	}
}

// Commands applied on an isolated appliance run concurrently (a request
// while the appliance records its own events): each takes the next place
// in the audit chain, none is refused for a place another took.
func TestConcurrentOfflineEventsKeepTheChain(t *testing.T) {
	ctx := context.Background()
	st, _ := chainFixture(t)
	const writers, each = 8, 10
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		go func() {
			for i := 0; i < each; i++ {
				id := fmt.Sprintf("offline-%d-%d", w, i)
				errs <- st.ApplyOffline(ctx, id, func(tx *store.Tx) error {
					return tx.InsertEvent(ctx, store.Event{ID: id, Type: "UserCreated", Actor: "admin", MemberID: "m1", At: time.Now()})
				})
			}
		}()
	}
	for i := 0; i < writers*each; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("offline event: %v", err)
		}
	}
	check, err := st.VerifyEventChain(ctx)
	if err != nil || !check.Intact() || check.Checked != 5+writers*each {
		t.Fatalf("chain after concurrent offline events: %+v %v", check, err)
	}
}

// The fast path keeps the audit chain's head between batches; every other
// writer of events makes it read the head again: the exact path, offline
// commands, and putting back the offline base (which removes the offline
// events, so the head moves back). After each, the chain holds with no
// gap.
func TestChainHeadAcrossWriters(t *testing.T) {
	ctx := context.Background()
	st, _ := chainFixture(t) // events 1-5
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	event := func(id string) func(*store.Tx) error {
		return func(tx *store.Tx) error {
			return tx.InsertEvent(ctx, store.Event{ID: id, Type: "UserCreated", Actor: "admin", MemberID: "m1", At: at})
		}
	}
	intact := func(step string, want int) {
		t.Helper()
		check, err := st.VerifyEventChain(ctx)
		if err != nil || !check.Intact() || check.Checked != want {
			t.Fatalf("after %s: %+v %v; want %d events, intact", step, check, err, want)
		}
	}
	apply := func(index uint64, fn func(*store.Tx) error) {
		t.Helper()
		if outcome, _, err := st.Apply(ctx, index, 1, fn); err != nil || outcome != nil {
			t.Fatalf("apply %d: %v %v", index, outcome, err)
		}
	}
	apply(7, event("ev-7"))
	apply(8, event("ev-8"))
	intact("two fast batches", 7)
	snap, err := st.BeginSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var at8 bytes.Buffer
	if err := snap.WriteTo(ctx, &at8); err != nil {
		t.Fatal(err)
	}
	snap.Close(ctx)

	// A batch with an entry refused after it wrote: the exact path.
	res, err := st.ApplyBatch(ctx, []store.Entry{
		{Index: 9, Term: 1, Fn: func(tx *store.Tx) error {
			if err := event("ev-refused")(tx); err != nil {
				return err
			}
			return store.Reject("", "refused after writing")
		}},
		{Index: 10, Term: 1, Fn: event("ev-10")},
	})
	if err != nil || res[0].Outcome == nil || res[1].Outcome != nil {
		t.Fatalf("exact batch: %+v %v", res, err)
	}
	intact("the exact path", 8)
	apply(11, event("ev-11"))
	intact("a fast batch after the exact path", 9)

	// Offline (raft does not apply meanwhile): an event takes the next
	// place, and goes when the base is put back; the next fast batch takes
	// that place again.
	if err := st.SaveOfflineBase(ctx, at); err != nil {
		t.Fatal(err)
	}
	if err := st.ApplyOffline(ctx, "off-1", event("off-1")); err != nil {
		t.Fatal(err)
	}
	intact("an offline event", 10)
	if _, err := st.RestoreOfflineBase(ctx); err != nil {
		t.Fatal(err)
	}
	intact("the offline base put back", 9)
	apply(12, event("ev-12"))
	intact("a fast batch after the offline base", 10)

	// A raft snapshot restored: the head moves back to where it was.
	if _, err := st.RestoreSnapshot(ctx, &at8); err != nil {
		t.Fatal(err)
	}
	intact("a snapshot restored", 7)
	apply(13, event("ev-13"))
	intact("a fast batch after the snapshot", 8)
}
