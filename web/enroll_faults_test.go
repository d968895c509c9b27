package web_test

// Add Replica under faults: the network between primary and replica cut,
// the replica killed, the primary restarted, all in the middle of the
// operation; and the refusals that must come before any lock is taken.
// After each failure the cluster must be as before, and adding the same
// replica again must work.

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/testapp"
	"conclave/internal/testnet"
	"conclave/web"
)

// linkDelay slows every read and write between primary and replica during
// a faulty attempt, so that the steps last long enough to be caught while
// they run: the snapshot transfer alone is a dozen writes and more.
const linkDelay = 150 * time.Millisecond

// faultPair is a primary (alpha) and a standalone appliance to add (beta),
// both on one test network.
func faultPair(t *testing.T) (*testnet.Network, *testapp.App, *testapp.App) {
	t.Helper()
	n := testnet.New()
	alpha := testapp.Start(t, named("alpha"), testapp.WithNetwork(n, "alpha"))
	beta := testapp.Start(t, named("beta"), testapp.WithNetwork(n, "beta"))
	return n, alpha, beta
}

// startAddReplica asks primary to add the appliance at addr and returns
// the operation's ID.
func startAddReplica(t *testing.T, primary *testapp.App, token, addr, replicaToken string) string {
	t.Helper()
	var out struct {
		OperationID string
		Error       string
	}
	status := primary.JSON(t, token, http.MethodPost, "/api/v1/cluster/members", map[string]string{
		"address": addr, "authenticationToken": replicaToken, "confirm": "Add Replica",
	}, &out)
	if status != http.StatusAccepted {
		t.Fatalf("add replica %s: status %d: %s", addr, status, out.Error)
	}
	return out.OperationID
}

