package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// ClusterInfo is the identity of the cluster this appliance belongs to.
type ClusterInfo struct {
	ID        string
	CreatedAt time.Time
}

// Member is one appliance of the cluster.
type Member struct {
	ID            string
	Name          string
	Address       string
	Version       string
	IsVoter       bool
	EnrolledSince time.Time
}

// Lock is the cluster lock: at most one maintenance operation at a time.
type Lock struct {
	OperationID string
	Kind        string
	OwnerID     string
	Actor       string
	Since       time.Time
}

// Step is one named step of an operation.
type Step struct {
	Name      string     `json:"name"`
	State     string     `json:"state"`
	Message   string     `json:"message"`
	Percent   int        `json:"percent"`
	StartedAt *time.Time `json:"startedAt,omitempty"`
	EndedAt   *time.Time `json:"endedAt,omitempty"`
}

// Operation is a cluster operation and its steps.
type Operation struct {
	ID        string
	Kind      string
	State     string
	OwnerID   string
	Actor     string
	StartedAt time.Time
	EndedAt   *time.Time
	Error     string
	Steps     []Step
}

// Cluster returns the cluster's identity, or ErrNotFound before it exists.
func (s *Store) Cluster(ctx context.Context) (ClusterInfo, error) {
	var c ClusterInfo
	err := s.pool.QueryRow(ctx, `select cluster_id, created_at from cluster`).Scan(&c.ID, &c.CreatedAt)
	if err != nil {
		return c, fmt.Errorf("cluster: %w", notFound(err))
	}
	return c, nil
}

