package workflow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"conclave/cluster"
	"conclave/internal/testpg"
	"conclave/keyring"
	"conclave/store"
	"conclave/workflow"
)

// batchFixture is a database with the same users, accounts and policy as
// every other batchFixture: fixed IDs and times, so that two of them can be
// compared row by row.
type batchFixture struct {
	st    *store.Store
	index uint64
}

var (
	batchAt    = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	batchUsers = map[string]string{ // name → ID
		"ann": "00000000-0000-4000-8000-0000000000a1",
		"bob": "00000000-0000-4000-8000-0000000000b2",
	}
	batchAsset    = "00000000-0000-4000-8000-00000000a55e"
	batchAccounts = []string{
		"00000000-0000-4000-8000-0000000acc01",
		"00000000-0000-4000-8000-0000000acc02",
		"00000000-0000-4000-8000-0000000acc03",
	}
)

// batchSecrets are the accounts' first passwords, sealed once for every
// fixture (sealing twice gives different bytes).
func batchSecrets(t *testing.T, keys keyring.Keys) map[string]string {
	out := map[string]string{}
	for _, id := range batchAccounts {
		secret, err := keys.Seal([]byte("first-password"), "account:"+id)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = secret
	}
	return out
}

// batchCommands returns a maker of commands with IDs in sequence, the Nth
// at batchAt + N·(1 s + extra).
func batchCommands(t *testing.T, extra time.Duration) func(typ, actor string, data any) cluster.Command {
	seq := 0
	return func(typ, actor string, data any) cluster.Command {
		seq++
		cmd, err := cluster.Encode(typ, data)
		if err != nil {
			t.Fatal(err)
		}
		cmd.ID = fmt.Sprintf("00000000-0000-4000-8000-%012d", seq)
		cmd.At, cmd.Member, cmd.Actor = batchAt.Add(time.Duration(seq)*(time.Second+extra)), "member-1", actor
		return cmd
	}
}

func newBatchFixture(t *testing.T, keys keyring.Keys, secrets map[string]string) *batchFixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rawKeys, err := json.Marshal(keys)
	if err != nil {
		t.Fatal(err)
	}
	f := &batchFixture{st: st}
	f.index++
	outcome, _, err := st.Apply(ctx, f.index, 1, func(tx *store.Tx) error {
		if err := tx.PutKey(ctx, keyring.KeyName, rawKeys, batchAt); err != nil {
			return err
		}
		for name, id := range batchUsers {
			if err := tx.CreateUser(ctx, store.User{ID: id, Username: name, Role: cluster.RoleRequester, Source: "local", CreatedAt: batchAt}); err != nil {
				return err
			}
		}
		if err := tx.InsertAsset(ctx, store.Asset{ID: batchAsset, Name: "db-1", Address: "10.0.0.1", Platform: "Linux", CreatedAt: batchAt}); err != nil {
			return err
		}
		for i, id := range batchAccounts {
			if err := tx.InsertAccount(ctx, store.Account{ID: id, AssetID: batchAsset, Username: fmt.Sprintf("root%d", i), Secret: secrets[id], CreatedAt: batchAt}); err != nil {
				return err
			}
		}
		return tx.PutPolicy(ctx, store.Policy{ID: "00000000-0000-4000-8000-0000000b0001", Name: "Servers", Requesters: []string{cluster.RoleRequester},
			Approvers: []string{}, DurationMinutes: 60, ChangeAfterCheckin: true, AccountIDs: batchAccounts, CreatedAt: batchAt}, batchAt)
	})
	if err != nil || outcome != nil {
		t.Fatalf("seed: %v %v", err, outcome)
	}
	return f
}

// entries makes store entries of cmds, numbered after the fixture's last.
func (f *batchFixture) entries(cmds []cluster.Command) []store.Entry {
	var out []store.Entry
	for _, cmd := range cmds {
		f.index++
		out = append(out, store.Entry{Index: f.index, Term: 1, Fn: func(tx *store.Tx) error {
			handled, err := workflow.Apply(context.Background(), tx, cmd)
			if !handled {
				return fmt.Errorf("command %s not handled", cmd.Type)
			}
			return err
		}})
	}
	return out
}

func outcome(r store.EntryResult) string {
	if r.Outcome == nil {
		return "applied"
	}
	return "rejected: " + r.Outcome.Error()
}

