package cluster

// Reset Cluster: when consensus is lost for good (members dead or cut off
// for longer than anyone can wait), an administrator rebuilds the cluster
// from the members that are still reachable. The chosen primary recovers
// raft with a new configuration (raft's RecoverCluster) on its own log and
// data; the other kept members drop their raft state and data and are
// filled again from the primary, like an enrollment, so no member keeps a
// change the primary does not have. Members left out are no longer in the
// configuration: every kept member refuses them (fenced), and they must be
// re-enrolled.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// ResetSteps are the named steps of Reset Cluster.
var ResetSteps = []string{"Pre-checks", "Replicas drop their state", "Primary recovers raft", "Replicas catch up"}

// ResetPlan is what an administrator chose.
type ResetPlan struct {
	Keep      []string // member IDs, the primary among them
	PrimaryID string
}

// CheckReset refuses a Reset Cluster with a reason a person can act on.
func (n *Node) CheckReset(ctx context.Context, plan ResetPlan) ([]MemberStatus, error) {
	switch n.SelfState() {
	case StateOnline, StateReplicaWithQuorum:
		return nil, errors.New("the cluster has consensus: use Unjoin to remove a member, or Failover to change the primary; Reset Cluster is for a cluster that lost consensus")
	case StateIsolated:
		return nil, errors.New("this appliance is in Offline Workflow: Resume Online first (its offline audit log would be lost otherwise)")
	}
	if !slices.Contains(plan.Keep, plan.PrimaryID) {
		return nil, errors.New("the new primary must be one of the members kept")
	}
	if !slices.Contains(plan.Keep, n.ID()) {
		return nil, errors.New("run Reset Cluster on a member that is kept")
	}
	ms, err := n.MemberStatuses(ctx)
	if err != nil {
		return nil, err
	}
	var kept []MemberStatus
	for _, id := range plan.Keep {
		i := slices.IndexFunc(ms, func(m MemberStatus) bool { return m.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("no member %s in this cluster", id)
		}
		if ms[i].State == StateUnreachable {
			return nil, fmt.Errorf("%s does not answer (%s): keep only members this appliance can reach", ms[i].Name, ms[i].HealthReason)
		}
		kept = append(kept, ms[i])
	}
	return kept, nil
}

// ResetCluster checks the plan, then rebuilds the cluster from the kept
// members with the chosen primary in the background. It returns the
// operation's ID at once: until the new cluster can write the operation
// (there is no consensus to write it with before), this member keeps its
// steps and progress itself, and Operation answers for it.
func (n *Node) ResetCluster(ctx context.Context, actor string, plan ResetPlan) (string, error) {
	kept, err := n.CheckReset(ctx, plan)
	if err != nil {
		return "", err
	}
	if !n.resets.begin() {
		return "", errors.New("a Reset Cluster is already running on this appliance; wait for it to end")
	}
	op := newLocalOperation(uuid.NewString(), "Reset", n.ID(), actor, ResetSteps)
	op.step(0, StepSucceeded, fmt.Sprintf("%d members kept, %s the new primary", len(kept), memberName(kept, plan.PrimaryID)))
	n.resets.put(op)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.resets.end()
		// Not the request's context: the reset outlives the request.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := n.runReset(rctx, op, plan, kept); err != nil {
			n.log.Error("Reset Cluster failed", "err", err)
			op.fail(err)
		}
	}()
	return op.id, nil
}

func memberName(ms []MemberStatus, id string) string {
	for _, m := range ms {
		if m.ID == id {
			return m.Name
		}
	}
	return id
}

