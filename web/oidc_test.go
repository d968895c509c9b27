package web_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"

	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/web"
)

// These tests sign in through a real OpenID Connect provider (mockoidc)
// running on loopback, following every redirect by hand the way a browser
// would, so each hop (appliance → provider → appliance) can be checked and
// tampered with.

const oidcStateCookie = "__Host-oidc-login"

// startProvider runs an OIDC provider on 127.0.0.1 for this test.
func startProvider(t *testing.T) *mockoidc.MockOIDC {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatalf("start OIDC provider: %v", err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

var testRoleMapping = map[string]string{
	"conclave-admins":   cluster.RoleAdministrator,
	"conclave-helpdesk": cluster.RoleHelpdesk,
}

// withOIDC configures the appliance for m the way the command line does.
func withOIDC(m *mockoidc.MockOIDC) testapp.Option {
	return func(cfg *web.Config) {
		cfg.OIDC = cluster.OIDCSettings{
			Issuer:       m.Issuer(),
			ClientID:     m.ClientID,
			ClientSecret: m.ClientSecret,
			DisplayName:  "Mock IdP",
			RoleMapping:  testRoleMapping,
		}
	}
}

func mockUser(name string, groups ...string) *mockoidc.MockUser {
	return &mockoidc.MockUser{
		Subject:           "sub-" + name,
		Email:             name + "@example.com",
		EmailVerified:     true,
		PreferredUsername: name,
		Groups:            groups,
	}
}

// get does one request with the browser c and returns the response with its
// body read.
func get(t *testing.T, c *http.Client, rawURL string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(rawURL)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", rawURL, err)
	}
	return resp, string(body)
}

func location(t *testing.T, resp *http.Response) *url.URL {
	t.Helper()
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("%s %s: status %d without a usable Location: %v", resp.Request.Method, resp.Request.URL, resp.StatusCode, err)
	}
	return loc
}

// beginOIDC opens /auth/oidc/start and returns the provider's authorize
// URL the appliance sends the browser to.
func beginOIDC(t *testing.T, app *testapp.App, m *mockoidc.MockOIDC, c *http.Client, returnTo string) *url.URL {
	t.Helper()
	resp, body := get(t, c, app.URL+"/auth/oidc/start?return="+url.QueryEscape(returnTo))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start: status %d, want 302; body: %s", resp.StatusCode, body)
	}
	authURL := location(t, resp)
	if got, want := authURL.Scheme+"://"+authURL.Host+authURL.Path, m.AuthorizationEndpoint(); got != want {
		t.Fatalf("start redirects to %s, want the provider's %s", got, want)
	}
	return authURL
}

// authorize lets the provider sign user in at authURL and returns the
// callback URL the provider sends the browser back to.
func authorize(t *testing.T, m *mockoidc.MockOIDC, c *http.Client, authURL *url.URL, user *mockoidc.MockUser) *url.URL {
	t.Helper()
	m.QueueUser(user)
	resp, body := get(t, c, authURL.String())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("provider authorize: status %d, want 302; body: %s", resp.StatusCode, body)
	}
	return location(t, resp)
}

// signIn runs the whole flow for user and returns the callback's response.
func signIn(t *testing.T, app *testapp.App, m *mockoidc.MockOIDC, c *http.Client, user *mockoidc.MockUser) (*http.Response, string) {
	t.Helper()
	cb := authorize(t, m, c, beginOIDC(t, app, m, c, "/"), user)
	return get(t, c, cb.String())
}

// mustSignIn runs the whole flow and fails unless it ends in a session.
func mustSignIn(t *testing.T, app *testapp.App, m *mockoidc.MockOIDC, c *http.Client, user *mockoidc.MockUser) {
	t.Helper()
	resp, body := signIn(t, app, m, c, user)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback for %s: status %d, want 303; body: %s", user.PreferredUsername, resp.StatusCode, body)
	}
	if loc := location(t, resp); loc.Path != "/" {
		t.Fatalf("callback for %s redirects to %s, want /", user.PreferredUsername, loc)
	}
	assertSignedIn(t, app, c, user.PreferredUsername)
}

