package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// SeedEvents inserts n synthetic audit events straight into this database,
// outside raft, in batches of one transaction each. Benchmarks use it to
// give a primary a large replicated data set in seconds; the rows reach
// other members only through a snapshot (Add Replica), never through the
// log. Each row is about the size of an account with its asset (some 200
// bytes). Never used by the appliance itself.
func (s *Store) SeedEvents(ctx context.Context, n int, memberID string) error {
	const batch = 100_000
	for from := 1; from <= n; from += batch {
		to := min(from+batch-1, n)
		_, err := s.pool.Exec(ctx, `insert into events (id, raft_index, type, member_id, actor, at, details)
			select 'seed-' || lpad(g::text, 9, '0'), 0, 'BenchmarkSeed', $1, 'bench',
			       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second',
			       jsonb_build_object('asset', 'server-' || (g % 50000), 'address', '10.' || (g % 250) || '.' || (g % 200) || '.1',
			                          'account', 'svc-' || g, 'platform', 'Linux SSH')
			from generate_series($2::int, $3::int) g`, memberID, from, to)
		if err != nil {
			return fmt.Errorf("seed events %d-%d: %w", from, to, err)
		}
	}
	return nil
}

// CountRows counts the rows of one replicated table; benchmarks check with
// it that every row arrived.
func (s *Store) CountRows(ctx context.Context, table string) (int64, error) {
	known := false
	for _, t := range replicatedTables {
		known = known || t == table
	}
	if !known {
		return 0, fmt.Errorf("count rows: %q is not a replicated table", table)
	}
	var n int64
	if err := s.pool.QueryRow(ctx, "select count(*) from "+table).Scan(&n); err != nil {
		return 0, fmt.Errorf("count rows of %s: %w", table, err)
	}
	return n, nil
}

// CountEvents counts the events of one type; benchmarks check with it that
// every acknowledged write arrived on every member.
func (s *Store) CountEvents(ctx context.Context, typ string) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `select count(*) from events where type = $1`, typ).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events of type %s: %w", typ, err)
	}
	return n, nil
}

// SeedAccounts inserts n synthetic accounts, perAsset on each of
// ceil(n/perAsset) assets, straight into this database with COPY, outside
// raft, like SeedEvents. seal returns the sealed password of account i
// (its ID given), so that the rows are what the workflow itself writes.
// It returns the accounts' IDs in order. Never used by the appliance
// itself.
func (s *Store) SeedAccounts(ctx context.Context, n, perAsset int, seal func(accountID string, i int) (string, error)) ([]string, error) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	assets := (n + perAsset - 1) / perAsset
	assetIDs := make([]pgtype.UUID, assets)
	for i := range assetIDs {
		assetIDs[i] = pgtype.UUID{Bytes: uuid.New(), Valid: true}
	}
	_, err := s.pool.CopyFrom(ctx, pgx.Identifier{"assets"}, []string{"id", "name", "address", "platform", "created_at", "updated_at"},
		pgx.CopyFromSlice(assets, func(i int) ([]any, error) {
			return []any{assetIDs[i], fmt.Sprintf("bench-server-%07d", i), fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256), "Linux SSH", at, at}, nil
		}))
	if err != nil {
		return nil, fmt.Errorf("seed assets: %w", err)
	}
	ids := make([]string, n)
	_, err = s.pool.CopyFrom(ctx, pgx.Identifier{"accounts"}, []string{"id", "asset_id", "username", "secret", "created_at", "password_changed_at"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			id := uuid.New()
			ids[i] = id.String()
			secret, err := seal(ids[i], i)
			if err != nil {
				return nil, err
			}
			return []any{pgtype.UUID{Bytes: id, Valid: true}, assetIDs[i/perAsset], fmt.Sprintf("svc-%02d", i%perAsset), secret, at, at}, nil
		}))
	if err != nil {
		return nil, fmt.Errorf("seed accounts: %w", err)
	}
	return ids, nil
}

// CountRequests counts the access requests in a state; benchmarks check
// with it that every acknowledged check-out arrived on every member.
func (s *Store) CountRequests(ctx context.Context, state string) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `select count(*) from access_requests where state = $1`, state).Scan(&n); err != nil {
		return 0, fmt.Errorf("count access requests %s: %w", state, err)
	}
	return n, nil
}