// InitCluster records the cluster's identity; once only.
func (t *Tx) InitCluster(ctx context.Context, c ClusterInfo) error {
	tag, err := t.tx.Exec(ctx, `insert into cluster (cluster_id, created_at) values ($1, $2) on conflict do nothing`, c.ID, c.CreatedAt)
	if err != nil {
		return fmt.Errorf("init cluster: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return Reject("", "the cluster already exists")
	}
	return nil
}

// PutSetting stores one setting.
func (t *Tx) PutSetting(ctx context.Context, key string, value json.RawMessage, at time.Time, by string) error {
	_, err := t.tx.Exec(ctx, `insert into settings (key, value, updated_at, updated_by) values ($1, $2, $3, $4)
		on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		key, value, at, by)
	if err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	return nil
}

// Settings returns every setting by key.
func (s *Store) Settings(ctx context.Context) (map[string]json.RawMessage, error) {
	rows, err := s.pool.Query(ctx, `select key, value from settings`)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	out := map[string]json.RawMessage{}
	var k string
	var v []byte
	_, err = pgx.ForEachRow(rows, []any{&k, &v}, func() error {
		out[k] = append(json.RawMessage(nil), v...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	return out, nil
}

// PutMember adds or updates a member.
func (t *Tx) PutMember(ctx context.Context, m Member) error {
	_, err := t.tx.Exec(ctx, `insert into members (id, name, address, version, is_voter, enrolled_since) values ($1, $2, $3, $4, $5, $6)
		on conflict (id) do update set name = excluded.name, address = excluded.address, version = excluded.version, is_voter = excluded.is_voter`,
		m.ID, m.Name, m.Address, m.Version, m.IsVoter, m.EnrolledSince)
	if err != nil {
		return fmt.Errorf("put member %s: %w", m.ID, err)
	}
	return nil
}

// Members lists the cluster's members, oldest first.
func (s *Store) Members(ctx context.Context) ([]Member, error) {
	rows, err := s.pool.Query(ctx, `select id, name, address, version, is_voter, enrolled_since from members order by enrolled_since, name`)
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Member, error) {
		var m Member
		err := r.Scan(&m.ID, &m.Name, &m.Address, &m.Version, &m.IsVoter, &m.EnrolledSince)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	return ms, nil
}

// Lock returns the cluster lock, or ErrNotFound when the cluster is unlocked.
func (s *Store) Lock(ctx context.Context) (Lock, error) {
	var l Lock
	err := s.pool.QueryRow(ctx, `select operation_id, kind, owner_id, actor, since from cluster_lock`).
		Scan(&l.OperationID, &l.Kind, &l.OwnerID, &l.Actor, &l.Since)
	if err != nil {
		return l, fmt.Errorf("cluster lock: %w", notFound(err))
	}
	return l, nil
}

// CreateOperation records a new operation and takes the cluster lock for it,
// or is rejected, naming the operation that holds the lock.
func (t *Tx) CreateOperation(ctx context.Context, op Operation) error {
	var held Lock
	err := t.tx.QueryRow(ctx, `select operation_id, kind, actor, since from cluster_lock`).Scan(&held.OperationID, &held.Kind, &held.Actor, &held.Since)
	if err == nil {
		return Reject("", "another operation is in progress: %s %s, started by %s at %s", held.Kind, held.OperationID, held.Actor, held.Since.UTC().Format(time.RFC3339))
	}
	if err != pgx.ErrNoRows {
		return fmt.Errorf("create operation: %w", err)
	}
	steps, _ := json.Marshal(op.Steps)
	if _, err := t.tx.Exec(ctx, `insert into operations (id, kind, state, owner_id, actor, started_at, steps, raft_index) values ($1, $2, $3, $4, $5, $6, $7, $8)`,
		op.ID, op.Kind, op.State, op.OwnerID, op.Actor, op.StartedAt, steps, t.Index); err != nil {
		if isUniqueViolation(err) {
			return Reject("id", "operation %s exists already", op.ID)
		}
		return fmt.Errorf("create operation: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `insert into cluster_lock (operation_id, kind, owner_id, actor, since) values ($1, $2, $3, $4, $5)`,
		op.ID, op.Kind, op.OwnerID, op.Actor, op.StartedAt); err != nil {
		return fmt.Errorf("take cluster lock: %w", err)
	}
	return nil
}

// UpdateStep replaces step number i of a running operation.
func (t *Tx) UpdateStep(ctx context.Context, opID string, i int, step Step) error {
	op, err := t.operation(ctx, opID)
	if err != nil {
		return err
	}
	if op.EndedAt != nil {
		return Reject("", "operation %s has ended", opID)
	}
	if i < 0 || i >= len(op.Steps) {
		return Reject("step", "operation %s has no step %d", opID, i)
	}
	op.Steps[i] = step
	steps, _ := json.Marshal(op.Steps)
	if _, err := t.tx.Exec(ctx, `update operations set steps = $2, state = 'Running' where id = $1`, opID, steps); err != nil {
		return fmt.Errorf("update step: %w", err)
	}
	return nil
}

// FinishOperation ends an operation with a final state and releases the
// cluster lock if the operation holds it.
func (t *Tx) FinishOperation(ctx context.Context, opID, state, errText string, at time.Time) error {
	op, err := t.operation(ctx, opID)
	if err != nil {
		return err
	}
	if op.EndedAt != nil {
		return Reject("", "operation %s has ended already", opID)
	}
	if _, err := t.tx.Exec(ctx, `update operations set state = $2, error = $3, ended_at = $4 where id = $1`, opID, state, errText, at); err != nil {
		return fmt.Errorf("finish operation: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `delete from cluster_lock where operation_id = $1`, opID); err != nil {
		return fmt.Errorf("release cluster lock: %w", err)
	}
	return nil
}

func (t *Tx) operation(ctx context.Context, id string) (Operation, error) {
	op, err := scanOperation(t.tx.QueryRow(ctx, operationSelect+` where id = $1 for update`, id))
	if err == ErrNotFound {
		return op, Reject("id", "no operation %s", id)
	}
	return op, err
}

const operationSelect = `select id, kind, state, owner_id, actor, started_at, ended_at, error, steps from operations`

func scanOperation(row pgx.Row) (Operation, error) {
	var op Operation
	var steps []byte
	err := row.Scan(&op.ID, &op.Kind, &op.State, &op.OwnerID, &op.Actor, &op.StartedAt, &op.EndedAt, &op.Error, &steps)
	if err != nil {
		return op, notFound(err)
	}
	if err := json.Unmarshal(steps, &op.Steps); err != nil {
		return op, fmt.Errorf("operation %s steps: %w", op.ID, err)
	}
	return op, nil
}

// Operation returns one operation.
func (s *Store) Operation(ctx context.Context, id string) (Operation, error) {
	op, err := scanOperation(s.pool.QueryRow(ctx, operationSelect+` where id = $1`, id))
	if err != nil {
		return op, fmt.Errorf("operation %s: %w", id, err)
	}
	return op, nil
}

// RecentOperations lists the newest operations first.
func (s *Store) RecentOperations(ctx context.Context, limit int) ([]Operation, error) {
	return s.queryOperations(ctx, operationSelect+` order by started_at desc limit $1`, limit)
}

func (s *Store) queryOperations(ctx context.Context, q string, args ...any) ([]Operation, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("operations: %w", err)
	}
	defer rows.Close()
	var ops []Operation
	for rows.Next() {
		op, err := scanOperation(rows)
		if err != nil {
			return nil, fmt.Errorf("operations: %w", err)
		}
		ops = append(ops, op)
	}
	return ops, rows.Err()
}

// UnfinishedOperations lists operations that have not ended.
func (s *Store) UnfinishedOperations(ctx context.Context) ([]Operation, error) {
	return s.queryOperations(ctx, operationSelect+` where ended_at is null order by started_at`)
}

// PutKey stores a key of the cluster key ring.
func (t *Tx) PutKey(ctx context.Context, name string, value json.RawMessage, at time.Time) error {
	_, err := t.tx.Exec(ctx, `insert into cluster_keys (name, value, created_at) values ($1, $2, $3)
		on conflict (name) do update set value = excluded.value, created_at = excluded.created_at`, name, value, at)
	if err != nil {
		return fmt.Errorf("put key %s: %w", name, err)
	}
	t.tx.keysChanged = true
	return nil
}

// Key returns a key of the cluster key ring. Keys are read for every
// password sealed or opened and change about never, so they are kept in
// memory until a transaction that changed cluster_keys commits
// (keysChanged).
func (s *Store) Key(ctx context.Context, name string) (json.RawMessage, error) {
	// The generation is read first: a key read after a change committed
	// but before the generation moved is filed under the old one, and
	// read again.
	gen := s.keys.gen.Load()
	s.keys.mu.Lock()
	v, ok := s.keys.values[name]
	if s.keys.at != gen {
		ok = false
	}
	s.keys.mu.Unlock()
	if ok {
		return v, nil
	}
	if err := s.pool.QueryRow(ctx, `select value from cluster_keys where name = $1`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("key %s: %w", name, notFound(err))
	}
	s.keys.mu.Lock()
	if s.keys.at != gen || s.keys.values == nil {
		s.keys.at, s.keys.values = gen, map[string]json.RawMessage{}
	}
	s.keys.values[name] = v
	s.keys.mu.Unlock()
	return v, nil
}

// keyCache is what Store.Key keeps: the values read at generation at.
type keyCache struct {
	gen    atomic.Uint64 // moved by keysChanged
	mu     sync.Mutex
	at     uint64
	values map[string]json.RawMessage
}

// keysChanged tells Key that cluster_keys changed: called once a
// transaction that wrote it has committed.
func (s *Store) keysChanged() { s.keys.gen.Add(1) }

// RemoveMember deletes a member.
func (t *Tx) RemoveMember(ctx context.Context, id string) error {
	if _, err := t.tx.Exec(ctx, `delete from members where id = $1`, id); err != nil {
		return fmt.Errorf("remove member %s: %w", id, err)
	}
	return nil
}

// ReplaceCluster gives the cluster a new identity with one member: an
// appliance that left keeps its data in a cluster of its own.
func (t *Tx) ReplaceCluster(ctx context.Context, c ClusterInfo, m Member) error {
	if _, err := t.tx.Exec(ctx, `delete from cluster_lock`); err != nil {
		return fmt.Errorf("replace cluster: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `delete from members`); err != nil {
		return fmt.Errorf("replace cluster: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `update cluster set cluster_id = $1, created_at = $2`, c.ID, c.CreatedAt); err != nil {
		return fmt.Errorf("replace cluster: %w", err)
	}
	return t.PutMember(ctx, m)
}

// ResetAppliedIndex starts the FSM's count again for a new raft log, keeping
// the data: an appliance that leaves a cluster starts a log of its own.
func (s *Store) ResetAppliedIndex(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `update fsm_state set applied_index = 0, applied_term = 0`); err != nil {
		return fmt.Errorf("reset applied index: %w", err)
	}
	return nil
}
