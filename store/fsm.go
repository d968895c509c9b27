package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Tx is the transaction in which the FSM applies one raft command. Its
// methods are the only writes to replicated tables.
type Tx struct {
	tx    *txConn
	Index uint64
}

// Rejection is a command refused while it is applied, for a reason every
// member hits alike (a user name taken, a lock held). It is an outcome
// recorded with the command, not a failure of the appliance.
type Rejection struct {
	Field   string
	Message string
}

func (r *Rejection) Error() string { return r.Message }

// Reject builds a Rejection.
func Reject(field, format string, args ...any) *Rejection {
	return &Rejection{Field: field, Message: fmt.Sprintf(format, args...)}
}

// AppliedIndex is the raft index of the last command applied to this database.
func (s *Store) AppliedIndex(ctx context.Context) (index, term uint64, err error) {
	err = s.pool.QueryRow(ctx, `select applied_index, applied_term from fsm_state`).Scan(&index, &term)
	if err != nil {
		return 0, 0, fmt.Errorf("applied index: %w", err)
	}
	return index, term, nil
}

// Apply runs fn for the raft entry at index in one transaction that also
// records index as applied. An index at or below the recorded one was applied
// before (a replay after a restart) and is skipped. A *Rejection from fn
// undoes fn's writes but still records the index, and is returned as outcome.
func (s *Store) Apply(ctx context.Context, index, term uint64, fn func(*Tx) error) (outcome error, skipped bool, err error) {
	res, err := s.ApplyBatch(ctx, []Entry{{Index: index, Term: term, Fn: fn}})
	if err != nil {
		return nil, false, err
	}
	return res[0].Outcome, res[0].Skipped, nil
}

// Entry is one raft entry to apply: Fn writes its effect.
type Entry struct {
	Index, Term uint64
	Fn          func(*Tx) error
}

// EntryResult is what became of an entry: skipped (applied before), or
// applied with Outcome nil or a *Rejection.
type EntryResult struct {
	Outcome error
	Skipped bool
}

// ApplyBatch applies consecutive raft entries in one transaction, which
// also records the last index as applied: one commit for the batch is what
// makes a high write rate possible (a commit per entry bounds a member to
// about a thousand entries a second). A *Rejection (or a data error every
// member hits alike) undoes that entry only. Any other error undoes the
// whole batch and is returned: nothing of it is applied, and the caller
// retries it.
//
// The batch runs first down a fast path: no savepoint per entry, reads
// prefetched, statements pipelined and hot writes set-wise (txConn). An
// entry refused before it wrote anything needs no undoing; if an entry
// fails otherwise, that attempt is rolled back and the batch runs again
// down the exact path, with a savepoint per entry.
func (s *Store) ApplyBatch(ctx context.Context, entries []Entry) ([]EntryResult, error) {
	return s.ApplyBatchPrepared(ctx, entries, nil)
}

// ApplyFallbacks counts the batches that ran again down the exact path
// (a savepoint per entry) because an entry failed on the fast path.
func (s *Store) ApplyFallbacks() int64 { return s.applyFallbacks.Load() }

// PrefetchMisses counts the reads of check-outs and check-ins on the fast
// path that the batch's prefetch could not answer, so that they went to
// the database (tests check that the prefetch stays current).
func (s *Store) PrefetchMisses() int64 { return s.prefetchMisses.Load() }

// ApplyBatchPrepared is ApplyBatch with prepare run first on the fast path,
// to read for the whole batch at once what its entries need
// (Tx.PrefetchCheckouts).
func (s *Store) ApplyBatchPrepared(ctx context.Context, entries []Entry, prepare func(*Tx) error) ([]EntryResult, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	results, failed, err := s.applyBatch(ctx, entries, prepare, false)
	if err != nil || !failed {
		return results, err
	}
	s.applyFallbacks.Add(1)
	results, _, err = s.applyBatch(ctx, entries, nil, true)
	return results, err
}

