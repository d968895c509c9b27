package cluster

// Offline Workflow Mode. A member that lost consensus can be isolated on
// purpose (Enable Offline Workflow) so that access requests go on there on
// the policy and accounts it has, while raft can commit nothing:
//
//   - Isolating stops this member's raft (it is replaced by a dormant
//     instance that knows no peers, so it neither applies, votes nor
//     campaigns), keeps a copy of the access requests as raft left them
//     (store.SaveOfflineBase) and persists the mode, so a restart stays
//     isolated.
//   - While isolated, workflow changes are applied to this member's own
//     database outside raft (ApplyOffline), and every audit event recorded
//     here goes to the offline spool too: workflow events, sign-ins, state
//     changes (the event queue of quorum.go drains into the spool).
//   - Resume Online first checks that a majority of the voters answers.
//     It spools a drop event for each offline request still in flight,
//     puts the access requests back as raft left them and removes the
//     offline events from the audit log (store.RestoreOfflineBase), starts
//     raft again on its own log, waits until it has caught up, and proposes
//     every spooled event with its original id, time, actor and member: the
//     FSM inserts an event once per id, so the merge may be retried after a
//     crash without duplicates. Only then does the member leave Isolated.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"

	"conclave/store"
)

// Offline Workflow thresholds: the automatic modes wait this long by
// default, and a setting may not go below the minimum.
const (
	DefaultOfflineThreshold = 15 * time.Minute
	MinOfflineThreshold     = 5 * time.Minute
)

// OfflineSettings are the cluster's settings of the automatic Offline
// Workflow modes (KeyOffline).
type OfflineSettings struct {
	// AutoIsolate enables Offline Workflow on a member that has been
	// without consensus for IsolateAfterMinutes.
	AutoIsolate         bool `json:"autoIsolate"`
	IsolateAfterMinutes int  `json:"isolateAfterMinutes"`
	// AutoResume resumes an isolated member once a majority has answered
	// it for ResumeAfterMinutes.
	AutoResume         bool `json:"autoResume"`
	ResumeAfterMinutes int  `json:"resumeAfterMinutes"`
}

// DefaultOfflineSettings are off, with the default thresholds.
func DefaultOfflineSettings() OfflineSettings {
	m := int(DefaultOfflineThreshold / time.Minute)
	return OfflineSettings{IsolateAfterMinutes: m, ResumeAfterMinutes: m}
}

// Validate refuses thresholds below the minimum, naming the field.
func (o OfflineSettings) Validate() error {
	min := int(MinOfflineThreshold / time.Minute)
	if o.IsolateAfterMinutes < min || o.IsolateAfterMinutes > 24*60 {
		return store.Reject("isolateAfterMinutes", "the time without consensus before Offline Workflow starts must be between %d and 1440 minutes", min)
	}
	if o.ResumeAfterMinutes < min || o.ResumeAfterMinutes > 24*60 {
		return store.Reject("resumeAfterMinutes", "the time with a majority before Resume Online must be between %d and 1440 minutes", min)
	}
	return nil
}

// offlineThresholds are the waits of the automatic modes: the settings',
// or the developer override (Config.OfflineThreshold) for demos and tests.
func (n *Node) offlineThresholds(o OfflineSettings) (isolate, resume time.Duration) {
	if d := n.cfg.OfflineThreshold; d > 0 {
		return d, d
	}
	return time.Duration(o.IsolateAfterMinutes) * time.Minute, time.Duration(o.ResumeAfterMinutes) * time.Minute
}

// IsolateSteps and ReintegrateSteps are the named steps of the operations.
var (
	IsolateSteps     = []string{"Pre-checks", "Stop replicating", "Offline Workflow on"}
	ReintegrateSteps = []string{"Pre-checks", "Drop requests in flight", "Rejoin and catch up", "Merge the offline audit log", "Back online"}
)

// Isolated tells whether this member runs the workflow offline now (and is
// not resuming).
func (n *Node) Isolated() bool {
	m := n.Mode()
	return m.State == StateIsolated && !m.Resuming && n.inst.Load().dormant
}

