package web_test

import (
	"net/http"
	"strings"
	"testing"

	"conclave/internal/testapp"
)

// Two of three members are gone for good: the survivor has no consensus.
// Reset Cluster keeps it alone as the primary; its data is intact, it takes
// writes again, and a member left out that comes back is fenced.
func TestResetClusterKeepsTheSurvivor(t *testing.T) {
	alpha := testapp.Start(t, named("alpha"))
	beta := testapp.Start(t, named("beta"))
	gamma := testapp.Start(t, named("gamma"))
	addReplica(t, alpha, beta)
	addReplica(t, alpha, gamma)
	alpha.CreateUser(t, "before-reset", "before-reset-pw", "Helpdesk")
	tok := alpha.AdminToken(t)
	ms := members(t, alpha, tok)

	// With consensus, Reset Cluster is refused and says what to use instead.
	var refusal struct{ Error, Field string }
	body := map[string]any{"memberIds": []string{ms["alpha"].ID}, "primaryId": ms["alpha"].ID, "confirm": "Reset Cluster"}
	if status := alpha.JSON(t, tok, http.MethodPost, "/api/v1/cluster/reset", body, &refusal); status != http.StatusConflict || !strings.Contains(refusal.Error, "has consensus") {
		t.Fatalf("reset with consensus: %d %q", status, refusal.Error)
	}

	beta.Stop(t)
	gamma.Stop(t)
	waitState(t, alpha, "PrimaryNoQuorum")
	if status := alpha.JSON(t, tok, http.MethodPost, "/api/v1/cluster/reset", map[string]any{"memberIds": []string{ms["alpha"].ID}, "primaryId": ms["alpha"].ID, "confirm": "reset"}, &refusal); status != http.StatusUnprocessableEntity || refusal.Field != "confirm" {
		t.Fatalf("reset with a wrong phrase: %d %+v", status, refusal)
	}
	var out struct{ OperationID string }
	if status := alpha.JSON(t, tok, http.MethodPost, "/api/v1/cluster/reset", body, &out); status != http.StatusAccepted {
		t.Fatalf("reset: status %d", status)
	}
	waitState(t, alpha, "Online")
	op := waitOperation(t, alpha, tok, out.OperationID)
	if op.State != "Succeeded" || op.Kind != "Reset" {
		t.Fatalf("reset operation: %+v", op)
	}
	after := members(t, alpha, tok)
	if len(after) != 1 || after["alpha"].Role != "Primary" {
		t.Fatalf("members after reset: %+v", after)
	}
	alpha.CreateUser(t, "after-reset", "after-reset-pw", "Helpdesk")
	var users []struct{ Username string }
	alpha.JSON(t, tok, http.MethodGet, "/api/v1/users", nil, &users)
	names := map[string]bool{}
	for _, u := range users {
		names[u.Username] = true
	}
	if !names["before-reset"] || !names["after-reset"] {
		t.Fatalf("users after reset: %v", names)
	}
	evs := eventsOfType(t, alpha, tok, "ClusterResetCompleted")
	if len(evs) != 1 || !strings.Contains(evs[0].Details["leftOut"], "beta") {
		t.Fatalf("ClusterResetCompleted: %+v", evs)
	}

	// beta comes back: it is no longer a member and alpha refuses it.
	beta = beta.Restart(t)
	if st := beta.Node.Status(); st.LeaderID == ms["alpha"].ID {
		t.Fatalf("beta, left out of the reset, follows alpha again: %+v", st)
	}
	if alpha.Node.IsPeerAllowed(ms["beta"].ID) {
		t.Fatal("alpha lets beta, left out of the reset, talk to it")
	}
}
