package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"conclave/store"
)

// localOperation is an operation this member runs and records itself,
// because the cluster cannot write it yet: Reset Cluster runs without
// consensus and is written to the raft log only once the new cluster has a
// primary. Until then, and if it fails, the member answers for it from
// memory with the same shape as a replicated operation.
type localOperation struct {
	id, actor string
	mu        sync.Mutex
	op        store.Operation
}

func newLocalOperation(id, kind, owner, actor string, steps []string) *localOperation {
	op := store.Operation{ID: id, Kind: kind, State: OpRunning, OwnerID: owner, Actor: actor, StartedAt: time.Now().UTC()}
	for _, name := range steps {
		op.Steps = append(op.Steps, store.Step{Name: name, State: StepPending})
	}
	return &localOperation{id: id, actor: actor, op: op}
}

// step records a state change of step i with a message.
func (l *localOperation) step(i int, state, message string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now().UTC()
	s := &l.op.Steps[i]
	if s.StartedAt == nil {
		s.StartedAt = &now
	}
	s.State, s.Message = state, message
	switch state {
	case StepSucceeded:
		s.Percent, s.EndedAt = 100, &now
	case StepFailed, StepSkipped:
		s.EndedAt = &now
	}
}

// progress reports a running step's percentage.
func (l *localOperation) progress(i, percent int, message string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.op.Steps[i].Percent, l.op.Steps[i].Message = min(max(percent, 0), 100), message
}

// stepFailed marks step i failed (and the later ones skipped), returning err.
func (l *localOperation) stepFailed(i int, err error) error {
	l.step(i, StepFailed, err.Error())
	for j := i + 1; j < len(l.op.Steps); j++ {
		l.step(j, StepSkipped, "not run: an earlier step failed")
	}
	return err
}

// fail ends the operation as failed unless it already ended.
func (l *localOperation) fail(err error) {
	l.mu.Lock()
	ended := l.op.EndedAt != nil
	l.mu.Unlock()
	if !ended {
		l.finish(OpFailed, err.Error())
	}
}

func (l *localOperation) finish(state, errText string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now().UTC()
	l.op.State, l.op.Error, l.op.EndedAt = state, errText, &now
}

func (l *localOperation) snapshot() store.Operation {
	l.mu.Lock()
	defer l.mu.Unlock()
	op := l.op
	op.Steps = append([]store.Step(nil), l.op.Steps...)
	return op
}

// localOperations holds this member's local operations; one may run at a
// time.
type localOperations struct {
	mu      sync.Mutex
	running bool
	ops     map[string]*localOperation
}

func (l *localOperations) begin() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running {
		return false
	}
	l.running = true
	return true
}

func (l *localOperations) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running = false
}

func (l *localOperations) put(op *localOperation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ops == nil {
		l.ops = map[string]*localOperation{}
	}
	l.ops[op.id] = op
}

func (l *localOperations) get(id string) (*localOperation, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	op, ok := l.ops[id]
	return op, ok
}

// Operation returns an operation: the cluster's record of it, or, for one
// this member runs before the cluster can record it (Reset Cluster), this
// member's own.
func (n *Node) Operation(ctx context.Context, id string) (store.Operation, error) {
	op, err := n.store.Operation(ctx, id)
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return op, err
	}
	if l, ok := n.resets.get(id); ok {
		return l.snapshot(), nil
	}
	if l, ok := n.offlineOps.get(id); ok {
		return l.snapshot(), nil
	}
	return op, err
}