// assertSignedIn checks that c's session opens the console as username.
func assertSignedIn(t *testing.T, app *testapp.App, c *http.Client, username string) {
	t.Helper()
	resp, body := get(t, c, app.URL+"/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / after sign-in: status %d, want 200", resp.StatusCode)
	}
	// Loose checks on purpose: the markup of the console changes often.
	if !strings.Contains(body, "<title>Cluster ") || !strings.Contains(body, `action="/logout"`) {
		t.Fatalf("GET / after sign-in is not the cluster page of a signed-in user: %s", body)
	}
	if !strings.Contains(body, ">"+username+"<") && !strings.Contains(body, ">"+username+" ") {
		t.Fatalf("the console does not show %s as signed in", username)
	}
}

// assertNoSession checks that c has no session: the console sends it to
// the sign-in page.
func assertNoSession(t *testing.T, app *testapp.App, c *http.Client) {
	t.Helper()
	resp, _ := get(t, c, app.URL+"/")
	if resp.StatusCode != http.StatusSeeOther || location(t, resp).Path != "/login" {
		t.Fatalf("GET / without a session: status %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	u, _ := url.Parse(app.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name != oidcStateCookie {
			t.Fatalf("the browser holds cookie %s after a refused sign-in", ck.Name)
		}
	}
}

type apiUser struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	Role     string `json:"role"`
	Source   string `json:"source"`
}

func findUser(t *testing.T, app *testapp.App, token, username string) (apiUser, bool) {
	t.Helper()
	var users []apiUser
	if status := app.JSON(t, token, http.MethodGet, "/api/v1/users", nil, &users); status != http.StatusOK {
		t.Fatalf("list users: status %d", status)
	}
	for _, u := range users {
		if u.Username == username {
			return u, true
		}
	}
	return apiUser{}, false
}

func mustUser(t *testing.T, app *testapp.App, token, username, role string) apiUser {
	t.Helper()
	u, ok := findUser(t, app, token, username)
	if !ok {
		t.Fatalf("user %s does not exist", username)
	}
	if u.Source != "oidc" || u.Role != role {
		t.Fatalf("user %s: source %q role %q, want source oidc role %s", username, u.Source, u.Role, role)
	}
	return u
}

type apiEvent struct {
	Type    string            `json:"type"`
	Actor   string            `json:"actor"`
	Details map[string]string `json:"details"`
}

func events(t *testing.T, app *testapp.App, token, typ, actor string) []apiEvent {
	t.Helper()
	var all []apiEvent
	q := url.Values{"type": {typ}, "actor": {actor}}
	if status := app.JSON(t, token, http.MethodGet, "/api/v1/events?"+q.Encode(), nil, &all); status != http.StatusOK {
		t.Fatalf("list events: status %d", status)
	}
	var out []apiEvent
	for _, e := range all {
		if e.Type == typ && e.Actor == actor {
			out = append(out, e)
		}
	}
	return out
}