// A batch of check-outs and check-ins that read what earlier entries of the
// same batch wrote, applied in one transaction with its inputs prefetched
// and its writes deferred (the fast path of store.ApplyBatchPrepared), ends
// exactly as the same commands applied one at a time: same outcomes, same
// rows, an intact audit chain.
func TestBatchAppliesLikeOneAtATime(t *testing.T) {
	ctx := context.Background()
	keys, err := keyring.New()
	if err != nil {
		t.Fatal(err)
	}
	secrets := batchSecrets(t, keys)
	batched, single := newBatchFixture(t, keys, secrets), newBatchFixture(t, keys, secrets)

	command := batchCommands(t, 0)
	request := func(who, account string) (cluster.Command, string) {
		id := uuid.NewString()
		return command(workflow.CmdCreateRequest, who, workflow.CreateRequest{RequestID: id, AccountID: account, RequesterID: batchUsers[who], Reason: "batch"}), id
	}
	checkin := func(who, requestID, account string) cluster.Command {
		secret, err := keys.Seal([]byte("next-password-"+requestID), "account:"+account)
		if err != nil {
			t.Fatal(err)
		}
		return command(workflow.CmdCheckin, who, workflow.Checkin{RequestID: requestID, UserID: batchUsers[who], NewSecret: secret})
	}
	acc1, acc2, acc3 := batchAccounts[0], batchAccounts[1], batchAccounts[2]
	var cmds []cluster.Command
	var want []string // the outcome each command must have, applied one at a time
	add := func(cmd cluster.Command, outcome string) {
		cmds = append(cmds, cmd)
		want = append(want, outcome)
	}
	c1, r1 := request("ann", acc1)
	add(c1, "applied")
	c2, _ := request("bob", acc1)
	add(c2, "rejected") // ann holds it: read after a deferred write
	add(checkin("ann", r1, acc1), "applied")
	c4, r4 := request("bob", acc1)
	add(c4, "applied")                        // free again
	add(checkin("ann", r4, acc1), "rejected") // only bob, who holds it
	c6, r6 := request("ann", acc2)
	add(c6, "applied")
	c7, _ := request("ann", acc2)
	add(c7, "rejected")                                                           // an open request already
	add(checkin("bob", "00000000-0000-4000-8000-ffffffffffff", acc3), "rejected") // no such request
	// A write other than a check-out drops what was prefetched.
	add(command(workflow.CmdPutAsset, "admin", workflow.PutAsset{AssetID: batchAsset, Name: "db-1-renamed", Address: "10.0.0.2", Platform: "Linux"}), "applied")
	c10, r10 := request("bob", acc3)
	add(c10, "applied")
	add(checkin("ann", r6, acc2), "applied")
	add(checkin("bob", r10, acc3), "applied")
	add(checkin("bob", r4, acc1), "applied")

	prepare := func(tx *store.Tx) error { return workflow.Prefetch(ctx, tx, cmds) }
	got, err := batched.st.ApplyBatchPrepared(ctx, batched.entries(cmds), prepare)
	if err != nil {
		t.Fatal(err)
	}
	if n := batched.st.ApplyFallbacks(); n != 0 {
		t.Errorf("the batch went down the exact path %d times; want the fast path", n)
	}
	for i, cmd := range cmds {
		res, err := single.st.ApplyBatch(ctx, single.entries([]cluster.Command{cmd}))
		if err != nil {
			t.Fatal(err)
		}
		one, many := outcome(res[0]), outcome(got[i])
		if one != many {
			t.Errorf("command %d (%s): batched %s; one at a time %s", i+1, cmd.Type, many, one)
		}
		if one[:len(want[i])] != want[i] {
			t.Errorf("command %d (%s): %s; want %s", i+1, cmd.Type, one, want[i])
		}
	}
	sameRows(t, batched.st, single.st)
}

// An entry whose deferred write fails (here: an event ID used before) makes
// the batch run again down the exact path, with the same end.
func TestBatchFallsBackWhenADeferredWriteFails(t *testing.T) {
	ctx := context.Background()
	keys, err := keyring.New()
	if err != nil {
		t.Fatal(err)
	}
	secrets := batchSecrets(t, keys)
	batched, single := newBatchFixture(t, keys, secrets), newBatchFixture(t, keys, secrets)
	mk := func(id, who, account string) cluster.Command {
		cmd, err := cluster.Encode(workflow.CmdCreateRequest, workflow.CreateRequest{RequestID: uuid.NewString(), AccountID: account, RequesterID: batchUsers[who], Reason: "batch"})
		if err != nil {
			t.Fatal(err)
		}
		cmd.ID, cmd.At, cmd.Member, cmd.Actor = id, batchAt, "member-1", who
		return cmd
	}
	// The second command reuses the first one's ID, so its audit event's
	// ID is taken.
	cmds := []cluster.Command{
		mk("00000000-0000-4000-8000-000000000001", "ann", batchAccounts[0]),
		mk("00000000-0000-4000-8000-000000000001", "bob", batchAccounts[1]),
		mk("00000000-0000-4000-8000-000000000003", "bob", batchAccounts[2]),
	}
	got, err := batched.st.ApplyBatchPrepared(ctx, batched.entries(cmds), func(tx *store.Tx) error { return workflow.Prefetch(ctx, tx, cmds) })
	if err != nil {
		t.Fatal(err)
	}
	if n := batched.st.ApplyFallbacks(); n != 1 {
		t.Fatalf("%d runs down the exact path; want 1", n)
	}
	for i, cmd := range cmds {
		res, err := single.st.ApplyBatch(ctx, single.entries([]cluster.Command{cmd}))
		if err != nil {
			t.Fatal(err)
		}
		if one, many := outcome(res[0]), outcome(got[i]); one != many {
			t.Errorf("command %d: batched %s; one at a time %s", i+1, many, one)
		}
	}
	sameRows(t, batched.st, single.st)
}

