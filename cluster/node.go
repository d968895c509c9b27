// Package cluster is the cluster of appliances: the raft node and its FSM,
// the commands that change replicated state, the operations runner and the
// cluster lock.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sync/singleflight"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"conclave/keyring"
	"conclave/store"
)

// Timing holds raft's timeouts. The defaults suit a LAN of appliances: a
// follower notices a dead leader within about a second, and a leader that
// lost its majority steps down within the lease.
type Timing struct {
	Heartbeat   time.Duration
	Election    time.Duration
	LeaderLease time.Duration
	// Commit: when no new entries flow, the leader tells followers the
	// commit index every Commit to 2×Commit (raft's CommitTimeout). A
	// committed write does not wait for it: the leader appends a barrier
	// behind the last entry at once (nudgeFollowers), which carries the
	// commit index. So it is raft's default, 50 ms: each tick is an empty
	// AppendEntries to every follower, and 1 ms cost an idle primary of
	// five members 20-30 % of a core.
	Commit time.Duration
	// ApplyTimeout bounds how long a proposal waits to be committed.
	ApplyTimeout time.Duration
}

// DefaultTiming returns the documented defaults.
func DefaultTiming() Timing {
	return Timing{
		Heartbeat:    500 * time.Millisecond,
		Election:     500 * time.Millisecond,
		LeaderLease:  500 * time.Millisecond,
		Commit:       50 * time.Millisecond,
		ApplyTimeout: 10 * time.Second,
	}
}

