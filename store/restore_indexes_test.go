package store

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"conclave/internal/testpg"
)

// openMigrated opens a fresh database with the schema.
func openMigrated(t *testing.T) *Store {
	t.Helper()
	ctx := context.Background()
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

// A restore drops the indexes while it copies and builds them
// again: afterwards the database has every index it had, and they work.
func TestRestoreKeepsEveryIndex(t *testing.T) {
	ctx := context.Background()
	src, dst := openMigrated(t), openMigrated(t)
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

func constraintDefs(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `select conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
		from pg_constraint where connamespace = current_schema()::regnamespace order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		rows.Scan(&d)
		out = append(out, d)
	}
	return out
}

func snapshotSums(t *testing.T, s *Store) (md5, record map[string]TableChecksum) {
	t.Helper()
	ctx := context.Background()
	snap, err := s.BeginSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	if md5, err = snap.Checksums(ctx); err != nil {
		t.Fatal(err)
	}
	if record, err = snap.RecordHashChecksums(ctx); err != nil {
		t.Fatal(err)
	}
	return md5, record
}

func restoreFrom(t *testing.T, src, dst *Store) error {
	t.Helper()
	ctx := context.Background()
	snap, err := src.BeginSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(snap.WriteTo(ctx, pw)) }()
	_, err = dst.RestoreSnapshot(ctx, pr)
	pr.CloseWithError(io.ErrClosedPipe)
	return err
}

// A restore drops every key, unique index and foreign key while it copies
// and makes them again: afterwards the schema is the same, both kinds of
// checksum match the source's, and a change to one row shows in both. The
// foreign keys are still checked: a snapshot with an account of no asset
// is refused, and the database keeps what it had.
func TestRestoreRebuildsKeysAndChecksForeignKeys(t *testing.T) {
	ctx := context.Background()
	src, dst := openMigrated(t), openMigrated(t)
	if _, err := src.SeedAccounts(ctx, 200, 20, func(id string, i int) (string, error) { return "sealed-" + id, nil }); err != nil {
		t.Fatal(err)
	}
	if err := src.SeedEvents(ctx, 100, "m"); err != nil {
		t.Fatal(err)
	}
	schema := constraintDefs(t, dst)
	if !slices.ContainsFunc(schema, func(d string) bool { return strings.Contains(d, "FOREIGN KEY (asset_id)") }) {
		t.Fatalf("constraints before: %v; want the accounts' foreign key among them", schema)
	}
	if err := restoreFrom(t, src, dst); err != nil {
		t.Fatal(err)
	}
	if after := constraintDefs(t, dst); !slices.Equal(schema, after) {
		t.Fatalf("constraints after the restore:\n%v\nbefore:\n%v", after, schema)
	}
	srcMD5, srcRecord := snapshotSums(t, src)
	dstMD5, dstRecord := snapshotSums(t, dst)
	for _, table := range replicatedTables {
		if srcMD5[table] != dstMD5[table] || srcRecord[table] != dstRecord[table] {
			t.Errorf("table %s: source %v / %v, restored %v / %v", table, srcMD5[table], srcRecord[table], dstMD5[table], dstRecord[table])
		}
	}
	if srcRecord["accounts"].Rows != 200 {
		t.Fatalf("accounts counted: %+v", srcRecord["accounts"])
	}
	if _, err := dst.pool.Exec(ctx, `update accounts set secret = secret || 'x' where id = (select id from accounts limit 1)`); err != nil {
		t.Fatal(err)
	}
	changedMD5, changedRecord := snapshotSums(t, dst)
	if changedMD5["accounts"] == srcMD5["accounts"] || changedRecord["accounts"] == srcRecord["accounts"] {
		t.Fatalf("a changed secret went unnoticed: %v %v", changedMD5["accounts"], changedRecord["accounts"])
	}

	// An account whose asset is not in the snapshot.
	bad := openMigrated(t)
	if _, err := bad.SeedAccounts(ctx, 20, 20, func(id string, i int) (string, error) { return "s", nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.pool.Exec(ctx, `alter table accounts drop constraint accounts_asset_id_fkey`); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.pool.Exec(ctx, `insert into accounts (id, asset_id, username, secret, created_at, password_changed_at)
		values (gen_random_uuid(), gen_random_uuid(), 'orphan', 's', now(), now())`); err != nil {
		t.Fatal(err)
	}
	err := restoreFrom(t, bad, dst)
	if err == nil || !strings.Contains(err.Error(), "accounts_asset_id_fkey") {
		t.Fatalf("restore of an account without its asset: %v; want the foreign key named", err)
	}
	if keptMD5, _ := snapshotSums(t, dst); keptMD5["accounts"] != changedMD5["accounts"] {
		t.Fatal("a refused restore changed the accounts")
	}
	if after := constraintDefs(t, dst); !slices.Equal(schema, after) {
		t.Fatalf("constraints after a refused restore: %v", after)
	}
}

// A restore analyses the tables it filled, so that a replica does not plan
// for empty tables, and leaves the (almost) empty ones unanalysed, as on a
// new database. Statistics saying "empty" would make the plans pgx caches
// seq-scan a table such as access_requests for as long as they live, while
// check-outs fill it: on a replica enrolled before its first access
// request, every check-out's holder lookup read the whole table.
func TestRestoreAnalysesOnlyFilledTables(t *testing.T) {
	ctx := context.Background()
	src, dst := openMigrated(t), openMigrated(t)
	if err := src.SeedEvents(ctx, 2000, "m"); err != nil {
		t.Fatal(err)
	}
	if err := restoreFrom(t, src, dst); err != nil {
		t.Fatal(err)
	}
	reltuples := func(table string) float64 {
		var n float64
		if err := dst.pool.QueryRow(ctx, `select reltuples from pg_class where oid = $1::regclass`, table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := reltuples("events"); n < 2000 {
		t.Errorf("events after the restore: the planner counts %.0f rows, want the 2000 and more restored (analysed)", n)
	}
	for _, table := range []string{"access_requests", "accounts", "policy_accounts", "assets", "import_rows"} {
		if n := reltuples(table); n != -1 {
			t.Errorf("%s after the restore: the planner counts %.0f rows, want -1 (never analysed, as the table is empty)", table, n)
		}
	}
}
