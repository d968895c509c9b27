package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"

	"conclave/store"
)

// fsm applies committed raft commands to this appliance's PostgreSQL. Its
// state is persistent: after a restart raft replays the log, and entries at
// or below the recorded applied index are skipped.
//
// Raft hands committed entries to the FSM in small batches, often of one
// entry (a batch is what one replication round committed), and waits for
// each before the next. Applying each in its own PostgreSQL transaction
// bounds a member to a few hundred entries a second, whatever the load. So
// the FSM only queues what raft hands over, and an applier goroutine
// (runApplier) applies everything waiting in one transaction: group commit.
// Raft's future for a command carries an *applyOutcome, resolved once the
// entry is in PostgreSQL (proposeLocal waits for it). Whatever reads the
// database after raft (Snapshot, Restore, Barrier in onLeader, the end of a
// raft life) drains the queue first.
type fsm struct {
	store   *store.Store
	log     *slog.Logger
	closing <-chan struct{}
	applied *appliedIndex
	// extra applies the commands of other packages (the workflow), and
	// prefetch reads for a batch of them at once what they will read.
	extra    Applier
	prefetch Prefetcher
	// queue holds the batches raft handed over, in log order, until the
	// applier goroutine has applied them.
	queue chan queuedBatch
	// committed, when set, is told the last index of every batch raft
	// hands over (Node.nudgeFollowers).
	committed func(index uint64)
}

// queuedBatch is a batch raft handed over, or (with no entries) a marker
// whose drained channel is closed once everything before it is applied.
type queuedBatch struct {
	entries  []store.Entry
	cmds     []Command       // cmds[k] is entries[k]'s
	outcomes []*applyOutcome // outcomes[k] is entries[k]'s
	drained  chan struct{}
}

// maxApplyBatch bounds the entries applied in one transaction.
const maxApplyBatch = 2048

// applyOutcome is what raft's ApplyFuture.Response returns for a command:
// done is closed once the command is applied (or the appliance stops), and
// rejection says why it changed nothing.
type applyOutcome struct {
	done      chan struct{}
	rejection *store.Rejection
}

func resolvedOutcome(rej *store.Rejection) *applyOutcome {
	o := &applyOutcome{done: make(chan struct{}), rejection: rej}
	close(o.done)
	return o
}

func newFSM(st *store.Store, log *slog.Logger, closing <-chan struct{}, applied *appliedIndex, extra Applier, prefetch Prefetcher) *fsm {
	return &fsm{store: st, log: log, closing: closing, applied: applied, extra: extra, prefetch: prefetch, queue: make(chan queuedBatch, 256)}
}

// wait returns the command's rejection once it is applied, or an error if
// it is not applied within timeout (it may still be, later).
func (o *applyOutcome) wait(timeout time.Duration) (*store.Rejection, error) {
	select {
	case <-o.done:
		return o.rejection, nil
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-o.done:
		return o.rejection, nil
	case <-t.C:
		return nil, fmt.Errorf("committed, but not applied on this member within %s (its database is slow or down)", timeout)
	}
}

func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch queues the committed entries raft hands over for the applier
// goroutine (raft.BatchingFSM).
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	if f.committed != nil && len(logs) > 0 {
		f.committed(logs[len(logs)-1].Index)
	}
	results := make([]any, len(logs))
	b := queuedBatch{}
	for i, l := range logs {
		// Entries at or below the applied index were applied before (a
		// replay after a restart, or a log shipped after a snapshot copy).
		if l.Type != raft.LogCommand || l.Index <= f.applied.Load() {
			results[i] = resolvedOutcome(nil)
			continue
		}
		var cmd Command
		if err := json.Unmarshal(l.Data, &cmd); err != nil {
			// Every member decodes the same bytes the same way, so this is
			// an outcome, not a divergence.
			f.log.Error("undecodable raft command", "index", l.Index, "err", err)
			results[i] = resolvedOutcome(store.Reject("", "undecodable command: %v", err))
			continue
		}
		o := &applyOutcome{done: make(chan struct{})}
		b.entries = append(b.entries, store.Entry{Index: l.Index, Term: l.Term, Fn: func(tx *store.Tx) error {
			return apply(context.Background(), tx, cmd, f.extra)
		}})
		b.outcomes = append(b.outcomes, o)
		b.cmds = append(b.cmds, cmd)
		results[i] = o
	}
	if len(b.entries) == 0 {
		return results
	}
	select {
	case f.queue <- b:
	case <-f.closing:
		// The appliance stops: nothing of this batch is applied, and the
		// next start replays it from the log.
		for _, o := range b.outcomes {
			o.rejection = store.Reject("", "appliance stopping")
			close(o.done)
		}
	}
	return results
}

