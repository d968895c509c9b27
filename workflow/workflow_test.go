package workflow_test

import (
	"context"
	"errors"
	"fmt"
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
	// A check-in and an expiry write their events together
	// (store.Tx.EndCheckout): each event is there, in an intact chain.
	for typ, want := range map[string]int64{workflow.EvRequestCheckedIn: 1, workflow.EvRequestExpired: 1, workflow.EvPasswordChanged: 2} {
		if n, err := f.app.Store.CountEvents(f.ctx, typ); err != nil || n != want {
			t.Errorf("%d events %s, want %d (%v)", n, typ, want, err)
		}
	}
	if c, err := f.app.Store.VerifyEventChain(f.ctx); err != nil || !c.Intact() {
		t.Fatalf("audit chain after a check-in and an expiry: %+v, %v", c, err)
	}
}

// A request for an account the cluster does not hold is refused on the
// account field, whether its id is malformed or only unknown (the command
// checks that, when applied), and records no request.
func TestRequestOfUnknownAccount(t *testing.T) {
	f := newFixture(t)
	f.policy(t, workflow.PolicyInput{Requesters: []string{"rita"}})
	for _, id := range []string{"not-an-id", "6f1c9a52-3d41-4c7e-9b7a-1f2e3d4c5b6a"} {
		_, err := f.wf.Request(f.ctx, f.req, id, "patch the database")
		var rej *store.Rejection
		if !errors.As(err, &rej) || rej.Field != "accountId" || rej.Message != "no account with this id" {
			t.Fatalf("request of %s: %v, want a refusal of accountId", id, err)
		}
	}
	for _, state := range []string{store.RequestPending, store.RequestAvailable} {
		if n, err := f.app.Store.CountRequests(f.ctx, state); err != nil || n != 0 {
			t.Fatalf("%d requests %s after refusals, want none (%v)", n, state, err)
		}
	}
}

// A check-in of a request that does not exist is "not found" (the API's
// 404), malformed ID or not, and changes nothing.
func TestCheckinOfUnknownRequest(t *testing.T) {
	f := newFixture(t)
	f.policy(t, workflow.PolicyInput{Requesters: []string{"rita"}, ChangeAfterCheckin: true})
	for _, id := range []string{"not-an-id", "6f1c9a52-3d41-4c7e-9b7a-1f2e3d4c5b6a"} {
		if err := f.wf.Checkin(f.ctx, f.req, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("check-in of %s: %v, want not found", id, err)
		}
	}
	if n, err := f.app.Store.CountRequests(f.ctx, store.RequestCheckedIn); err != nil || n != 0 {
		t.Fatalf("%d requests checked in after refusals, want none (%v)", n, err)
	}
}