func TestOIDCSignIn(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	token := app.AdminToken(t)

	c := app.Client()
	authURL := beginOIDC(t, app, m, c, "/")
	q := authURL.Query()
	if q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256" {
		t.Fatalf("authorize URL %s lacks a PKCE S256 challenge", authURL)
	}
	if q.Get("nonce") == "" || q.Get("state") == "" {
		t.Fatalf("authorize URL %s lacks a nonce or state", authURL)
	}
	if got, want := q.Get("redirect_uri"), app.URL+"/auth/oidc/callback"; got != want {
		t.Fatalf("redirect_uri = %q, want %q", got, want)
	}
	if got, want := q.Get("client_id"), m.ClientID; got != want {
		t.Fatalf("client_id = %q, want %q", got, want)
	}
	cb := authorize(t, m, c, authURL, mockUser("alice", "staff", "conclave-admins"))
	if cb.Query().Get("state") != q.Get("state") {
		t.Fatalf("the provider returned state %q, want %q", cb.Query().Get("state"), q.Get("state"))
	}
	resp, body := get(t, c, cb.String())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: status %d, want 303; body: %s", resp.StatusCode, body)
	}
	assertSignedIn(t, app, c, "alice")
	first := mustUser(t, app, token, "alice", cluster.RoleAdministrator)

	logins := events(t, app, token, "UserLoggedIn", "alice")
	if len(logins) != 1 || logins[0].Details["method"] != "oidc" {
		t.Fatalf("UserLoggedIn events for alice = %+v, want one with method oidc", logins)
	}

	// The provider moved alice to the helpdesk group: the next sign-in
	// updates her role, and she stays the same user.
	c2 := app.Client()
	mustSignIn(t, app, m, c2, mockUser("alice", "conclave-helpdesk"))
	second := mustUser(t, app, token, "alice", cluster.RoleHelpdesk)
	if second.ID != first.ID {
		t.Fatalf("second sign-in made a new user %s, want the same user %s", second.ID, first.ID)
	}
	if n := len(events(t, app, token, "UserLoggedIn", "alice")); n != 2 {
		t.Fatalf("%d UserLoggedIn events for alice, want 2", n)
	}
}

func TestOIDCReturnsToRequestedPage(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	c := app.Client()
	cb := authorize(t, m, c, beginOIDC(t, app, m, c, "/activity?type=UserLoggedIn"), mockUser("carol", "conclave-admins"))
	resp, body := get(t, c, cb.String())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: status %d, want 303; body: %s", resp.StatusCode, body)
	}
	if got := location(t, resp).RequestURI(); got != "/activity?type=UserLoggedIn" {
		t.Fatalf("callback redirects to %s, want the page the sign-in started from", got)
	}

	// An address on another site is not followed.
	c2 := app.Client()
	cb = authorize(t, m, c2, beginOIDC(t, app, m, c2, "//evil.example.com/"), mockUser("carol", "conclave-admins"))
	resp, _ = get(t, c2, cb.String())
	if resp.StatusCode != http.StatusSeeOther || location(t, resp).String() != app.URL+"/" {
		t.Fatalf("callback with a foreign return address: status %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestOIDCWrongState(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))

	victim := app.Client()
	cb := authorize(t, m, victim, beginOIDC(t, app, m, victim, "/"), mockUser("alice", "conclave-admins"))

	// Another browser (login CSRF: the attacker's callback in the victim's
	// browser) has no state cookie.
	other := app.Client()
	resp, body := get(t, other, cb.String())
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "state mismatch") {
		t.Fatalf("callback without the state cookie: status %d, want 400 with state mismatch; body: %s", resp.StatusCode, body)
	}
	assertNoSession(t, app, other)

	// The right browser, but a state it did not start.
	tampered := *cb
	q := tampered.Query()
	q.Set("state", q.Get("state")+"x")
	tampered.RawQuery = q.Encode()
	resp, body = get(t, victim, tampered.String())
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "state mismatch") {
		t.Fatalf("callback with another state: status %d, want 400 with state mismatch; body: %s", resp.StatusCode, body)
	}
	assertNoSession(t, app, victim)

	// No state at all.
	resp, _ = get(t, app.Client(), app.URL+"/auth/oidc/callback?code=abc")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback without state: status %d, want 400", resp.StatusCode)
	}
	if _, ok := findUser(t, app, app.AdminToken(t), "alice"); ok {
		t.Fatal("a refused callback created the user")
	}
}

