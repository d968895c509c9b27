package web_test

import (
	"net/http"
	"testing"
	"time"

	"conclave/internal/testapp"
	"conclave/internal/testnet"
)

// The primary stops while an Unjoin runs (it is stuck telling the replica,
// whose link is dropping everything). The next primary finds the operation
// and resumes it where it stopped, because every Unjoin step may safely
// run again: the replica ends up standing alone, the cluster has three
// members, and the operation Succeeded, with the resumption in the log.
func TestUnjoinResumedByTheNextPrimary(t *testing.T) {
	net := testnet.New()
	names := []string{"alpha", "beta", "gamma", "delta"}
	apps := map[string]*testapp.App{}
	for _, n := range names {
		apps[n] = testapp.Start(t, named(n), testapp.WithNetwork(net, n))
	}
	alpha, delta := apps["alpha"], apps["delta"]
	for _, n := range names[1:] {
		addReplica(t, alpha, apps[n])
	}
	tok := alpha.AdminToken(t)
	ms := members(t, alpha, tok)

	// alpha's calls to delta hang: the Unjoin waits in "Tell the replica".
	net.Drop("alpha", "delta")
	var out struct{ OperationID string }
	if status := alpha.JSON(t, tok, http.MethodDelete, "/api/v1/cluster/members/"+ms["delta"].ID, map[string]string{"confirm": "Unjoin"}, &out); status != http.StatusAccepted {
		t.Fatalf("unjoin: status %d", status)
	}
	waitStep(t, alpha, tok, out.OperationID, 1, "Running")
	alpha.Stop(t)
	net.Restore("alpha", "delta")

	next := waitNewPrimary(t, apps["beta"], apps["gamma"])
	ntok := next.AdminToken(t)
	op := waitOperation(t, next, ntok, out.OperationID)
	if op.State != "Succeeded" {
		t.Fatalf("the resumed Unjoin: %s (%s), steps %+v", op.State, op.Error, op.Steps)
	}
	waitState(t, delta, "StandaloneReadOnly")
	after := members(t, next, ntok)
	if len(after) != 3 {
		t.Fatalf("members after the resumed Unjoin: %+v", after)
	}
	if _, ok := after["delta"]; ok {
		t.Fatalf("delta is still a member: %+v", after)
	}
	evs := eventsOfType(t, next, ntok, "OperationResumed")
	if len(evs) != 1 || evs[0].Details["kind"] != "Remove" {
		t.Fatalf("OperationResumed events: %+v", evs)
	}
}

// waitStep waits until step i of an operation is in state want.
func waitStep(t *testing.T, app *testapp.App, token, id string, i int, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var op operation
		app.JSON(t, token, http.MethodGet, "/api/v1/operations/"+id, nil, &op)
		if i < len(op.Steps) && op.Steps[i].State == want {
			return
		}
		if time.Now().After(deadline) || op.State == "Failed" || op.State == "Succeeded" {
			t.Fatalf("operation %s: step %d not %s: %+v", id, i, want, op)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A frozen primary (every link to and from it drops everything, as when
// its process is paused) is replaced; when it thaws it is a replica and
// has what was written meanwhile.
func TestFrozenPrimaryIsReplaced(t *testing.T) {
	net := testnet.New()
	alpha := testapp.Start(t, named("alpha"), testapp.WithNetwork(net, "alpha"))
	beta := testapp.Start(t, named("beta"), testapp.WithNetwork(net, "beta"))
	gamma := testapp.Start(t, named("gamma"), testapp.WithNetwork(net, "gamma"))
	addReplica(t, alpha, beta)
	addReplica(t, alpha, gamma)
	net.Freeze("alpha")
	next := waitNewPrimary(t, beta, gamma)
	next.CreateUser(t, "while-frozen", "while-frozen-pw", "Helpdesk")
	net.Thaw("alpha")
	waitState(t, alpha, "ReplicaWithQuorum")
	waitUsers(t, alpha, "while-frozen")
	waitSameData(t, next, alpha)
}