// sameRows fails unless a and b hold the same rows in every replicated
// table and both audit chains are intact.
func sameRows(t *testing.T, a, b *store.Store) {
	t.Helper()
	ctx := context.Background()
	sums := func(st *store.Store) map[string]store.TableChecksum {
		snap, err := st.BeginSnapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close(ctx)
		c, err := snap.Checksums(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ca, cb := sums(a), sums(b)
	for table, x := range ca {
		if y := cb[table]; x != y {
			t.Errorf("table %s: batched %+v, one at a time %+v", table, x, y)
		}
	}
	for _, st := range []*store.Store{a, b} {
		check, err := st.VerifyEventChain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !check.Intact() || check.Checked == 0 {
			t.Fatalf("audit chain: %d checked, intact %v: %s", check.Checked, check.Intact(), check.Reason)
		}
	}
}

// The prefetch is kept current by the batch's own writes: check-outs and
// check-ins of the same accounts, one after another in one batch (as a
// replica that fell behind gets them), read nothing from the database
// after the batch's first round trip, and still end exactly as one at a
// time.
func TestBatchKeepsThePrefetchCurrent(t *testing.T) {
	ctx := context.Background()
	keys, err := keyring.New()
	if err != nil {
		t.Fatal(err)
	}
	secrets := batchSecrets(t, keys)
	batched, single := newBatchFixture(t, keys, secrets), newBatchFixture(t, keys, secrets)
	command := batchCommands(t, 123456789*time.Nanosecond)
	request := func(who, account string) (cluster.Command, string) {
		id := uuid.NewString()
		return command(workflow.CmdCreateRequest, who, workflow.CreateRequest{RequestID: id, AccountID: account, RequesterID: batchUsers[who], Reason: "batch"}), id
	}
	checkin := func(who, requestID, account string) cluster.Command {
		secret, err := keys.Seal([]byte("next-password-"+requestID), "account:"+account)
		if err != nil {
			t.Fatal(err)
		}
		return command(workflow.CmdCheckin, who, workflow.Checkin{RequestID: requestID, UserID: batchUsers[who], NewSecret: secret})
	}
	acc1, acc2 := batchAccounts[0], batchAccounts[1]
	c1, r1 := request("ann", acc1)
	c2, _ := request("bob", acc1) // refused: ann holds it
	c4, r4 := request("bob", acc1)
	c5, r5 := request("ann", acc2)
	c8, r8 := request("ann", acc1)
	cmds := []cluster.Command{c1, c2, checkin("ann", r1, acc1), c4, c5, checkin("ann", r5, acc2), checkin("bob", r4, acc1), c8, checkin("ann", r8, acc1),
		checkin("ann", r8, acc1)} // refused: checked in already
	got, err := batched.st.ApplyBatchPrepared(ctx, batched.entries(cmds), func(tx *store.Tx) error { return workflow.Prefetch(ctx, tx, cmds) })
	if err != nil {
		t.Fatal(err)
	}
	if n := batched.st.ApplyFallbacks(); n != 0 {
		t.Errorf("the batch went down the exact path %d times", n)
	}
	if n := batched.st.PrefetchMisses(); n != 0 {
		t.Errorf("%d reads missed the prefetch; want every one answered from it", n)
	}
	rejected := 0
	for i, cmd := range cmds {
		res, err := single.st.ApplyBatch(ctx, single.entries([]cluster.Command{cmd}))
		if err != nil {
			t.Fatal(err)
		}
		one, many := outcome(res[0]), outcome(got[i])
		if one != many {
			t.Errorf("command %d (%s): batched %s; one at a time %s", i+1, cmd.Type, many, one)
		}
		if one != "applied" {
			rejected++
		}
	}
	if rejected != 2 {
		t.Errorf("%d commands refused; want 2 (a second holder, a second check-in)", rejected)
	}
	sameRows(t, batched.st, single.st)
}