func TestOIDCWrongNonce(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	c := app.Client()
	authURL := beginOIDC(t, app, m, c, "/")
	q := authURL.Query()
	q.Set("nonce", "not-the-nonce-of-this-sign-in")
	authURL.RawQuery = q.Encode()
	cb := authorize(t, m, c, authURL, mockUser("alice", "conclave-admins"))
	resp, body := get(t, c, cb.String())
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "nonce") {
		t.Fatalf("callback with a foreign nonce: status %d, want 401 naming the nonce; body: %s", resp.StatusCode, body)
	}
	assertNoSession(t, app, c)
	if _, ok := findUser(t, app, app.AdminToken(t), "alice"); ok {
		t.Fatal("a refused callback created the user")
	}
}

func TestOIDCPKCE(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	c := app.Client()
	authURL := beginOIDC(t, app, m, c, "/")
	q := authURL.Query()
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
		t.Fatalf("authorize URL %s: want an S256 code_challenge (43 characters)", authURL)
	}
	// Someone who swaps the challenge cannot redeem the code: the
	// appliance's verifier does not match it.
	q.Set("code_challenge", strings.Repeat("A", 43))
	authURL.RawQuery = q.Encode()
	cb := authorize(t, m, c, authURL, mockUser("alice", "conclave-admins"))
	resp, body := get(t, c, cb.String())
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "refused the sign-in code") {
		t.Fatalf("callback after a swapped code challenge: status %d, want 401; body: %s", resp.StatusCode, body)
	}
	assertNoSession(t, app, c)
	if _, ok := findUser(t, app, app.AdminToken(t), "alice"); ok {
		t.Fatal("a refused callback created the user")
	}
}

func TestOIDCRoleMapping(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	token := app.AdminToken(t)

	// No group maps to a role: refused, and the message says which claim
	// was read.
	c := app.Client()
	resp, body := signIn(t, app, m, c, mockUser("mallory", "staff", "contractors"))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("callback for an unmapped user: status %d, want 401; body: %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, "has no Conclave role") || !strings.Contains(body, "&#34;groups&#34;") {
		t.Fatalf("the refusal does not name the groups claim: %s", body)
	}
	assertNoSession(t, app, c)
	if _, ok := findUser(t, app, token, "mallory"); ok {
		t.Fatal("an unmapped user was created")
	}
	failed := events(t, app, token, "UserLoginFailed", "mallory")
	if len(failed) != 1 || failed[0].Details["method"] != "oidc" || failed[0].Details["reason"] == "" {
		t.Fatalf("UserLoginFailed events for mallory = %+v, want one with method oidc and a reason", failed)
	}

	// No groups claim at all: refused the same way.
	c = app.Client()
	resp, body = signIn(t, app, m, c, mockUser("nogroups"))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "has no Conclave role") {
		t.Fatalf("callback for a user without groups: status %d, want 401; body: %s", resp.StatusCode, body)
	}
	assertNoSession(t, app, c)

	// Both groups: the more powerful role wins, in either order.
	mustSignIn(t, app, m, app.Client(), mockUser("bob", "conclave-helpdesk", "conclave-admins"))
	mustUser(t, app, token, "bob", cluster.RoleAdministrator)
	mustSignIn(t, app, m, app.Client(), mockUser("dave", "conclave-admins", "conclave-helpdesk"))
	mustUser(t, app, token, "dave", cluster.RoleAdministrator)
	mustSignIn(t, app, m, app.Client(), mockUser("erin", "conclave-helpdesk"))
	mustUser(t, app, token, "erin", cluster.RoleHelpdesk)
}

func TestOIDCCannotTakeOverLocalUser(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	c := app.Client()
	resp, body := signIn(t, app, m, c, mockUser("admin", "conclave-admins"))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "is a local user") {
		t.Fatalf("provider user named like the local admin: status %d, want 401; body: %s", resp.StatusCode, body)
	}
	assertNoSession(t, app, c)
	failed := events(t, app, app.AdminToken(t), "UserLoginFailed", "admin")
	if len(failed) == 0 || failed[len(failed)-1].Details["method"] != "oidc" {
		t.Fatalf("UserLoginFailed events for admin = %+v, want one with method oidc", failed)
	}
}

