package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Offline Workflow Mode keeps three appliance-local tables
// (migrations/005_offline.sql): whether the appliance is isolated, the
// access requests as the cluster left them, and the spool of audit events
// recorded while isolated. Offline changes touch only access_requests and
// events (a request, its decision, release and check-in, and their events),
// which is why putting access_requests back and dropping the events with
// raft_index 0 returns the replicated tables to the state raft applied.

// SaveOfflineBase records that this appliance is isolated since a time and
// keeps a copy of the access requests, unless it is isolated already (a
// restart, or Enable Offline Workflow retried): then the first copy stays.
// Raft must not be applying while it runs.
func (s *Store) SaveOfflineBase(ctx context.Context, since time.Time) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("save offline base: %w", err)
	}
	defer tx.Rollback(ctx)
	tag, err := tx.Exec(ctx, `insert into offline_isolation (since) values ($1) on conflict do nothing`, since)
	if err != nil {
		return fmt.Errorf("save offline base: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `delete from offline_base_requests`); err != nil {
		return fmt.Errorf("save offline base: %w", err)
	}
	if _, err := tx.Exec(ctx, `insert into offline_base_requests select * from access_requests`); err != nil {
		return fmt.Errorf("save offline base: %w", err)
	}
	return tx.Commit(ctx)
}

// RestoreOfflineBase puts back the access requests kept by SaveOfflineBase
// and removes the events recorded offline (they wait in the spool), in one
// transaction. It does nothing when there is nothing to put back, so it
// may run again after a crash. Raft must not be applying while it runs.
func (s *Store) RestoreOfflineBase(ctx context.Context) (bool, error) {
	defer s.forgetChainHead() // it writes events apart from the fast path
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("restore offline base: %w", err)
	}
	defer tx.Rollback(ctx)
	tag, err := tx.Exec(ctx, `delete from offline_isolation`)
	if err != nil {
		return false, fmt.Errorf("restore offline base: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	for _, q := range []string{
		`delete from access_requests`,
		`insert into access_requests select * from offline_base_requests`,
		`delete from offline_base_requests`,
		`delete from events where raft_index = 0`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return false, fmt.Errorf("restore offline base: %w", err)
		}
	}
	return true, tx.Commit(ctx)
}

// ApplyOffline runs fn, the effect of one command applied on this appliance
// alone (raft index 0, applied index untouched), and copies the events it
// recorded (id cmdID, or cmdID-N) into the offline spool, in one
// transaction. A *Rejection from fn is returned and nothing is written.
func (s *Store) ApplyOffline(ctx context.Context, cmdID string, fn func(*Tx) error) error {
	defer s.forgetChainHead() // it writes events apart from the fast path
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("apply offline: %w", err)
	}
	defer tx.Rollback(ctx)
	// Offline commands come from many requests at once, and each event
	// takes the next place in the audit chain: one at a time, as raft's
	// applier does it online.
	if _, err := tx.Exec(ctx, `select applied_index from fsm_state for update`); err != nil {
		return fmt.Errorf("apply offline: %w", err)
	}
	conn := &txConn{Tx: tx}
	if ferr := fn(&Tx{tx: conn}); ferr != nil {
		var rej *Rejection
		if errors.As(ferr, &rej) {
			return rej
		}
		if deterministic(ferr) {
			return Reject("", "the database refused the change: %v", ferr)
		}
		return fmt.Errorf("apply offline: %w", ferr)
	}
	_, err = tx.Exec(ctx, `insert into offline_events (id, type, member_id, actor, at, operation_id, details)
		select id, type, member_id, actor, at, operation_id, details from events
		where raft_index = 0 and (id = $1 or id like $1 || '-%') order by id
		on conflict (id) do nothing`, cmdID)
	if err != nil {
		return fmt.Errorf("apply offline: spool events: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	if conn.keysChanged {
		s.keysChanged()
	}
	return nil
}

// OfflineSince tells whether this appliance keeps an offline base, and
// since when it is isolated.
func (s *Store) OfflineSince(ctx context.Context) (time.Time, bool, error) {
	var since time.Time
	err := s.pool.QueryRow(ctx, `select since from offline_isolation`).Scan(&since)
	if errors.Is(err, pgx.ErrNoRows) {
		return since, false, nil
	}
	if err != nil {
		return since, false, fmt.Errorf("offline since: %w", err)
	}
	return since, true, nil
}

// OfflineInFlight lists the access requests made while isolated that are
// still waiting for approval or checked out.
func (s *Store) OfflineInFlight(ctx context.Context) ([]AccessRequest, error) {
	rows, err := s.pool.Query(ctx, requestSelect+` where r.state in ('Pending', 'Available')
		and not exists (select 1 from offline_base_requests b where b.id = r.id) order by r.requested_at`)
	if err != nil {
		return nil, fmt.Errorf("offline requests in flight: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AccessRequest, error) { return scanRequest(r) })
}

// SpoolEvent adds an event to the offline spool only (it is not shown in
// this appliance's audit log until the merge): the record that an offline
// request was dropped at Resume Online. A second call with the same id does
// nothing.
func (s *Store) SpoolEvent(ctx context.Context, e Event) error {
	details, err := json.Marshal(e.Details)
	if err != nil || e.Details == nil {
		details = []byte("{}")
	}
	_, err = s.pool.Exec(ctx, `insert into offline_events (id, type, member_id, actor, at, operation_id, details)
		values ($1, $2, $3, $4, $5, $6, $7) on conflict (id) do nothing`, e.ID, e.Type, e.MemberID, e.Actor, e.At, e.OperationID, details)
	if err != nil {
		return fmt.Errorf("spool event %s: %w", e.Type, err)
	}
	return nil
}

// UnmergedOfflineEvents lists the spooled events the cluster does not have
// yet, in the order they were recorded.
func (s *Store) UnmergedOfflineEvents(ctx context.Context) ([]Event, error) {
	rows, err := s.pool.Query(ctx, `select id, type, member_id, actor, at, operation_id, details from offline_events
		where merged_at is null order by seq`)
	if err != nil {
		return nil, fmt.Errorf("offline events: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		var details []byte
		if err := r.Scan(&e.ID, &e.Type, &e.MemberID, &e.Actor, &e.At, &e.OperationID, &details); err != nil {
			return e, err
		}
		return e, json.Unmarshal(details, &e.Details)
	})
}

// MarkOfflineEventMerged records that the cluster's audit log has a
// spooled event.
func (s *Store) MarkOfflineEventMerged(ctx context.Context, id string, at time.Time) error {
	if _, err := s.pool.Exec(ctx, `update offline_events set merged_at = $2 where id = $1`, id, at); err != nil {
		return fmt.Errorf("mark offline event %s merged: %w", id, err)
	}
	return nil
}