// asyncCommitSQL lets the FSM's transactions commit without waiting for
// PostgreSQL's log to reach the disk. They need not: a committed raft
// entry is on the disk of a majority of members already (the raft log),
// and a member whose database lost its last commits in a crash applies
// them again from its raft log, as the applied index lost them too. Only
// what a raft snapshot covers is not replayed, so the FSM makes the
// database durable before a snapshot and at the end of a raft life
// (FlushWAL). This takes a disk flush off every batch on every member.
const asyncCommitSQL = `set local synchronous_commit = off`

// prefetchPlansSQL makes the batch's reads (prepare, Tx.PrefetchCheckouts)
// run on plans made once per connection. PostgreSQL otherwise plans them
// anew at every execution, as their generic plan is costed for arrays of
// unknown size, and planning the account and request reads (three tables,
// a lateral lookup, access_requests' partial indexes) took 140-280 µs
// each, more than running them (40-70 µs), on every member for every
// batch. Their plans are key lookups at every size: a table's statistics
// change (ANALYZE) makes them again. defaultPlansSQL goes back to
// PostgreSQL's choice for the writes, which are cheap to plan.
const (
	prefetchPlansSQL = `select set_config('plan_cache_mode', 'force_generic_plan', true)`
	defaultPlansSQL  = `select set_config('plan_cache_mode', 'auto', true)`
)

// FlushWAL returns once everything committed before it is on disk: a
// transaction that writes and commits synchronously waits for PostgreSQL's
// log up to its commit record, which follows every earlier commit. (One
// that writes nothing does not wait, whatever synchronous_commit says.)
func (s *Store) FlushWAL(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `update fsm_state set applied_index = applied_index`); err != nil {
		return fmt.Errorf("flush the database log: %w", err)
	}
	return nil
}

// applyBatch runs one attempt of ApplyBatch: down the fast path, or with
// savepoints down the exact path.
func (s *Store) applyBatch(ctx context.Context, entries []Entry, prepare func(*Tx) error, savepoints bool) (_ []EntryResult, failed bool, _ error) {
	if savepoints {
		results, err := s.applyExact(ctx, entries)
		return results, false, err
	}
	return s.applyFast(ctx, entries, prepare)
}

// applyFast applies the batch with no savepoint per entry, its statements
// pipelined and its hot writes set-wise (txConn), in as few as two round
// trips: begin, lock, reads; then writes and commit. The first entry that
// fails (rather than refusing before it wrote anything) ends the attempt,
// and so does any database error: failed, nothing was applied.
func (s *Store) applyFast(ctx context.Context, entries []Entry, prepare func(*Tx) error) (_ []EntryResult, failed bool, _ error) {
	results := make([]EntryResult, len(entries))
	first, last := entries[0], entries[len(entries)-1]
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("apply %d-%d: %w", first.Index, last.Index, err)
	}
	defer func() {
		// A transaction left open or aborted must not go back to the pool.
		if pc.Conn().PgConn().TxStatus() != 'I' {
			if _, err := pc.Conn().Exec(context.Background(), "rollback"); err != nil {
				pc.Conn().Close(context.Background())
			}
		}
		pc.Release()
	}()
	conn := &txConn{Tx: connTx{conn: pc.Conn()}, fast: true, hot: newHotWrites(), store: s}
	var applied uint64
	conn.queueRead("begin", nil)
	conn.queueRead(asyncCommitSQL, nil)
	conn.queueRead(`select applied_index from fsm_state for update`, func(br pgx.BatchResults) error {
		return br.QueryRow().Scan(&applied)
	})
	if known := s.takeChainHead(); known != nil {
		conn.chain = known
	} else {
		conn.queueRead(lastChainLinkSQL, func(br pgx.BatchResults) error {
			var l chainLink
			err := br.QueryRow().Scan(&l.seq, &l.hash)
			if errors.Is(err, pgx.ErrNoRows) {
				l, err = chainLink{}, nil
			}
			conn.chain = &l
			return err
		})
	}
	if prepare != nil {
		conn.queueRead(prefetchPlansSQL, nil)
		if err := prepare(&Tx{tx: conn, Index: first.Index}); err != nil {
			return nil, true, nil
		}
		conn.queueRead(defaultPlansSQL, nil)
	}
	if err := conn.flush(ctx); err != nil {
		return nil, true, nil
	}
	var lastApplied *Entry
	for i := range entries {
		e := &entries[i]
		if e.Index <= applied {
			results[i].Skipped = true
			continue
		}
		lastApplied = e
		writes := conn.writes
		err := e.Fn(&Tx{tx: conn, Index: e.Index})
		var rej *Rejection
		switch {
		case err == nil:
		case errors.As(err, &rej) && conn.writes == writes:
			// Refused before it wrote anything: nothing to undo.
			results[i].Outcome = rej
		default:
			return nil, true, nil
		}
	}
	if lastApplied == nil {
		return results, false, nil // all applied before
	}
	// A queued write that fails (or a statement that failed inside a
	// refused entry) shows here: the batch then runs again down the exact
	// path, which reports a real failure as one.
	conn.queueRead(`update fsm_state set applied_index = $1, applied_term = $2`, nil, lastApplied.Index, lastApplied.Term)
	conn.queueRead("commit", nil)
	if err := conn.flush(ctx); err != nil {
		return nil, true, nil
	}
	if conn.chain != nil {
		s.keepChainHead(*conn.chain)
	}
	if conn.keysChanged {
		s.keysChanged()
	}
	return results, false, nil
}

