package store

import (
	"context"
	"fmt"
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
