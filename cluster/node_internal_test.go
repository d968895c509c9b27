package cluster

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"conclave/internal/testpg"
	"conclave/store"
)

// startInternalNode starts a one-member node on a fresh database and data
// directory, for tests of the package's internals. The store is closed
// when the test ends; the node is the caller's to shut down.
func startInternalNode(t *testing.T, timing Timing) (*Node, *store.Store) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	id, _, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(ctx, Config{
		DataDir: dir, Identity: id, Name: "alpha", Advertise: "127.0.0.1:1", Version: "test",
		Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Stream: NewStreamLayer(AdvertiseAddr("127.0.0.1:1")), Timing: timing,
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, st
}