// applyExact applies the batch in a pgx transaction with a savepoint per
// entry: a refused entry is undone alone, whatever it wrote.
func (s *Store) applyExact(ctx context.Context, entries []Entry) ([]EntryResult, error) {
	defer s.forgetChainHead() // it writes events apart from the fast path
	results := make([]EntryResult, len(entries))
	first, last := entries[0], entries[len(entries)-1]
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply %d-%d: %w", first.Index, last.Index, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, asyncCommitSQL); err != nil {
		return nil, fmt.Errorf("apply %d-%d: %w", first.Index, last.Index, err)
	}
	var applied uint64
	if err := tx.QueryRow(ctx, `select applied_index from fsm_state for update`).Scan(&applied); err != nil {
		return nil, fmt.Errorf("apply %d-%d: %w", first.Index, last.Index, err)
	}
	conn := &txConn{Tx: tx}
	var lastApplied *Entry
	for i := range entries {
		e := &entries[i]
		if e.Index <= applied {
			results[i].Skipped = true
			continue
		}
		lastApplied = e
		if _, err := tx.Exec(ctx, `savepoint command`); err != nil {
			return nil, fmt.Errorf("apply %d: %w", e.Index, err)
		}
		ferr := e.Fn(&Tx{tx: conn, Index: e.Index})
		if ferr == nil {
			if _, err := tx.Exec(ctx, `release savepoint command`); err != nil {
				return nil, fmt.Errorf("apply %d: %w", e.Index, err)
			}
			continue
		}
		var rej *Rejection
		if !errors.As(ferr, &rej) {
			if !deterministic(ferr) {
				return nil, fmt.Errorf("apply %d: %w", e.Index, ferr)
			}
			// Every member's PostgreSQL refuses this data alike: retrying
			// would stall the cluster, so it becomes the command's outcome.
			rej = Reject("", "the database refused the change: %v", ferr)
		}
		results[i].Outcome = rej
		if _, err := tx.Exec(ctx, `rollback to savepoint command`); err != nil {
			return nil, fmt.Errorf("apply %d: %w", e.Index, err)
		}
	}
	if lastApplied == nil {
		return results, nil // all applied before
	}
	if _, err := tx.Exec(ctx, `update fsm_state set applied_index = $1, applied_term = $2`, lastApplied.Index, lastApplied.Term); err != nil {
		return nil, fmt.Errorf("apply %d-%d: %w", first.Index, last.Index, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("apply %d-%d: commit: %w", first.Index, last.Index, err)
	}
	if conn.keysChanged {
		s.keysChanged()
	}
	return results, nil
}

