package cluster_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testpg"
	"conclave/store"
)

func TestMain(m *testing.M) { testpg.Main(m) }

type member struct {
	node  *cluster.Node
	store *store.Store
	dir   string
	url   string
}

// startNode starts a one-member node on dir and the database at url.
func startNode(t *testing.T, dir, url string) *member {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	id, _, err := cluster.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A one-member cluster never dials; the stream layer is still real.
	stream := cluster.NewStreamLayer(cluster.AdvertiseAddr("127.0.0.1:1"))
	timing := cluster.DefaultTiming()
	timing.Heartbeat, timing.Election, timing.LeaderLease = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	n, err := cluster.Start(ctx, cluster.Config{
		DataDir: dir, Identity: id, Name: "alpha", Advertise: "127.0.0.1:1", Version: "test",
		Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Stream: stream, Timing: timing,
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &member{node: n, store: st, dir: dir, url: url}
	t.Cleanup(m.stop)
	select {
	case <-n.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("node not ready")
	}
	waitFor(t, "leadership", n.IsLeader)
	return m
}

func (m *member) stop() {
	if m.node != nil {
		m.node.Shutdown()
		m.store.Close()
		m.node = nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBootstrapOnceAndRestart(t *testing.T) {
	dir, url := t.TempDir(), testpg.NewDatabase(t)
	m := startNode(t, dir, url)
	ctx := context.Background()
	c1, err := m.store.Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = m.node.ProposeData(ctx, cluster.CmdCreateUser, "admin", cluster.CreateUser{UserID: "u1", Username: "ann", Role: cluster.RoleHelpdesk, Source: "local"},
		&cluster.EventSpec{Type: "UserCreated"})
	if err != nil {
		t.Fatal(err)
	}
	before, _, _ := m.store.AppliedIndex(ctx)
	m.stop()

	m2 := startNode(t, dir, url)
	c2, err := m2.store.Cluster(ctx)
	if err != nil || c2.ID != c1.ID {
		t.Fatalf("cluster after restart = %v, %v; want %v", c2.ID, err, c1.ID)
	}
	events, _ := m2.store.Events(ctx, store.EventFilter{Type: "ClusterCreated"})
	if len(events) != 1 {
		t.Fatalf("%d ClusterCreated events; the bootstrap must happen once", len(events))
	}
	users, _ := m2.store.Users(ctx)
	if len(users) != 1 || users[0].Username != "ann" {
		t.Fatalf("users after restart = %v", users)
	}
	after, _, _ := m2.store.AppliedIndex(ctx)
	if after < before {
		t.Fatalf("applied index went back from %d to %d", before, after)
	}
	members, _ := m2.store.Members(ctx)
	if len(members) != 1 || members[0].Name != "alpha" {
		t.Fatalf("members = %+v", members)
	}
}

func TestRejectionsComeBackAsRejections(t *testing.T) {
	m := startNode(t, t.TempDir(), testpg.NewDatabase(t))
	ctx := context.Background()
	create := func() error {
		return m.node.ProposeData(ctx, cluster.CmdCreateUser, "admin", cluster.CreateUser{UserID: "u-" + time.Now().String(), Username: "ann", Role: cluster.RoleHelpdesk, Source: "local"},
			&cluster.EventSpec{Type: "UserCreated"})
	}
	if err := create(); err != nil {
		t.Fatal(err)
	}
	err := create()
	var rej *store.Rejection
	if !errors.As(err, &rej) || rej.Field != "username" {
		t.Fatalf("duplicate user: %v; want a rejection on username", err)
	}
	// A rejected command records no event.
	events, _ := m.store.Events(ctx, store.EventFilter{Type: "UserCreated"})
	if len(events) != 1 {
		t.Fatalf("%d UserCreated events; want 1", len(events))
	}
	// Unknown command types (a newer build) are rejected the same way on
	// every member.
	err = m.node.Propose(ctx, cluster.Command{Type: "from.the.future"})
	if !errors.As(err, &rej) || !strings.Contains(rej.Message, "same build") {
		t.Fatalf("unknown command: %v", err)
	}
}

func TestLastAdministratorIsKept(t *testing.T) {
	m := startNode(t, t.TempDir(), testpg.NewDatabase(t))
	ctx := context.Background()
	if err := m.node.ProposeData(ctx, cluster.CmdCreateUser, "system", cluster.CreateUser{UserID: "a1", Username: "admin", Role: cluster.RoleAdministrator, Source: "local"}, nil); err != nil {
		t.Fatal(err)
	}
	helpdesk, yes := cluster.RoleHelpdesk, true
	for name, up := range map[string]cluster.UpdateUser{
		"demote":  {UserID: "a1", Role: &helpdesk},
		"disable": {UserID: "a1", Disabled: &yes},
	} {
		err := m.node.ProposeData(ctx, cluster.CmdUpdateUser, "admin", up, nil)
		var rej *store.Rejection
		if !errors.As(err, &rej) || !strings.Contains(rej.Message, "last enabled") {
			t.Errorf("%s the last administrator: %v; want a rejection", name, err)
		}
	}
}

func TestOperationRunnerStepsLockAndEvents(t *testing.T) {
	m := startNode(t, t.TempDir(), testpg.NewDatabase(t))
	ctx := context.Background()
	release := make(chan struct{})
	started := make(chan struct{})
	spec := cluster.OperationSpec{
		Kind: "Enroll", StartEvent: "ClusterReplicaEnrollmentStarted", EndEvent: "ClusterReplicaEnrollmentCompleted",
		Details: map[string]string{"replica": "beta"},
		Steps: []cluster.StepSpec{
			{Name: "Pre-checks", Run: func(ctx context.Context, p *cluster.Progress) error { return nil }},
			{Name: "Copy", Run: func(ctx context.Context, p *cluster.Progress) error {
				if err := p.Report(ctx, 50, "half way"); err != nil {
					return err
				}
				close(started)
				select {
				case <-release:
				case <-ctx.Done():
				}
				return ctx.Err()
			}},
		},
	}
	opID, err := m.node.Runner().Start(ctx, "admin", spec)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	// While it runs, the lock names it and a second operation is refused.
	lock, err := m.store.Lock(ctx)
	if err != nil || lock.OperationID != opID || lock.Kind != "Enroll" || lock.Actor != "admin" {
		t.Fatalf("lock = %+v, %v", lock, err)
	}
	_, err = m.node.Runner().Start(ctx, "bob", cluster.OperationSpec{Kind: "Failover"})
	var rej *store.Rejection
	if !errors.As(err, &rej) || !strings.Contains(rej.Message, opID) {
		t.Fatalf("second operation: %v; want a rejection naming %s", err, opID)
	}
	// The report may be held back for the rate limit; it arrives all the same.
	waitFor(t, "progress report", func() bool {
		op, _ := m.store.Operation(ctx, opID)
		return op.Steps[1].Percent == 50
	})
	op, _ := m.store.Operation(ctx, opID)
	if op.Steps[0].State != cluster.StepSucceeded || op.Steps[1].State != cluster.StepRunning || op.Steps[1].Percent != 50 || op.Steps[1].Message != "half way" {
		t.Fatalf("steps while running = %+v", op.Steps)
	}
	close(release)
	waitFor(t, "operation end", func() bool {
		op, _ := m.store.Operation(ctx, opID)
		return op.EndedAt != nil
	})
	op, _ = m.store.Operation(ctx, opID)
	if op.State != cluster.OpSucceeded || op.Steps[1].State != cluster.StepSucceeded || op.Steps[1].Percent != 100 {
		t.Fatalf("finished operation = %+v", op)
	}
	if _, err := m.store.Lock(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lock after the end: %v", err)
	}
	for _, typ := range []string{"ClusterReplicaEnrollmentStarted", "ClusterLocked", "ClusterUnlocked", "ClusterReplicaEnrollmentCompleted"} {
		evs, _ := m.store.Events(ctx, store.EventFilter{Type: typ})
		if len(evs) != 1 || evs[0].OperationID != opID {
			t.Errorf("event %s: %+v; want one for the operation", typ, evs)
		}
	}
}

func TestOperationStepFailureEndsFailed(t *testing.T) {
	m := startNode(t, t.TempDir(), testpg.NewDatabase(t))
	ctx := context.Background()
	opID, err := m.node.Runner().Start(ctx, "admin", cluster.OperationSpec{Kind: "Enroll", EndEvent: "ClusterReplicaEnrollmentCompleted", Steps: []cluster.StepSpec{
		{Name: "Pre-checks", Run: func(context.Context, *cluster.Progress) error {
			return errors.New("the replica runs build v2, this cluster v1")
		}},
		{Name: "Copy", Run: func(context.Context, *cluster.Progress) error { t.Error("a step after a failure ran"); return nil }},
	}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "operation end", func() bool {
		op, _ := m.store.Operation(ctx, opID)
		return op.EndedAt != nil
	})
	op, _ := m.store.Operation(ctx, opID)
	if op.State != cluster.OpFailed || !strings.Contains(op.Error, "Pre-checks: the replica runs build v2") {
		t.Fatalf("operation = %s %q", op.State, op.Error)
	}
	if op.Steps[0].State != cluster.StepFailed || op.Steps[1].State != cluster.StepSkipped {
		t.Fatalf("steps = %+v", op.Steps)
	}
	if _, err := m.store.Lock(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed operation kept the lock: %v", err)
	}
	evs, _ := m.store.Events(ctx, store.EventFilter{Type: "ClusterReplicaEnrollmentCompleted"})
	if len(evs) != 1 || evs[0].Details["result"] != cluster.OpFailed {
		t.Fatalf("end event = %+v", evs)
	}
}

func TestOperationLeftByAStoppedPrimaryBecomesResultUnknown(t *testing.T) {
	dir, url := t.TempDir(), testpg.NewDatabase(t)
	m := startNode(t, dir, url)
	ctx := context.Background()
	block := make(chan struct{})
	opID, err := m.node.Runner().Start(ctx, "admin", cluster.OperationSpec{Kind: "Enroll", Steps: []cluster.StepSpec{
		{Name: "Copy", Run: func(ctx context.Context, _ *cluster.Progress) error {
			select {
			case <-block:
			case <-ctx.Done():
			}
			return ctx.Err()
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "step running", func() bool {
		op, _ := m.store.Operation(ctx, opID)
		return op.Steps[0].State == cluster.StepRunning
	})
	// Simulate a crash: the database stays as it was while the step ran.
	m.node.Shutdown()
	m.store.Close()
	m.node = nil

	m2 := startNode(t, dir, url)
	waitFor(t, "operation settled", func() bool {
		op, _ := m2.store.Operation(ctx, opID)
		return op.EndedAt != nil
	})
	op, _ := m2.store.Operation(ctx, opID)
	if op.State != cluster.OpResultUnknown && op.State != cluster.OpFailed {
		t.Fatalf("operation after restart = %s; want ResultUnknown (or Failed if it ended before the stop)", op.State)
	}
	if _, err := m2.store.Lock(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lock still held after the new primary settled the operation: %v", err)
	}
}

func TestSnapshotTakenByRaftRestoresElsewhere(t *testing.T) {
	// raft snapshots go through the FSM's Snapshot/Persist; the store tests
	// cover the format. Here: the FSM keeps serving while a snapshot runs.
	m := startNode(t, t.TempDir(), testpg.NewDatabase(t))
	ctx := context.Background()
	for i := range 20 {
		if err := m.node.RecordEvent(ctx, "admin", cluster.EventSpec{Type: "Test", Details: map[string]string{"i": string(rune('a' + i))}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.node.TakeSnapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if err := m.node.RecordEvent(ctx, "admin", cluster.EventSpec{Type: "Test"}); err != nil {
		t.Fatalf("write after snapshot: %v", err)
	}
}
