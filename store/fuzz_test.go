package store_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"conclave/internal/testpg"
	"conclave/store"
)

func sums(t testing.TB, st *store.Store) map[string]store.TableChecksum {
	t.Helper()
	ctx := context.Background()
	snap, err := st.BeginSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	s, err := snap.Checksums(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzRestoreSnapshot feeds made-up and damaged snapshot streams (what an
// enrollment and a backup carry) to the restore: it restores or refuses,
// never panics, and a refusal leaves every table as it was.
func FuzzRestoreSnapshot(f *testing.F) {
	ctx := context.Background()
	st, err := store.Open(ctx, testpg.NewDatabase(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(st.Close)
	if _, _, err := st.Migrate(ctx); err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, _, err := st.Apply(ctx, 5, 1, func(tx *store.Tx) error {
		if err := tx.InitCluster(ctx, store.ClusterInfo{ID: "c1", CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.CreateUser(ctx, store.User{ID: "u1", Username: "ann", Role: "Helpdesk", Source: "local", CreatedAt: now}); err != nil {
			return err
		}
		return tx.InsertEvent(ctx, store.Event{ID: "e1", Type: "UserCreated", Actor: "admin", At: now})
	}); err != nil {
		f.Fatal(err)
	}
	snap, err := st.BeginSnapshot(ctx)
	if err != nil {
		f.Fatal(err)
	}
	var good bytes.Buffer
	if err := snap.WriteTo(ctx, &good); err != nil {
		f.Fatal(err)
	}
	snap.Close(ctx)
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:good.Len()/2])
	flipped := bytes.Clone(good.Bytes())
	flipped[len(flipped)-40] ^= 0xff
	f.Add(flipped)
	f.Add([]byte("CONCLAVE-SNAPSHOT-1\n\x00\x00\x00\x02{}"))
	f.Add([]byte("CONCLAVE-SNAPSHOT-1\n\xff\xff\xff\xff"))

	f.Fuzz(func(t *testing.T, stream []byte) {
		before := sums(t, st)
		if _, err := st.RestoreSnapshot(ctx, bytes.NewReader(stream)); err == nil {
			return
		}
		after := sums(t, st)
		for table, s := range before {
			if after[table] != s {
				t.Fatalf("a refused restore changed table %s", table)
			}
		}
	})
}