// CheckIsolate refuses Enable Offline Workflow with a reason a person can
// act on.
func (n *Node) CheckIsolate() error {
	switch st := n.SelfState(); st {
	case StateReplicaNoQuorum, StatePrimaryNoQuorum:
		return nil
	case StateOnline, StateReplicaWithQuorum:
		return fmt.Errorf("%s has consensus (%s): Offline Workflow is only for a member that lost contact with the majority of its cluster", n.cfg.Name, StateLabel(st))
	case StateIsolated:
		return fmt.Errorf("%s is in Offline Workflow already", n.cfg.Name)
	default:
		return fmt.Errorf("%s is %s: Offline Workflow is only for a member that lost consensus", n.cfg.Name, StateLabel(st))
	}
}

// Isolate enables Offline Workflow on this member and returns the
// operation's ID. It is quick and ends before it returns.
func (n *Node) Isolate(ctx context.Context, actor, reason string) (string, error) {
	if err := n.CheckIsolate(); err != nil {
		return "", err
	}
	if !n.offlineOps.begin() {
		return "", errors.New("Enable Offline Workflow or Resume Online is already running on this appliance; wait for it to end")
	}
	defer n.offlineOps.end()
	op := newLocalOperation(uuid.NewString(), "Isolate", n.ID(), actor, IsolateSteps)
	n.offlineOps.put(op)
	from := n.SelfState()
	op.step(0, StepSucceeded, fmt.Sprintf("%s is %s", n.cfg.Name, StateLabel(from)))
	details := map[string]string{"member": n.cfg.Name, "from": from, "reason": reason}
	started := time.Now().UTC()

	op.step(1, StepRunning, "")
	since := started
	// The mode first: a crash from here on comes back isolated, and the
	// base copy is taken once raft stopped applying.
	if err := n.setMode(Mode{State: StateIsolated, Reason: reason, Since: since}); err != nil {
		op.fail(err)
		return op.id, op.stepFailed(1, err)
	}
	err := n.swapRaft(func() error { return n.store.SaveOfflineBase(ctx, since) }, true)
	if err != nil {
		err = fmt.Errorf("stop replicating: %w", err)
		n.setMode(Mode{})
		op.fail(err)
		return op.id, op.stepFailed(1, err)
	}
	op.step(1, StepSucceeded, "raft stopped on this member; access requests are kept as the cluster left them")

	op.step(2, StepRunning, "")
	ev := func(typ string, at time.Time) error {
		return n.ApplyOffline(ctx, Command{Type: CmdRecordEvent, At: at, Actor: actor, Event: &EventSpec{Type: typ, OperationID: op.id, Details: details}})
	}
	if err := ev("ClusterIsolateStarted", started); err != nil {
		return op.id, op.stepFailed(2, err)
	}
	n.flushEvents()
	if err := ev("ClusterIsolateCompleted", time.Now().UTC()); err != nil {
		return op.id, op.stepFailed(2, err)
	}
	op.step(2, StepSucceeded, n.cfg.Name+" runs the workflow offline")
	op.finish(OpSucceeded, "")
	n.log.Warn("Offline Workflow enabled", "by", actor, "reason", reason)
	return op.id, nil
}

// swapRaft ends this raft life, runs between while no raft runs, and starts
// a dormant instance (isolated) or raft on its own log again.
func (n *Node) swapRaft(between func() error, dormant bool) error {
	onOwnLog := func() error { return n.startRaft(true, false) }
	start := onOwnLog
	if dormant {
		start = n.startDormant
	}
	return n.replaceRaft(between, start, onOwnLog)
}

// startDormant starts a raft instance with an in-memory log and no
// configuration: it never campaigns, votes or applies, and is not reachable
// by the other members, so an isolated member takes no part in consensus
// while its real log waits on disk.
func (n *Node) startDormant() error {
	rc := n.raftConfig()
	rc.NotifyCh = nil
	logs := raft.NewInmemStore()
	_, trans := raft.NewInmemTransport(raft.ServerAddress(n.cfg.Advertise))
	r, err := raft.NewRaft(rc, n.fsm, logs, logs, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		return fmt.Errorf("start dormant raft: %w", err)
	}
	n.inst.Store(&raftInstance{raft: r, dormant: true, fsm: n.fsm})
	return nil
}

