package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Event is one entry of the audit log and the Activity Center.
type Event struct {
	ID          string
	RaftIndex   uint64
	Type        string
	MemberID    string
	Actor       string
	At          time.Time
	OperationID string
	Details     map[string]string
}

// EventFilter narrows a list of events; zero fields do not filter.
type EventFilter struct {
	Type     string
	MemberID string
	Actor    string
	Since    time.Time
	Until    time.Time
	Limit    int
}

// InsertEvent appends an event to the audit log.
func (t *Tx) InsertEvent(ctx context.Context, e Event) error {
	// The event's place in the audit chain (auditchain.go).
	seq, prev, err := t.nextChainLink(ctx)
	if err != nil {
		return err
	}
	args, hash, err := t.eventArgs(e, seq, prev)
	if err != nil {
		return err
	}
	if err := t.queueEvent(ctx, args, seq, hash); err != nil {
		return fmt.Errorf("insert event %s: %w", e.Type, err)
	}
	return nil
}

// queueEvent inserts an event at place seq of the audit chain. On the fast
// path (txConn) the insert is queued and the chain's last link kept: an
// event whose ID exists already is then an error rather than skipped, as
// the kept link would be wrong, and the exact path handles it.
func (t *Tx) queueEvent(ctx context.Context, args []any, seq int64, hash string) error {
	if !t.tx.fast {
		_, err := t.tx.Exec(ctx, insertEventSQL, args...)
		return err
	}
	t.tx.chain = &chainLink{seq: seq, hash: hash}
	t.tx.hotWrite().event(args)
	return nil
}

const insertEventSQL = `insert into events (id, raft_index, type, member_id, actor, at, operation_id, details, seq, hash) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		on conflict (id) do nothing`

// eventArgs are the arguments of insertEventSQL (and of the rows of the
// fast path's set-wise insert, hotWrites) for e at place seq of the
// audit chain after the hash prev; hash is e's own.
func (t *Tx) eventArgs(e Event, seq int64, prev string) (args []any, hash string, err error) {
	details, err := json.Marshal(e.Details)
	if err != nil {
		return nil, "", fmt.Errorf("event details: %w", err)
	}
	if e.Details == nil {
		details = []byte("{}")
	}
	e.At, e.RaftIndex = eventTime(e.At), t.Index
	hash = eventHash(prev, seq, e, details)
	return []any{e.ID, t.Index, e.Type, e.MemberID, e.Actor, e.At, e.OperationID, details, seq, hash}, hash, nil
}

// Events lists events newest first.
func (s *Store) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	var where []string
	args := pgx.NamedArgs{}
	if f.Type != "" {
		where = append(where, "type = @type")
		args["type"] = f.Type
	}
	if f.MemberID != "" {
		where = append(where, "member_id = @member")
		args["member"] = f.MemberID
	}
	if f.Actor != "" {
		where = append(where, "lower(actor) = lower(@actor)")
		args["actor"] = f.Actor
	}
	if !f.Since.IsZero() {
		where = append(where, "at >= @since")
		args["since"] = f.Since
	}
	if !f.Until.IsZero() {
		where = append(where, "at < @until")
		args["until"] = f.Until
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 200
	}
	args["limit"] = limit
	q := `select id, raft_index, type, member_id, actor, at, operation_id, details from events`
	if len(where) > 0 {
		q += " where " + strings.Join(where, " and ")
	}
	// seq last: the events of one raft entry share its time and index, and
	// every member must list them in the same order.
	q += " order by at desc, raft_index desc, seq desc limit @limit"
	rows, err := s.pool.Query(ctx, q, args)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		var details []byte
		if err := r.Scan(&e.ID, &e.RaftIndex, &e.Type, &e.MemberID, &e.Actor, &e.At, &e.OperationID, &details); err != nil {
			return e, err
		}
		return e, json.Unmarshal(details, &e.Details)
	})
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return evs, nil
}

// EventTypes lists the event types that occur in the log.
func (s *Store) EventTypes(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `select distinct type from events order by type`)
	if err != nil {
		return nil, fmt.Errorf("event types: %w", err)
	}
	types, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("event types: %w", err)
	}
	return types, nil
}
