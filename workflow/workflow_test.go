package workflow_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/internal/testpg"
	"conclave/store"
	"conclave/workflow"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// fixture is one appliance with an asset, an account and users of each
// workflow role.
type fixture struct {
	app                *testapp.App
	wf                 *workflow.Service
	admin, req, appr   workflow.Actor
	assetID, accountID string
	ctx                context.Context
}

func actor(t *testing.T, app *testapp.App, name, role string) workflow.Actor {
	t.Helper()
	if name == "admin" {
		u, err := app.Store.UserByUsername(context.Background(), "admin")
		if err != nil {
			t.Fatal(err)
		}
		return workflow.Actor{UserID: u.ID, Username: "admin", Role: u.Role}
	}
	id := app.CreateUser(t, name, "a-password-for-tests-1", role)
	return workflow.Actor{UserID: id, Username: name, Role: role}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	app := testapp.Start(t)
	f := &fixture{app: app, wf: app.Workflow, ctx: t.Context()}
	f.admin = actor(t, app, "admin", "")
	f.req = actor(t, app, "rita", cluster.RoleRequester)
	f.appr = actor(t, app, "abel", cluster.RoleApprover)
	var err error
	f.assetID, err = f.wf.CreateAsset(f.ctx, f.admin, workflow.AssetInput{Name: "db-1", Address: "10.0.0.1", Platform: "Linux"})
	if err != nil {
		t.Fatalf("create asset: %v", err)
	}
	f.accountID, err = f.wf.CreateAccount(f.ctx, f.admin, f.assetID, "root", "first-password")
	if err != nil {
		t.Fatalf("create account: %v", err)
	}
	return f
}

func (f *fixture) policy(t *testing.T, in workflow.PolicyInput) string {
	t.Helper()
	if in.Name == "" {
		in.Name = "Databases"
	}
	if in.AccountIDs == nil {
		in.AccountIDs = []string{f.accountID}
	}
	if in.DurationMinutes == 0 {
		in.DurationMinutes = 60
	}
	id, err := f.wf.SavePolicy(f.ctx, f.admin, "", in)
	if err != nil {
		t.Fatalf("save policy: %v", err)
	}
	return id
}

func rejected(t *testing.T, err error, want string) {
	t.Helper()
	var rej *store.Rejection
	if !errors.As(err, &rej) || !strings.Contains(rej.Message, want) {
		t.Fatalf("got %v, want a refusal saying %q", err, want)
	}
}

func TestRequestWithoutApprovalReleaseAndCheckinChangesPassword(t *testing.T) {
	f := newFixture(t)
	f.policy(t, workflow.PolicyInput{Requesters: []string{"rita"}, ChangeAfterCheckin: true})
	id, err := f.wf.Request(f.ctx, f.req, f.accountID, "patch the database")
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	rel, err := f.wf.Release(f.ctx, f.req, id)
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	if rel.Password != "first-password" || rel.Request.State != store.RequestAvailable || rel.Request.Releases != 1 {
		t.Fatalf("released %+v", rel)
	}
	if err := f.wf.Checkin(f.ctx, f.req, id); err != nil {
		t.Fatalf("checkin: %v", err)
	}
	r, _ := f.app.Store.RequestByID(f.ctx, id)
	if r.State != store.RequestCheckedIn || !r.PasswordChanged {
		t.Fatalf("after check-in: %+v", r)
	}
	_, err = f.wf.Release(f.ctx, f.req, id)
	rejected(t, err, "CheckedIn")
	// A new request sees the new password.
	id2, err := f.wf.Request(f.ctx, f.req, f.accountID, "again")
	if err != nil {
		t.Fatal(err)
	}
	rel2, err := f.wf.Release(f.ctx, f.req, id2)
	if err != nil || rel2.Password == "first-password" || len(rel2.Password) != 24 {
		t.Fatalf("second release: %q, %v", rel2.Password, err)
	}
	// It expires when its time ends; the password changes again.
	n, err := f.wf.ExpireDue(f.ctx, time.Now().Add(2*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("expire: %d, %v", n, err)
	}
	r, _ = f.app.Store.RequestByID(f.ctx, id2)
	if r.State != store.RequestExpired || !r.PasswordChanged || r.EndedBy != "system" {
		t.Fatalf("after expiry: %+v", r)
	}
}
