package web_test

// Cross-origin protection, changes over GET, security headers, the session
// cookie and its life (rotation, sign-out, timeouts), API tokens, disabled
// users and the last administrator.

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"conclave/cluster"
	"conclave/handlers"
	"conclave/internal/testapp"
	"conclave/session"
	"conclave/web"
)

// secCheckHeaders fails the test when a security header is missing.
func secCheckHeaders(t testing.TB, what string, resp *http.Response) {
	t.Helper()
	h := resp.Header
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, d)
		}
	}
	if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q, want nosniff", what, got)
	}
	if got := h.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("%s: X-Frame-Options %q, want DENY", what, got)
	}
	if got := h.Get("Referrer-Policy"); !slices.Contains([]string{"same-origin", "no-referrer", "strict-origin", "strict-origin-when-cross-origin"}, got) {
		t.Errorf("%s: Referrer-Policy %q, want one that keeps paths on this site", what, got)
	}
}

// secSessionCookie is the session cookie a response sets, or nil.
func secSessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, session.CookieName) {
			return c
		}
	}
	return nil
}

// secJarSession is the session cookie's value in c's jar ("" when none).
func secJarSession(t testing.TB, app *testapp.App, c *http.Client) string {
	t.Helper()
	u, _ := url.Parse(app.URL + "/")
	for _, ck := range c.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, session.CookieName) {
			return ck.Value
		}
	}
	return ""
}

// secClientWithSession is a new client that presents the session ID id.
func secClientWithSession(t testing.TB, app *testapp.App, id string) *http.Client {
	t.Helper()
	c := app.Client()
	u, _ := url.Parse(app.URL + "/")
	c.Jar.SetCookies(u, []*http.Cookie{{Name: session.CookieNameFor(app.Node.ClusterID(t.Context())), Value: id, Path: "/", Secure: true, HttpOnly: true}})
	return c
}

// secWantLogin fails the test unless resp sends the browser to the sign-in
// page, and returns where exactly.
func secWantLogin(t testing.TB, what string, resp *http.Response, body string) *url.URL {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%s: status %d, want 303 to the sign-in page; body %q", what, resp.StatusCode, secShort(body))
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Path != "/login" {
		t.Fatalf("%s: redirected to %q, want /login", what, resp.Header.Get("Location"))
	}
	return loc
}

// secUserID finds a user's ID through the API.
func secUserID(t testing.TB, app *testapp.App, token, username string) string {
	t.Helper()
	var users []struct{ ID, Username string }
	if status := app.JSON(t, token, http.MethodGet, "/api/v1/users", nil, &users); status != http.StatusOK {
		t.Fatalf("list users: status %d", status)
	}
	for _, u := range users {
		if u.Username == username {
			return u.ID
		}
	}
	t.Fatalf("no user %s", username)
	return ""
}

// secEvents lists events of a type through the API.
func secEvents(t testing.TB, app *testapp.App, token, typ string) []struct {
	Type, Actor string
	Details     map[string]string
} {
	t.Helper()
	var evs []struct {
		Type, Actor string
		Details     map[string]string
	}
	if status := app.JSON(t, token, http.MethodGet, "/api/v1/events?type="+url.QueryEscape(typ), nil, &evs); status != http.StatusOK {
		t.Fatalf("events %s: status %d", typ, status)
	}
	return evs
}

