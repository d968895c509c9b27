package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"
)

// UnjoinSteps are the named steps of Unjoin.
var UnjoinSteps = []string{"Pre-checks", "Tell the replica", "Remove from the raft group", "Replica stands alone"}

// standaloneLimit is how long Unjoin waits for the removed member to stand
// alone (it restarts raft as a cluster of its own, usually in a second).
const standaloneLimit = 45 * time.Second

// CheckUnjoin refuses an Unjoin with a reason a person can act on.
func (n *Node) CheckUnjoin(ctx context.Context, memberID string) (MemberStatus, error) {
	ms, err := n.MemberStatuses(ctx)
	if err != nil {
		return MemberStatus{}, err
	}
	var target *MemberStatus
	for i, m := range ms {
		if m.ID == memberID {
			target = &ms[i]
		}
	}
	if target == nil {
		return MemberStatus{}, fmt.Errorf("no member %s in this cluster", memberID)
	}
	if target.Role == "Primary" {
		return *target, fmt.Errorf("%s is the primary and cannot be unjoined: fail over to another member first", target.Name)
	}
	if err := IsolatedMember(ms); err != nil {
		return *target, err
	}
	if err := consensusWithout(ms, memberID); err != nil {
		return *target, err
	}
	if lock, err := n.store.Lock(ctx); err == nil {
		return *target, fmt.Errorf("another operation is in progress: %s, started by %s at %s; wait for it to end", lock.Kind, lock.Actor, lock.Since.UTC().Format("15:04:05 MST"))
	}
	return *target, nil
}

// Unjoin starts removing a replica from the cluster; it keeps its data as a
// read-only appliance of its own. Any member may ask: a replica forwards
// the request to the primary.
func (n *Node) Unjoin(ctx context.Context, actor, memberID string) (string, error) {
	if !n.IsLeader() {
		return n.peers.startOnLeader(ctx, n, "unjoin", actor, memberID)
	}
	target, err := n.CheckUnjoin(ctx, memberID)
	if err != nil {
		return "", err
	}
	return n.runner.Start(ctx, actor, n.unjoinSpec(target))
}

