package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"conclave/store"
)

// fsm applies committed raft commands to this appliance's PostgreSQL. Its
// state is persistent: after a restart raft replays the log, and entries at
// or below the recorded applied index are skipped.
type fsm struct {
	store   *store.Store
	log     *slog.Logger
	closing <-chan struct{}
	applied *atomic.Uint64
	// extra applies the commands of other packages (the workflow).
	extra Applier
}

// ApplyResult is what raft's ApplyFuture.Response returns for a command.
type ApplyResult struct {
	Rejection *store.Rejection
}

func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies the committed entries raft hands over together in one
// PostgreSQL transaction (raft.BatchingFSM): under load, raft commits many
// entries at once, and one database commit for all of them is what lets a
// member keep up.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	results := make([]any, len(logs))
	var entries []store.Entry
	var at []int // entries[k] is logs[at[k]]
	for i, l := range logs {
		results[i] = ApplyResult{}
		// Entries at or below the applied index were applied before (a
		// replay after a restart, or a log shipped after a snapshot copy).
		if l.Type != raft.LogCommand || l.Index <= f.applied.Load() {
			continue
		}
		var cmd Command
		if err := json.Unmarshal(l.Data, &cmd); err != nil {
			// Every member decodes the same bytes the same way, so this is
			// an outcome, not a divergence.
			f.log.Error("undecodable raft command", "index", l.Index, "err", err)
			results[i] = ApplyResult{Rejection: store.Reject("", "undecodable command: %v", err)}
			continue
		}
		entries = append(entries, store.Entry{Index: l.Index, Term: l.Term, Fn: func(tx *store.Tx) error {
			return apply(context.Background(), tx, cmd, f.extra)
		}})
		at = append(at, i)
	}
	if len(entries) == 0 {
		return results
	}
	// A database that is down must not make this member skip a command:
	// retry until it answers or the appliance stops.
	for attempt := 0; ; attempt++ {
		out, err := f.store.ApplyBatch(context.Background(), entries)
		if err == nil {
			f.applied.Store(entries[len(entries)-1].Index)
			for k, r := range out {
				if rej, ok := r.Outcome.(*store.Rejection); ok {
					results[at[k]] = ApplyResult{Rejection: rej}
				}
			}
			return results
		}
		f.log.Error("apply raft commands; retrying", "from", entries[0].Index, "to", entries[len(entries)-1].Index, "attempt", attempt, "err", err)
		select {
		case <-f.closing:
			for _, i := range at {
				results[i] = ApplyResult{Rejection: store.Reject("", "appliance stopping: %v", err)}
			}
			return results
		case <-time.After(backoff(attempt)):
		}
	}
}

var _ raft.BatchingFSM = (*fsm)(nil)

func backoff(attempt int) time.Duration {
	d := 50 * time.Millisecond << min(attempt, 6)
	return min(d, 3*time.Second)
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	snap, err := f.store.BeginSnapshot(context.Background())
	if err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	return &fsmSnapshot{snap: snap}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
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