func isWrite(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

func TestSecurityCrossOriginRefused(t *testing.T) {
	f := newRouteFixture(t)
	app := f.app
	host := strings.TrimPrefix(app.URL, "https://")
	variants := []struct {
		name   string
		header map[string]string
	}{
		{"Sec-Fetch-Site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
		{"Sec-Fetch-Site same-site", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://other." + host}},
		{"Origin of another site, no Sec-Fetch-Site", map[string]string{"Origin": "https://evil.example"}},
		{"Origin of another port, no Sec-Fetch-Site", map[string]string{"Origin": "https://127.0.0.1:1"}},
	}
	writes := 0
	for _, rc := range routeCases() {
		if !isWrite(rc.method) {
			continue
		}
		writes++
		t.Run(rc.name(), func(t *testing.T) {
			for _, who := range []routeWho{whoAnonymous, whoAdminSession, whoAdminToken} {
				for _, v := range variants {
					c, token := f.as(t, rc, who)
					r := rc.req(f, who)
					r.method, r.token, r.header = rc.method, token, v.header
					what := rc.name() + " as " + who.String() + " with " + v.name
					before := secSnapshot(t, app)
					resp, body := secSend(t, app, c, r)
					if resp.StatusCode != http.StatusForbidden {
						t.Errorf("%s: status %d, want 403; body %q", what, resp.StatusCode, secShort(body))
						continue
					}
					if msg, _ := secErrorBody(t, what, resp, body); !strings.Contains(msg, "cross-origin") {
						t.Errorf("%s: message %q does not say the request came from another site", what, msg)
					}
					secCheckHeaders(t, what, resp)
					secUnchanged(t, app, before, what)
					if who == whoAdminSession {
						// The refused request did not sign the browser out.
						if resp, _ := secSend(t, app, c, secRequest{method: "GET", path: "/"}); resp.StatusCode != http.StatusOK {
							t.Errorf("%s: the session no longer works afterwards (status %d)", what, resp.StatusCode)
						}
					}
				}
			}
		})
	}
	if writes < 9 {
		t.Fatalf("only %d state-changing routes in the table", writes)
	}
}

func TestSecuritySameOriginFormsWork(t *testing.T) {
	app := testapp.Start(t)
	c := app.Client()
	same := map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": app.URL}

	resp, body := secSend(t, app, c, secRequest{method: "POST", path: "/login", header: same,
		form: url.Values{"username": {"admin"}, "password": {testapp.AdminPassword}}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("same-origin sign-in: status %d to %q; body %q", resp.StatusCode, resp.Header.Get("Location"), secShort(body))
	}

	resp, body = secSend(t, app, c, secRequest{method: "POST", path: "/users", header: same,
		form: url.Values{"username": {"carol"}, "password": {secPassword}, "role": {cluster.RoleHelpdesk}}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin add user: status %d; body %q", resp.StatusCode, secShort(body))
	}
	if _, err := app.Store.UserByUsername(t.Context(), "carol"); err != nil {
		t.Fatalf("the user added by a same-origin form is missing: %v", err)
	}

	// An older browser sends only Origin; the appliance's own is accepted.
	resp, body = secSend(t, app, c, secRequest{method: "POST", path: "/settings", header: map[string]string{"Origin": app.URL},
		form: url.Values{"clusterName": {"Same Origin"}, "oidcRolesClaim": {"groups"}}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin settings: status %d; body %q", resp.StatusCode, secShort(body))
	}
	if s, err := cluster.LoadSettings(t.Context(), app.Store); err != nil || s.ClusterName != "Same Origin" {
		t.Fatalf("settings after a same-origin save: %+v, %v", s, err)
	}

	// A request the person started (bookmark, typed address) says "none".
	resp, body = secSend(t, app, c, secRequest{method: "POST", path: "/logout", header: map[string]string{"Sec-Fetch-Site": "none"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: status %d; body %q", resp.StatusCode, secShort(body))
	}
	resp, body = secSend(t, app, c, secRequest{method: "GET", path: "/"})
	secWantLogin(t, "the console after sign-out", resp, body)
}

// TestSecurityGetChangesNothing sends GET, with the form or JSON fields in
// the query, to the address of every state-changing route.
func TestSecurityGetChangesNothing(t *testing.T) {
	f := newRouteFixture(t)
	app := f.app
	router := web.Routes(handlers.New(handlers.Deps{}), testapp.Logger())
	// A page at the same address answers a GET as the route table says
	// (a Helpdesk user may not see an administrator's page, a page whose
	// appliance does not answer says so), never more harshly.
	pageWant := map[string]routeWant{}
	for _, rc := range routeCases() {
		if rc.method == http.MethodGet {
			pageWant[rc.route] = rc.want
		}
	}
	for _, rc := range routeCases() {
		if !isWrite(rc.method) {
			continue
		}
		for who := range whoCount {
			r := rc.req(f, who)
			q := url.Values{}
			for k, vs := range r.form {
				q[k] = vs
			}
			if m, ok := r.json.(map[string]string); ok {
				for k, v := range m {
					q.Set(k, v)
				}
			}
			p := r.path
			if len(q) > 0 {
				p += "?" + q.Encode()
			}
			c, token := f.as(t, routeCase{}, who)
			what := "GET " + p + " as " + who.String()
			before := secSnapshot(t, app)
			resp, body := secSend(t, app, c, secRequest{method: "GET", path: p, token: token})
			hasGet := router.Match(chi.NewRouteContext(), http.MethodGet, r.path)
			page := pageWant[router.Find(chi.NewRouteContext(), http.MethodGet, r.path)]
			switch {
			case resp.StatusCode >= 500:
				t.Errorf("%s: status %d; body %q", what, resp.StatusCode, secShort(body))
			case !hasGet && resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound:
				t.Errorf("%s: status %d, want 405 or 404; body %q", what, resp.StatusCode, secShort(body))
			case hasGet && resp.StatusCode >= 400 && resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != page[who]:
				t.Errorf("%s: status %d for a page that exists (its GET gives %d); body %q", what, resp.StatusCode, page[who], secShort(body))
			}
			if c := secSessionCookie(resp); c != nil {
				t.Errorf("%s: sets the session cookie %q", what, c.String())
			}
			secUnchanged(t, app, before, what)
		}
	}
	// GET /logout signed nobody out, GET on the token endpoint revoked nothing.
	for _, who := range []routeWho{whoHelpdeskSession, whoAdminSession} {
		if resp, _ := secSend(t, app, f.clients[who], secRequest{method: "GET", path: "/"}); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: the session no longer works (status %d)", who, resp.StatusCode)
		}
	}
	for _, who := range []routeWho{whoHelpdeskToken, whoAdminToken} {
		if resp, _ := secSend(t, app, nil, secRequest{method: "GET", path: "/api/v1/users", token: f.tokens[who]}); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: the token no longer works (status %d)", who, resp.StatusCode)
		}
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	f := newRouteFixture(t)
	app := f.app
	admin, helpdesk := f.clients[whoAdminSession], f.clients[whoHelpdeskSession]
	cases := []struct {
		name   string
		c      *http.Client
		r      secRequest
		status int
	}{
		{"console page", admin, secRequest{method: "GET", path: "/"}, http.StatusOK},
		{"sign-in page", nil, secRequest{method: "GET", path: "/login"}, http.StatusOK},
		{"redirect to sign-in", nil, secRequest{method: "GET", path: "/activity"}, http.StatusSeeOther},
		{"API without token", nil, secRequest{method: "GET", path: "/api/v1/users"}, http.StatusUnauthorized},
		{"API bad token", nil, secRequest{method: "GET", path: "/api/v1/users", token: "cnv_nonsense"}, http.StatusUnauthorized},
		{"Helpdesk refused", helpdesk, secRequest{method: "POST", path: "/settings", form: url.Values{"clusterName": {"x"}}}, http.StatusForbidden},
		{"unknown page", admin, secRequest{method: "GET", path: "/no-such-page"}, http.StatusNotFound},
		{"unknown API", nil, secRequest{method: "GET", path: "/api/v1/no-such-thing"}, http.StatusNotFound},
		{"wrong method", admin, secRequest{method: "GET", path: "/logout"}, http.StatusMethodNotAllowed},
		{"static file", nil, secRequest{method: "GET", path: "/static/app.css"}, http.StatusOK},
		{"health", nil, secRequest{method: "GET", path: "/healthz"}, http.StatusOK},
		{"availability", nil, secRequest{method: "GET", path: "/service/notification/v4/Status/Availability"}, http.StatusOK},
		{"cross-origin refusal", admin, secRequest{method: "POST", path: "/settings", header: map[string]string{"Sec-Fetch-Site": "cross-site"},
			form: url.Values{"clusterName": {"x"}}}, http.StatusForbidden},
		{"unreadable address", admin, secRequest{method: "GET", path: "/activity?type=%00"}, http.StatusBadRequest},
		{"bad JSON", nil, secRequest{method: "POST", path: "/api/v1/users", token: f.tokens[whoAdminToken], raw: "{", contentType: "application/json"}, http.StatusBadRequest},
		{"form error", admin, secRequest{method: "POST", path: "/users", form: url.Values{"username": {"x"}}}, http.StatusUnprocessableEntity},
	}
	for _, tc := range cases {
		resp, body := secSend(t, app, tc.c, tc.r)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d; body %q", tc.name, resp.StatusCode, tc.status, secShort(body))
		}
		secCheckHeaders(t, tc.name, resp)
	}
}

func TestSessionCookieAttributes(t *testing.T) {
	app := testapp.Start(t)
	c := app.Client()
	resp, _ := secSend(t, app, c, secRequest{method: "GET", path: "/login"})
	if ck := secSessionCookie(resp); ck != nil {
		t.Errorf("the sign-in page sets a session cookie before sign-in: %s", ck)
	}
	resp, body := secSend(t, app, c, secRequest{method: "POST", path: "/login", form: url.Values{"username": {"admin"}, "password": {testapp.AdminPassword}}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: status %d; body %q", resp.StatusCode, secShort(body))
	}
	ck := secSessionCookie(resp)
	if ck == nil {
		t.Fatalf("no %s cookie after sign-in; Set-Cookie %q", session.CookieName, resp.Header.Values("Set-Cookie"))
	}
	if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
		t.Errorf("session cookie %q: want Secure, HttpOnly, SameSite=Lax, Path=/ and no Domain", ck.Raw)
	}
	if len(ck.Value) < 40 {
		t.Errorf("session ID %q is too short to be a 256-bit secret", ck.Value)
	}
}

func TestSessionIDRotatedAtLogin(t *testing.T) {
	app := testapp.Start(t)

	// An ID planted before sign-in (by another site, or a shared computer)
	// is not the one the signed-in session gets.
	planted := "planted-by-someone-else-0123456789abcdefghijklmnop"
	c := secClientWithSession(t, app, planted)
	app.Login(t, c, "admin", testapp.AdminPassword)
	first := secJarSession(t, app, c)
	if first == "" || first == planted {
		t.Fatalf("session ID after sign-in %q, want a new one (planted %q)", first, planted)
	}
	resp, body := secSend(t, app, secClientWithSession(t, app, planted), secRequest{method: "GET", path: "/"})
	secWantLogin(t, "the planted ID", resp, body)

	// Signing in again in the same browser gives another ID; the old one
	// no longer opens anything.
	app.Login(t, c, "admin", testapp.AdminPassword)
	second := secJarSession(t, app, c)
	if second == "" || second == first {
		t.Fatalf("second sign-in kept session ID %q", first)
	}
	resp, body = secSend(t, app, secClientWithSession(t, app, first), secRequest{method: "GET", path: "/"})
	secWantLogin(t, "the session ID before the second sign-in", resp, body)
	if resp, _ := secSend(t, app, c, secRequest{method: "GET", path: "/"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("the new session does not work: status %d", resp.StatusCode)
	}
}

func TestSessionLogoutRevokesOnServer(t *testing.T) {
	app := testapp.Start(t)
	c := app.Client()
	app.Login(t, c, "admin", testapp.AdminPassword)
	old := secJarSession(t, app, c)
	if old == "" {
		t.Fatal("no session cookie after sign-in")
	}
	resp, body := secSend(t, app, c, secRequest{method: "POST", path: "/logout"})
	secWantLogin(t, "sign-out", resp, body)
	if ck := secSessionCookie(resp); ck == nil || ck.MaxAge >= 0 || ck.Value != "" {
		t.Errorf("sign-out does not delete the cookie: %v", resp.Header.Values("Set-Cookie"))
	}

	// Someone who kept a copy of the cookie gets nothing with it.
	replay := secClientWithSession(t, app, old)
	resp, body = secSend(t, app, replay, secRequest{method: "GET", path: "/"})
	secWantLogin(t, "the old cookie after sign-out", resp, body)
	resp, body = secSend(t, app, replay, secRequest{method: "GET", path: "/api/v1/users"})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API with the old cookie: status %d, want 401; body %q", resp.StatusCode, secShort(body))
	}
	before := secSnapshot(t, app)
	resp, body = secSend(t, app, replay, secRequest{method: "POST", path: "/settings", form: url.Values{"clusterName": {"Replayed"}, "oidcRolesClaim": {"groups"}}})
	secWantLogin(t, "a change with the old cookie", resp, body)
	secUnchanged(t, app, before, "a change with the old cookie")

	tok := app.AdminToken(t)
	if evs := secEvents(t, app, tok, "UserLoggedOut"); len(evs) != 1 || evs[0].Actor != "admin" {
		t.Errorf("UserLoggedOut events %+v, want one by admin", evs)
	}
}

func TestSessionExpires(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  testapp.Option
	}{
		{"idle", func(c *web.Config) { c.SessionIdle = time.Nanosecond }},
		{"absolute", func(c *web.Config) { c.SessionAbsolute = time.Nanosecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := testapp.Start(t, tc.opt)
			c := app.Client()
			app.Login(t, c, "admin", testapp.AdminPassword)

			resp, body := secSend(t, app, c, secRequest{method: "GET", path: "/users"})
			loc := secWantLogin(t, "a page after the session expired", resp, body)
			if loc.Query().Get("expired") != "1" || loc.Query().Get("return") != "/users" {
				t.Errorf("redirected to %q, want /login?return=%%2Fusers&expired=1", loc)
			}
			resp, body = secSend(t, app, c, secRequest{method: "GET", path: loc.String()})
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "session expired") {
				t.Errorf("sign-in page after expiry: status %d; it should say the session expired; body %q", resp.StatusCode, secShort(body))
			}

			resp, body = secSend(t, app, c, secRequest{method: "GET", path: "/api/v1/users"})
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("API with an expired session: status %d, want 401; body %q", resp.StatusCode, secShort(body))
			}
			before := secSnapshot(t, app)
			resp, body = secSend(t, app, c, secRequest{method: "POST", path: "/users", form: url.Values{"username": {"late"}, "password": {secPassword}, "role": {cluster.RoleHelpdesk}}})
			secWantLogin(t, "a change with an expired session", resp, body)
			secUnchanged(t, app, before, "a change with an expired session")
		})
	}
}

func TestTokenRevokeAndAudit(t *testing.T) {
	app := testapp.Start(t)
	admin := app.AdminToken(t)
	app.CreateUser(t, "helpdesk", secPassword, cluster.RoleHelpdesk)
	tok := app.Token(t, "helpdesk", secPassword)
	other := app.Token(t, "helpdesk", secPassword)

	if status := app.JSON(t, tok, http.MethodGet, "/api/v1/users", nil, nil); status != http.StatusOK {
		t.Fatalf("token before revoke: status %d", status)
	}
	resp, body := secSend(t, app, nil, secRequest{method: "DELETE", path: "/api/v1/auth/token", token: tok})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: status %d; body %q", resp.StatusCode, secShort(body))
	}
	for _, r := range []secRequest{
		{method: "GET", path: "/api/v1/users", token: tok},
		{method: "DELETE", path: "/api/v1/auth/token", token: tok},
	} {
		resp, body := secSend(t, app, nil, r)
		what := r.method + " " + r.path + " with the revoked token"
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401; body %q", what, resp.StatusCode, secShort(body))
			continue
		}
		if msg, _ := secErrorBody(t, what, resp, body); !strings.Contains(msg, "revoked") {
			t.Errorf("%s: message %q does not say why", what, msg)
		}
		if !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%s: WWW-Authenticate %q", what, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if status := app.JSON(t, other, http.MethodGet, "/api/v1/users", nil, nil); status != http.StatusOK {
		t.Errorf("another token of the same user stopped working: status %d", status)
	}

	issued := 0
	for _, e := range secEvents(t, app, admin, "ApiTokenIssued") {
		if e.Actor == "helpdesk" && e.Details["tokenId"] != "" && e.Details["expiresAt"] != "" {
			issued++
		}
	}
	if issued != 2 {
		t.Errorf("%d ApiTokenIssued events for helpdesk, want 2", issued)
	}
	if evs := secEvents(t, app, admin, "ApiTokenRevoked"); len(evs) != 1 || evs[0].Actor != "helpdesk" || evs[0].Details["tokenId"] == "" {
		t.Errorf("ApiTokenRevoked events %+v, want one by helpdesk naming the token", evs)
	}
}

func TestTokenExpires(t *testing.T) {
	app := testapp.Start(t, func(c *web.Config) {
		c.Auth.TokenTTL = time.Nanosecond // the default lifetime: expired at once
		c.Auth.MaxTokenTTL = 30 * time.Minute
	})
	var out struct {
		Token     string
		ExpiresAt time.Time
	}
	if status := app.JSON(t, "", http.MethodPost, "/api/v1/auth/token", map[string]string{"username": "admin", "password": testapp.AdminPassword}, &out); status != http.StatusOK {
		t.Fatalf("token: status %d", status)
	}
	if out.ExpiresAt.After(time.Now()) {
		t.Fatalf("token expires at %s, want already expired", out.ExpiresAt)
	}
	resp, body := secSend(t, app, nil, secRequest{method: "GET", path: "/api/v1/users", token: out.Token})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired token: status %d, want 401; body %q", resp.StatusCode, secShort(body))
	}
	if msg, _ := secErrorBody(t, "expired token", resp, body); !strings.Contains(msg, "expired") {
		t.Errorf("expired token: message %q", msg)
	}

	// A lifetime the caller asks for, within the limit.
	if status := app.JSON(t, "", http.MethodPost, "/api/v1/auth/token", map[string]any{"username": "admin", "password": testapp.AdminPassword, "expiresInMinutes": 5}, &out); status != http.StatusOK {
		t.Fatalf("5-minute token: status %d", status)
	}
	if d := time.Until(out.ExpiresAt); d < 3*time.Minute || d > 5*time.Minute {
		t.Errorf("5-minute token expires in %s", d)
	}
	if status := app.JSON(t, out.Token, http.MethodGet, "/api/v1/users", nil, nil); status != http.StatusOK {
		t.Errorf("5-minute token: status %d", status)
	}
	// Beyond the appliance's limit: refused, naming the field.
	before := secSnapshot(t, app)
	resp, body = secSend(t, app, nil, secRequest{method: "POST", path: "/api/v1/auth/token",
		json: map[string]any{"username": "admin", "password": testapp.AdminPassword, "expiresInMinutes": 60}})
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("a token beyond the limit: status %d, want 422; body %q", resp.StatusCode, secShort(body))
	}
	if _, field := secErrorBody(t, "a token beyond the limit", resp, body); field != "expiresInMinutes" {
		t.Errorf("a token beyond the limit: field %q", field)
	}
	secUnchanged(t, app, before, "a token beyond the limit")
}