func TestOIDCReplay(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	c := app.Client()
	cb := authorize(t, m, c, beginOIDC(t, app, m, c, "/"), mockUser("alice", "conclave-admins"))
	state := cb.Query().Get("state")
	resp, body := get(t, c, cb.String())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first callback: status %d, want 303; body: %s", resp.StatusCode, body)
	}

	// The same browser again: its state cookie was spent.
	resp, body = get(t, c, cb.String())
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed callback: status %d, want 400; body: %s", resp.StatusCode, body)
	}

	// Someone who also copied the state cookie: the appliance took the
	// sign-in once and refuses it before asking the provider.
	thief := app.Client()
	u, _ := url.Parse(app.URL)
	thief.Jar.SetCookies(u, []*http.Cookie{{Name: oidcStateCookie, Value: state, Path: "/", Secure: true}})
	resp, body = get(t, thief, cb.String())
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "used already") {
		t.Fatalf("replayed callback with the state cookie: status %d, want 401 (used already); body: %s", resp.StatusCode, body)
	}
	assertNoSession(t, app, thief)
	if n := len(events(t, app, app.AdminToken(t), "UserLoggedIn", "alice")); n != 1 {
		t.Fatalf("%d UserLoggedIn events for alice, want 1", n)
	}
}

func TestOIDCProviderError(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	c := app.Client()
	authURL := beginOIDC(t, app, m, c, "/")
	state := authURL.Query().Get("state")
	// A code the provider issued for this sign-in, kept aside.
	good := authorize(t, m, app.Client(), authURL, mockUser("alice", "conclave-admins"))

	// The provider sends the browser back with an error instead of a code.
	cb, _ := url.Parse(app.URL + "/auth/oidc/callback")
	cb.RawQuery = url.Values{"state": {state}, "error": {"access_denied"}, "error_description": {"the user said no"}}.Encode()
	resp, body := get(t, c, cb.String())
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "access_denied") || !strings.Contains(body, "the user said no") {
		t.Fatalf("callback with a provider error: status %d, want 401 with the error; body: %s", resp.StatusCode, body)
	}
	assertNoSession(t, app, c)

	// The sign-in ended there: its state is spent even with a valid code.
	u, _ := url.Parse(app.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: oidcStateCookie, Value: state, Path: "/", Secure: true}})
	resp, body = get(t, c, good.String())
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "used already") {
		t.Fatalf("callback after the provider's error: status %d, want 401 (used already); body: %s", resp.StatusCode, body)
	}
	assertNoSession(t, app, c)

	// An error that this browser's sign-in did not produce is not shown:
	// a link could otherwise put any words on the sign-in page.
	other := app.Client()
	cb.RawQuery = url.Values{"error": {"call_helpdesk"}, "error_description": {"call +1 555 0100 now"}}.Encode()
	resp, body = get(t, other, cb.String())
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(body, "555 0100") {
		t.Fatalf("forged provider error: status %d, want 400 without its text; body: %s", resp.StatusCode, body)
	}
}

func TestOIDCLocalLoginStillWorks(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	c := app.Client()
	app.Login(t, c, "admin", testapp.AdminPassword)
	assertSignedIn(t, app, c, "admin")
}

func TestOIDCLoginPageLink(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	resp, body := get(t, app.Client(), app.URL+"/login")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login page: status %d", resp.StatusCode)
	}
	if !strings.Contains(body, "Sign in with Mock IdP") || !strings.Contains(body, `href="/auth/oidc/start`) {
		t.Fatalf("the login page has no Sign in with Mock IdP link: %s", body)
	}
	if !strings.Contains(body, `action="/login"`) {
		t.Fatal("the login page lost the local (break-glass) form")
	}

	// Without a provider there is no link.
	plain := testapp.Start(t)
	_, body = get(t, plain.Client(), plain.URL+"/login")
	if strings.Contains(body, "/auth/oidc/start") {
		t.Fatal("the login page offers OIDC sign-in although none is configured")
	}
	resp, body = get(t, plain.Client(), plain.URL+"/auth/oidc/start")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "not configured") {
		t.Fatalf("start without a provider: status %d, want 503 saying it is not configured", resp.StatusCode)
	}
}

