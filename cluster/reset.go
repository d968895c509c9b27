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

// ResetCluster rebuilds the cluster from the kept members with the chosen
// primary. It returns the operation recorded for it once the new cluster
// has written it (the operation cannot be written before: there is no
// consensus to write it with).
func (n *Node) ResetCluster(ctx context.Context, actor string, plan ResetPlan) (string, error) {
	kept, err := n.CheckReset(ctx, plan)
	if err != nil {
		return "", err
	}
	started := time.Now().UTC()
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
	for _, m := range kept {
		if m.ID == plan.PrimaryID {
			continue
		}
		if m.ID == n.ID() {
			err = n.FollowReset(ctx, plan.PrimaryID)
		} else {
			body := fmt.Sprintf(`{"primaryId":%q}`, plan.PrimaryID)
			err = doJSON(ctx, n.peers.http, "POST", "https://"+m.Address+"/node/v1/reset/follow", "", strings.NewReader(body), "application/json", nil)
		}
		if err != nil {
			return "", fmt.Errorf("%s could not drop its state: %w", m.Name, err)
		}
	}
	cfgJSON := encodeServers(servers)
	if primary.ID == n.ID() {
		err = n.LeadReset(ctx, servers)
	} else {
		err = doJSON(ctx, n.peers.http, "POST", "https://"+primary.Address+"/node/v1/reset/lead", "", strings.NewReader(cfgJSON), "application/json", nil)
	}
	if err != nil {
		return "", fmt.Errorf("%s could not recover raft: %w", primary.Name, err)
	}
	// Wait for the new primary, then record what happened.
	deadline := time.Now().Add(time.Minute)
	for {
		if _, id := n.r().LeaderWithID(); string(id) == plan.PrimaryID {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s did not become the primary within a minute", primary.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n.recordReset(ctx, actor, plan, kept, primary, started)
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

// recordReset writes the operation and its events once the new cluster
// has a primary, with the times they happened.
func (n *Node) recordReset(ctx context.Context, actor string, plan ResetPlan, kept []MemberStatus, primary MemberStatus, started time.Time) (string, error) {
	members, err := n.store.Members(ctx)
	if err != nil {
		return "", err
	}
	var left []string
	for _, m := range members {
		if slices.Contains(plan.Keep, m.ID) {
			continue
		}
		left = append(left, m.Name)
		if err := n.ProposeDataRetrying(ctx, CmdRemoveMember, actor, RemoveMember{MemberID: m.ID}, nil); err != nil {
			return "", err
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
		n.ProposeDataRetrying(ctx, CmdFinishOperation, actor, FinishOperation{OperationID: lock.OperationID, State: OpResultUnknown,
			Error: "the cluster was reset while it ran"}, nil)
	}
	opID := uuid.NewString()
	cmd, _ := Encode(CmdCreateOperation, CreateOperation{OperationID: opID, Kind: "Reset", Steps: ResetSteps})
	cmd.At, cmd.Actor = started, actor
	cmd.Event = &EventSpec{Type: "ClusterResetStarted", OperationID: opID, Details: details}
	if err := n.Propose(ctx, cmd); err != nil {
		return "", err
	}
	end := time.Now().UTC()
	for i, name := range ResetSteps {
		step := UpdateStep{OperationID: opID, Index: i}
		step.Step.Name, step.Step.State, step.Step.Percent = name, StepSucceeded, 100
		step.Step.StartedAt, step.Step.EndedAt = &started, &end
		if err := n.ProposeData(ctx, CmdUpdateStep, actor, step, nil); err != nil {
			return "", err
		}
	}
	err = n.ProposeData(ctx, CmdFinishOperation, actor, FinishOperation{OperationID: opID, State: OpSucceeded},
		&EventSpec{Type: "ClusterResetCompleted", OperationID: opID, Details: details})
	return opID, err
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