// deterministic tells whether a database error depends on the data only
// (a bad value, a violated constraint), not on this server's condition.
func deterministic(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23": // data exception, integrity constraint violation
		return true
	}
	return false
}

// replicatedTables are copied in a raft snapshot, parents before children.
// Appliance-local tables (session_activity, login_failures, oidc_logins)
// never are.
var replicatedTables = []string{
	"cluster", "cluster_keys", "settings", "members", "users", "api_tokens",
	"operations", "cluster_lock", "events", "sessions",
	// The access-request workflow (migrations/003_workflow.sql).
	"assets", "accounts", "policies", "policy_accounts", "access_requests", "import_rows",
}

// ReplicatedTables lists the tables a snapshot carries.
func ReplicatedTables() []string { return append([]string(nil), replicatedTables...) }

const snapshotMagic = "CONCLAVE-SNAPSHOT-1\n"

type snapshotHeader struct {
	AppliedIndex uint64           `json:"appliedIndex"`
	AppliedTerm  uint64           `json:"appliedTerm"`
	Tables       []string         `json:"tables"`
	Rows         map[string]int64 `json:"rows,omitempty"`
}

// Snapshot is a consistent view of the replicated tables at one applied index.
type Snapshot struct {
	tx    pgx.Tx
	Index uint64
	Term  uint64
}

// BeginSnapshot opens a REPEATABLE READ transaction: everything read through
// it is the state at its applied index, while the FSM goes on applying.
func (s *Store) BeginSnapshot(ctx context.Context) (*Snapshot, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	snap := &Snapshot{tx: tx}
	if err := tx.QueryRow(ctx, `select applied_index, applied_term from fsm_state`).Scan(&snap.Index, &snap.Term); err != nil {
		tx.Rollback(ctx)
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return snap, nil
}

// WriteTo streams every replicated table with COPY (binary format), each
// table framed in length-prefixed chunks.
func (snap *Snapshot) WriteTo(ctx context.Context, w io.Writer) error {
	return snap.WriteToProgress(ctx, w, nil)
}

// WriteToProgress is WriteTo, calling tableDone after each table.
func (snap *Snapshot) WriteToProgress(ctx context.Context, w io.Writer, tableDone func(table string)) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return err
	}
	rows, err := snap.RowCounts(ctx)
	if err != nil {
		return err
	}
	hdr, _ := json.Marshal(snapshotHeader{AppliedIndex: snap.Index, AppliedTerm: snap.Term, Tables: replicatedTables, Rows: rows})
	if err := writeFrame(bw, hdr); err != nil {
		return err
	}
	for _, table := range replicatedTables {
		fw := &frameWriter{w: bw}
		if _, err := snap.tx.Conn().PgConn().CopyTo(ctx, fw, "copy "+table+" to stdout (format binary)"); err != nil {
			return fmt.Errorf("snapshot %s: %w", table, err)
		}
		if err := fw.Flush(); err != nil {
			return err
		}
		if err := writeFrame(bw, nil); err != nil {
			return err
		}
		if tableDone != nil {
			if err := bw.Flush(); err != nil {
				return err
			}
			tableDone(table)
		}
	}
	return bw.Flush()
}

// RowCounts counts the rows of each replicated table in the snapshot.
func (snap *Snapshot) RowCounts(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range replicatedTables {
		var n int64
		if err := snap.tx.QueryRow(ctx, "select count(*) from "+t).Scan(&n); err != nil {
			return nil, fmt.Errorf("count %s: %w", t, err)
		}
		out[t] = n
	}
	return out, nil
}

// Checksums fingerprints each replicated table in the snapshot: its row
// count and the sum of the first 64 bits of each row's MD5. A sum needs no
// sort and no string of the whole table (which PostgreSQL limits to 1 GB,
// some four million rows), and rows are a set, so their order does not
// matter. Two members with the same applied index must have the same
// checksums.
func (snap *Snapshot) Checksums(ctx context.Context) (map[string]TableChecksum, error) {
	return checksums(ctx, snap.tx)
}

