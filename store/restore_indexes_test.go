package store

import (
	"context"
	"io"
	"slices"
	"testing"

	"conclave/internal/testpg"
)

func indexNames(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `select indexname from pg_indexes where schemaname = current_schema() order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		out = append(out, n)
	}
	return out
}

// A restore drops the secondary indexes while it copies and builds them
// again: afterwards the database has every index it had, and they work.
func TestRestoreKeepsEveryIndex(t *testing.T) {
	ctx := context.Background()
	open := func() *Store {
		s, err := Open(ctx, testpg.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		if _, _, err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	src, dst := open(), open()
	if err := src.SeedEvents(ctx, 1000, "m"); err != nil {
		t.Fatal(err)
	}
	before := indexNames(t, dst)
	if !slices.Contains(before, "events_type") {
		t.Fatalf("indexes before: %v; want events_type among them", before)
	}
	snap, err := src.BeginSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(snap.WriteTo(ctx, pw)) }()
	if _, err := dst.RestoreSnapshot(ctx, pr); err != nil {
		t.Fatal(err)
	}
	if after := indexNames(t, dst); !slices.Equal(before, after) {
		t.Fatalf("indexes after the restore: %v; before: %v", after, before)
	}
	if n, err := dst.CountEvents(ctx, "BenchmarkSeed"); err != nil || n != 1000 {
		t.Fatalf("events after the restore: %d, %v", n, err)
	}
}
