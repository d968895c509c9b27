package cluster

import (
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/raft"

	"conclave/store"
)

// startDetails returns the details of an operation's start event.
func (n *Node) startDetails(ctx context.Context, op store.Operation, startEvent string) map[string]string {
	evs, err := n.store.Events(ctx, store.EventFilter{Type: startEvent, Limit: 1000})
	if err != nil {
		return nil
	}
	for _, ev := range evs {
		if ev.OperationID == op.ID {
			return ev.Details
		}
	}
	return nil
}

// settleUnjoin resumes an Unjoin whose primary stopped mid-way: the
// administrator confirmed the removal, and every step can run again
// safely (telling the replica twice, removing a server raft no longer
// lists, waiting for it to stand alone). The pre-checks run first, so an
// Unjoin that would now cost the cluster its consensus is refused instead.
func (n *Node) settleUnjoin(ctx context.Context, op store.Operation) Settlement {
	d := n.startDetails(ctx, op, "ClusterReplicaRemovalStarted")
	memberID := d["memberId"]
	if memberID == "" {
		return Settlement{}
	}
	if memberID == n.ID() {
		// The member being removed was elected: it hands the primary role
		// to another member, which resumes the removal.
		n.log.Info("this member is being removed and became the primary: handing over", "operation", op.ID)
		if err := n.r().LeadershipTransfer().Error(); err != nil {
			n.log.Warn("hand over the primary role", "err", err)
		}
		return Settlement{Defer: true}
	}
	target := MemberStatus{Member: store.Member{ID: memberID, Name: d["replica"], Address: d["address"]}}
	if target.Name == "" || target.Address == "" {
		return Settlement{}
	}
	spec := n.unjoinSpec(target)
	// Whatever step it stopped at, check again first: the member may have
	// become the primary, or removing it may now cost consensus.
	ms, err := n.MemberStatuses(ctx)
	if err != nil {
		return Settlement{}
	}
	if _, err := n.CheckUnjoinRunning(ctx, memberID); err == nil {
		err = consensusWithout(ms, memberID)
		if err != nil {
			return Settlement{State: OpFailed, Message: "not finished after the primary that ran it stopped: " + err.Error()}
		}
	} else if slices.ContainsFunc(ms, func(m MemberStatus) bool { return m.ID == memberID }) {
		return Settlement{State: OpFailed, Message: "not finished after the primary that ran it stopped: " + err.Error()}
	}
	return Settlement{Resume: &spec}
}

// settleFailover ends a Failover whose primary stopped mid-way by what
// happened: if the chosen replica is the primary now, the failover is
// done; otherwise another member was elected and the failover did not
// happen. Starting another leadership change by itself would surprise
// the administrator during an outage; they decide.
func (n *Node) settleFailover(ctx context.Context, op store.Operation) Settlement {
	d := n.startDetails(ctx, op, "ClusterFailoverStarted")
	to := d["to"]
	if to == "" {
		return Settlement{}
	}
	_, leader := n.r().LeaderWithID()
	leaderName := n.memberName(ctx, string(leader))
	if d["toId"] == string(leader) || (d["toId"] == "" && leaderName == to) {
		return Settlement{State: OpSucceeded, Message: fmt.Sprintf("%s is the primary (confirmed by %s after the primary that ran the failover stopped)", to, n.cfg.Name)}
	}
	if leader == "" || leader != raft.ServerID(n.ID()) {
		return Settlement{}
	}
	return Settlement{State: OpFailed, Message: fmt.Sprintf("%s did not become the primary: the primary that ran the failover (%s) stopped and %s was elected instead; start Failover again if %s should be the primary",
		to, n.memberName(ctx, op.OwnerID), leaderName, to)}
}
