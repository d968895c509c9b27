package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// txConn is the transaction a batch of raft entries is applied in
// (Store.ApplyBatch). On the fast path (no savepoints, see applyBatch) it
// saves round trips to PostgreSQL and statements, which are most of the
// cost of applying a command:
//
//   - Pipelining: statements whose answers can wait (the transaction's
//     begin and lock, the audit chain's last link, the writes) are queued
//     and go to the server with the next statement, in one round trip. A
//     batch of check-outs and check-ins takes two: its begin, lock and
//     reads (Tx.PrefetchCheckouts), then its writes and commit.
//   - Set-wise writes: the writes of check-outs, check-ins and audit events
//     (hotWrites) are kept as rows and written per table in a few
//     statements of many rows, not one statement per row.
//   - The audit chain's last link is kept between entries instead of read
//     again for each event.
//
// Every statement that is not one of those sends what is queued first, so
// reads see every write. A queued write that fails makes the whole attempt
// fail, whichever entry's statement reported it (PostgreSQL aborts the
// transaction at the first error); applyBatch then runs the batch again
// with a savepoint per entry and none of these shortcuts, which gives every
// entry its exact outcome.
type txConn struct {
	pgx.Tx
	store   *Store
	fast    bool
	pending []pendingQuery
	// hot are the fast path's set-wise writes, not yet queued.
	hot *hotWrites
	// chain is the audit chain's last link, once known (fast path only).
	chain *chainLink
	// pre is what PrefetchCheckouts read for the batch (prefetch.go).
	pre *prefetched
	// writes counts the writes sent or queued: an entry refused before
	// writing anything needs no savepoint to be undone.
	writes int
	// keysChanged: the transaction wrote cluster_keys (Store.Key).
	keysChanged bool
}

// pendingQuery is a queued statement and how to read its answer (nil:
// it returns no rows).
type pendingQuery struct {
	q    *pgx.QueuedQuery
	read func(pgx.BatchResults) error
}

type chainLink struct {
	seq  int64
	hash string
}

// queueRead queues a statement whose answer read takes (fast path only).
func (c *txConn) queueRead(sql string, read func(pgx.BatchResults) error, args ...any) {
	c.queueHot()
	c.pending = append(c.pending, pendingQuery{q: &pgx.QueuedQuery{SQL: sql, Arguments: args}, read: read})
}

// queueHot turns the set-wise writes kept so far into queued statements,
// ahead of anything queued after them.
func (c *txConn) queueHot() {
	if c.hot != nil && !c.hot.empty() {
		c.pending = append(c.pending, c.hot.statements()...)
		c.hot.reset()
	}
}

// withPending is a batch of the queued statements (the set-wise writes
// first turned into statements) followed by b's queries; it empties the
// queue.
func (c *txConn) withPending(b *pgx.Batch) (*pgx.Batch, []pendingQuery) {
	c.queueHot()
	pending := c.pending
	c.pending = nil
	out := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(pending)+len(b.QueuedQueries))}
	for _, p := range pending {
		out.QueuedQueries = append(out.QueuedQueries, p.q)
	}
	out.QueuedQueries = append(out.QueuedQueries, b.QueuedQueries...)
	return out, pending
}

// hotWrite returns the batch's set-wise writes, counting one write, or nil
// off the fast path (the caller then writes at once).
func (c *txConn) hotWrite() *hotWrites {
	if c.hot != nil {
		c.writes++
	}
	return c.hot
}

func (c *txConn) hasPending() bool {
	return len(c.pending) > 0 || (c.hot != nil && !c.hot.empty())
}

// flush sends what is queued.
func (c *txConn) flush(ctx context.Context) error {
	if !c.hasPending() {
		return nil
	}
	b, pending := c.withPending(&pgx.Batch{})
	br := &skippingResults{BatchResults: c.Tx.SendBatch(ctx, b), skip: pending}
	return br.Close()
}

