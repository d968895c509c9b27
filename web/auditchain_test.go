package web_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"conclave/internal/testapp"
	"conclave/store"
)

// tamper runs SQL on app's database behind the appliance's back.
func tamper(t *testing.T, app *testapp.App, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, app.Cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
}

type chainAnswer struct {
	Intact      bool
	Checked     int
	Reason      string
	FirstBroken struct{ ID, Type string }
}

// Every member computes the same audit chain; an event altered on one
// member is named in its Activity Center and API, and an Add Replica from
// a primary whose audit log was altered fails its consistency check.
func TestAuditChainAcrossMembers(t *testing.T) {
	alpha := testapp.Start(t, named("alpha"))
	beta := testapp.Start(t, named("beta"))
	addReplica(t, alpha, beta)
	token := alpha.AdminToken(t)
	alpha.CreateUser(t, "someone", "someone-password-1", "Helpdesk")
	ctx := context.Background()
	index, _, _ := alpha.Store.AppliedIndex(ctx)
	if err := beta.Node.WaitApplied(ctx, index); err != nil {
		t.Fatal(err)
	}
	a, _ := alpha.Store.VerifyEventChain(ctx)
	b, _ := beta.Store.VerifyEventChain(ctx)
	if !a.Intact() || !b.Intact() || a.Checked < 5 {
		t.Fatalf("chains: alpha %+v, beta %+v", a, b)
	}
	last := func(app *testapp.App) string {
		evs, _ := app.Store.Events(ctx, store.EventFilter{Limit: 1000})
		var ids []string
		for _, e := range evs {
			if e.RaftIndex <= index {
				ids = append(ids, e.ID)
			}
		}
		return strings.Join(ids, ",")
	}
	if a, b := last(alpha), last(beta); a != b {
		t.Fatalf("members list different events up to raft index %d:\nalpha %s\nbeta  %s", index, a, b)
	}
	var ans chainAnswer
	if status := beta.JSON(t, beta.AdminToken(t), http.MethodGet, "/api/v1/events/chain", nil, &ans); status != http.StatusOK || !ans.Intact {
		t.Fatalf("chain on beta: %d %+v", status, ans)
	}

	// Someone with database access rewrites who created the user, on the primary.
	evs, _ := alpha.Store.Events(ctx, store.EventFilter{Type: "UserCreated"})
	if len(evs) == 0 {
		t.Fatal("no UserCreated event")
	}
	victim := evs[0].ID
	tamper(t, alpha, `update events set actor = 'nobody' where id = $1`, victim)
	if status := alpha.JSON(t, token, http.MethodGet, "/api/v1/events/chain", nil, &ans); status != http.StatusOK || ans.Intact || ans.FirstBroken.ID != victim {
		t.Fatalf("chain after tampering: %d %+v", status, ans)
	}
	c := alpha.Client()
	alpha.Login(t, c, "admin", testapp.AdminPassword)
	resp, err := c.Get(alpha.URL + "/activity")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(resp)
	if !strings.Contains(body, "Tampering") || !strings.Contains(body, victim) {
		t.Errorf("the Activity Center does not name the altered event %s", victim)
	}

	gamma := testapp.Start(t, named("gamma"))
	id := startAddReplica(t, alpha, token, gamma.Addr(), gamma.AdminToken(t))
	op := waitOperation(t, alpha, token, id)
	if op.State != "Failed" || !strings.Contains(op.Error, "audit log's chain is broken at event "+victim) {
		t.Fatalf("Add Replica with an altered audit log: %s: %s", op.State, op.Error)
	}
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}
