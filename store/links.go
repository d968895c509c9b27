package store

// Link samples: the downsampled history of this appliance's probes of the
// other members. Appliance-local, never replicated.

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// LinkSample is one time bucket of probes over one directed link. The
// round-trip figures are nil when every probe of the bucket was lost.
type LinkSample struct {
	FromID     string
	ToID       string
	Resolution time.Duration // length of the bucket
	At         time.Time     // start of the bucket
	Probes     int
	Lost       int
	MinMs      *float64
	AvgMs      *float64
	MaxMs      *float64
	JitterMs   *float64
}

// PutLinkSamples records buckets; a bucket recorded already is replaced.
func (s *Store) PutLinkSamples(ctx context.Context, samples []LinkSample) error {
	if len(samples) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, l := range samples {
		batch.Queue(`insert into link_samples (from_id, to_id, resolution_s, at, probes, lost, min_ms, avg_ms, max_ms, jitter_ms)
			values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			on conflict (from_id, to_id, resolution_s, at) do update set probes = excluded.probes, lost = excluded.lost,
				min_ms = excluded.min_ms, avg_ms = excluded.avg_ms, max_ms = excluded.max_ms, jitter_ms = excluded.jitter_ms`,
			l.FromID, l.ToID, int(l.Resolution/time.Second), l.At, l.Probes, l.Lost, l.MinMs, l.AvgMs, l.MaxMs, l.JitterMs)
	}
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("save link samples: %w", err)
	}
	return nil
}

// LinkHistory returns the buckets of one resolution of the link from → to
// that start at or after since, oldest first.
func (s *Store) LinkHistory(ctx context.Context, from, to string, resolution time.Duration, since time.Time) ([]LinkSample, error) {
	rows, err := s.pool.Query(ctx, `select from_id, to_id, at, probes, lost, min_ms, avg_ms, max_ms, jitter_ms from link_samples
		where from_id = $1 and to_id = $2 and resolution_s = $3 and at >= $4 order by at`, from, to, int(resolution/time.Second), since)
	if err != nil {
		return nil, fmt.Errorf("link history: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (LinkSample, error) {
		l := LinkSample{Resolution: resolution}
		err := row.Scan(&l.FromID, &l.ToID, &l.At, &l.Probes, &l.Lost, &l.MinMs, &l.AvgMs, &l.MaxMs, &l.JitterMs)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("link history: %w", err)
	}
	return out, nil
}

// DeleteLinkSamplesBefore removes the buckets of a resolution that start
// before the given time, and says how many.
func (s *Store) DeleteLinkSamplesBefore(ctx context.Context, resolution time.Duration, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `delete from link_samples where resolution_s = $1 and at < $2`, int(resolution/time.Second), before)
	if err != nil {
		return 0, fmt.Errorf("delete old link samples: %w", err)
	}
	return tag.RowsAffected(), nil
}

// CountLinkSamples counts the stored buckets (for tests and the bounded-growth check).
func (s *Store) CountLinkSamples(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `select count(*) from link_samples`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count link samples: %w", err)
	}
	return n, nil
}
