package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/testapp"
	"conclave/session"
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
