package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/testapp"
	"conclave/session"
	"conclave/store"
)

// A session started on one member is valid on every member: behind a load
// balancer no sticky sessions are needed. Signing out on one member ends it
// everywhere.
func TestSessionIsValidOnEveryMember(t *testing.T) {
	alpha := testapp.Start(t, named("alpha"))
	beta := testapp.Start(t, named("beta"))
	addReplica(t, alpha, beta)

	// Sign in on the replica: the session is created through the primary.
	c := beta.Client()
	beta.Login(t, c, "admin", testapp.AdminPassword)
	u, _ := url.Parse(beta.URL)
	var cookie *http.Cookie
	for _, ck := range c.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, session.CookieName) {
			cookie = ck
		}
	}
	if cookie == nil {
		t.Fatal("no session cookie after sign-in on beta")
	}
	get := func(app *testapp.App) int {
		req, _ := http.NewRequest(http.MethodGet, app.URL+"/users", nil)
		req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
		resp, err := app.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, app := range []*testapp.App{beta, alpha} {
		if status := get(app); status != http.StatusOK {
			t.Fatalf("the session from beta on %s: status %d, want 200", app.Cfg.Name, status)
		}
	}
	// Sign out on alpha: the session ends on beta too.
	req, _ := http.NewRequest(http.MethodPost, alpha.URL+"/logout", nil)
	req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	resp, err := alpha.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for get(beta) != http.StatusSeeOther {
		if time.Now().After(deadline) {
			t.Fatal("the session still works on beta after signing out on alpha")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The sweep deletes sessions past their absolute end from every member,
// and proposes nothing when none is: an idle cluster writes no raft entry
// every sweep.
func TestPruneSessions(t *testing.T) {
	app := testapp.Start(t)
	ctx := t.Context()
	sessions := app.Node.Sessions()
	now := time.Now()
	old := store.SessionRow{IDHash: []byte("expired-session-hash-0123456789ab"), UserID: "", Data: []byte("{}"), CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
	live := store.SessionRow{IDHash: []byte("current-session-hash-0123456789ab"), UserID: "", Data: []byte("{}"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	for _, r := range []store.SessionRow{old, live} {
		if err := sessions.PutSession(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := app.Node.PruneSessions(ctx); err != nil {
		t.Fatal(err)
	}
	if expired, err := app.Store.HasSessionsExpiredBefore(ctx, time.Now()); err != nil || expired {
		t.Fatalf("after the prune, an expired session is left: %v %v", expired, err)
	}
	if _, err := sessions.SessionByHash(ctx, live.IDHash, time.Now()); err != nil {
		t.Fatalf("the current session is gone: %v", err)
	}
	// The applied index is no witness here: the appliance's own startup
	// sweep and events may commit entries meanwhile on a busy machine.
	if proposed, err := app.Node.PruneSessions(ctx); err != nil || proposed {
		t.Errorf("a prune with nothing to delete proposed a deletion to the cluster (%v)", err)
	}
}