// ApplyOffline applies a command on this member alone, outside raft, and
// spools the events it records. Only an isolated member uses it.
func (n *Node) ApplyOffline(ctx context.Context, cmd Command) error {
	if cmd.ID == "" {
		cmd.ID = NewRecordID()
	}
	if cmd.At.IsZero() {
		cmd.At = time.Now().UTC()
	}
	if cmd.Member == "" {
		cmd.Member = n.ID()
	}
	if cmd.Actor == "" {
		cmd.Actor = "system"
	}
	return n.store.ApplyOffline(ctx, cmd.ID, func(tx *store.Tx) error {
		return apply(ctx, tx, cmd, n.cfg.Apply)
	})
}

// ReachReport is what a member without consensus learns by asking the
// other voters.
type ReachReport struct {
	Voters    int
	Answering []string // names, this member included
	Missing   []string // names of voters that do not answer
	Primary   string   // the name of a member that reports being the primary with quorum
}

// Majority tells whether a majority of the voters answers.
func (r ReachReport) Majority() bool { return len(r.Answering) > r.Voters/2 }

// ReachMajority asks every other voter for its status now (no cache).
func (n *Node) ReachMajority(ctx context.Context) (ReachReport, error) {
	members, err := n.store.Members(ctx)
	if err != nil {
		return ReachReport{}, err
	}
	var rep ReachReport
	type answer struct {
		name string
		st   PeerStatus
		err  error
	}
	answers := make(chan answer)
	asked := 0
	for _, m := range members {
		if !m.IsVoter {
			continue
		}
		rep.Voters++
		if m.ID == n.ID() {
			rep.Answering = append(rep.Answering, m.Name)
			continue
		}
		asked++
		go func() {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := n.peers.Status(sctx, m.Address)
			answers <- answer{m.Name, st, err}
		}()
	}
	for range asked {
		a := <-answers
		if a.err != nil {
			rep.Missing = append(rep.Missing, a.name)
			continue
		}
		rep.Answering = append(rep.Answering, a.name)
		if a.st.State == StateOnline {
			rep.Primary = a.name
		}
	}
	slices.Sort(rep.Answering)
	slices.Sort(rep.Missing)
	return rep, nil
}

// CheckReintegrate refuses Resume Online with a reason a person can act on.
func (n *Node) CheckReintegrate(ctx context.Context) (ReachReport, error) {
	m := n.Mode()
	if m.State != StateIsolated {
		return ReachReport{}, fmt.Errorf("%s is %s, not in Offline Workflow: there is nothing to resume", n.cfg.Name, StateLabel(n.SelfState()))
	}
	if m.Resuming {
		return ReachReport{}, fmt.Errorf("%s is resuming online already; follow its progress on the cluster page", n.cfg.Name)
	}
	rep, err := n.ReachMajority(ctx)
	if err != nil {
		return rep, err
	}
	if !rep.Majority() {
		return rep, fmt.Errorf("only %d of %d voting members can be reached (%s) and %d are needed: %s do not answer. Resume Online once a majority is back",
			len(rep.Answering), rep.Voters, strings.Join(rep.Answering, ", "), rep.Voters/2+1, strings.Join(rep.Missing, ", "))
	}
	return rep, nil
}

// Reintegrate starts Resume Online and returns the operation's ID; the
// rest runs in the background (follow it with Operation).
func (n *Node) Reintegrate(ctx context.Context, actor string) (string, error) {
	rep, err := n.CheckReintegrate(ctx)
	if err != nil {
		return "", err
	}
	if !n.offlineOps.begin() {
		return "", errors.New("Enable Offline Workflow or Resume Online is already running on this appliance; wait for it to end")
	}
	op := newLocalOperation(uuid.NewString(), "Reintegrate", n.ID(), actor, ReintegrateSteps)
	n.offlineOps.put(op)
	op.step(0, StepSucceeded, fmt.Sprintf("%d of %d voting members answer: %s", len(rep.Answering), rep.Voters, strings.Join(rep.Answering, ", ")))
	started := time.Now().UTC()
	details := map[string]string{"member": n.cfg.Name}
	if err := n.store.SpoolEvent(ctx, store.Event{ID: op.id, Type: "ClusterReintegrateStarted", MemberID: n.ID(), Actor: actor, At: started,
		OperationID: op.id, Details: details}); err != nil {
		n.offlineOps.end()
		op.fail(err)
		return op.id, err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.offlineOps.end()
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := n.runReintegrate(rctx, op, actor); err != nil {
			n.log.Error("Resume Online failed", "err", err)
			op.fail(err)
		}
	}()
	return op.id, nil
}

