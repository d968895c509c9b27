package store

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// txConn is the transaction a batch of raft entries is applied in
// (Store.ApplyBatch). On the fast path (no savepoints, see applyBatch) it
// saves round trips to PostgreSQL, which are most of the cost of applying
// a command:
//
//   - Write-behind: the hot writes (an access request, an audit event, the
//     end of a check-out) are queued rather than sent, and go to the server
//     together with the next statement, in one round trip. Every other
//     statement sends what is queued first, so reads see every write.
//   - The audit chain's last link is remembered between entries instead of
//     read again for each event.
//
// A queued write that fails makes the whole attempt fail, whichever entry's
// statement reported it; applyBatch then runs the batch again with a
// savepoint per entry and neither shortcut, which gives every entry its
// exact outcome.
type txConn struct {
	pgx.Tx
	fast    bool
	pending []*pgx.QueuedQuery
	// chain is the audit chain's last link, once known (fast path only).
	chain *chainLink
	// pre is what PrefetchCheckouts read for the batch (prefetch.go).
	pre *prefetched
	// writes counts the writes sent or queued: an entry refused before
	// writing anything needs no savepoint to be undone.
	writes int
}

type chainLink struct {
	seq  int64
	hash string
}

// queue sends a write now, or on the fast path with the next statement.
func (c *txConn) queue(ctx context.Context, sql string, args ...any) error {
	c.writes++
	if !c.fast {
		_, err := c.Tx.Exec(ctx, sql, args...)
		return err
	}
	c.pending = append(c.pending, &pgx.QueuedQuery{SQL: sql, Arguments: args})
	return nil
}

// withPending is a batch of the queued writes followed by b's queries; it
// empties the queue.
func (c *txConn) withPending(b *pgx.Batch) (*pgx.Batch, int) {
	n := len(c.pending)
	out := &pgx.Batch{QueuedQueries: append(c.pending, b.QueuedQueries...)}
	c.pending = nil
	return out, n
}

// flush sends the queued writes.
func (c *txConn) flush(ctx context.Context) error {
	if len(c.pending) == 0 {
		return nil
	}
	b, _ := c.withPending(&pgx.Batch{})
	return c.Tx.SendBatch(ctx, b).Close()
}

// Exec runs a statement. Every write that is not queued goes through Exec
// or CopyFrom, so both drop what was prefetched: it may have changed.
func (c *txConn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.pre = nil
	c.writes++
	if len(c.pending) == 0 {
		return c.Tx.Exec(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	b, skip := c.withPending(b)
	br := &skippingResults{BatchResults: c.Tx.SendBatch(ctx, b), skip: skip}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

func (c *txConn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if len(c.pending) == 0 {
		return c.Tx.QueryRow(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	b, skip := c.withPending(b)
	return &batchRow{br: &skippingResults{BatchResults: c.Tx.SendBatch(ctx, b), skip: skip}}
}

func (c *txConn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := c.flush(ctx); err != nil {
		return nil, err
	}
	return c.Tx.Query(ctx, sql, args...)
}

func (c *txConn) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if len(c.pending) == 0 {
		return c.Tx.SendBatch(ctx, b)
	}
	b, skip := c.withPending(b)
	return &skippingResults{BatchResults: c.Tx.SendBatch(ctx, b), skip: skip}
}

func (c *txConn) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	c.pre = nil
	c.writes++
	if err := c.flush(ctx); err != nil {
		return 0, err
	}
	return c.Tx.CopyFrom(ctx, table, columns, src)
}

// skippingResults are the results of a batch that starts with skip queued
// writes: those are read (and their errors returned) before the first
// result the caller asks for.
type skippingResults struct {
	pgx.BatchResults
	skip int
}

func (r *skippingResults) skipWrites() error {
	for ; r.skip > 0; r.skip-- {
		if _, err := r.BatchResults.Exec(); err != nil {
			r.skip = 0
			return err
		}
	}
	return nil
}

func (r *skippingResults) Exec() (pgconn.CommandTag, error) {
	if err := r.skipWrites(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return r.BatchResults.Exec()
}

func (r *skippingResults) Query() (pgx.Rows, error) {
	if err := r.skipWrites(); err != nil {
		return nil, err
	}
	return r.BatchResults.Query()
}

func (r *skippingResults) QueryRow() pgx.Row {
	if err := r.skipWrites(); err != nil {
		return errRow{err}
	}
	return r.BatchResults.QueryRow()
}

func (r *skippingResults) Close() error {
	err := r.skipWrites()
	if cerr := r.BatchResults.Close(); err == nil {
		err = cerr
	}
	return err
}

// batchRow is the one row of a batch's last query.
type batchRow struct{ br pgx.BatchResults }

func (r *batchRow) Scan(dest ...any) error {
	err := r.br.QueryRow().Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