// RecordHashChecksums are Checksums with PostgreSQL's own hash of each row
// (hash_record_extended) instead of an MD5 of its text: six times faster,
// as no row is turned into text, but the hashes are PostgreSQL's, so they
// compare only between servers of one major version (PostgresMajor). The
// enrollment's consistency check uses them; backups, which may be restored
// elsewhere, keep Checksums.
func (snap *Snapshot) RecordHashChecksums(ctx context.Context) (map[string]TableChecksum, error) {
	return tableChecksums(ctx, snap.tx, "coalesce(sum(hash_record_extended(r, 0)), 0)::text")
}

// PostgresMajor is the major version of the snapshot's server (15 for
// 15.8).
func (snap *Snapshot) PostgresMajor(ctx context.Context) (int, error) {
	var v int
	if err := snap.tx.QueryRow(ctx, `select current_setting('server_version_num')::int / 10000`).Scan(&v); err != nil {
		return 0, fmt.Errorf("postgres version: %w", err)
	}
	return v, nil
}

func checksums(ctx context.Context, tx pgx.Tx) (map[string]TableChecksum, error) {
	return tableChecksums(ctx, tx, "coalesce(sum(('x' || left(md5(r::text), 16))::bit(64)::bigint), 0)::text")
}

// tableChecksums counts and sums, with the expression sum over each row r,
// every replicated table.
func tableChecksums(ctx context.Context, tx pgx.Tx, sum string) (map[string]TableChecksum, error) {
	out := map[string]TableChecksum{}
	for _, t := range replicatedTables {
		var c TableChecksum
		q := "select count(*), " + sum + " from " + t + " r"
		if err := tx.QueryRow(ctx, q).Scan(&c.Rows, &c.MD5); err != nil {
			return nil, fmt.Errorf("checksum %s: %w", t, err)
		}
		out[t] = c
	}
	return out, nil
}

// TableChecksum is a table's row count and content hash (MD5 holds the
// sum of its rows' MD5 prefixes; the name stays for the node API).
type TableChecksum struct {
	Rows int64  `json:"rows"`
	MD5  string `json:"md5"`
}

// Close ends the snapshot's transaction.
func (snap *Snapshot) Close(ctx context.Context) { snap.tx.Rollback(ctx) }

// TruncateReplicated empties every replicated table and the applied index,
// in one transaction: the member will be filled again from a primary.
func (s *Store) TruncateReplicated(ctx context.Context) error {
	defer s.forgetChainHead() // it writes events apart from the fast path
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "truncate "+strings.Join(replicatedTables, ", ")); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	if _, err := tx.Exec(ctx, `update fsm_state set applied_index = 0, applied_term = 0`); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	s.keysChanged()
	return nil
}

// RestoreSnapshot replaces every replicated table with the snapshot's rows
// and sets the applied index, in one transaction: a failure leaves the
// database as it was.
func (s *Store) RestoreSnapshot(ctx context.Context, r io.Reader) (index uint64, err error) {
	defer s.forgetChainHead() // it writes events apart from the fast path
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("restore: %w", err)
	}
	defer tx.Rollback(ctx)
	hdr, err := copyIn(ctx, tx, r)
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `update fsm_state set applied_index = $1, applied_term = $2`, hdr.AppliedIndex, hdr.AppliedTerm); err != nil {
		return 0, fmt.Errorf("restore: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("restore: commit: %w", err)
	}
	s.keysChanged()
	return hdr.AppliedIndex, nil
}