// drain returns once every entry queued so far is applied (or the
// appliance stops).
func (f *fsm) drain() {
	m := queuedBatch{drained: make(chan struct{})}
	select {
	case f.queue <- m:
	case <-f.closing:
		return
	}
	select {
	case <-m.drained:
	case <-f.closing:
	}
}

// durable returns once every entry queued so far is applied and on disk.
func (f *fsm) durable() error {
	f.drain()
	return f.store.FlushWAL(context.Background())
}

// runApplier applies the queued batches until the appliance stops: all
// that waits, up to maxApplyBatch entries, in one transaction.
func (f *fsm) runApplier() {
	for {
		var group []queuedBatch
		select {
		case b := <-f.queue:
			group = append(group, b)
		case <-f.closing:
			f.stopQueued()
			return
		}
		n := len(group[0].entries)
	more:
		for n < maxApplyBatch {
			select {
			case b := <-f.queue:
				group = append(group, b)
				n += len(b.entries)
			default:
				break more
			}
		}
		f.applyGroup(group)
	}
}

// applyGroup applies the entries of group in one transaction and resolves
// their outcomes.
func (f *fsm) applyGroup(group []queuedBatch) {
	var entries []store.Entry
	var outcomes []*applyOutcome
	var cmds []Command
	for _, b := range group {
		entries = append(entries, b.entries...)
		outcomes = append(outcomes, b.outcomes...)
		cmds = append(cmds, b.cmds...)
	}
	var prepare func(*store.Tx) error
	if f.prefetch != nil {
		prepare = func(tx *store.Tx) error { return f.prefetch(context.Background(), tx, cmds) }
	}
	defer func() {
		for _, b := range group {
			if b.drained != nil {
				close(b.drained)
			}
		}
	}()
	if len(entries) == 0 {
		return
	}
	// A database that is down must not make this member skip a command:
	// retry until it answers or the appliance stops.
	for attempt := 0; ; attempt++ {
		out, err := f.store.ApplyBatchPrepared(context.Background(), entries, prepare)
		if err == nil {
			f.applied.Store(entries[len(entries)-1].Index)
			for k, r := range out {
				if rej, ok := r.Outcome.(*store.Rejection); ok {
					outcomes[k].rejection = rej
				}
				close(outcomes[k].done)
			}
			return
		}
		f.log.Error("apply raft commands; retrying", "from", entries[0].Index, "to", entries[len(entries)-1].Index, "attempt", attempt, "err", err)
		select {
		case <-f.closing:
			for _, o := range outcomes {
				o.rejection = store.Reject("", "appliance stopping: %v", err)
				close(o.done)
			}
			return
		case <-time.After(backoff(attempt)):
		}
	}
}

// stopQueued resolves whatever is still queued when the appliance stops:
// none of it is applied (the next start replays it from the log).
func (f *fsm) stopQueued() {
	for {
		select {
		case b := <-f.queue:
			for _, o := range b.outcomes {
				o.rejection = store.Reject("", "appliance stopping")
				close(o.done)
			}
			if b.drained != nil {
				close(b.drained)
			}
		default:
			return
		}
	}
}

var _ raft.BatchingFSM = (*fsm)(nil)

func backoff(attempt int) time.Duration {
	d := 50 * time.Millisecond << min(attempt, 6)
	return min(d, 3*time.Second)
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	// The snapshot is of the database: everything raft handed over must
	// be in it, and on disk, since raft will not replay what a snapshot
	// covers (FSM transactions commit without waiting for the disk).
	if err := f.durable(); err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	snap, err := f.store.BeginSnapshot(context.Background())
	if err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	return &fsmSnapshot{snap: snap}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.drain()
	index, err := f.store.RestoreSnapshot(context.Background(), rc)
	if err != nil {
		return fmt.Errorf("fsm restore: %w", err)
	}
	f.log.Info("restored raft snapshot", "index", index)
	f.applied.Store(index)
	return nil
}

type fsmSnapshot struct{ snap *store.Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	// The snapshot's transaction ends here, not only in Release: raft's
	// RecoverCluster persists a snapshot and never releases it.
	defer s.snap.Close(context.Background())
	if err := s.snap.WriteTo(context.Background(), sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.snap.Close(context.Background()) }