func TestSessionAndTokenOfDisabledUser(t *testing.T) {
	app := testapp.Start(t)
	admin := app.AdminToken(t)
	id := app.CreateUser(t, "dora", secPassword, cluster.RoleHelpdesk)
	c := app.Client()
	app.Login(t, c, "dora", secPassword)
	tok := app.Token(t, "dora", secPassword)
	if resp, _ := secSend(t, app, c, secRequest{method: "GET", path: "/"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("session before: status %d", resp.StatusCode)
	}

	if status := app.JSON(t, admin, http.MethodDelete, "/api/v1/users/"+id, nil, nil); status != http.StatusOK {
		t.Fatalf("disable: status %d", status)
	}
	resp, body := secSend(t, app, c, secRequest{method: "GET", path: "/"})
	secWantLogin(t, "the session of a disabled user", resp, body)
	resp, body = secSend(t, app, nil, secRequest{method: "GET", path: "/api/v1/users", token: tok})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("token of a disabled user: status %d, want 401; body %q", resp.StatusCode, secShort(body))
	}
	resp, body = secSend(t, app, nil, secRequest{method: "POST", path: "/login", form: url.Values{"username": {"dora"}, "password": {secPassword}}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "disabled") {
		t.Errorf("sign-in of a disabled user: status %d, want 401 saying the account is disabled; body %q", resp.StatusCode, secShort(body))
	}
	resp, body = secSend(t, app, nil, secRequest{method: "POST", path: "/api/v1/auth/token", json: map[string]string{"username": "dora", "password": secPassword}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("token for a disabled user: status %d, want 401; body %q", resp.StatusCode, secShort(body))
	}

	// Enabled again, the user signs in anew: the old session and token stay dead.
	if status := app.JSON(t, admin, http.MethodPatch, "/api/v1/users/"+id, map[string]bool{"disabled": false}, nil); status != http.StatusOK {
		t.Fatalf("enable: status %d", status)
	}
	resp, body = secSend(t, app, c, secRequest{method: "GET", path: "/"})
	secWantLogin(t, "the old session after the user was enabled again", resp, body)
	if status := app.JSON(t, tok, http.MethodGet, "/api/v1/users", nil, nil); status != http.StatusUnauthorized {
		t.Errorf("the old token after the user was enabled again: status %d, want 401", status)
	}
	app.Login(t, app.Client(), "dora", secPassword)
}

func TestSecurityLastAdminCannotBeDemotedOrDisabled(t *testing.T) {
	app := testapp.Start(t)
	tok := app.AdminToken(t)
	adminID := secUserID(t, app, tok, "admin")
	c := app.Client()
	app.Login(t, c, "admin", testapp.AdminPassword)

	apiCases := []struct {
		name, method string
		body         any
		field        string
	}{
		{"demote", http.MethodPatch, map[string]string{"role": cluster.RoleHelpdesk}, "role"},
		{"disable", http.MethodPatch, map[string]bool{"disabled": true}, "disabled"},
		{"disable with DELETE", http.MethodDelete, nil, "disabled"},
		{"reset password and disable", http.MethodPatch, map[string]any{"password": "another-password-123", "disabled": true}, "disabled"},
		{"demote and reset password", http.MethodPatch, map[string]any{"password": "another-password-123", "role": cluster.RoleHelpdesk}, "role"},
	}
	for _, tc := range apiCases {
		before := secSnapshot(t, app)
		resp, body := secSend(t, app, nil, secRequest{method: tc.method, path: "/api/v1/users/" + adminID, json: tc.body, token: tok})
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("%s the last administrator: status %d, want 422; body %q", tc.name, resp.StatusCode, secShort(body))
		}
		msg, field := secErrorBody(t, tc.name, resp, body)
		if field != tc.field || !strings.Contains(msg, "last enabled") {
			t.Errorf("%s the last administrator: field %q message %q, want field %q and the reason", tc.name, field, msg, tc.field)
		}
		secUnchanged(t, app, before, tc.name+" the last administrator")
	}
	for _, tc := range []struct{ field, value string }{{"role", cluster.RoleHelpdesk}, {"disabled", "true"}} {
		before := secSnapshot(t, app)
		resp, body := secSend(t, app, c, secRequest{method: "POST", path: "/users/" + adminID + "/" + tc.field, form: url.Values{tc.field: {tc.value}}})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "last enabled") {
			t.Errorf("form %s=%s on the last administrator: status %d, want 422 with the reason; body %q", tc.field, tc.value, resp.StatusCode, secShort(body))
		}
		secUnchanged(t, app, before, "form "+tc.field+" on the last administrator")
	}
	if status := app.JSON(t, tok, http.MethodGet, "/api/v1/users", nil, nil); status != http.StatusOK {
		t.Fatalf("the administrator's token after the refusals: status %d", status)
	}

	// With a second administrator the first may step down; then the second
	// is the last, and a disabled administrator does not count.
	app.CreateUser(t, "erin", secPassword, cluster.RoleAdministrator)
	fay := app.CreateUser(t, "fay", secPassword, cluster.RoleAdministrator)
	if status := app.JSON(t, tok, http.MethodPatch, "/api/v1/users/"+adminID, map[string]string{"role": cluster.RoleHelpdesk}, nil); status != http.StatusOK {
		t.Fatalf("demote admin while erin and fay are administrators: status %d", status)
	}
	erin := app.Token(t, "erin", secPassword)
	if status := app.JSON(t, erin, http.MethodDelete, "/api/v1/users/"+fay, nil, nil); status != http.StatusOK {
		t.Fatalf("disable fay: status %d", status)
	}
	erinID := secUserID(t, app, erin, "erin")
	var e struct{ Error, Field string }
	if status := app.JSON(t, erin, http.MethodDelete, "/api/v1/users/"+erinID, nil, &e); status != http.StatusUnprocessableEntity || e.Field != "disabled" {
		t.Errorf("erin disables herself, the last enabled administrator: status %d %+v, want 422 on disabled", status, e)
	}
}