// waitRunning polls the operation until one of the named steps (or a later
// one) is Running, and fails the test if the operation ends first.
func waitRunning(t *testing.T, app *testapp.App, token, id string, steps ...string) operation {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var op operation
		if status := app.JSON(t, token, http.MethodGet, "/api/v1/operations/"+id, nil, &op); status != http.StatusOK {
			t.Fatalf("operation %s: status %d", id, status)
		}
		if op.State != "Pending" && op.State != "Running" {
			t.Fatalf("operation %s ended %s before %v ran: %s; steps %+v", id, op.State, steps, op.Error, op.Steps)
		}
		for i, s := range op.Steps {
			if s.State != "Running" {
				continue
			}
			for j := range i + 1 {
				for _, want := range steps {
					if op.Steps[j].Name == want {
						return op
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %s never ran %v: %+v", id, steps, op.Steps)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failedAt checks that op failed at step, giving a reason that contains
// reason.
func failedAt(t *testing.T, op operation, step, reason string) {
	t.Helper()
	t.Logf("the operation failed: %s", op.Error)
	if op.State != "Failed" {
		t.Fatalf("operation %s, want Failed at %q: %s; steps %+v", op.State, step, op.Error, op.Steps)
	}
	for _, s := range op.Steps {
		if s.State == "Failed" {
			if s.Name != step || s.Message == "" {
				t.Fatalf("failed step %q (%q), want %q with a reason; steps %+v", s.Name, s.Message, step, op.Steps)
			}
			break
		}
	}
	if !strings.HasPrefix(op.Error, step+": ") || !strings.Contains(op.Error, reason) {
		t.Fatalf("operation error %q, want %q and %q", op.Error, step+": …", reason)
	}
}

// clusterOperation is the cluster lock's operation kind, or None.
func clusterOperation(t *testing.T, app *testapp.App, token string) string {
	t.Helper()
	var st struct{ Operation string }
	if status := app.JSON(t, token, http.MethodGet, "/api/v1/cluster/status", nil, &st); status != http.StatusOK {
		t.Fatalf("cluster status: status %d", status)
	}
	return st.Operation
}

// asBefore checks that the primary is alone again, unlocked, and writes.
func asBefore(t *testing.T, primary *testapp.App, token, write string) {
	t.Helper()
	if op := clusterOperation(t, primary, token); op != "None" {
		t.Fatalf("the cluster lock is held by %s after the operation ended", op)
	}
	ms := members(t, primary, token)
	if len(ms) != 1 || ms[primary.Cfg.Name].Role != "Primary" {
		t.Fatalf("members after the failed Add Replica: %+v, want %s alone", ms, primary.Cfg.Name)
	}
	primary.CreateUser(t, write, write+"-password", "Helpdesk") // raft commits
}

// addAgain retries Add Replica of replica with replicaToken; it must work.
func addAgain(t *testing.T, primary *testapp.App, token string, replica *testapp.App, replicaToken string) {
	t.Helper()
	id := startAddReplica(t, primary, token, replica.Addr(), replicaToken)
	if op := waitOperation(t, primary, token, id); op.State != "Succeeded" {
		t.Fatalf("Add Replica again: %s: %s; steps %+v", op.State, op.Error, op.Steps)
	}
	ms := members(t, primary, token)
	if len(ms) != 2 || ms[replica.Cfg.Name].State != "ReplicaWithQuorum" || !ms[replica.Cfg.Name].IsVoter {
		t.Fatalf("members after adding again: %+v", ms)
	}
	if op := clusterOperation(t, primary, token); op != "None" {
		t.Fatalf("the cluster lock is held by %s after Add Replica succeeded", op)
	}
}

// applianceState is what an appliance says of itself (no sign-in).
func applianceState(t *testing.T, app *testapp.App) string {
	t.Helper()
	var info struct{ State string }
	if status := app.JSON(t, "", http.MethodGet, "/node/v1/info", nil, &info); status != http.StatusOK {
		t.Fatalf("info of %s: status %d", app.Cfg.Name, status)
	}
	return info.State
}

func TestEnrollFaultLinkCutDuringSnapshot(t *testing.T) {
	n, alpha, beta := faultPair(t)
	tok := alpha.AdminToken(t)
	// beta's own administrator's token: the failed transfer changes
	// nothing in beta's data, so it still works for the retry.
	betaTok := beta.AdminToken(t)

	n.Delay("alpha", "beta", linkDelay)
	id := startAddReplica(t, alpha, tok, beta.Addr(), betaTok)
	waitRunning(t, alpha, tok, id, "Snapshot transfer")
	n.Partition("alpha", "beta")
	op := waitOperation(t, alpha, tok, id)
	failedAt(t, op, "Snapshot transfer", "is cut")
	asBefore(t, alpha, tok, "after-cut")

	n.Heal("alpha", "beta")
	// beta was not told (the link was cut): it waits in Maintenance.
	if st := applianceState(t, beta); st != "Maintenance" {
		t.Fatalf("beta after the failed transfer: %s, want Maintenance", st)
	}
	addAgain(t, alpha, tok, beta, betaTok)
}

// A link that silently drops every packet (no reset, no refusal) must
// fail the step within seconds too, and the rollback must not wait on the
// replica for long.
func TestEnrollFaultLinkDropsDuringSnapshot(t *testing.T) {
	n, alpha, beta := faultPair(t)
	tok := alpha.AdminToken(t)
	betaTok := beta.AdminToken(t)

	n.Delay("alpha", "beta", linkDelay)
	id := startAddReplica(t, alpha, tok, beta.Addr(), betaTok)
	waitRunning(t, alpha, tok, id, "Snapshot transfer")
	n.Drop("alpha", "beta")
	dropped := time.Now()
	op := waitOperation(t, alpha, tok, id)
	if took := time.Since(dropped); took > 45*time.Second {
		t.Fatalf("the operation took %s to end after the link dropped", took)
	}
	failedAt(t, op, "Snapshot transfer", "no byte of the snapshot got through")
	asBefore(t, alpha, tok, "after-drop")

	n.Heal("alpha", "beta")
	addAgain(t, alpha, tok, beta, betaTok)
}

// The replica dies in the middle of the snapshot transfer. In one process
// a kill is imitated: every connection between the two is torn down at
// once (the transfer dies mid-stream, the replica's restore transaction
// rolls back), then the replica is shut down (gracefully, but with nothing
// in flight), and the links are restored, so that the primary's calls meet
// a closed port, as with a dead process.
func TestEnrollFaultReplicaKilledDuringSnapshot(t *testing.T) {
	n, alpha, beta := faultPair(t)
	tok := alpha.AdminToken(t)
	betaTok := beta.AdminToken(t)

	n.Delay("alpha", "beta", linkDelay)
	id := startAddReplica(t, alpha, tok, beta.Addr(), betaTok)
	waitRunning(t, alpha, tok, id, "Snapshot transfer")
	n.Partition("alpha", "beta")
	beta.Stop(t)
	n.Heal("alpha", "beta")

	op := waitOperation(t, alpha, tok, id)
	failedAt(t, op, "Snapshot transfer", "snapshot transfer")
	asBefore(t, alpha, tok, "after-kill")

	beta = beta.Restart(t)
	if st := applianceState(t, beta); st != "Maintenance" {
		t.Fatalf("beta after its restart: %s, want Maintenance", st)
	}
	addAgain(t, alpha, tok, beta, betaTok)
}

// The primary restarts while the replica catches up: its run of the
// operation is gone, so when it is the primary again it settles the
// operation as ResultUnknown, removes the half-added replica and releases
// the lock.
func TestEnrollFaultPrimaryRestartedDuringCatchUp(t *testing.T) {
	n, alpha, beta := faultPair(t)
	tok := alpha.AdminToken(t)
	betaTok := beta.AdminToken(t)

	n.Delay("alpha", "beta", linkDelay)
	id := startAddReplica(t, alpha, tok, beta.Addr(), betaTok)
	// Catch-up cannot end while the link is cut: the primary stops there.
	waitRunning(t, alpha, tok, id, "Catch-up")
	n.Partition("alpha", "beta")
	alpha.Stop(t)
	n.Heal("alpha", "beta")
	alpha = alpha.Restart(t)

	op := waitOperation(t, alpha, tok, id)
	t.Logf("the operation ended %s: %s", op.State, op.Error)
	if op.State != "ResultUnknown" || !strings.Contains(op.Error, "stopped before it ended") || !strings.Contains(op.Error, "removed") {
		t.Fatalf("operation after the primary's restart: %s %q, want ResultUnknown saying the replica was removed; steps %+v", op.State, op.Error, op.Steps)
	}
	asBefore(t, alpha, tok, "after-restart")

	// beta holds the cluster's data since the snapshot: its own token is
	// gone with its old data, and the cluster administrator's works there.
	if st := applianceState(t, beta); st != "Maintenance" {
		t.Fatalf("beta after the primary's restart: %s, want Maintenance", st)
	}
	addAgain(t, alpha, tok, beta, tok)
}

func TestEnrollRefusals(t *testing.T) {
	n := testnet.New()
	alpha := testapp.Start(t, named("alpha"), testapp.WithNetwork(n, "alpha"))
	// beta's tokens expire at once unless asked to live longer.
	beta := testapp.Start(t, named("beta"), testapp.WithNetwork(n, "beta"), func(c *web.Config) {
		c.Auth.TokenTTL = time.Nanosecond
		c.Auth.MaxTokenTTL = 30 * time.Minute
	})
	gamma := testapp.Start(t, named("gamma"), testapp.WithNetwork(n, "gamma"), otherBuild)
	tok := alpha.AdminToken(t)
	betaToken := func(username, password string) string {
		t.Helper()
		var out struct{ Token string }
		if status := beta.JSON(t, "", http.MethodPost, "/api/v1/auth/token", map[string]any{"username": username, "password": password, "expiresInMinutes": 30}, &out); status != http.StatusOK {
			t.Fatalf("token of %s on beta: status %d", username, status)
		}
		return out.Token
	}

	started := func() int {
		t.Helper()
		var evs []struct{ ID string }
		if status := alpha.JSON(t, tok, http.MethodGet, "/api/v1/events?type=ClusterReplicaEnrollmentStarted", nil, &evs); status != http.StatusOK {
			t.Fatalf("events: status %d", status)
		}
		return len(evs)
	}
	refused := func(what, addr, replicaToken string, wantStatus int, wantField string, wantIn ...string) {
		t.Helper()
		before := started()
		var out struct{ Error, Field string }
		status := alpha.JSON(t, tok, http.MethodPost, "/api/v1/cluster/members", map[string]string{
			"address": addr, "authenticationToken": replicaToken, "confirm": "Add Replica",
		}, &out)
		t.Logf("%s: %d %s", what, status, out.Error)
		if status != wantStatus || out.Field != wantField {
			t.Fatalf("%s: status %d field %q (%q), want %d field %q", what, status, out.Field, out.Error, wantStatus, wantField)
		}
		for _, w := range wantIn {
			if !strings.Contains(out.Error, w) {
				t.Fatalf("%s: %q does not say %q", what, out.Error, w)
			}
		}
		if op := clusterOperation(t, alpha, tok); op != "None" {
			t.Fatalf("%s: the cluster lock is held by %s", what, op)
		}
		if after := started(); after != before {
			t.Fatalf("%s: an operation started (%d enrollments, %d before)", what, after, before)
		}
	}

	// A token that beta never issued.
	refused("a wrong token", beta.Addr(), "cnv_not-a-token-of-beta", http.StatusUnprocessableEntity, "authenticationToken",
		"beta refused", "unknown, expired or revoked", "Sign in on "+beta.Addr())
	// An expired token.
	refused("an expired token", beta.Addr(), beta.AdminToken(t), http.StatusUnprocessableEntity, "authenticationToken", "unknown, expired or revoked")
	// A revoked token.
	old := betaToken("admin", testapp.AdminPassword)
	if status := beta.JSON(t, old, http.MethodDelete, "/api/v1/auth/token", nil, nil); status != http.StatusNoContent {
		t.Fatalf("revoke: status %d", status)
	}
	refused("a revoked token", beta.Addr(), old, http.StatusUnprocessableEntity, "authenticationToken", "unknown, expired or revoked")
	// A token of a user who is not an administrator there.
	betaAdmin := betaToken("admin", testapp.AdminPassword)
	if status := beta.JSON(t, betaAdmin, http.MethodPost, "/api/v1/users", map[string]string{"username": "beta-helpdesk", "password": "beta-helpdesk-password", "role": "Helpdesk"}, nil); status != http.StatusCreated {
		t.Fatalf("create a helpdesk user on beta: status %d", status)
	}
	refused("a helpdesk token", beta.Addr(), betaToken("beta-helpdesk", "beta-helpdesk-password"), http.StatusUnprocessableEntity,
		"authenticationToken", "not an ApplianceAdministrator")
	// The refusals changed nothing on beta.
	if st := applianceState(t, beta); st != "Online" {
		t.Fatalf("beta after refused attempts: %s, want Online", st)
	}
	// Another build.
	refused("another build", gamma.Addr(), gamma.AdminToken(t), http.StatusConflict, "", "gamma runs build other-build", "same build")
	// The primary itself.
	refused("the primary's own address", alpha.Addr(), tok, http.StatusConflict, "", "address of this appliance")

	// Added once, beta cannot be added again.
	if op := waitOperation(t, alpha, tok, startAddReplica(t, alpha, tok, beta.Addr(), betaAdmin)); op.State != "Succeeded" {
		t.Fatalf("add beta: %s: %s", op.State, op.Error)
	}
	refused("a member's address", beta.Addr(), betaAdmin, http.StatusConflict, "", "beta", "already a member")
}

func otherBuild(c *web.Config) { c.Version = "other-build" }