// Exec runs a statement. Every write that is not queued goes through Exec
// or CopyFrom, so both drop what was prefetched: it may have changed.
func (c *txConn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.pre = nil
	c.writes++
	if !c.hasPending() {
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
	if !c.hasPending() {
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
	if !c.hasPending() {
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

// skippingResults are the results of a batch that starts with queued
// statements: their answers are read (and their errors returned) before
// the first result the caller asks for.
type skippingResults struct {
	pgx.BatchResults
	skip []pendingQuery
}

func (r *skippingResults) skipPending() error {
	for len(r.skip) > 0 {
		p := r.skip[0]
		r.skip = r.skip[1:]
		var err error
		if p.read != nil {
			err = p.read(r.BatchResults)
		} else {
			_, err = r.BatchResults.Exec()
		}
		if err != nil {
			r.skip = nil
			return err
		}
	}
	return nil
}

func (r *skippingResults) Exec() (pgconn.CommandTag, error) {
	if err := r.skipPending(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return r.BatchResults.Exec()
}

func (r *skippingResults) Query() (pgx.Rows, error) {
	if err := r.skipPending(); err != nil {
		return nil, err
	}
	return r.BatchResults.Query()
}

func (r *skippingResults) QueryRow() pgx.Row {
	if err := r.skipPending(); err != nil {
		return errRow{err}
	}
	return r.BatchResults.QueryRow()
}

func (r *skippingResults) Close() error {
	err := r.skipPending()
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

// connTx is a transaction on one connection whose begin and commit are
// statements of their own, so that they can travel in a pipeline with
// others (the fast path of applyBatch) instead of costing a round trip
// each, as pgx's transactions do.
type connTx struct {
	conn *pgx.Conn
}

func (t connTx) Begin(context.Context) (pgx.Tx, error) {
	return nil, errors.New("no savepoints on the fast path")
}
func (t connTx) Commit(ctx context.Context) error {
	_, err := t.conn.Exec(ctx, "commit")
	return err
}
func (t connTx) Rollback(ctx context.Context) error {
	_, err := t.conn.Exec(ctx, "rollback")
	return err
}
func (t connTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	return t.conn.CopyFrom(ctx, table, columns, src)
}
func (t connTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return t.conn.SendBatch(ctx, b)
}
func (t connTx) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} } // not used
func (t connTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.conn.Prepare(ctx, name, sql)
}
func (t connTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.conn.Exec(ctx, sql, args...)
}
func (t connTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.conn.Query(ctx, sql, args...)
}
func (t connTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.conn.QueryRow(ctx, sql, args...)
}
func (t connTx) Conn() *pgx.Conn { return t.conn }

// hotWrites are the writes of check-outs, check-ins and audit events of a
// batch on the fast path, kept as rows: a request made and ended in the
// same batch is inserted once in its final state, and each table gets a
// few statements of many rows. Their order is safe for the database's
// checks: ends of earlier requests first (an account is free before its
// next holder is inserted), then new requests, then the accounts'
// passwords and the events, which nothing else refers to.
type hotWrites struct {
	requests  []AccessRequest // new in this batch, in order
	requestAt map[string]int  // ID → place in requests
	ends      []requestEnd    // of requests from before this batch
	secrets   []accountSecret
	secretAt  map[string]int
	events    [][]any // insertNewEventSQL's arguments, in chain order
}

type requestEnd struct {
	id, state, by   string
	at              time.Time
	passwordChanged bool
}

type accountSecret struct {
	id, secret string
	at         time.Time
}

func newHotWrites() *hotWrites {
	return &hotWrites{requestAt: map[string]int{}, secretAt: map[string]int{}}
}

func (h *hotWrites) empty() bool {
	return len(h.requests) == 0 && len(h.ends) == 0 && len(h.secrets) == 0 && len(h.events) == 0
}

func (h *hotWrites) reset() {
	h.requests, h.ends, h.secrets, h.events = h.requests[:0], h.ends[:0], h.secrets[:0], h.events[:0]
	clear(h.requestAt)
	clear(h.secretAt)
}

func (h *hotWrites) insertRequest(r AccessRequest) {
	h.requestAt[r.ID] = len(h.requests)
	h.requests = append(h.requests, r)
}

func (h *hotWrites) endRequest(e requestEnd) {
	if i, ok := h.requestAt[e.id]; ok {
		r := &h.requests[i]
		at := e.at
		r.State, r.EndedBy, r.EndedAt, r.PasswordChanged = e.state, e.by, &at, e.passwordChanged
		return
	}
	h.ends = append(h.ends, e)
}

func (h *hotWrites) setSecret(s accountSecret) {
	if i, ok := h.secretAt[s.id]; ok {
		h.secrets[i] = s
		return
	}
	h.secretAt[s.id] = len(h.secrets)
	h.secrets = append(h.secrets, s)
}

func (h *hotWrites) event(args []any) { h.events = append(h.events, args) }

// statements turns the rows into statements of many rows.
func (h *hotWrites) statements() []pendingQuery {
	var out []pendingQuery
	add := func(sql string, args []any) {
		out = append(out, pendingQuery{q: &pgx.QueuedQuery{SQL: sql, Arguments: args}})
	}
	chunked(len(h.ends), func(from, n int) {
		args := make([]any, 0, n*5)
		for _, e := range h.ends[from : from+n] {
			args = append(args, e.id, e.state, e.by, e.at, e.passwordChanged)
		}
		add(`update access_requests r set state = v.state, ended_by = v.ended_by, ended_at = v.ended_at, password_changed = v.password_changed
			from (values `+valuesList(n, "uuid", "text", "text", "timestamptz", "boolean")+`) v (id, state, ended_by, ended_at, password_changed)
			where r.id = v.id`, args)
	})
	chunked(len(h.requests), func(from, n int) {
		args := make([]any, 0, n*19)
		for _, r := range h.requests[from : from+n] {
			args = append(args, r.ID, r.AccountID, r.PolicyID, r.RequesterID, r.Requester, r.Reason, r.State, r.ApprovalRequired, r.Approvers,
				r.DurationMinutes, r.ChangeAfterCheckin, r.RequestedAt, r.DecidedBy, r.DecidedAt, r.AvailableAt, r.ExpiresAt,
				r.EndedAt, r.EndedBy, r.PasswordChanged)
		}
		add(`insert into access_requests (id, account_id, policy_id, requester_id, requester, reason, state, approval_required, approvers,
			duration_minutes, change_after_checkin, requested_at, decided_by, decided_at, available_at, expires_at, ended_at, ended_by, password_changed)
			values `+valuesList(n, make([]string, 19)...), args)
	})
	chunked(len(h.secrets), func(from, n int) {
		args := make([]any, 0, n*3)
		for _, s := range h.secrets[from : from+n] {
			args = append(args, s.id, s.secret, s.at)
		}
		add(`update accounts a set secret = v.secret, password_changed_at = v.at
			from (values `+valuesList(n, "uuid", "text", "timestamptz")+`) v (id, secret, at) where a.id = v.id`, args)
	})
	chunked(len(h.events), func(from, n int) {
		args := make([]any, 0, n*10)
		for _, e := range h.events[from : from+n] {
			args = append(args, e...)
		}
		add(`insert into events (id, raft_index, type, member_id, actor, at, operation_id, details, seq, hash) values `+valuesList(n, make([]string, 10)...), args)
	})
	return out
}

// maxRowsAStatement bounds the rows of one set-wise statement (and so its
// parameters: 19 a row at most, far below PostgreSQL's 65535).
const maxRowsAStatement = 128

// chunked calls do for consecutive chunks of n rows: full chunks of
// maxRowsAStatement, then the rest as powers of two, so that only a few
// statement texts exist (pgx prepares each once per connection).
func chunked(n int, do func(from, size int)) {
	from := 0
	for n-from >= maxRowsAStatement {
		do(from, maxRowsAStatement)
		from += maxRowsAStatement
	}
	for size := maxRowsAStatement / 2; size > 0; size /= 2 {
		if n-from >= size {
			do(from, size)
			from += size
		}
	}
}

// valuesList is "($1::t1, $2::t2), ($3::t1, $4::t2)" for rows rows of
// columns of the given types (an empty type: no cast).
func valuesList(rows int, types ...string) string {
	var b strings.Builder
	p := 1
	for r := 0; r < rows; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for i, t := range types {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(p))
			if t != "" {
				b.WriteString("::")
				b.WriteString(t)
			}
			p++
		}
		b.WriteByte(')')
	}
	return b.String()
}
