package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"conclave/store"
)

// Member states, with the same names in the console, the API and the events.
const (
	StateOnline            = "Online"
	StateReplicaWithQuorum = "ReplicaWithQuorum"
	StateReplicaNoQuorum   = "ReplicaNoQuorum"
	StatePrimaryNoQuorum   = "PrimaryNoQuorum"
	StateEnrollingReplica  = "EnrollingReplica"
	StateLeavingCluster    = "LeavingCluster"
	StateMaintenance       = "Maintenance"
	StateIsolated          = "Isolated"
	StateStandaloneRO      = "StandaloneReadOnly"
	StateQuarantine        = "Quarantine"
	StateUnreachable       = "Unreachable"
	StateUnknown           = "Unknown"
)

// StateLabel is how a state reads in the console.
func StateLabel(s string) string {
	switch s {
	case StateOnline:
		return "Online"
	case StateReplicaWithQuorum:
		return "Replica, in contact"
	case StateReplicaNoQuorum:
		return "Replica, no quorum"
	case StatePrimaryNoQuorum:
		return "Primary, no quorum"
	case StateEnrollingReplica:
		return "Enrolling"
	case StateLeavingCluster:
		return "Leaving the cluster"
	case StateIsolated:
		return "Offline Workflow"
	case StateStandaloneRO:
		return "Online Read-only"
	}
	return s
}

// Health levels.
const (
	HealthHealthy = "Healthy"
	HealthWarning = "Warning"
	HealthSick    = "Sick"
)

// HealthCheck reports one aspect of this appliance's health; an empty
// level means nothing to report.
type HealthCheck func(ctx context.Context) (level, reason string)

// MemberStatus is a member as the console and the API show it.
type MemberStatus struct {
	store.Member
	Role         string // Primary or Replica
	State        string
	Health       string
	HealthReason string
	IsSelf       bool
	UpSince      time.Time // this appliance's process start, for the member itself
	CheckedAt    time.Time
}

// SelfState is this member's state as it knows it.
func (n *Node) SelfState() string {
	if m := n.Mode(); m.State != "" {
		return m.State
	}
	switch n.r().State() {
	case raft.Leader:
		return StateOnline
	case raft.Follower, raft.Candidate:
		if _, id := n.r().LeaderWithID(); id != "" {
			return StateReplicaWithQuorum
		}
		// The primary that lost its majority stepped down; until another
		// is elected it says what it was.
		if last, _ := n.lastLeader.Load().(string); last == n.ID() {
			return StatePrimaryNoQuorum
		}
		return StateReplicaNoQuorum
	}
	return StateUnknown
}

// SelfHealth runs the health checks of this appliance and returns the worst
// result with every reason that is not healthy.
func (n *Node) SelfHealth(ctx context.Context) (level, reason string) {
	level, reason = HealthHealthy, "All checks pass"
	var reasons []string
	worst := 0
	rank := map[string]int{HealthHealthy: 0, HealthWarning: 1, HealthSick: 2}
	checks := append([]HealthCheck{n.checkDatabase, n.checkApplyLag}, n.healthChecks...)
	for _, check := range checks {
		l, r := check(ctx)
		if l == "" || l == HealthHealthy {
			continue
		}
		reasons = append(reasons, r)
		if rank[l] > worst {
			worst, level = rank[l], l
		}
	}
	if len(reasons) > 0 {
		reason = reasons[0]
		for _, r := range reasons[1:] {
			reason += "; " + r
		}
	}
	return level, reason
}

// AddHealthCheck adds a check to SelfHealth.
func (n *Node) AddHealthCheck(c HealthCheck) { n.healthChecks = append(n.healthChecks, c) }

func (n *Node) checkDatabase(ctx context.Context) (string, string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := n.store.Ping(ctx); err != nil {
		return HealthSick, fmt.Sprintf("the appliance's database does not answer: %v", err)
	}
	return "", ""
}

func (n *Node) checkApplyLag(context.Context) (string, string) {
	lag := int64(n.r().CommitIndex()) - int64(n.applied.Load())
	if lag > 1000 {
		return HealthWarning, fmt.Sprintf("applying committed changes is %d entries behind", lag)
	}
	return "", ""
}

