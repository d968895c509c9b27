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
	if l.Type != raft.LogCommand {
		return ApplyResult{}
	}
	// Entries at or below the applied index were applied before (a replay
	// after a restart, or a log shipped after a snapshot copy).
	if l.Index <= f.applied.Load() {
		return ApplyResult{}
	}
	var cmd Command
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		// Every member decodes the same bytes the same way, so this is an
		// outcome, not a divergence.
		f.log.Error("undecodable raft command", "index", l.Index, "err", err)
		return ApplyResult{Rejection: store.Reject("", "undecodable command: %v", err)}
	}
	// A database that is down must not make this member skip a command:
	// retry until it answers or the appliance stops.
	for attempt := 0; ; attempt++ {
		outcome, _, err := f.store.Apply(context.Background(), l.Index, l.Term, func(tx *store.Tx) error {
			return apply(context.Background(), tx, cmd, f.extra)
		})
		if err == nil {
			f.applied.Store(l.Index)
			res := ApplyResult{}
			if rej, ok := outcome.(*store.Rejection); ok {
				res.Rejection = rej
			}
			return res
		}
		f.log.Error("apply raft command; retrying", "index", l.Index, "type", cmd.Type, "attempt", attempt, "err", err)
		select {
		case <-f.closing:
			return ApplyResult{Rejection: store.Reject("", "appliance stopping: %v", err)}
		case <-time.After(backoff(attempt)):
		}
	}
}

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