// runReintegrate runs the steps of Resume Online after the pre-checks. A
// member that stopped while resuming runs it again from startup (with a
// nil op) and each step finds what is done already.
func (n *Node) runReintegrate(ctx context.Context, op *localOperation, actor string) error {
	if op == nil {
		op = newLocalOperation(uuid.NewString(), "Reintegrate", n.ID(), actor, ReintegrateSteps)
		op.step(0, StepSkipped, "resumed after a restart")
		n.offlineOps.put(op)
	}
	if !n.Mode().Resuming {
		op.step(1, StepRunning, "")
		dropped, err := n.spoolDrops(ctx, op.id)
		if err != nil {
			return op.stepFailed(1, err)
		}
		op.step(1, StepSucceeded, countOf(dropped, "request", "requests")+" made offline and still in flight dropped")
		m := n.Mode()
		m.Resuming = true
		if err := n.setMode(m); err != nil {
			return op.stepFailed(1, err)
		}
	} else {
		op.step(1, StepSkipped, "done before a restart")
	}

	op.step(2, StepRunning, "")
	if n.inst.Load().dormant {
		// Still the dormant instance: put the requests back and start raft
		// on the log it left.
		if err := n.swapRaft(func() error { _, err := n.store.RestoreOfflineBase(ctx); return err }, false); err != nil {
			return op.stepFailed(2, fmt.Errorf("start raft again: %w", err))
		}
	}
	err := n.waitFor(ctx, 2*time.Minute, func() bool {
		// Caught up: applied what the primary has applied (not raft's
		// commit index, which may end at a barrier no database records).
		_, leader := n.r().LeaderWithID()
		return leader != "" && n.CatchUp(ctx) == nil
	})
	if err != nil {
		return op.stepFailed(2, fmt.Errorf("no primary reached this member, or it did not catch up, within two minutes: %w", err))
	}
	_, leader := n.r().LeaderWithID()
	op.step(2, StepSucceeded, fmt.Sprintf("a replica of %s again, at entry %d", n.memberName(ctx, string(leader)), n.applied.Load()))

	op.step(3, StepRunning, "")
	merged, err := n.mergeSpool(ctx)
	if err != nil {
		return op.stepFailed(3, err)
	}
	op.step(3, StepSucceeded, countOf(merged, "event", "events")+" from the offline period merged into the cluster's audit log")

	op.step(4, StepRunning, "")
	if err := n.setMode(Mode{}); err != nil {
		return op.stepFailed(4, err)
	}
	err = n.ProposeRetrying(ctx, Command{Type: CmdRecordEvent, Actor: actor, Event: &EventSpec{Type: "ClusterReintegrateCompleted", OperationID: op.id,
		Details: map[string]string{"member": n.cfg.Name, "merged": fmt.Sprint(merged)}}})
	if err != nil {
		return op.stepFailed(4, err)
	}
	op.step(4, StepSucceeded, n.cfg.Name+" is online again")
	op.finish(OpSucceeded, "")
	n.log.Info("Resume Online done", "merged", merged)
	return nil
}

// spoolDrops spools a drop event for every request made offline that is
// still pending or checked out: the cluster never had it, so it ends here.
func (n *Node) spoolDrops(ctx context.Context, opID string) (int, error) {
	reqs, err := n.store.OfflineInFlight(ctx)
	if err != nil {
		return 0, err
	}
	now := time.Now().UTC()
	for _, r := range reqs {
		err := n.store.SpoolEvent(ctx, store.Event{ID: "offline-drop-" + r.ID, Type: "AccessRequestDropped", MemberID: n.ID(), Actor: "system", At: now,
			OperationID: opID, Details: map[string]string{"requestId": r.ID, "account": r.AccountName + "@" + r.AssetName, "requester": r.Requester,
				"state": r.State, "reason": fmt.Sprintf("made in Offline Workflow on %s and still %s at Resume Online; %s, make a new request if you still need the account",
					n.cfg.Name, strings.ToLower(r.State), r.Requester)}})
		if err != nil {
			return 0, err
		}
	}
	return len(reqs), nil
}