// dropIndexesAndConstraints drops, in tx, every index and key of the
// tables (primary keys, unique constraints and indexes, foreign keys from
// or to them), and returns the statements that make them again, in the
// order to run them: keys and indexes first, foreign keys last.
//
// Building an index once from all the rows (a sort) is several times
// faster than keeping it up to date row by row, most of all for random
// UUID keys, whose index does not fit in shared buffers; and a foreign key
// checked row by row during COPY costs a lookup per row, where adding it
// afterwards checks the whole table in one join.
func dropIndexesAndConstraints(ctx context.Context, tx pgx.Tx, tables []string) ([]string, error) {
	type constraint struct{ table, name, def string }
	var fkeys, keys []constraint
	rows, err := tx.Query(ctx, `select c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype::text
		from pg_constraint c
		where c.contype in ('p', 'u', 'f')
		  and (c.conrelid in (select oid from pg_class where relname = any($1) and relnamespace = current_schema()::regnamespace)
		       or c.confrelid in (select oid from pg_class where relname = any($1) and relnamespace = current_schema()::regnamespace))
		order by c.conrelid::regclass::text, c.conname`, tables)
	if err != nil {
		return nil, fmt.Errorf("list constraints: %w", err)
	}
	for rows.Next() {
		var c constraint
		var kind string
		if err := rows.Scan(&c.table, &c.name, &c.def, &kind); err != nil {
			return nil, fmt.Errorf("list constraints: %w", err)
		}
		if kind == "f" {
			fkeys = append(fkeys, c)
		} else {
			keys = append(keys, c)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list constraints: %w", err)
	}
	// Indexes that back no constraint (the others go with theirs).
	rows, err = tx.Query(ctx, `select i.relname, pg_get_indexdef(x.indexrelid)
		from pg_index x
		join pg_class i on i.oid = x.indexrelid
		join pg_class t on t.oid = x.indrelid
		where t.relnamespace = current_schema()::regnamespace and t.relname = any($1)
		  and not exists (select 1 from pg_constraint c where c.conindid = x.indexrelid)
		order by i.relname`, tables)
	if err != nil {
		return nil, fmt.Errorf("list indexes: %w", err)
	}
	var names, create []string
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			return nil, fmt.Errorf("list indexes: %w", err)
		}
		names, create = append(names, name), append(create, def)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list indexes: %w", err)
	}
	var drop []string
	for _, c := range fkeys {
		drop = append(drop, "alter table "+c.table+" drop constraint "+pgx.Identifier{c.name}.Sanitize())
	}
	for _, c := range keys {
		drop = append(drop, "alter table "+c.table+" drop constraint "+pgx.Identifier{c.name}.Sanitize())
		create = append(create, "alter table "+c.table+" add constraint "+pgx.Identifier{c.name}.Sanitize()+" "+c.def)
	}
	for _, name := range names {
		drop = append(drop, "drop index "+pgx.Identifier{name}.Sanitize())
	}
	for _, c := range fkeys {
		create = append(create, "alter table "+c.table+" add constraint "+pgx.Identifier{c.name}.Sanitize()+" "+c.def)
	}
	for _, q := range drop {
		if _, err := tx.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	return create, nil
}

// copyIn replaces every replicated table with a snapshot's rows inside tx.
func copyIn(ctx context.Context, tx pgx.Tx, r io.Reader) (snapshotHeader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var hdr snapshotHeader
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return hdr, errors.New("restore: not a conclave snapshot")
	}
	raw, err := readFrame(br)
	if err != nil {
		return hdr, fmt.Errorf("restore: header: %w", err)
	}
	if err := json.Unmarshal(raw, &hdr); err != nil {
		return hdr, fmt.Errorf("restore: header: %w", err)
	}
	known := map[string]bool{}
	for _, t := range replicatedTables {
		known[t] = true
	}
	for _, t := range hdr.Tables {
		if !known[t] {
			return hdr, fmt.Errorf("restore: the snapshot has table %q, which this build does not know", t)
		}
	}
	if _, err := tx.Exec(ctx, "truncate "+strings.Join(replicatedTables, ", ")); err != nil {
		return hdr, fmt.Errorf("restore: truncate: %w", err)
	}
	// Index builds sort in memory up to maintenance_work_mem (64 MB by
	// default): a million keys fit in 256 MB, and the memory is PostgreSQL's,
	// for this transaction only.
	if _, err := tx.Exec(ctx, "set local maintenance_work_mem = '256MB'"); err != nil {
		return hdr, fmt.Errorf("restore: %w", err)
	}
	// Indexes and keys are built once at the end rather than kept up to
	// date row by row (dropIndexesAndConstraints).
	indexes, err := dropIndexesAndConstraints(ctx, tx, replicatedTables)
	if err != nil {
		return hdr, fmt.Errorf("restore: %w", err)
	}
	for _, table := range hdr.Tables {
		fr := &frameReader{r: br}
		if _, err := tx.Conn().PgConn().CopyFrom(ctx, fr, "copy "+table+" from stdin (format binary)"); err != nil {
			return hdr, fmt.Errorf("restore %s: %w", table, err)
		}
		if !fr.done {
			return hdr, fmt.Errorf("restore %s: table data not terminated", table)
		}
	}
	for _, def := range indexes {
		if _, err := tx.Exec(ctx, def); err != nil {
			return hdr, fmt.Errorf("restore: rebuild index: %w", err)
		}
	}
	if err := analyzeFilled(ctx, tx, replicatedTables); err != nil {
		return hdr, fmt.Errorf("restore: %w", err)
	}
	return hdr, nil
}