// runReset runs the steps after the pre-checks, recording each on op.
func (n *Node) runReset(ctx context.Context, op *localOperation, plan ResetPlan, kept []MemberStatus) error {
	var primary MemberStatus
	var servers []raft.Server
	for _, m := range kept {
		if m.ID == plan.PrimaryID {
			primary = m
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Address)})
	}
	// Replicas first: they stop voting in the old configuration and wait,
	// empty, for the new primary.
	op.step(1, StepRunning, "")
	var replicas []MemberStatus
	for _, m := range kept {
		if m.ID == plan.PrimaryID {
			continue
		}
		replicas = append(replicas, m)
		var err error
		if m.ID == n.ID() {
			err = n.FollowReset(ctx, plan.PrimaryID)
		} else {
			body := fmt.Sprintf(`{"primaryId":%q}`, plan.PrimaryID)
			err = doJSON(ctx, n.peers.http, "POST", "https://"+m.Address+"/node/v1/reset/follow", "", strings.NewReader(body), "application/json", nil)
		}
		if err != nil {
			return op.stepFailed(1, fmt.Errorf("%s could not drop its state: %w", m.Name, err))
		}
		op.progress(1, 100*len(replicas)/max(len(kept)-1, 1), m.Name+" dropped its state and waits for "+primary.Name)
	}
	op.step(1, StepSucceeded, countOf(len(replicas), "replica", "replicas")+" wait for the new primary")

	op.step(2, StepRunning, "")
	var err error
	if primary.ID == n.ID() {
		err = n.LeadReset(ctx, servers)
	} else {
		err = doJSON(ctx, n.peers.http, "POST", "https://"+primary.Address+"/node/v1/reset/lead", "", strings.NewReader(encodeServers(servers)), "application/json", nil)
	}
	if err != nil {
		return op.stepFailed(2, fmt.Errorf("%s could not recover raft: %w", primary.Name, err))
	}
	if err := n.waitFor(ctx, time.Minute, func() bool { _, id := n.r().LeaderWithID(); return string(id) == plan.PrimaryID }); err != nil {
		return op.stepFailed(2, fmt.Errorf("%s did not become the primary within a minute", primary.Name))
	}
	op.step(2, StepSucceeded, primary.Name+" is the primary of the reset cluster")

	// The kept replicas were emptied: they are caught up when they have
	// applied what the primary had when it took over.
	op.step(3, StepRunning, "")
	target := n.applied.Load()
	if n.ID() != plan.PrimaryID {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := n.peers.Status(sctx, primary.Address)
		cancel()
		if err != nil {
			return op.stepFailed(3, fmt.Errorf("ask %s how far it is: %w", primary.Name, err))
		}
		target = st.AppliedIndex
	}
	for i, m := range replicas {
		err := n.waitFor(ctx, 2*time.Minute, func() bool {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := n.peers.Status(sctx, m.Address)
			if m.ID == n.ID() {
				return n.appliedIndex() >= target
			}
			return err == nil && st.AppliedIndex >= target
		})
		if err != nil {
			return op.stepFailed(3, fmt.Errorf("%s did not catch up with %s within two minutes", m.Name, primary.Name))
		}
		op.progress(3, 100*(i+1)/len(replicas), m.Name+" has caught up")
	}
	op.step(3, StepSucceeded, countOf(len(replicas), "replica", "replicas")+" caught up")
	return n.recordReset(ctx, op, plan, kept, primary)
}

// waitFor polls cond until it holds, limit passes or ctx ends.
func (n *Node) waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.closing:
			return errors.New("this appliance shuts down")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func encodeServers(servers []raft.Server) string {
	var parts []string
	for _, s := range servers {
		parts = append(parts, fmt.Sprintf(`{"id":%q,"address":%q}`, s.ID, s.Address))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// FollowReset drops this member's raft state and replicated data and waits,
// raft running without state, for the reset cluster's primary.
func (n *Node) FollowReset(ctx context.Context, primaryID string) error {
	// Until the new primary is in this member's configuration, it is the
	// one peer let in.
	n.pending.add(primaryID)
	n.refillFrom.Store(n.memberName(ctx, primaryID))
	n.log.Info("Reset Cluster: dropping raft state and data; waiting for the new primary")
	return n.restartRaftWith(func() error {
		if err := n.store.TruncateReplicated(ctx); err != nil {
			return err
		}
		n.applied.Store(0)
		return nil
	}, false, true)
}

// LeadReset recovers raft on this member's log with the kept members as
// the new configuration, and starts it.
func (n *Node) LeadReset(ctx context.Context, servers []raft.Server) error {
	return n.restartRaftWith(func() error {
		dir := n.raftDir()
		rc := n.raftConfig()
		logStore, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "log.bolt")})
		if err != nil {
			return fmt.Errorf("open raft log: %w", err)
		}
		defer logStore.Close()
		snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, rc.Logger)
		if err != nil {
			return err
		}
		_, trans := raft.NewInmemTransport("")
		if err := raft.RecoverCluster(rc, n.fsm, logStore, logStore, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
			return fmt.Errorf("recover raft: %w", err)
		}
		n.log.Info("Reset Cluster: raft recovered with a new configuration", "members", len(servers))
		return nil
	}, false, false)
}