func TestOIDCConfiguredInSettings(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t)

	admin := app.Client()
	app.Login(t, admin, "admin", testapp.AdminPassword)
	form := url.Values{
		"clusterName":      {"Conclave"},
		"clusterUrl":       {""},
		"oidcIssuer":       {m.Issuer()},
		"oidcClientId":     {m.ClientID},
		"oidcClientSecret": {m.ClientSecret},
		"oidcDisplayName":  {"Corporate SSO"},
		"oidcRolesClaim":   {"groups"},
		"oidcRoleMapping":  {"conclave-admins = ApplianceAdministrator\nconclave-helpdesk = Helpdesk\n"},
	}
	resp, err := admin.PostForm(app.URL+"/settings", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save settings: status %d, want 303; body: %s", resp.StatusCode, body)
	}

	_, page := get(t, app.Client(), app.URL+"/login")
	if !strings.Contains(page, "Sign in with Corporate SSO") {
		t.Fatal("the login page does not offer the provider saved in Settings")
	}

	c := app.Client()
	mustSignIn(t, app, m, c, mockUser("frank", "conclave-helpdesk"))
	token := app.AdminToken(t)
	mustUser(t, app, token, "frank", cluster.RoleHelpdesk)

	// Changing the mapping in Settings takes effect at the next sign-in.
	form.Set("oidcRoleMapping", "conclave-helpdesk = ApplianceAdministrator")
	form.Set("oidcClientSecret", "") // empty keeps the saved secret
	resp, err = admin.PostForm(app.URL+"/settings", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save settings again: status %d, want 303", resp.StatusCode)
	}
	mustSignIn(t, app, m, app.Client(), mockUser("frank", "conclave-helpdesk"))
	mustUser(t, app, token, "frank", cluster.RoleAdministrator)
}

// TestOIDCCustomRolesClaim reads roles from a claim other than groups.
func TestOIDCCustomRolesClaim(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, func(cfg *web.Config) {
		withOIDC(m)(cfg)
		cfg.OIDC.RolesClaim = "email"
		cfg.OIDC.RoleMapping = map[string]string{"grace@example.com": cluster.RoleHelpdesk}
	})
	mustSignIn(t, app, m, app.Client(), mockUser("grace"))
	mustUser(t, app, app.AdminToken(t), "grace", cluster.RoleHelpdesk)

	c := app.Client()
	resp, body := signIn(t, app, m, c, mockUser("heidi"))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, fmt.Sprintf("%q", "email")) && !strings.Contains(body, "&#34;email&#34;") {
		t.Fatalf("unmapped user with a custom claim: status %d, want 401 naming the email claim; body: %s", resp.StatusCode, body)
	}
}

func TestOIDCDisabledUser(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	token := app.AdminToken(t)
	c := app.Client()
	mustSignIn(t, app, m, c, mockUser("ivan", "conclave-admins"))
	u := mustUser(t, app, token, "ivan", cluster.RoleAdministrator)
	if status := app.JSON(t, token, http.MethodDelete, "/api/v1/users/"+u.ID, nil, nil); status != http.StatusOK {
		t.Fatalf("disable ivan: status %d", status)
	}
	// The provider still vouches for ivan, but Conclave disabled him.
	c = app.Client()
	resp, body := signIn(t, app, m, c, mockUser("ivan", "conclave-admins"))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "disabled") {
		t.Fatalf("sign-in of a disabled user: status %d, want 401 saying disabled; body: %s", resp.StatusCode, body)
	}
	assertNoSession(t, app, c)
	if failed := events(t, app, token, "UserLoginFailed", "ivan"); len(failed) != 1 {
		t.Fatalf("UserLoginFailed events for ivan = %+v, want one", failed)
	}
}

