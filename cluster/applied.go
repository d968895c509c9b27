package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// AppliedIndex is the raft index of the last command this member applied
// to its database: a read of one number, cheap enough to poll in a loop
// (benchmarks time replication with it).
func (n *Node) AppliedIndex() uint64 { return n.applied.Load() }

var errStopped = errors.New("the appliance is stopping")

// appliedIndex is the index of the last command applied to this member's
// database. Waiters are woken when it moves, rather than polling it: a
// write forwarded to the primary returns as soon as it is applied here.
type appliedIndex struct {
	v     atomic.Uint64
	mu    sync.Mutex
	moved chan struct{} // closed and replaced at every Store
}

func (a *appliedIndex) Load() uint64 { return a.v.Load() }

func (a *appliedIndex) Store(index uint64) {
	a.v.Store(index)
	a.mu.Lock()
	if a.moved != nil {
		close(a.moved)
		a.moved = nil
	}
	a.mu.Unlock()
}

// changed returns a channel closed at the next Store.
func (a *appliedIndex) changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.moved == nil {
		a.moved = make(chan struct{})
	}
	return a.moved
}

// wait returns nil once index is applied, ctx.Err() when ctx ends first,
// and errStopped when stop is closed first.
func (a *appliedIndex) wait(ctx context.Context, index uint64, stop <-chan struct{}) error {
	for {
		ch := a.changed()
		if a.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return errStopped
		}
	}
}