// Identity is who this appliance is; it is made on first start and kept in
// the data directory beside the raft log.
type Identity struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"createdAt"`
}

// LoadIdentity reads the identity from dataDir, making one on first start.
func LoadIdentity(dataDir string) (Identity, bool, error) {
	path := filepath.Join(dataDir, "identity.json")
	raw, err := os.ReadFile(path)
	if err == nil {
		var id Identity
		if err := json.Unmarshal(raw, &id); err != nil || id.ID == "" {
			return id, false, fmt.Errorf("identity %s is damaged: %v", path, err)
		}
		return id, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return Identity{}, false, fmt.Errorf("identity: %w", err)
	}
	id := Identity{ID: uuid.NewString(), CreatedAt: time.Now().UTC()}
	raw, _ = json.MarshalIndent(id, "", "  ")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return id, false, fmt.Errorf("identity: %w", err)
	}
	if err := writeFileAtomic(path, raw, 0o600); err != nil {
		return id, false, fmt.Errorf("identity: %w", err)
	}
	return id, true, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Config is what a Node needs.
type Config struct {
	DataDir   string
	Identity  Identity
	Name      string
	Advertise string // host:port other members use
	Version   string
	Store     *store.Store
	Log       *slog.Logger
	Stream    *StreamLayer
	// Dialer reaches other members (raft and the node API): the seam where
	// tests cut, delay or drop links.
	Dialer Dialer
	Timing Timing
	// Apply applies the commands of other packages (workflow.Apply), and
	// Prefetch reads ahead for a batch of them (workflow.Prefetch).
	Apply    Applier
	Prefetch Prefetcher
	// OfflineThreshold, when set, replaces both thresholds of the automatic
	// Offline Workflow modes (a developer flag for demos and tests).
	OfflineThreshold time.Duration
}

// raftInstance is one life of raft on this appliance. Enrollment, Unjoin
// and Reset replace it (the FSM and its database stay).
type raftInstance struct {
	raft      *raft.Raft
	fsm       *fsm
	logStore  *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	// dormant: the stand-in raft of an isolated member (offline.go).
	dormant bool
}

// Node is this appliance's member of the raft group.
type Node struct {
	cfg     Config
	inst    atomic.Pointer[raftInstance]
	instMu  sync.Mutex // serialises replacing the raft instance
	fsm     *fsm
	store   *store.Store
	log     *slog.Logger
	closing chan struct{}
	wg      sync.WaitGroup
	applied appliedIndex
	// nudging: barriers of nudgeFollowers are under way; nudgeWanted:
	// one more is wanted.
	nudging, nudgeWanted atomic.Bool
	// leaderCh receives raft's leadership changes, whichever instance.
	leaderCh    chan bool
	ready       chan struct{}
	readyOnce   sync.Once
	runner      *Runner
	started     time.Time
	creds       atomic.Pointer[Credentials]
	mode        atomic.Pointer[Mode]
	peers       *PeerClient
	prober      *prober
	pending     pendingPeers
	grants      grants
	events      eventQueue
	lastLeader  atomic.Value // string: the last leader this member knew
	statusMu    sync.Mutex
	statusCache map[string]cachedStatus
	// statusFlight makes concurrent page views that find a member's status
	// (or a link's history) stale share one request to it instead of each
	// sending its own.
	statusFlight singleflight.Group
	// historyMu guards historyCache: other members' link history (links.go).
	historyMu    sync.Mutex
	historyCache map[string]cachedHistory
	// standaloneMu serialises BecomeStandalone.
	standaloneMu sync.Mutex
	enrollKey    atomic.Pointer[[]byte] // the key of the certificate being issued
	// healthChecks are added before the node serves requests.
	healthChecks []HealthCheck
	// resets are the Reset Cluster runs this member started.
	resets localOperations
	// refillFrom names the new primary while Reset Cluster has emptied
	// this member and it waits for the primary's data.
	refillFrom atomic.Value
	clusterID  atomic.Pointer[cachedClusterID]
	// offlineOps are this member's Enable Offline Workflow and Resume
	// Online runs (offline.go).
	offlineOps localOperations
	// backups: where backups go and their schedule (backup.go).
	backups *Backups
	// chainCache: the last check of the audit chain (auditchain.go).
	chainCache atomic.Pointer[chainResult]
}

// ErrNotLeader is returned for a proposal when no primary can be reached.
var ErrNotLeader = errors.New("this appliance is not the primary and no primary can be reached")

// Start opens the raft log and starts the node. On the very first start it
// bootstraps a one-member cluster; later starts find their state on disk.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Timing == (Timing{}) {
		cfg.Timing = DefaultTiming()
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
	}
	n := &Node{cfg: cfg, store: cfg.Store, log: cfg.Log, closing: make(chan struct{}), ready: make(chan struct{}),
		started: time.Now().UTC(), leaderCh: make(chan bool, 16)}
	n.runner = newRunner(n)
	n.peers = newPeerClient(n)
	n.prober = newProber(n)
	cfg.Stream.dialer, cfg.Stream.clientTLS = cfg.Dialer, n.PeerClientTLS
	index, _, err := cfg.Store.AppliedIndex(ctx)
	if err != nil {
		return nil, err
	}
	n.applied.Store(index)
	mode, err := loadMode(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.mode.Store(&mode)
	if err := n.loadCredentials(ctx); err != nil {
		return nil, err
	}
	n.fsm = newFSM(cfg.Store, cfg.Log, n.closing, &n.applied, cfg.Apply, cfg.Prefetch)
	n.fsm.committed = n.nudgeFollowers
	// A member being enrolled waits, raft running but not bootstrapped,
	// for the primary to add it.
	bootstrap := mode.State != StateMaintenance
	if isolated, err := n.startOffline(ctx, mode); err != nil {
		return nil, err
	} else if !isolated {
		if err := n.startRaft(bootstrap, false); err != nil {
			return nil, err
		}
	}
	n.lastLeader.Store("")
	n.wg.Add(5)
	go func() { defer n.wg.Done(); n.fsm.runApplier() }()
	go n.watchLeadership()
	go n.watchState()
	go n.prober.run()
	go n.watchOffline()
	if mode.State == StateLeavingCluster {
		go n.watchRemoval()
	}
	return n, nil
}

// logCacheEntries is how many of the latest raft entries are kept in
// memory: a full AppendEntries batch (MaxAppendEntries) twice over.
const logCacheEntries = 512

func (n *Node) raftDir() string { return filepath.Join(n.cfg.DataDir, "raft") }

func (n *Node) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.Identity.ID)
	rc.HeartbeatTimeout = n.cfg.Timing.Heartbeat
	rc.ElectionTimeout = n.cfg.Timing.Election
	rc.LeaderLeaseTimeout = n.cfg.Timing.LeaderLease
	rc.CommitTimeout = n.cfg.Timing.Commit
	// Proposals waiting to be committed go into the log together, one
	// disk write for many (see the replication benchmark in bench/).
	rc.BatchApplyCh = true
	// Up to 256 entries an AppendEntries and a disk write (raft's default
	// is 64): under load, fewer and larger log writes and FSM batches.
	rc.MaxAppendEntries = 256
	// A raft snapshot is a dump of the whole database (all accounts), and
	// raft's default takes one every 8,192 entries: with 1,000,000 accounts
	// under load, a dump every few seconds on every member. The database
	// keeps the state anyway, so snapshot eight times less often; the log
	// holds up to 64 Ki entries more (tens of MB), and a member that was
	// away catches up from it rather than from a snapshot.
	rc.SnapshotThreshold = 65536
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{n.log}})
	rc.NotifyCh = n.leaderCh
	// The FSM's state lives in PostgreSQL and survives restarts.
	rc.NoSnapshotRestoreOnStart = true
	return rc
}

// startRaft starts a raft instance on the raft directory. With wipe, the
// directory is emptied first (a new life: enrolled elsewhere, or
// standalone). With bootstrap, a directory without state becomes a
// one-member cluster of this appliance.
func (n *Node) startRaft(bootstrap, wipe bool) error {
	dir := n.raftDir()
	if wipe {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("wipe raft state: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("raft directory: %w", err)
	}
	rc := n.raftConfig()
	logStore, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "log.bolt")})
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, rc.Logger)
	if err != nil {
		logStore.Close()
		return fmt.Errorf("open raft snapshots: %w", err)
	}
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  n.cfg.Stream.view(),
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  rc.Logger,
	})
	inst := &raftInstance{logStore: logStore, transport: transport, fsm: n.fsm}
	hasState, err := raft.HasExistingState(logStore, logStore, snaps)
	if err != nil {
		inst.close()
		return fmt.Errorf("raft state: %w", err)
	}
	if !hasState && bootstrap {
		n.log.Info("bootstrapping a new one-member cluster", "member", n.ID())
		err := raft.BootstrapCluster(rc, logStore, logStore, snaps, transport, raft.Configuration{Servers: []raft.Server{
			{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(n.cfg.Advertise)},
		}})
		if err != nil {
			inst.close()
			return fmt.Errorf("bootstrap cluster: %w", err)
		}
	}
	// Raft reads back every entry it just wrote, to send it to each
	// follower and to apply it: from memory for the latest ones, rather
	// than a Bolt transaction and a msgpack decode each (5.9 % of the
	// process's CPU in the replication benchmark).
	logs, err := raft.NewLogCache(logCacheEntries, logStore)
	if err != nil {
		inst.close()
		return fmt.Errorf("raft log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, logStore, snaps, transport)
	if err != nil {
		inst.close()
		return fmt.Errorf("start raft: %w", err)
	}
	inst.raft = r
	n.inst.Store(inst)
	return nil
}

func (inst *raftInstance) close() error {
	var err error
	if inst.raft != nil {
		err = inst.raft.Shutdown().Error()
	}
	// What this raft life handed the FSM is applied, and on disk, before
	// another starts (or the database is changed between two lives): the
	// next life may not have this one's log to replay it from.
	if inst.fsm != nil {
		if ferr := inst.fsm.durable(); ferr != nil {
			inst.fsm.log.Warn("flush the database's log at the end of a raft life", "err", ferr)
		}
	}
	if inst.dormant {
		return err
	}
	inst.transport.Close()
	if cerr := inst.logStore.Close(); err == nil {
		err = cerr
	}
	return err
}

// restartRaft ends this raft life and starts another.
func (n *Node) restartRaft(bootstrap, wipe bool) error {
	return n.restartRaftWith(nil, bootstrap, wipe)
}

// restartRaftWith ends this raft life, runs between while no raft runs
// (so the FSM applies nothing meanwhile), and starts another.
func (n *Node) restartRaftWith(between func() error, bootstrap, wipe bool) error {
	return n.replaceRaft(between,
		func() error { return n.startRaft(bootstrap, wipe) },
		func() error { return n.startRaft(bootstrap, false) })
}

// replaceRaft ends this raft life, runs between while no raft runs, and
// starts the next life with start; if between fails, it starts again on
// the same log with restore. Once Shutdown began it starts nothing:
// Shutdown closes the instance it finds, and one started after it would
// never be closed (its log's file lock would block the next start).
func (n *Node) replaceRaft(between, start, restore func() error) error {
	n.instMu.Lock()
	defer n.instMu.Unlock()
	select {
	case <-n.closing:
		return errors.New("this appliance shuts down")
	default:
	}
	if err := n.inst.Load().close(); err != nil {
		n.log.Warn("stop raft", "err", err)
	}
	if between != nil {
		if err := between(); err != nil {
			// Come back as before rather than with no raft at all.
			if serr := restore(); serr != nil {
				n.log.Error("restart raft", "err", serr)
			}
			return err
		}
	}
	return start()
}

func (n *Node) r() *raft.Raft { return n.inst.Load().raft }

// Shutdown stops the operations runner and raft, and closes the raft log.
func (n *Node) Shutdown() error {
	close(n.closing)
	n.runner.stop()
	n.instMu.Lock()
	err := n.inst.Load().close()
	n.instMu.Unlock()
	n.wg.Wait()
	if err != nil {
		return fmt.Errorf("stop raft: %w", err)
	}
	return nil
}

// ID is this member's ID.
func (n *Node) ID() string { return n.cfg.Identity.ID }

// Name is this member's name.
func (n *Node) Name() string { return n.cfg.Name }

// Version is this member's build.
func (n *Node) Version() string { return n.cfg.Version }

// Ready is closed once the cluster exists and this member has applied it.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// IsLeader tells whether this member is the primary.
func (n *Node) IsLeader() bool { return n.r().State() == raft.Leader }

// Runner is the operations runner.
func (n *Node) Runner() *Runner { return n.runner }

// Status is what this member knows of raft right now.
type Status struct {
	RaftState    string
	LeaderID     string
	LeaderAddr   string
	LastContact  time.Time
	AppliedIndex uint64
	CommitIndex  uint64
	LastIndex    uint64
	Term         uint64
	Voters       int
}

// Status reports raft's view from this member.
func (n *Node) Status() Status {
	addr, id := n.r().LeaderWithID()
	st := Status{
		RaftState:    n.r().State().String(),
		LeaderID:     string(id),
		LeaderAddr:   string(addr),
		LastContact:  n.r().LastContact(),
		AppliedIndex: n.applied.Load(),
		CommitIndex:  n.r().CommitIndex(),
		LastIndex:    n.r().LastIndex(),
		Term:         n.r().CurrentTerm(),
	}
	if f := n.r().GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				st.Voters++
			}
		}
	}
	return st
}

// Propose commits cmd through raft and waits until this member has applied
// it. It fills in the command's ID, time and member when they are empty. A
// command refused by the FSM returns its *store.Rejection.
func (n *Node) Propose(ctx context.Context, cmd Command) error {
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
	data, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("propose %s: %w", cmd.Type, err)
	}
	if n.r().State() != raft.Leader {
		return n.forward(ctx, data)
	}
	_, err = n.proposeLocal(ctx, data)
	return err
}

// proposeLocal proposes on the leader and returns the entry's index.
func (n *Node) proposeLocal(ctx context.Context, data []byte) (uint64, error) {
	timeout := n.cfg.Timing.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	f := n.r().Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, ErrNotLeader
		}
		return 0, fmt.Errorf("propose: %w", err)
	}
	o, ok := f.Response().(*applyOutcome)
	if !ok {
		return f.Index(), nil
	}
	rej, err := o.wait(timeout)
	if err != nil {
		return f.Index(), fmt.Errorf("propose: %w", err)
	}
	if rej != nil {
		return f.Index(), rej
	}
	return f.Index(), nil
}

// nudgeFollowers tells the followers at once that the entry at index is
// committed. Raft tells them the commit index in its next AppendEntries:
// with the next entry, or after the commit timeout when none comes. When
// the entry at index is the last of the log, the leader appends a barrier
// (it changes no FSM), which is replicated at once and carries the commit
// index: a lone write shows on the replicas a round trip after it is
// committed, not a commit timeout later, and an idle cluster sends no
// empty AppendEntries every millisecond. One barrier at a time; under
// load entries follow each other and none is needed. It runs on raft's FSM
// goroutine (fsm.ApplyBatch), so it only starts the barrier.
func (n *Node) nudgeFollowers(index uint64) {
	r := n.r()
	if r.State() != raft.Leader || r.LastIndex() != index {
		return
	}
	// An entry committed while a barrier is under way needs one more
	// after it: nudgeWanted carries the wish to the running loop, which
	// looks again after it says it stopped, so no wish is lost.
	n.nudgeWanted.Store(true)
	if !n.nudging.CompareAndSwap(false, true) {
		return
	}
	go func() {
		for {
			for n.nudgeWanted.Swap(false) {
				r.Barrier(n.cfg.Timing.ApplyTimeout).Error()
			}
			n.nudging.Store(false)
			if !n.nudgeWanted.Load() || !n.nudging.CompareAndSwap(false, true) {
				return
			}
		}
	}()
}

// forward sends a proposal to the leader over the node API and waits until
// this member has applied it too, so the caller reads its own write.
func (n *Node) forward(ctx context.Context, data []byte) error {
	_, leaderID := n.r().LeaderWithID()
	if leaderID == "" {
		return ErrNotLeader
	}
	addr, _ := n.r().LeaderWithID()
	index, err := n.peers.Propose(ctx, string(addr), data)
	if err != nil {
		return err
	}
	return n.WaitApplied(ctx, index)
}

// WaitApplied waits until this member has applied the entry at index.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	switch err := n.applied.wait(ctx, index, n.closing); {
	case errors.Is(err, errStopped):
		return ErrNotLeader
	case err != nil:
		return fmt.Errorf("waiting to apply entry %d: %w", index, err)
	}
	return nil
}

// ProposeForPeer proposes a command a member forwarded; it answers the
// entry's index and the rejection, if any.
func (n *Node) ProposeForPeer(ctx context.Context, data []byte) (uint64, error) {
	if n.r().State() != raft.Leader {
		return 0, ErrNotLeader
	}
	return n.proposeLocal(ctx, data)
}

// ProposeData encodes data into a command of type typ and proposes it.
func (n *Node) ProposeData(ctx context.Context, typ, actor string, data any, ev *EventSpec) error {
	cmd, err := Encode(typ, data)
	if err != nil {
		return err
	}
	cmd.Actor = actor
	cmd.Event = ev
	return n.Propose(ctx, cmd)
}

// RecordEvent appends an audit event that has no other effect.
func (n *Node) RecordEvent(ctx context.Context, actor string, ev EventSpec) error {
	if n.Isolated() {
		return n.ApplyOffline(ctx, Command{Type: CmdRecordEvent, Actor: actor, Event: &ev})
	}
	return n.Propose(ctx, Command{Type: CmdRecordEvent, Actor: actor, Event: &ev})
}

// watchLeadership does the primary's duties each time this member becomes
// the leader: create the cluster on first start, keep its own member record
// current, and settle operations a previous primary left unfinished.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	check := time.NewTicker(time.Second)
	defer check.Stop()
	ticks := 0
	for {
		select {
		case <-n.closing:
			return
		case isLeader := <-n.leaderCh:
			if isLeader {
				n.onLeader()
			}
		case <-check.C:
			// The primary settles operations whose runner is gone, now
			// and then (at an election the old runner may still be alive).
			if ticks++; ticks%10 == 0 && n.IsLeader() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				n.runner.settleOrphans(ctx)
				cancel()
			}
			// Ready also on followers, once they applied the cluster.
			if _, err := n.store.Cluster(context.Background()); err == nil {
				n.readyOnce.Do(func() { close(n.ready) })
			}
		}
	}
}

func (n *Node) onLeader() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Wait until every entry of earlier terms is applied here.
	if err := n.r().Barrier(10 * time.Second).Error(); err != nil {
		n.log.Warn("barrier after election", "err", err)
		return
	}
	n.fsm.drain()
	me := MemberData{ID: n.ID(), Name: n.cfg.Name, Address: n.cfg.Advertise, Version: n.cfg.Version, IsVoter: true}
	if _, err := n.store.Cluster(ctx); errors.Is(err, store.ErrNotFound) {
		clusterID := uuid.NewString()
		ca, err := NewCA(clusterID)
		if err != nil {
			n.log.Error("create cluster CA", "err", err)
			return
		}
		keys, err := keyring.New()
		if err != nil {
			n.log.Error("create data keys", "err", err)
			return
		}
		err = n.ProposeData(ctx, CmdInitCluster, "system", InitCluster{ClusterID: clusterID, Member: me, CA: &ca, DataKeys: &keys},
			&EventSpec{Type: "ClusterCreated", Details: map[string]string{"member": n.cfg.Name}})
		if err != nil {
			n.log.Error("create cluster", "err", err)
			return
		}
	} else if err != nil {
		n.log.Error("read cluster", "err", err)
		return
	} else if err := n.refreshSelf(ctx, me); err != nil {
		n.log.Error("update member record", "err", err)
	}
	if err := n.ensureDataKeys(ctx); err != nil {
		n.log.Error("data keys", "err", err)
	}
	if err := n.sealLegacySecrets(ctx); err != nil {
		n.log.Error("seal the OIDC client secret stored in clear", "err", err)
	}
	// The first member signs its own member certificate with the new CA.
	if err := n.ensureOwnCertificate(ctx); err != nil {
		n.log.Error("member certificate", "err", err)
	}
	// An appliance restored from a backup becomes a cluster of its own.
	if err := n.finishRestore(ctx); err != nil {
		n.log.Error("finish restore", "err", err)
	}
	n.readyOnce.Do(func() { close(n.ready) })
	n.recordElection(ctx)
	n.runner.settleOrphans(ctx)
}

// recordElection records that this member became the primary by election
// (its predecessor stopped answering or lost its majority), so that every
// console can say who the primary is and since when. A planned Failover
// records its own change.
func (n *Node) recordElection(ctx context.Context) {
	if lock, err := n.store.Lock(ctx); err == nil && lock.Kind == "Failover" {
		return
	}
	previous := ""
	if evs, err := n.store.Events(ctx, store.EventFilter{Type: "ClusterPrimaryChanged", Limit: 1}); err == nil && len(evs) > 0 {
		previous = evs[0].Details["primary"]
	} else if evs, err := n.store.Events(ctx, store.EventFilter{Type: "ClusterCreated", Limit: 1}); err == nil && len(evs) > 0 {
		previous = evs[0].Details["member"]
	}
	if previous == "" || previous == n.cfg.Name {
		return
	}
	term, _ := n.LeaderTerm()
	err := n.RecordEvent(ctx, "system", EventSpec{Type: "ClusterPrimaryChanged", Details: map[string]string{
		"primary": n.cfg.Name, "previous": previous, "reason": "election", "term": strconv.FormatUint(term, 10)}})
	if err != nil {
		n.log.Warn("record the election", "err", err)
	}
}

func (n *Node) refreshSelf(ctx context.Context, me MemberData) error {
	members, err := n.store.Members(ctx)
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.ID == me.ID && m.Name == me.Name && m.Address == me.Address && m.Version == me.Version && m.IsVoter == me.IsVoter {
			return nil
		}
	}
	return n.ProposeData(ctx, CmdPutMember, "system", me, nil)
}

// slogWriter feeds raft's hclog output into slog.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn(string(trimNewline(p)), "component", "raft")
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

var _ io.Writer = slogWriter{}

// TakeSnapshot asks raft for a snapshot now (raft also takes them by itself
// as the log grows).
func (n *Node) TakeSnapshot() error {
	return n.r().Snapshot().Error()
}

// ProposeDataRetrying is ProposeData that waits out an election (see
// ProposeRetrying).
func (n *Node) ProposeDataRetrying(ctx context.Context, typ, actor string, data any, ev *EventSpec) error {
	cmd, err := Encode(typ, data)
	if err != nil {
		return err
	}
	cmd.Actor = actor
	cmd.Event = ev
	return n.ProposeRetrying(ctx, cmd)
}

// ProposeRetrying is Propose that waits out an election: while no primary
// is known (a failover, a primary that just died), it tries again for up
// to 15 seconds. Operations use it so that a change of primary does not
// abandon them.
func (n *Node) ProposeRetrying(ctx context.Context, cmd Command) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := n.Propose(ctx, cmd)
		if !errors.Is(err, ErrNotLeader) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-n.closing:
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// appliedIndex is the last raft index this member's FSM applied.
func (n *Node) appliedIndex() uint64 { return n.applied.Load() }

// CatchUp waits until this member has applied everything the primary had
// applied when asked: a replica answering "not found" for something made a
// moment ago on another member (a load balancer without sticky sessions)
// first makes sure it is not merely behind.
func (n *Node) CatchUp(ctx context.Context) error {
	if n.IsLeader() {
		return nil
	}
	addr, id := n.r().LeaderWithID()
	if id == "" {
		return ErrNotLeader
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := n.peers.Status(cctx, string(addr))
	if err != nil {
		return fmt.Errorf("ask the primary how far it is: %w", err)
	}
	return n.WaitApplied(cctx, st.AppliedIndex)
}