// unjoinSpec is the operation that removes target; a primary elected
// while it ran resumes it with the same steps.
func (n *Node) unjoinSpec(target MemberStatus) OperationSpec {
	memberID := target.ID
	addr := target.Address
	// The leaving member stays reachable over mutual TLS while it is told
	// to stand alone, although raft no longer lists it. The allowance ends
	// once, whichever ends it: the last step or a failure.
	var unpend func()
	var unpendOnce sync.Once
	release := func() {
		if unpend != nil {
			unpendOnce.Do(unpend)
		}
	}
	allow := func() {
		if unpend == nil {
			unpend = n.pending.add(memberID)
		}
	}
	steps := []StepFunc{
		func(ctx context.Context, p *Progress) error {
			_, err := n.CheckUnjoinRunning(ctx, memberID)
			return err
		},
		bounded(enrollCallTimeout, func(ctx context.Context, p *Progress) error {
			allow()
			return n.peers.Leave(ctx, addr)
		}),
		bounded(enrollCallTimeout, func(ctx context.Context, p *Progress) error {
			allow()
			if err := n.r().RemoveServer(raft.ServerID(memberID), 0, enrollCallTimeout).Error(); err != nil {
				return fmt.Errorf("remove from raft: %w", err)
			}
			return n.ProposeData(ctx, CmdRemoveMember, "system", RemoveMember{MemberID: memberID}, nil)
		}),
		func(ctx context.Context, p *Progress) error {
			// The replica notices its removal by itself; tell it too, in
			// case it missed the last configuration.
			allow()
			defer release()
			tctx, cancel := context.WithTimeout(ctx, enrollCallTimeout)
			if err := doJSON(tctx, n.peers.http, http.MethodPost, "https://"+addr+"/node/v1/standalone", "", nil, "", nil); err != nil {
				n.log.Warn("tell the removed member to stand alone", "err", err)
			}
			cancel()
			deadline := time.Now().Add(standaloneLimit)
			for {
				info, _, err := n.FetchInfo(ctx, addr)
				if err == nil && info.State == StateStandaloneRO {
					p.Report(ctx, 100, info.Name+" is Online Read-only in a cluster of its own")
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s did not report standing alone within %s (last: %v); it is no longer a member", target.Name, standaloneLimit, err)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	spec := OperationSpec{Kind: "Remove", StartEvent: "ClusterReplicaRemovalStarted", EndEvent: "ClusterReplicaRemovalCompleted",
		Details:   map[string]string{"replica": target.Name, "address": addr, "memberId": memberID},
		OnFailure: func(context.Context, error) { release() }}
	for i, name := range UnjoinSteps {
		spec.Steps = append(spec.Steps, StepSpec{Name: name, Run: steps[i]})
	}
	return spec
}

// CheckUnjoinRunning re-checks an Unjoin from inside its operation (the
// operation holds the lock itself).
func (n *Node) CheckUnjoinRunning(ctx context.Context, memberID string) (MemberStatus, error) {
	ms, err := n.MemberStatuses(ctx)
	if err != nil {
		return MemberStatus{}, err
	}
	for _, m := range ms {
		if m.ID == memberID {
			if m.Role == "Primary" {
				return m, fmt.Errorf("%s became the primary; it cannot be unjoined", m.Name)
			}
			return m, nil
		}
	}
	return MemberStatus{}, fmt.Errorf("no member %s in this cluster", memberID)
}

// Leaving is called on the replica when the primary is about to remove it.
func (n *Node) Leaving(ctx context.Context) error {
	_, leader := n.r().LeaderWithID()
	if err := n.setMode(Mode{State: StateLeavingCluster, Reason: "being removed from the cluster", PrimaryID: string(leader)}); err != nil {
		return err
	}
	go n.watchRemoval()
	return nil
}

// watchRemoval turns this appliance standalone once raft no longer lists
// it, or once it has heard from no leader for a while: the primary stops
// replicating to a removed member before that member learns of its removal.
func (n *Node) watchRemoval() {
	lastLeader := time.Now()
	for {
		select {
		case <-n.closing:
			return
		case <-time.After(100 * time.Millisecond):
		}
		if n.Mode().State != StateLeavingCluster {
			return
		}
		r := n.r()
		removed := r.State() == raft.Shutdown
		if f := r.GetConfiguration(); f.Error() == nil {
			removed = true
			for _, s := range f.Configuration().Servers {
				if string(s.ID) == n.ID() {
					removed = false
				}
			}
		}
		if _, id := r.LeaderWithID(); id != "" {
			lastLeader = time.Now()
		}
		if removed || time.Since(lastLeader) > 10*n.cfg.Timing.Election {
			if err := n.BecomeStandalone(context.Background()); err != nil {
				n.log.Error("stand alone after removal", "err", err)
			}
			return
		}
	}
}

// BecomeStandalone starts a new one-member cluster on this appliance's data:
// a new raft log, a new cluster identity and CA, read-only until Activate.
func (n *Node) BecomeStandalone(ctx context.Context) error {
	n.standaloneMu.Lock()
	defer n.standaloneMu.Unlock()
	if n.Mode().State == StateStandaloneRO {
		return nil
	}
	if n.Mode().State != StateLeavingCluster {
		return errors.New("this appliance is not leaving a cluster")
	}
	if err := n.store.ResetAppliedIndex(ctx); err != nil {
		return err
	}
	n.applied.Store(0)
	if err := n.restartRaft(true, true); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for !n.IsLeader() {
		if time.Now().After(deadline) {
			return errors.New("the new one-member cluster elected no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	clusterID := uuid.NewString()
	ca, err := NewCA(clusterID)
	if err != nil {
		return err
	}
	me := MemberData{ID: n.ID(), Name: n.cfg.Name, Address: n.cfg.Advertise, Version: n.cfg.Version, IsVoter: true}
	err = n.ProposeData(ctx, CmdReplaceCluster, "system", ReplaceCluster{ClusterID: clusterID, Member: me, CA: ca},
		&EventSpec{Type: "ApplianceStateChanged", Details: map[string]string{"state": StateStandaloneRO, "reason": "removed from its cluster; keeps its data"}})
	if err != nil {
		return err
	}
	if err := n.setMode(Mode{State: StateStandaloneRO, Reason: "left its cluster; read-only until activated"}); err != nil {
		return err
	}
	return n.ensureOwnCertificate(ctx)
}

// Activate makes a read-only standalone appliance a writable primary.
func (n *Node) Activate(ctx context.Context, actor string) error {
	if n.Mode().State != StateStandaloneRO {
		return fmt.Errorf("only an appliance that is %s can be activated; this one is %s", StateLabel(StateStandaloneRO), StateLabel(n.SelfState()))
	}
	if err := n.setMode(Mode{}); err != nil {
		return err
	}
	return n.RecordEvent(ctx, actor, EventSpec{Type: "ActivatePrimaryAppliance", Details: map[string]string{"member": n.cfg.Name}})
}

// consensusWithout refuses a removal after which too few of the remaining
// voting members would be online for consensus.
func consensusWithout(ms []MemberStatus, memberID string) error {
	voters, online := 0, 0
	for _, m := range ms {
		if m.ID == memberID || !m.IsVoter {
			continue
		}
		voters++
		if m.State == StateOnline || m.State == StateReplicaWithQuorum {
			online++
		}
	}
	if majority := voters/2 + 1; online < majority {
		return fmt.Errorf("after this Unjoin %d of the %d remaining voting members would be online and %d are needed for consensus", online, voters, majority)
	}
	return nil
}