// MemberStatuses lists the members with their roles, states and health.
// This member knows its own state first-hand and asks the others over the
// node API (answers are kept for a second); one that does not answer is
// Unreachable.
func (n *Node) MemberStatuses(ctx context.Context) ([]MemberStatus, error) {
	members, err := n.store.Members(ctx)
	if err != nil {
		return nil, err
	}
	_, leaderID := n.r().LeaderWithID()
	now := time.Now().UTC()
	out := make([]MemberStatus, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		ms := MemberStatus{Member: m, Role: "Replica", State: StateUnknown, Health: HealthWarning, HealthReason: "not measured from this appliance yet", CheckedAt: now}
		if string(leaderID) == m.ID {
			ms.Role = "Primary"
		}
		if m.ID == n.ID() {
			ms.IsSelf = true
			ms.State = n.SelfState()
			ms.Health, ms.HealthReason = n.SelfHealth(ctx)
			ms.UpSince = n.started
			if n.IsLeader() {
				ms.Role = "Primary"
			}
			out[i] = ms
			continue
		}
		out[i] = ms
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st, at, err := n.peerStatus(ctx, out[i].ID, out[i].Address)
			out[i].CheckedAt = at
			if err != nil {
				out[i].State, out[i].Health = StateUnreachable, HealthSick
				out[i].HealthReason = "does not answer this appliance: " + err.Error()
				return
			}
			out[i].State, out[i].Health, out[i].HealthReason, out[i].UpSince = st.State, st.Health, st.HealthReason, st.UpSince
		}(i)
	}
	wg.Wait()
	return out, nil
}

type cachedStatus struct {
	st  PeerStatus
	err error
	at  time.Time
}

// peerStatus asks a member for its status, at most once a second.
func (n *Node) peerStatus(ctx context.Context, id, addr string) (PeerStatus, time.Time, error) {
	n.statusMu.Lock()
	c, ok := n.statusCache[id]
	n.statusMu.Unlock()
	if ok && time.Since(c.at) < time.Second {
		return c.st, c.at, c.err
	}
	// Under load, many requests find the status stale at once: one asks,
	// the others wait for its answer. The request is not tied to the
	// caller that happened to start it, which may give up first.
	v, _, _ := n.statusFlight.Do(id, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		st, err := n.peers.Status(ctx, addr)
		c := cachedStatus{st: st, err: err, at: time.Now().UTC()}
		n.statusMu.Lock()
		if n.statusCache == nil {
			n.statusCache = map[string]cachedStatus{}
		}
		n.statusCache[id] = c
		n.statusMu.Unlock()
		return c, nil
	})
	c = v.(cachedStatus)
	return c.st, c.at, c.err
}

// OwnStatus is what this member answers on GET /node/v1/status.
func (n *Node) OwnStatus(ctx context.Context) PeerStatus {
	h, reason := n.SelfHealth(ctx)
	return PeerStatus{ID: n.ID(), Name: n.cfg.Name, State: n.SelfState(), Health: h, HealthReason: reason, Version: n.cfg.Version,
		AppliedIndex: n.applied.Load(), UpSince: n.started, RunningOperations: n.runner.Running(), Links: n.linkReport()}
}

// FaultTolerance is how many voters may fail before consensus is lost.
func FaultTolerance(voters int) int {
	if voters <= 0 {
		return 0
	}
	return (voters - 1) / 2
}

// memberName is a member's name, or its ID when it is not (any longer) a
// member.
func (n *Node) memberName(ctx context.Context, id string) string {
	if ms, err := n.store.Members(ctx); err == nil {
		for _, m := range ms {
			if m.ID == id {
				return m.Name
			}
		}
	}
	return "member " + id
}

// LeaderTerm is the raft term in which this member is the leader now, if it
// is. The state is read on both sides of the term, so a term is never
// reported for a leadership this member did not hold.
func (n *Node) LeaderTerm() (uint64, bool) {
	r := n.r()
	if r.State() != raft.Leader {
		return 0, false
	}
	term := r.CurrentTerm()
	if r.State() != raft.Leader {
		return 0, false
	}
	return term, true
}

// ClusterID is the ID of the cluster this member belongs to, or "" before
// it has one. Every request names its session cookie after it, so it is
// read again only when this member has applied something since.
func (n *Node) ClusterID(ctx context.Context) string {
	applied := n.applied.Load()
	if c := n.clusterID.Load(); c != nil && c.applied == applied {
		return c.id
	}
	id := ""
	if c, err := n.store.Cluster(ctx); err == nil {
		id = c.ID
	}
	n.clusterID.Store(&cachedClusterID{id: id, applied: applied})
	return id
}

type cachedClusterID struct {
	id      string
	applied uint64
}
