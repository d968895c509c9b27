package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"conclave/internal/testpg"
	"conclave/pgctl"
	"conclave/store"
)

// The FSM's transactions commit without waiting for the disk; FlushWAL
// makes everything committed before it survive a crash of the database,
// which is what a raft snapshot and the end of a raft life rely on.
func TestFlushWALSurvivesACrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		// The server runs as the postgres user, which must reach its directory.
		os.Chmod(dir, 0o755)
		os.Chmod(filepath.Dir(dir), 0o755)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := pgctl.Start(ctx, filepath.Join(dir, "pg"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	st, err := store.Open(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 300
	at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	for i := uint64(1); i <= n; i++ {
		if _, _, err := st.Apply(ctx, i, 1, func(tx *store.Tx) error {
			return tx.InsertEvent(ctx, store.Event{ID: fmt.Sprintf("e%d", i), Type: "Test", Actor: "t", At: at})
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.FlushWAL(ctx); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := srv.Crash(); err != nil {
		t.Fatal(err)
	}
	if srv, err = pgctl.Start(ctx, filepath.Join(dir, "pg"), logger); err != nil {
		t.Fatal(err)
	}
	st, err = store.Open(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	index, _, err := st.AppliedIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	events, err := st.CountEvents(ctx, "Test")
	if index != n || events != n {
		t.Fatalf("after the crash: applied index %d, %d events (%v); want %d of each", index, events, err, n)
	}
}

// Store.Key keeps keys in memory, and answers the new value as soon as a
// change of the key ring is applied, or the tables are restored or
// emptied.
func TestKeyIsCurrentAfterEveryChange(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	put := func(index uint64, value string) {
		t.Helper()
		if _, _, err := st.Apply(ctx, index, 1, func(tx *store.Tx) error {
			return tx.PutKey(ctx, "ring", []byte(`"`+value+`"`), at)
		}); err != nil {
			t.Fatal(err)
		}
	}
	want := func(value string) {
		t.Helper()
		v, err := st.Key(ctx, "ring")
		if value == "" {
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("key after it went: %s %v; want not found", v, err)
			}
			return
		}
		if err != nil || string(v) != `"`+value+`"` {
			t.Fatalf("key: %s %v; want %q", v, err, value)
		}
	}
	put(1, "one")
	want("one")
	want("one") // from memory
	put(2, "two")
	want("two")
	snap, err := st.BeginSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var saved bytes.Buffer
	if err := snap.WriteTo(ctx, &saved); err != nil {
		t.Fatal(err)
	}
	snap.Close(ctx)
	put(3, "three")
	want("three")
	if _, err := st.RestoreSnapshot(ctx, &saved); err != nil {
		t.Fatal(err)
	}
	want("two")
	if err := st.TruncateReplicated(ctx); err != nil {
		t.Fatal(err)
	}
	want("")
}
