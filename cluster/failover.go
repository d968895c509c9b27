package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"conclave/store"
)

// FailoverSteps are the named steps of a planned failover.
var FailoverSteps = []string{"Pre-checks", "Transfer leadership", "New primary accepts writes"}

// maxFailoverLag is how far behind (in raft entries) a candidate may be.
const maxFailoverLag = 100

// CandidateLag is how far a member is behind the primary.
type CandidateLag struct {
	Entries uint64
	Applied uint64
	Target  uint64
}

// CheckFailover refuses a failover to memberID with a reason a person can
// act on: the candidate must be a voting replica, reachable and caught up.
func (n *Node) CheckFailover(ctx context.Context, memberID string) (MemberStatus, CandidateLag, error) {
	return n.failoverChecks(ctx, memberID, false)
}

// CheckFailoverRunning re-checks a failover from inside its operation,
// which holds the lock itself.
func (n *Node) CheckFailoverRunning(ctx context.Context, memberID string) (MemberStatus, CandidateLag, error) {
	return n.failoverChecks(ctx, memberID, true)
}

func (n *Node) failoverChecks(ctx context.Context, memberID string, ownLock bool) (MemberStatus, CandidateLag, error) {
	if !n.IsLeader() {
		return MemberStatus{}, CandidateLag{}, ErrNotLeader
	}
	ms, err := n.MemberStatuses(ctx)
	if err != nil {
		return MemberStatus{}, CandidateLag{}, err
	}
	for _, m := range ms {
		if m.ID != memberID {
			continue
		}
		switch {
		case m.IsSelf || m.Role == "Primary":
			return m, CandidateLag{}, fmt.Errorf("%s is the primary already; choose a replica", m.Name)
		case !m.IsVoter:
			return m, CandidateLag{}, fmt.Errorf("%s is not a voting member yet (it is still being added)", m.Name)
		case m.State != StateReplicaWithQuorum:
			return m, CandidateLag{}, fmt.Errorf("%s is %s, not a replica in contact; it cannot take over", m.Name, StateLabel(m.State))
		}
		st, err := n.peers.Status(ctx, m.Address)
		if err != nil {
			return m, CandidateLag{}, fmt.Errorf("%s does not answer: %v", m.Name, err)
		}
		target := n.applied.Load() // commands, as the candidate counts them
		lag := CandidateLag{Applied: st.AppliedIndex, Target: target}
		if target > st.AppliedIndex {
			lag.Entries = target - st.AppliedIndex
		}
		if lag.Entries > maxFailoverLag {
			return m, lag, fmt.Errorf("%s is %d changes behind the primary (at most %d allowed); wait for it to catch up", m.Name, lag.Entries, maxFailoverLag)
		}
		if lock, err := n.store.Lock(ctx); err == nil && !ownLock {
			return m, lag, fmt.Errorf("another operation is in progress: %s, started by %s at %s; wait for it to end", lock.Kind, lock.Actor, lock.Since.UTC().Format("15:04:05 MST"))
		}
		return m, lag, nil
	}
	return MemberStatus{}, CandidateLag{}, fmt.Errorf("no member %s in this cluster", memberID)
}

// Failover hands the primary role to a replica by raft leadership
// transfer; the old primary becomes a replica. Committed writes are never
// lost: the candidate must have them before it can win.
func (n *Node) Failover(ctx context.Context, actor, memberID string) (string, error) {
	if !n.IsLeader() {
		return n.peers.startOnLeader(ctx, n, "failover", actor, memberID)
	}
	target, _, err := n.CheckFailover(ctx, memberID)
	if err != nil {
		return "", err
	}
	steps := []StepFunc{
		func(ctx context.Context, p *Progress) error {
			_, lag, err := n.CheckFailoverRunning(ctx, memberID)
			if err == nil {
				p.Report(ctx, 100, fmt.Sprintf("%s has applied %d of %d changes", target.Name, lag.Applied, lag.Target))
			}
			return err
		},
		func(ctx context.Context, p *Progress) error {
			f := n.r().LeadershipTransferToServer(raft.ServerID(memberID), raft.ServerAddress(target.Address))
			if err := f.Error(); err != nil {
				return fmt.Errorf("leadership transfer to %s: %w", target.Name, err)
			}
			return nil
		},
		func(ctx context.Context, p *Progress) error {
			// This member is a replica now: the write below is forwarded,
			// so it proves the new primary accepts writes.
			deadline := time.Now().Add(30 * time.Second)
			for {
				_, id := n.r().LeaderWithID()
				if string(id) == memberID {
					err := n.RecordEvent(ctx, actor, EventSpec{Type: "ClusterPrimaryChanged", Details: map[string]string{"primary": target.Name, "reason": "failover", "previous": n.cfg.Name}})
					if err == nil {
						p.Report(ctx, 100, target.Name+" is the primary and accepts writes")
						return nil
					}
				} else if id != "" && string(id) != memberID {
					return fmt.Errorf("another member became the primary instead of %s", target.Name)
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s did not become the primary within 30 seconds", target.Name)
				}
				time.Sleep(20 * time.Millisecond)
			}
		},
	}
	spec := OperationSpec{Kind: "Failover", StartEvent: "ClusterFailoverStarted", EndEvent: "ClusterFailoverCompleted",
		Details: map[string]string{"from": n.cfg.Name, "to": target.Name, "toId": memberID}}
	for i, name := range FailoverSteps {
		spec.Steps = append(spec.Steps, StepSpec{Name: name, Run: steps[i]})
	}
	return n.runner.Start(ctx, actor, spec)
}

// UnlockCluster releases a stuck cluster lock (break-glass): the operation
// holding it ends ResultUnknown, saying who unlocked it. A run of it on
// this member is stopped.
func (n *Node) UnlockCluster(ctx context.Context, actor string) (string, error) {
	lock, err := n.store.Lock(ctx)
	if err != nil {
		return "", fmt.Errorf("the cluster is not locked")
	}
	n.runner.cancel(lock.OperationID)
	msg := fmt.Sprintf("unlocked by %s (Unlock Cluster) while it was running; check the cluster before retrying", actor)
	err = n.ProposeData(ctx, CmdFinishOperation, actor, FinishOperation{OperationID: lock.OperationID, State: OpResultUnknown, Error: msg},
		&EventSpec{Type: "ClusterLockReleased", OperationID: lock.OperationID, Details: map[string]string{
			"kind": lock.Kind, "heldBy": lock.Actor, "since": lock.Since.UTC().Format(time.RFC3339)}})
	if err != nil {
		return "", err
	}
	return lock.OperationID, nil
}

// runningElsewhere tells whether the member that started op still runs
// it: after a failover the old primary finishes its operation through the
// new one, which must not settle it as abandoned.
func (n *Node) runningElsewhere(ctx context.Context, op store.Operation) bool {
	if op.OwnerID == n.ID() {
		return false
	}
	members, err := n.store.Members(ctx)
	if err != nil {
		return false
	}
	for _, m := range members {
		if m.ID != op.OwnerID {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := n.peers.Status(cctx, m.Address)
		cancel()
		return err == nil && slices.Contains(st.RunningOperations, op.ID)
	}
	return false
}