// analyzeFilled gives the planner statistics for the tables that hold 10
// pages or more now, not when autovacuum comes round: a replica just filled
// with a million rows otherwise plans its queries for empty tables. A
// smaller table is left unanalysed, as a new one is, and the planner then
// assumes 10 pages. Statistics of an (almost) empty table are worse than
// none: plans cached for it (pgx prepares every statement) seq-scan it, and
// keep doing so while it grows, until autovacuum analyses it again. On a
// replica enrolled before its first access request, every check-out's
// holder lookup scanned the whole of access_requests for a minute or more.
func analyzeFilled(ctx context.Context, tx pgx.Tx, tables []string) error {
	rows, err := tx.Query(ctx, `select t from unnest($1::text[]) t
		where pg_relation_size(t::regclass) >= 10 * current_setting('block_size')::bigint`, tables)
	if err != nil {
		return fmt.Errorf("table sizes: %w", err)
	}
	filled, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("table sizes: %w", err)
	}
	if len(filled) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, "analyze "+strings.Join(filled, ", ")); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

const maxFrame = 16 << 20

func writeFrame(w io.Writer, p []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(p)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

func readFrame(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes is larger than %d", size, maxFrame)
	}
	p := make([]byte, size)
	_, err := io.ReadFull(r, p)
	return p, err
}

// frameWriter frames what COPY writes (one call per row) in chunks of
// about frameChunk bytes: a few large frames rather than one per row, so
// that the reader hands PostgreSQL large CopyData messages. Flush writes
// what is left.
type frameWriter struct {
	w   io.Writer
	buf []byte
}

const frameChunk = 256 << 10

func (f *frameWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := frameChunk - len(f.buf)
		take := min(room, len(p))
		f.buf = append(f.buf, p[:take]...)
		p = p[take:]
		if len(f.buf) >= frameChunk {
			if err := f.Flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// Flush writes the pending bytes as one frame.
func (f *frameWriter) Flush() error {
	if len(f.buf) == 0 {
		return nil
	}
	err := writeFrame(f.w, f.buf)
	f.buf = f.buf[:0]
	return err
}

// frameReader yields one table's frames and stops at its empty frame.
type frameReader struct {
	r    io.Reader
	buf  []byte
	done bool
}

// Read fills p with as many frames as fit: pgx's CopyFrom sends each Read
// as one CopyData message, and one message per row made a restore several
// times slower than the same COPY between two databases.
func (f *frameReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(f.buf) == 0 {
			if f.done {
				break
			}
			frame, err := readFrame(f.r)
			if err != nil {
				return n, fmt.Errorf("snapshot truncated: %w", err)
			}
			if len(frame) == 0 {
				f.done = true
				break
			}
			f.buf = frame
		}
		m := copy(p[n:], f.buf)
		f.buf = f.buf[m:]
		n += m
	}
	if n == 0 && f.done {
		return 0, io.EOF
	}
	return n, nil
}
