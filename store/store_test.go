package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"conclave/internal/testpg"
	"conclave/store"
)

func TestMain(m *testing.M) { testpg.Main(m) }

func open(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, _, err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestMigrateIsIdempotentAndSafeConcurrently(t *testing.T) {
	url := testpg.NewDatabase(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := store.Open(ctx, url)
			if err != nil {
				errs[i] = err
				return
			}
			defer st.Close()
			_, _, errs[i] = st.Migrate(ctx)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	from, to, err := st.Migrate(ctx)
	if err != nil || from != to || to < 1 {
		t.Fatalf("second migrate: from %d to %d, err %v; want no change", from, to, err)
	}
}

func createUser(name string) func(tx *store.Tx) error {
	return func(tx *store.Tx) error {
		return tx.CreateUser(context.Background(), store.User{ID: "id-" + name, Username: name, Role: "Helpdesk", Source: "local", CreatedAt: time.Now()})
	}
}

func TestApplyRecordsIndexOnceAndSkipsReplays(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	if _, skipped, err := st.Apply(ctx, 1, 1, createUser("ann")); err != nil || skipped {
		t.Fatalf("first apply: skipped=%v err=%v", skipped, err)
	}
	// A replay of the same index (after a restart) must not run again: if
	// it did, the unique user name would make it fail.
	ran := false
	_, skipped, err := st.Apply(ctx, 1, 1, func(*store.Tx) error { ran = true; return nil })
	if err != nil || !skipped || ran {
		t.Fatalf("replay: skipped=%v ran=%v err=%v; want skipped and not run", skipped, ran, err)
	}
	idx, term, err := st.AppliedIndex(ctx)
	if err != nil || idx != 1 || term != 1 {
		t.Fatalf("applied index = %d/%d, %v; want 1/1", idx, term, err)
	}
}

func TestApplyRejectionUndoesEffectButRecordsIndex(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	if _, _, err := st.Apply(ctx, 1, 1, createUser("ann")); err != nil {
		t.Fatal(err)
	}
	outcome, _, err := st.Apply(ctx, 2, 1, func(tx *store.Tx) error {
		// A write that must be undone, then a rejection.
		if err := createUser("bob")(tx); err != nil {
			return err
		}
		return createUser("ann")(tx)
	})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	var rej *store.Rejection
	if !errors.As(outcome, &rej) || rej.Field != "username" {
		t.Fatalf("outcome = %v; want a rejection on username", outcome)
	}
	if _, err := st.UserByUsername(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob exists after a rejected command: %v", err)
	}
	if idx, _, _ := st.AppliedIndex(ctx); idx != 2 {
		t.Fatalf("applied index = %d; want 2 (a rejection is still applied)", idx)
	}
}

func TestApplyInfrastructureErrorAppliesNothing(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	_, _, err := st.Apply(ctx, 1, 1, func(tx *store.Tx) error {
		createUser("ann")(tx)
		return errors.New("disk on fire")
	})
	if err == nil {
		t.Fatal("want the error back")
	}
	if idx, _, _ := st.AppliedIndex(ctx); idx != 0 {
		t.Fatalf("applied index = %d; want 0", idx)
	}
	if _, err := st.UserByUsername(ctx, "ann"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ann exists after a failed apply: %v", err)
	}
}

func seed(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	_, _, err := st.Apply(ctx, 7, 2, func(tx *store.Tx) error {
		if err := tx.InitCluster(ctx, store.ClusterInfo{ID: "c1", CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.PutMember(ctx, store.Member{ID: "m1", Name: "alpha", Address: "127.0.0.1:8441", Version: "v1", IsVoter: true, EnrolledSince: now}); err != nil {
			return err
		}
		if err := tx.PutSetting(ctx, "clusterName", json.RawMessage(`"Prod"`), now, "admin"); err != nil {
			return err
		}
		for _, n := range []string{"ann", "bob", "cyd"} {
			if err := createUser(n)(tx); err != nil {
				return err
			}
		}
		if err := tx.CreateToken(ctx, store.APIToken{ID: "t1", UserID: "id-ann", Hash: []byte{1, 2, 3}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			return err
		}
		if err := tx.CreateOperation(ctx, store.Operation{ID: "op1", Kind: "Enroll", State: "Pending", OwnerID: "m1", Actor: "admin", StartedAt: now, Steps: []store.Step{{Name: "Pre-checks", State: "Pending"}}}); err != nil {
			return err
		}
		for i := range 50 {
			if err := tx.InsertEvent(ctx, store.Event{ID: "e" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Type: "UserLoggedIn", MemberID: "m1", Actor: "ann", At: now.Add(time.Duration(i) * time.Second), Details: map[string]string{"n": "x"}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A replicated session, and this appliance's own record of its activity.
	if _, _, err := st.Apply(ctx, 9, 2, func(tx *store.Tx) error {
		return tx.PutSession(ctx, store.SessionRow{IDHash: []byte("s"), UserID: "id-ann", Data: []byte("{}"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.TouchSession(ctx, []byte("s"), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	src, dst := open(t), open(t)
	seed(t, src)
	// The destination has data of its own, which a restore replaces.
	if _, _, err := dst.Apply(ctx, 3, 1, createUser("zed")); err != nil {
		t.Fatal(err)
	}
	snap, err := src.BeginSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot began are not in it.
	if _, _, err := src.Apply(ctx, 10, 2, createUser("late")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.WriteTo(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	snap.Close(ctx)
	index, err := dst.RestoreSnapshot(ctx, bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if index != 9 {
		t.Fatalf("restored index %d; want 9", index)
	}
	users, _ := dst.Users(ctx)
	var names []string
	for _, u := range users {
		names = append(names, u.Username)
	}
	if len(names) != 3 || names[0] != "ann" || names[2] != "cyd" {
		t.Fatalf("users after restore = %v; want ann bob cyd", names)
	}
	events, _ := dst.Events(ctx, store.EventFilter{Limit: 1000})
	if len(events) != 50 {
		t.Fatalf("%d events after restore; want 50", len(events))
	}
	if lock, err := dst.Lock(ctx); err != nil || lock.OperationID != "op1" {
		t.Fatalf("lock after restore = %+v, %v", lock, err)
	}
	if c, err := dst.Cluster(ctx); err != nil || c.ID != "c1" {
		t.Fatalf("cluster after restore = %+v, %v", c, err)
	}
	// The session travels; this appliance's activity record does not.
	sess, err := dst.SessionByHash(ctx, []byte("s"), time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC))
	if err != nil || !sess.LastSeenAt.Equal(sess.CreatedAt) {
		t.Fatalf("session after restore = %+v, %v; want it, with no activity record", sess, err)
	}
}

func TestRestoreRefusesDamagedSnapshotAndKeepsData(t *testing.T) {
	ctx := context.Background()
	src := open(t)
	seed(t, src)
	snap, err := src.BeginSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.WriteTo(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	snap.Close(ctx)
	good := buf.Bytes()
	cases := map[string][]byte{
		"garbage":   []byte("hello"),
		"truncated": good[:len(good)*2/3],
		"corrupted": func() []byte {
			b := append([]byte(nil), good...)
			b[len(b)/2] ^= 0xff
			return b
		}(),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			// A database of its own per case: a corrupted snapshot that
			// happens to be valid data replaces what the next case checks.
			dst := open(t)
			if _, _, err := dst.Apply(ctx, 3, 1, createUser("zed")); err != nil {
				t.Fatal(err)
			}
			if _, err := dst.RestoreSnapshot(ctx, bytes.NewReader(data)); err == nil {
				// A flipped byte inside a text value can be valid COPY data;
				// what matters is that a refused restore changes nothing.
				if name != "corrupted" {
					t.Fatal("restore accepted a damaged snapshot")
				}
				return
			}
			u, err := dst.UserByUsername(ctx, "zed")
			if err != nil || u.Username != "zed" {
				t.Fatalf("data changed by a refused restore: %v", err)
			}
			if idx, _, _ := dst.AppliedIndex(ctx); idx != 3 {
				t.Fatalf("applied index changed to %d by a refused restore", idx)
			}
		})
	}
}

func TestOperationsHoldTheLock(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	now := time.Now().UTC()
	op := func(id string) func(*store.Tx) error {
		return func(tx *store.Tx) error {
			return tx.CreateOperation(ctx, store.Operation{ID: id, Kind: "Enroll", State: "Pending", OwnerID: "m1", Actor: "admin", StartedAt: now, Steps: []store.Step{{Name: "a"}, {Name: "b"}}})
		}
	}
	if out, _, err := st.Apply(ctx, 1, 1, op("op1")); err != nil || out != nil {
		t.Fatalf("create: %v %v", out, err)
	}
	out, _, err := st.Apply(ctx, 2, 1, op("op2"))
	var rej *store.Rejection
	if err != nil || !errors.As(out, &rej) {
		t.Fatalf("second operation while locked: %v %v; want a rejection", out, err)
	}
	if want := "another operation is in progress: Enroll op1, started by admin"; len(rej.Message) < len(want) || rej.Message[:len(want)] != want {
		t.Fatalf("rejection %q should name the holder", rej.Message)
	}
	if out, _, err := st.Apply(ctx, 3, 1, func(tx *store.Tx) error {
		return tx.UpdateStep(ctx, "op1", 1, store.Step{Name: "b", State: "Running", Percent: 40})
	}); err != nil || out != nil {
		t.Fatalf("step: %v %v", out, err)
	}
	if out, _, err := st.Apply(ctx, 4, 1, func(tx *store.Tx) error {
		return tx.FinishOperation(ctx, "op1", "Succeeded", "", now)
	}); err != nil || out != nil {
		t.Fatalf("finish: %v %v", out, err)
	}
	if _, err := st.Lock(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lock still held after finish: %v", err)
	}
	got, err := st.Operation(ctx, "op1")
	if err != nil || got.State != "Succeeded" || got.Steps[1].Percent != 40 || got.EndedAt == nil {
		t.Fatalf("operation = %+v, %v", got, err)
	}
	if out, _, _ := st.Apply(ctx, 5, 1, op("op2")); out != nil {
		t.Fatalf("new operation after unlock refused: %v", out)
	}
}

func TestLoginFailuresAndOIDCLoginsAreOneShot(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	now := time.Now()
	delay := func(n int) time.Duration { return time.Duration(n) * time.Second }
	for i := 1; i <= 3; i++ {
		f, err := st.RecordLoginFailure(ctx, "user:ann", now, time.Minute, delay)
		if err != nil || f.Failures != i {
			t.Fatalf("failure %d: %+v %v", i, f, err)
		}
	}
	// Failures older than the forget window start over.
	f, _ := st.RecordLoginFailure(ctx, "user:ann", now.Add(2*time.Minute), time.Minute, delay)
	if f.Failures != 1 {
		t.Fatalf("failures after the window = %d; want 1", f.Failures)
	}
	st.ClearLoginFailures(ctx, "user:ann")
	if f, _ := st.LoginFailureFor(ctx, "user:ann"); f.Failures != 0 {
		t.Fatalf("failures after clear = %d", f.Failures)
	}
	if err := st.PutOIDCLogin(ctx, store.OIDCLogin{State: "s1", Nonce: "n", Verifier: "v", ReturnTo: "/", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if l, err := st.TakeOIDCLogin(ctx, "s1"); err != nil || l.Nonce != "n" {
		t.Fatalf("take: %+v %v", l, err)
	}
	if _, err := st.TakeOIDCLogin(ctx, "s1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second take: %v; want not found", err)
	}
}

// A value every member's PostgreSQL refuses alike must not stall the FSM in
// retries: it becomes the command's outcome.
func TestApplyDataErrorBecomesRejection(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	outcome, _, err := st.Apply(ctx, 1, 1, func(tx *store.Tx) error {
		return tx.PutSetting(ctx, "clusterName", json.RawMessage(`"a\u0000b"`), time.Now(), "admin")
	})
	var rej *store.Rejection
	if err != nil || !errors.As(outcome, &rej) {
		t.Fatalf("outcome %v, err %v; want a rejection", outcome, err)
	}
	if idx, _, _ := st.AppliedIndex(ctx); idx != 1 {
		t.Fatalf("applied index = %d; want 1", idx)
	}
}