// recordReset writes the operation, its steps as they ran and its events
// once the new cluster has a primary.
func (n *Node) recordReset(ctx context.Context, op *localOperation, plan ResetPlan, kept []MemberStatus, primary MemberStatus) error {
	members, err := n.store.Members(ctx)
	if err != nil {
		return err
	}
	var left []string
	for _, m := range members {
		if slices.Contains(plan.Keep, m.ID) {
			continue
		}
		left = append(left, m.Name)
		if err := n.ProposeDataRetrying(ctx, CmdRemoveMember, op.actor, RemoveMember{MemberID: m.ID}, nil); err != nil {
			return err
		}
	}
	var names []string
	for _, m := range kept {
		names = append(names, m.Name)
	}
	details := map[string]string{"primary": primary.Name, "kept": strings.Join(names, ", "), "leftOut": strings.Join(left, ", ")}
	// A lock left by the operation that was running when consensus was
	// lost ends now, as unknown.
	if lock, err := n.store.Lock(ctx); err == nil {
		n.ProposeDataRetrying(ctx, CmdFinishOperation, op.actor, FinishOperation{OperationID: lock.OperationID, State: OpResultUnknown,
			Error: "the cluster was reset while it ran"}, nil)
	}
	snap := op.snapshot()
	cmd, _ := Encode(CmdCreateOperation, CreateOperation{OperationID: op.id, Kind: "Reset", Steps: ResetSteps})
	cmd.At, cmd.Actor = snap.StartedAt, op.actor
	cmd.Event = &EventSpec{Type: "ClusterResetStarted", OperationID: op.id, Details: details}
	if err := n.ProposeRetrying(ctx, cmd); err != nil {
		return err
	}
	for i, step := range snap.Steps {
		if err := n.ProposeDataRetrying(ctx, CmdUpdateStep, op.actor, UpdateStep{OperationID: op.id, Index: i, Step: step}, nil); err != nil {
			return err
		}
	}
	err = n.ProposeDataRetrying(ctx, CmdFinishOperation, op.actor, FinishOperation{OperationID: op.id, State: OpSucceeded},
		&EventSpec{Type: "ClusterResetCompleted", OperationID: op.id, Details: details})
	if err == nil {
		op.finish(OpSucceeded, "")
	}
	return err
}

// ResetServer is a member of the configuration a reset recovers raft with.
type ResetServer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// LeadResetWith is LeadReset for the node API.
func (n *Node) LeadResetWith(ctx context.Context, servers []ResetServer) error {
	var rs []raft.Server
	for _, s := range servers {
		rs = append(rs, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Address)})
	}
	if len(rs) == 0 {
		return errors.New("no member to keep")
	}
	return n.LeadReset(ctx, rs)
}

// Refilling tells whether this member, emptied by Reset Cluster, is still
// waiting for the new primary's data, and names that primary.
func (n *Node) Refilling(ctx context.Context) (string, bool) {
	from, _ := n.refillFrom.Load().(string)
	if from == "" {
		return "", false
	}
	if users, err := n.store.CountUsers(ctx); err == nil && users > 0 {
		n.refillFrom.Store("")
		return "", false
	}
	return from, true
}

// countOf says "1 replica", "2 replicas", "no replicas".
func countOf(n int, one, many string) string {
	switch n {
	case 0:
		return "no " + many
	case 1:
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