func TestSecurityReturnStaysOnSite(t *testing.T) {
	app := testapp.Start(t)
	for _, tc := range []struct{ ret, want string }{
		{"/users", "/users"},
		{"/activity?type=UserLoggedIn", "/activity?type=UserLoggedIn"},
		{"", "/"},
		{"//evil.example/", "/"},
		{"https://evil.example/", "/"},
		{"/\\evil.example", "/"},
		{"/\t/evil.example", "/"},
		{"/\n/evil.example", "/"},
		{"/%2F/evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"users", "/"},
	} {
		resp, body := secSend(t, app, nil, secRequest{method: "POST", path: "/login",
			form: url.Values{"username": {"admin"}, "password": {testapp.AdminPassword}, "return": {tc.ret}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != tc.want {
			t.Errorf("sign-in with return %q: status %d to %q, want 303 to %q; body %q", tc.ret, resp.StatusCode, resp.Header.Get("Location"), tc.want, secShort(body))
		}
	}
}

// A password reset or a disable ends the user's sessions on the server:
// whoever knew the old password is out at once.
func TestPasswordResetEndsSessions(t *testing.T) {
	app := testapp.Start(t)
	id := app.CreateUser(t, "carol", "carol-password-1", "Helpdesk")
	c := app.Client()
	app.Login(t, c, "carol", "carol-password-1")
	if resp, err := c.Get(app.URL + "/users"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("signed-in page: %v %v", resp, err)
	}
	if status := app.JSON(t, app.AdminToken(t), http.MethodPatch, "/api/v1/users/"+id, map[string]string{"password": "carol-password-2"}, nil); status != http.StatusOK {
		t.Fatalf("reset password: status %d", status)
	}
	resp, err := c.Get(app.URL + "/users")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("after the reset: status %d to %q; want a redirect to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
}