// mergeSpool proposes every spooled event the cluster does not have, with
// its own id, time, actor and member.
func (n *Node) mergeSpool(ctx context.Context) (int, error) {
	evs, err := n.store.UnmergedOfflineEvents(ctx)
	if err != nil {
		return 0, err
	}
	for i, e := range evs {
		details := e.Details
		if details == nil {
			details = map[string]string{}
		}
		details["offline"] = "true"
		cmd := Command{Type: CmdRecordEvent, ID: e.ID, At: e.At, Actor: e.Actor, Member: e.MemberID,
			Event: &EventSpec{Type: e.Type, OperationID: e.OperationID, Details: details}}
		if err := n.ProposeRetrying(ctx, cmd); err != nil {
			return i, fmt.Errorf("merge event %s: %w", e.ID, err)
		}
		if err := n.store.MarkOfflineEventMerged(ctx, e.ID, time.Now().UTC()); err != nil {
			return i, err
		}
	}
	return len(evs), nil
}

// startOffline is called at startup: an isolated member comes back
// isolated (dormant raft), and one that was resuming finishes.
func (n *Node) startOffline(ctx context.Context, mode Mode) (started bool, err error) {
	if mode.State != StateIsolated {
		return false, nil
	}
	if !mode.Resuming {
		// The base is kept before the mode is saved when raft stops; after
		// a crash in between it is kept now, raft not running yet.
		if err := n.store.SaveOfflineBase(ctx, mode.Since); err != nil {
			return false, err
		}
		return true, n.startDormant()
	}
	if _, err := n.store.RestoreOfflineBase(ctx); err != nil {
		return false, err
	}
	return false, nil
}

// watchOffline runs the automatic modes when the settings enable them: a
// member without consensus for the threshold enables Offline Workflow, and
// an isolated member that a majority answered for the threshold resumes.
func (n *Node) watchOffline() {
	defer n.wg.Done()
	if m := n.Mode(); m.State == StateIsolated && m.Resuming {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if err := n.runReintegrate(ctx, nil, "system"); err != nil {
			n.log.Error("Resume Online after a restart failed", "err", err)
		}
		cancel()
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var lostSince, reachSince time.Time
	lastAsk := time.Time{}
	for {
		select {
		case <-n.closing:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n.offlineTick(ctx, &lostSince, &reachSince, &lastAsk)
		cancel()
	}
}

func (n *Node) offlineTick(ctx context.Context, lostSince, reachSince, lastAsk *time.Time) {
	set, err := LoadSettings(ctx, n.store)
	if err != nil {
		return
	}
	isolateAfter, resumeAfter := n.offlineThresholds(set.Offline)
	now := time.Now()
	switch st := n.SelfState(); {
	case (st == StateReplicaNoQuorum || st == StatePrimaryNoQuorum) && set.Offline.AutoIsolate:
		*reachSince = time.Time{}
		if lostSince.IsZero() {
			*lostSince = now
		}
		if now.Sub(*lostSince) >= isolateAfter {
			*lostSince = time.Time{}
			reason := fmt.Sprintf("automatic: no consensus for %s", isolateAfter)
			if _, err := n.Isolate(ctx, "system", reason); err != nil {
				n.log.Warn("automatic Offline Workflow", "err", err)
			}
		}
	case n.Isolated() && set.Offline.AutoResume:
		*lostSince = time.Time{}
		// Ask the others at most once a second.
		if now.Sub(*lastAsk) < time.Second {
			return
		}
		*lastAsk = now
		rep, err := n.ReachMajority(ctx)
		if err != nil || !rep.Majority() {
			*reachSince = time.Time{}
			return
		}
		if reachSince.IsZero() {
			*reachSince = now
		}
		if now.Sub(*reachSince) >= resumeAfter {
			*reachSince = time.Time{}
			if _, err := n.Reintegrate(ctx, "system"); err != nil {
				n.log.Warn("automatic Resume Online", "err", err)
			}
		}
	default:
		*lostSince, *reachSince = time.Time{}, time.Time{}
	}
}

// IsolatedMember refuses a change of membership while a member is in
// Offline Workflow, naming it.
func IsolatedMember(ms []MemberStatus) error {
	for _, m := range ms {
		if m.State == StateIsolated {
			return fmt.Errorf("%s is in Offline Workflow: no member may be added or removed until it resumes online (Resume Online on %s)", m.Name, m.Name)
		}
	}
	return nil
}

// isStoredMember tells whether id is a member as this appliance's
// database says.
func (n *Node) isStoredMember(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ms, err := n.store.Members(ctx)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(ms, func(m store.Member) bool { return m.ID == id })
}
