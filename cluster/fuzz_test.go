package cluster

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/testpg"
	"conclave/store"
)

// FuzzApplyCommand feeds arbitrary raft commands (what a member forwards
// to /node/v1/propose) to the FSM's apply on a real database. A command
// may be refused, but must never fail for a reason of its data: the FSM
// retries a failure until it succeeds, so such a command would stall every
// member.
func FuzzApplyCommand(f *testing.F) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seed := func(typ string, data any) {
		cmd, _ := Encode(typ, data)
		cmd.ID, cmd.At, cmd.Actor, cmd.Member = "c1", at, "admin", "m1"
		cmd.Event = &EventSpec{Type: "Fuzzed", Details: map[string]string{"k": "v"}}
		raw, _ := json.Marshal(cmd)
		f.Add(raw)
	}
	seed(CmdCreateUser, CreateUser{UserID: "u1", Username: "alice", Role: RoleHelpdesk, PasswordHash: "x", Source: "local"})
	seed(CmdUpdateUser, UpdateUser{UserID: "u1"})
	seed(CmdPutSettings, PutSettings{Values: map[string]json.RawMessage{"clusterName": json.RawMessage(`"x"`)}})
	seed(CmdPutMember, MemberData{ID: "m1", Name: "one"})
	seed(CmdCreateOperation, CreateOperation{OperationID: "o1", Kind: "Test", Steps: []string{"a"}})
	seed(CmdUpdateStep, UpdateStep{OperationID: "o1", Index: 3})
	seed(CmdFinishOperation, FinishOperation{OperationID: "o1", State: OpSucceeded})
	seed(CmdIssueToken, IssueToken{TokenID: "t1", UserID: "u1", Hash: []byte{1}})
	seed(CmdPutSession, SessionData{IDHash: []byte{1}, Data: []byte{0, 1}})
	seed(CmdRecordEvent, nil)
	seed(CmdUpsertOIDCUser, UpsertOIDCUser{NewUserID: "u2", Subject: "s", Username: "bob", Role: RoleAdministrator})
	seed(CmdReplaceCluster, ReplaceCluster{ClusterID: "c"})
	f.Add([]byte(`{"type":"user.create","data":{"userId":"\u0000"}}`))
	f.Add([]byte(`{"type":"settings.put","data":{"values":{"a":"\ud800"}}}`))

	ctx := context.Background()
	st, err := store.Open(ctx, testpg.NewDatabase(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(st.Close)
	if _, _, err := st.Migrate(ctx); err != nil {
		f.Fatal(err)
	}
	var index atomic.Uint64
	f.Fuzz(func(t *testing.T, raw []byte) {
		var cmd Command
		if json.Unmarshal(raw, &cmd) != nil {
			return // the FSM records an undecodable command as refused
		}
		_, _, err := st.Apply(ctx, index.Add(1), 1, func(tx *store.Tx) error { return apply(ctx, tx, cmd, nil) })
		if err != nil {
			t.Fatalf("command %s failed (the FSM would retry it for ever): %v", raw, err)
		}
	})
}
