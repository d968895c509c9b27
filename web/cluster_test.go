package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/testapp"
)

var named = testapp.Named

type operation = testapp.Operation

// waitOperation polls an operation until it ends.
func waitOperation(t *testing.T, app *testapp.App, token, id string) operation {
	t.Helper()
	return app.WaitOperation(t, token, id, 2*time.Minute)
}

func addReplica(t *testing.T, primary *testapp.App, replica *testapp.App) operation {
	t.Helper()
	return primary.AddReplica(t, replica)
}

type member struct {
	ID, Name, Role, State string
	IsVoter               bool
}

func members(t *testing.T, app *testapp.App, token string) map[string]member {
	t.Helper()
	var ms []member
	if status := app.JSON(t, token, http.MethodGet, "/api/v1/cluster/members", nil, &ms); status != http.StatusOK {
		t.Fatalf("members: status %d", status)
	}
	out := map[string]member{}
	for _, m := range ms {
		out[m.Name] = m
	}
	return out
}

func TestAddReplicaUnjoinActivate(t *testing.T) {
	alpha := testapp.Start(t, named("alpha"))
	beta := testapp.Start(t, named("beta"))
	gamma := testapp.Start(t, named("gamma"))
	// beta's own data, which the enrollment replaces.
	beta.CreateUser(t, "beta-local", "beta-local-password", "Helpdesk")

	addReplica(t, alpha, beta)
	addReplica(t, alpha, gamma)

	tok := alpha.AdminToken(t)
	ms := members(t, alpha, tok)
	if len(ms) != 3 || ms["alpha"].Role != "Primary" || ms["beta"].State != "ReplicaWithQuorum" || ms["gamma"].State != "ReplicaWithQuorum" || !ms["beta"].IsVoter {
		t.Fatalf("members after two Add Replica: %+v", ms)
	}
	// A write on the primary is read on both replicas; beta's own user is gone.
	alpha.CreateUser(t, "written-on-alpha", "written-on-alpha-pw", "Helpdesk")
	for _, r := range []*testapp.App{beta, gamma} {
		rt := r.AdminToken(t) // the cluster's admin, replicated
		deadline := time.Now().Add(30 * time.Second)
		for {
			var users []struct{ Username string }
			r.JSON(t, rt, http.MethodGet, "/api/v1/users", nil, &users)
			names := map[string]bool{}
			for _, u := range users {
				names[u.Username] = true
			}
			if names["beta-local"] {
				t.Fatalf("%s still has beta's own user after enrollment", r.Cfg.Name)
			}
			if names["written-on-alpha"] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never saw the write: %v", r.Cfg.Name, names)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Configuration is read-only on a replica, and says where the primary is.
	var refusal struct{ Error string }
	if status := beta.JSON(t, beta.AdminToken(t), http.MethodPost, "/api/v1/users", map[string]string{"username": "on-beta", "password": "on-beta-password", "role": "Helpdesk"}, &refusal); status != http.StatusConflict || !strings.Contains(refusal.Error, alpha.Addr()) {
		t.Fatalf("a configuration write on a replica: status %d %q; want 409 naming the primary", status, refusal.Error)
	}
	// Writes a replica makes itself (sign-ins, tokens) are forwarded: the
	// token requests above were answered by beta and gamma.
	alpha.CreateUser(t, "written-on-beta", "written-on-beta-pw", "Helpdesk")

	// Unjoin gamma from a replica's API (forwarded to the primary).
	var out struct{ OperationID string }
	if status := beta.JSON(t, beta.AdminToken(t), http.MethodDelete, "/api/v1/cluster/members/"+ms["gamma"].ID, map[string]string{"confirm": "Unjoin"}, &out); status != http.StatusAccepted {
		t.Fatalf("unjoin: status %d", status)
	}
	op := waitOperation(t, alpha, tok, out.OperationID)
	if op.State != "Succeeded" {
		t.Fatalf("unjoin: %s %s %+v", op.State, op.Error, op.Steps)
	}
	if ms := members(t, alpha, tok); len(ms) != 2 {
		t.Fatalf("members after unjoin: %+v", ms)
	}
	gt := gamma.AdminToken(t)
	gm := members(t, gamma, gt)
	if len(gm) != 1 || gm["gamma"].State != "StandaloneReadOnly" {
		t.Fatalf("gamma after unjoin: %+v", gm)
	}
	// It kept the data it had.
	var users []struct{ Username string }
	gamma.JSON(t, gt, http.MethodGet, "/api/v1/users", nil, &users)
	found := false
	for _, u := range users {
		found = found || u.Username == "written-on-beta"
	}
	if !found {
		t.Fatalf("gamma lost its data: %+v", users)
	}
	// Read-only until activated.
	if status := gamma.JSON(t, gt, http.MethodPost, "/api/v1/users", map[string]string{"username": "x", "password": "xxxxxxxxxxxxxxx", "role": "Helpdesk"}, nil); status < 400 {
		t.Fatalf("a write on a read-only appliance: status %d", status)
	}
	if status := gamma.JSON(t, gt, http.MethodPost, "/api/v1/cluster/activate", map[string]string{"confirm": "activate"}, nil); status != http.StatusUnprocessableEntity {
		t.Fatalf("activate with a wrong phrase: status %d", status)
	}
	if status := gamma.JSON(t, gt, http.MethodPost, "/api/v1/cluster/activate", map[string]string{"confirm": "Activate"}, nil); status != http.StatusOK {
		t.Fatalf("activate: status %d", status)
	}
	if gm := members(t, gamma, gt); gm["gamma"].State != "Online" {
		t.Fatalf("gamma after activate: %+v", gm)
	}
	gamma.CreateUser(t, "after-activate", "after-activate-pw", "Helpdesk")
}