func TestRolesAndApprovals(t *testing.T) {
	f := newFixture(t)
	helpdesk := actor(t, f.app, "hugo", cluster.RoleHelpdesk)
	other := actor(t, f.app, "otto", cluster.RoleRequester)
	stranger := actor(t, f.app, "sam", cluster.RoleApprover)
	f.policy(t, workflow.PolicyInput{Requesters: []string{"rita", "hugo"}, Approvers: []string{"abel"}, ApprovalRequired: true})

	// Helpdesk stays read-only, even when a policy names it.
	_, err := f.wf.Request(f.ctx, helpdesk, f.accountID, "look")
	rejected(t, err, "only a Requester or an ApplianceAdministrator")
	// A Requester the policy does not name is refused where it applies.
	_, err = f.wf.Request(f.ctx, other, f.accountID, "look")
	rejected(t, err, "no access policy lets otto request root@db-1")
	// A reason is required.
	_, err = f.wf.Request(f.ctx, f.req, f.accountID, "  ")
	rejected(t, err, "the reason is required")

	id, err := f.wf.Request(f.ctx, f.req, f.accountID, "rotate the logs")
	if err != nil {
		t.Fatal(err)
	}
	// Pending: no password yet, and a second request of hers is refused.
	_, err = f.wf.Release(f.ctx, f.req, id)
	rejected(t, err, "waits for approval")
	_, err = f.wf.Request(f.ctx, f.req, f.accountID, "again")
	rejected(t, err, "open request")
	// Who may decide: not Helpdesk, not an Approver the policy does not
	// name, not the requester (an administrator who requests cannot
	// approve their own).
	rejected(t, f.wf.Decide(f.ctx, helpdesk, id, true, ""), "only an Approver or an ApplianceAdministrator")
	rejected(t, f.wf.Decide(f.ctx, stranger, id, true, ""), "sam is not an approver")
	if err := f.wf.Decide(f.ctx, f.appr, id, true, "ok for INC-1"); err != nil {
		t.Fatalf("approve: %v", err)
	}
	r, _ := f.app.Store.RequestByID(f.ctx, id)
	if r.State != store.RequestAvailable || r.DecidedBy != "abel" || r.ExpiresAt == nil || r.ExpiresAt.Sub(*r.DecidedAt) != time.Hour {
		t.Fatalf("after approval: %+v", r)
	}
	rejected(t, f.wf.Decide(f.ctx, f.appr, id, false, ""), "not waiting for a decision")
	// Only the requester sees the password.
	_, err = f.wf.Release(f.ctx, f.appr, id)
	rejected(t, err, "only rita")
	if rel, err := f.wf.Release(f.ctx, f.req, id); err != nil || rel.Password != "first-password" {
		t.Fatalf("release: %q, %v", rel.Password, err)
	}

	// The administrator requests too, and waits: rita holds the account.
	adminReq, err := f.wf.Request(f.ctx, f.admin, f.accountID, "audit")
	if err != nil {
		t.Fatalf("administrator's request: %v", err)
	}
	rejected(t, f.wf.Decide(f.ctx, f.admin, adminReq, true, ""), "nobody approves their own request")
	rejected(t, f.wf.Decide(f.ctx, f.appr, adminReq, true, ""), "rita has root@db-1 checked out")
	if err := f.wf.Checkin(f.ctx, f.req, id); err != nil {
		t.Fatal(err)
	}
	if err := f.wf.Decide(f.ctx, f.appr, adminReq, false, "not now"); err != nil {
		t.Fatalf("deny: %v", err)
	}
	r, _ = f.app.Store.RequestByID(f.ctx, adminReq)
	if r.State != store.RequestDenied || r.DecisionComment != "not now" {
		t.Fatalf("after denial: %+v", r)
	}

	// Every step is in the audit log, and no password is.
	events, err := f.app.Store.Events(f.ctx, store.EventFilter{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range events {
		seen[e.Type]++
		for k, v := range e.Details {
			if strings.Contains(v, "first-password") || strings.Contains(k, "secret") {
				t.Errorf("event %s holds a secret: %v", e.Type, e.Details)
			}
		}
	}
	for typ, n := range map[string]int{workflow.EvRequestCreated: 2, workflow.EvRequestApproved: 1, workflow.EvRequestDenied: 1,
		workflow.EvPasswordReleased: 1, workflow.EvRequestCheckedIn: 1} {
		if seen[typ] != n {
			t.Errorf("%d %s events, want %d (all: %v)", seen[typ], typ, n, seen)
		}
	}
}

// At most one holder: many requests for one account without approval at
// once; exactly one gets it.
func TestAtMostOneHolder(t *testing.T) {
	f := newFixture(t)
	var people []workflow.Actor
	var names []string
	for i := range 8 {
		a := actor(t, f.app, "req"+string(rune('a'+i)), cluster.RoleRequester)
		people = append(people, a)
		names = append(names, a.Username)
	}
	f.policy(t, workflow.PolicyInput{Requesters: names})
	errs := make(chan error, len(people))
	for _, a := range people {
		go func() {
			_, err := f.wf.Request(f.ctx, a, f.accountID, "all at once")
			errs <- err
		}()
	}
	won := 0
	for range people {
		err := <-errs
		if err == nil {
			won++
			continue
		}
		rejected(t, err, "checked out")
	}
	if won != 1 {
		t.Fatalf("%d people got the account at once, want 1", won)
	}
	held, err := f.app.Store.Requests(f.ctx, store.RequestFilter{AccountID: f.accountID, States: []string{store.RequestAvailable}})
	if err != nil || len(held) != 1 {
		t.Fatalf("holders: %d, %v", len(held), err)
	}
}

// A check-out ends by itself when its time is up: the primary proposes the
// expiry (Apply never reads the clock), and only due requests expire.
func TestExpiry(t *testing.T) {
	f := newFixture(t)
	f.policy(t, workflow.PolicyInput{Requesters: []string{"rita"}, DurationMinutes: 30})
	id, err := f.wf.Request(f.ctx, f.req, f.accountID, "short job")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.wf.ExpireDue(f.ctx, time.Now().Add(29*time.Minute)); err != nil || n != 0 {
		t.Fatalf("expire before the end: %d, %v", n, err)
	}
	if n, err := f.wf.ExpireDue(f.ctx, time.Now().Add(31*time.Minute)); err != nil || n != 1 {
		t.Fatalf("expire after the end: %d, %v", n, err)
	}
	r, _ := f.app.Store.RequestByID(f.ctx, id)
	if r.State != store.RequestExpired || r.PasswordChanged {
		t.Fatalf("after expiry: %+v", r)
	}
	// The password stays (the policy does not change it), and the account
	// is free again.
	id2, err := f.wf.Request(f.ctx, f.req, f.accountID, "again")
	if err != nil {
		t.Fatal(err)
	}
	if rel, err := f.wf.Release(f.ctx, f.req, id2); err != nil || rel.Password != "first-password" {
		t.Fatalf("release after expiry: %q, %v", rel.Password, err)
	}
	evs, _ := f.app.Store.Events(f.ctx, store.EventFilter{Type: workflow.EvRequestExpired})
	if len(evs) != 1 || evs[0].Actor != "system" {
		t.Fatalf("expiry events: %+v", evs)
	}
}

func TestImportRefusesBadRowsAndImportsNothing(t *testing.T) {
	f := newFixture(t)
	csv := strings.Join([]string{
		"asset,address,platform,username,password",
		"web-1,10.0.1.1,Linux,root,pw-1",
		"web-1,10.0.1.1,Linux,admin,pw-2",
		"web-2,10.0.1.2,Linux,root",        // 4: a column short
		"web-1,10.0.9.9,Linux,backup,pw-3", // 5: another address
		"db-1,10.0.0.1,Linux,root,pw-4",    // 6: exists in the cluster
		"web-1,10.0.1.1,Linux,ROOT,pw-5",   // 7: twice in the file
		",10.0.1.3,Linux,root,pw-6",        // 8: no asset
		"web-3,10.0.1.3,Linux,root,",       // 9: no password
		`web-4,"10.0.1.4,Linux,root,pw`,    // 10: bad quoting
		"web-5,10.0.1.5,Linux,root,pw-7",
	}, "\n") + "\n"
	_, err := f.wf.Import(f.ctx, f.admin, strings.NewReader(csv))
	var ie *workflow.ImportError
	if !errors.As(err, &ie) {
		t.Fatalf("import: %v, want an ImportError", err)
	}
	want := map[int]string{4: "needs 5", 5: "address", 6: "exists already", 7: "also on line 2", 8: "asset is required", 9: "password is required", 10: "not valid CSV"}
	got := map[int]string{}
	for _, p := range ie.Problems {
		got[p.Line] = p.Message
	}
	for line, w := range want {
		if !strings.Contains(got[line], w) {
			t.Errorf("line %d: %q, want it to say %q", line, got[line], w)
		}
	}
	if len(ie.Problems) != len(want) {
		t.Errorf("problems: %+v, want %d", ie.Problems, len(want))
	}
	if n, _ := f.app.Store.CountAccounts(f.ctx); n != 1 {
		t.Fatalf("%d accounts after the refused import, want the 1 from before", n)
	}
	// A good file: assets created as needed, accounts added to existing ones.
	res, err := f.wf.Import(f.ctx, f.admin, strings.NewReader("web-1,10.0.1.1,Linux,root,pw-1\nweb-1,10.0.1.1,Linux,admin,pw-2\ndb-1,10.0.0.1,Linux,backup,pw-3\n"))
	if err != nil || res.Assets != 1 || res.Accounts != 3 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	if n, _ := f.app.Store.CountAccounts(f.ctx); n != 4 {
		t.Fatalf("%d accounts after the import, want 4", n)
	}
}

// 100,000 rows go in a few raft commands and one commit.
func TestImportHundredThousandRows(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 100,000 rows")
	}
	f := newFixture(t)
	var b strings.Builder
	b.WriteString("asset,address,platform,username,password\n")
	for i := range 100_000 {
		h := i / 10
		fmt.Fprintf(&b, "host-%d,10.0.%d.%d,Linux,user-%d,password-%d\n", h, h/256, h%256, i%10, i)
	}
	start := time.Now()
	res, err := f.wf.Import(f.ctx, f.admin, strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	t.Logf("imported %d accounts on %d assets in %s", res.Accounts, res.Assets, time.Since(start))
	if res.Accounts != 100_000 || res.Assets != 10_000 {
		t.Fatalf("import: %+v", res)
	}
	if n, _ := f.app.Store.CountAccounts(f.ctx); n != 100_001 {
		t.Fatalf("%d accounts, want 100,001", n)
	}
	evs, _ := f.app.Store.Events(f.ctx, store.EventFilter{Type: workflow.EvAccountsImported})
	if len(evs) != 1 || evs[0].Details["accounts"] != "100000" {
		t.Fatalf("import events: %+v", evs)
	}
}
