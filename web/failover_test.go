package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
)

func TestPlannedFailover(t *testing.T) {
	alpha := testapp.Start(t, named("alpha"))
	beta := testapp.Start(t, named("beta"))
	gamma := testapp.Start(t, named("gamma"))
	addReplica(t, alpha, beta)
	addReplica(t, alpha, gamma)
	alpha.CreateUser(t, "before-failover", "before-failover-pw", "Helpdesk")
	tok := alpha.AdminToken(t)
	ms := members(t, alpha, tok)

	// Refusals: the primary itself, and a wrong phrase.
	var refusal struct{ Error, Field string }
	if status := alpha.JSON(t, tok, http.MethodPost, "/api/v1/cluster/members/"+ms["alpha"].ID+"/promote", map[string]string{"confirm": "Failover"}, &refusal); status != http.StatusConflict || !strings.Contains(refusal.Error, "primary already") {
		t.Fatalf("failover to the primary: %d %q", status, refusal.Error)
	}
	if status := alpha.JSON(t, tok, http.MethodPost, "/api/v1/cluster/members/"+ms["beta"].ID+"/promote", map[string]string{"confirm": "failover"}, &refusal); status != http.StatusUnprocessableEntity || refusal.Field != "confirm" {
		t.Fatalf("failover with a wrong phrase: %d %+v", status, refusal)
	}

	var out struct{ OperationID string }
	if status := alpha.JSON(t, tok, http.MethodPost, "/api/v1/cluster/members/"+ms["beta"].ID+"/promote", map[string]string{"confirm": "Failover"}, &out); status != http.StatusAccepted {
		t.Fatalf("failover: status %d", status)
	}
	btok := beta.AdminToken(t)
	op := waitOperation(t, beta, btok, out.OperationID)
	if op.State != "Succeeded" {
		t.Fatalf("failover: %s %s %+v", op.State, op.Error, op.Steps)
	}
	after := members(t, beta, btok)
	if after["beta"].Role != "Primary" || after["alpha"].Role != "Replica" {
		t.Fatalf("after failover: %+v", after)
	}
	// No committed write is lost, and the new primary takes writes.
	beta.CreateUser(t, "after-failover", "after-failover-pw", "Helpdesk")
	var users []struct{ Username string }
	beta.JSON(t, btok, http.MethodGet, "/api/v1/users", nil, &users)
	names := map[string]bool{}
	for _, u := range users {
		names[u.Username] = true
	}
	if !names["before-failover"] || !names["after-failover"] {
		t.Fatalf("users after failover: %v", names)
	}
	var evs []struct{ Type string }
	beta.JSON(t, btok, http.MethodGet, "/api/v1/events?type=ClusterFailoverCompleted", nil, &evs)
	if len(evs) != 1 {
		t.Fatalf("ClusterFailoverCompleted events: %+v", evs)
	}
	// The change of primary is recorded once, as a failover (the new
	// primary does not record an election of its own).
	if changes := eventsOfType(t, beta, btok, "ClusterPrimaryChanged"); len(changes) != 1 || changes[0].Details["reason"] != "failover" || changes[0].Details["previous"] != "alpha" {
		t.Fatalf("ClusterPrimaryChanged after a failover: %+v", changes)
	}
}

func TestUnlockCluster(t *testing.T) {
	app := testapp.Start(t)
	tok := app.AdminToken(t)
	stepCtx := make(chan context.Context, 1)
	opID, err := app.Node.Runner().Start(context.Background(), "admin", cluster.OperationSpec{Kind: "Enroll", Steps: []cluster.StepSpec{
		{Name: "Stuck", Run: func(ctx context.Context, _ *cluster.Progress) error {
			stepCtx <- ctx
			<-ctx.Done()
			return ctx.Err()
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := <-stepCtx
	var status struct{ Operation, OperationID, Actor string }
	app.JSON(t, tok, http.MethodGet, "/api/v1/cluster/status", nil, &status)
	if status.Operation != "Enroll" || status.OperationID != opID || status.Actor != "admin" {
		t.Fatalf("status while locked: %+v", status)
	}
	var refusal struct{ Error, Field string }
	if code := app.JSON(t, tok, http.MethodPost, "/api/v1/cluster/unlock", map[string]string{"confirm": "unlock cluster"}, &refusal); code != http.StatusUnprocessableEntity || refusal.Field != "confirm" {
		t.Fatalf("unlock with a wrong phrase: %d %+v", code, refusal)
	}
	helpdesk := app.CreateUser(t, "hd", "helpdesk-password", "Helpdesk")
	_ = helpdesk
	if code := app.JSON(t, app.Token(t, "hd", "helpdesk-password"), http.MethodPost, "/api/v1/cluster/unlock", map[string]string{"confirm": "Unlock Cluster"}, nil); code != http.StatusForbidden {
		t.Fatalf("unlock by Helpdesk: %d", code)
	}
	if code := app.JSON(t, tok, http.MethodPost, "/api/v1/cluster/unlock", map[string]string{"confirm": "Unlock Cluster"}, nil); code != http.StatusOK {
		t.Fatalf("unlock: %d", code)
	}
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the stuck step was not stopped")
	}
	app.JSON(t, tok, http.MethodGet, "/api/v1/cluster/status", nil, &status)
	if status.Operation != "None" {
		t.Fatalf("status after unlock: %+v", status)
	}
	op := waitOperation(t, app, tok, opID)
	if op.State != "ResultUnknown" || !strings.Contains(op.Error, "unlocked by admin") {
		t.Fatalf("operation after unlock: %s %q", op.State, op.Error)
	}
	var evs []struct {
		Type    string
		Details map[string]string
	}
	app.JSON(t, tok, http.MethodGet, "/api/v1/events?type=ClusterLockReleased", nil, &evs)
	if len(evs) != 1 || evs[0].Details["kind"] != "Enroll" || evs[0].Details["heldBy"] != "admin" {
		t.Fatalf("ClusterLockReleased events: %+v", evs)
	}
	if code := app.JSON(t, tok, http.MethodPost, "/api/v1/cluster/unlock", map[string]string{"confirm": "Unlock Cluster"}, &refusal); code != http.StatusConflict || !strings.Contains(refusal.Error, "not locked") {
		t.Fatalf("unlock when not locked: %d %q", code, refusal.Error)
	}
}