func TestOIDCProviderUnreachable(t *testing.T) {
	m := startProvider(t)
	issuer := m.Issuer()
	app := testapp.Start(t, withOIDC(m))
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, app.Client(), app.URL+"/auth/oidc/start")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "did not answer") || !strings.Contains(body, issuer) {
		t.Fatalf("start with the provider down: status %d, want 503 naming the issuer; body: %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Set-Cookie") != "" {
		t.Fatalf("start with the provider down set a cookie: %s", resp.Header.Get("Set-Cookie"))
	}
}

// TestOIDCStartedAtAnotherAddress starts the sign-in at an address other
// than the cluster URL (as on a member's own name): the state cookie is
// bound to the host that set it, and the provider returns to the cluster
// URL, so the sign-in must move to the cluster URL before it begins.
func TestOIDCStartedAtAnotherAddress(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t)
	admin := app.Client()
	app.Login(t, admin, "admin", testapp.AdminPassword)
	resp, err := admin.PostForm(app.URL+"/settings", url.Values{
		"clusterName":      {"Conclave"},
		"clusterUrl":       {app.URL},
		"oidcIssuer":       {m.Issuer()},
		"oidcClientId":     {m.ClientID},
		"oidcClientSecret": {m.ClientSecret},
		"oidcDisplayName":  {"Corporate SSO"},
		"oidcRolesClaim":   {"groups"},
		"oidcRoleMapping":  {"conclave-admins = ApplianceAdministrator"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save settings: status %d, want 303", resp.StatusCode)
	}

	other := strings.Replace(app.URL, "127.0.0.1", "localhost", 1)
	c := app.Client()
	resp, body := get(t, c, other+"/auth/oidc/start?return=%2Factivity")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start at %s: status %d, want 302; body: %s", other, resp.StatusCode, body)
	}
	moved := location(t, resp)
	if got := moved.Scheme + "://" + moved.Host + moved.Path; got != app.URL+"/auth/oidc/start" {
		t.Fatalf("start at %s goes to %s, want the cluster URL's start", other, moved)
	}
	resp, body = get(t, c, moved.String())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start at the cluster URL: status %d, want 302; body: %s", resp.StatusCode, body)
	}
	authURL := location(t, resp)
	if got := authURL.Query().Get("redirect_uri"); got != app.URL+"/auth/oidc/callback" {
		t.Fatalf("redirect_uri = %q, want the cluster URL's callback", got)
	}
	cb := authorize(t, m, c, authURL, mockUser("judy", "conclave-admins"))
	resp, body = get(t, c, cb.String())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: status %d, want 303; body: %s", resp.StatusCode, body)
	}
	if got := location(t, resp).RequestURI(); got != "/activity" {
		t.Fatalf("callback redirects to %s, want /activity", got)
	}
	assertSignedIn(t, app, c, "judy")
}

// A person is known by the provider's subject, not by the user name the
// provider sends, which its users may be able to change.
func TestOIDCUserNameCannotBeTakenOverBySubject(t *testing.T) {
	m := startProvider(t)
	app := testapp.Start(t, withOIDC(m))
	mustSignIn(t, app, m, app.Client(), mockUser("dana", "conclave-admins"))

	impostor := mockUser("dana", "conclave-admins")
	impostor.Subject = "sub-someone-else"
	c := app.Client()
	resp, body := signIn(t, app, m, c, impostor)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "belongs to another identity-provider account") {
		t.Fatalf("second account with the same user name: status %d, want 401; body: %s", resp.StatusCode, body)
	}
	assertNoSession(t, app, c)
	// The real dana still signs in.
	mustSignIn(t, app, m, app.Client(), mockUser("dana", "conclave-admins"))
}
