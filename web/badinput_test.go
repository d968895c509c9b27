package web_test

// Bad input gets a 4xx with a message naming the problem, never a 5xx and
// never a change: the JSON API, the console's forms, wrong credentials and
// the slowing of repeated failed sign-ins.

import (
	"context"
	"html"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/web"
)

func TestBadInputJSONAPI(t *testing.T) {
	app := testapp.Start(t)
	admin := app.AdminToken(t)
	victim := app.CreateUser(t, "victim", secPassword, cluster.RoleHelpdesk)
	users, token, patch := "/api/v1/users", "/api/v1/auth/token", "/api/v1/users/"+victim
	valid := `{"username": "zed", "password": "` + secPassword + `", "role": "Helpdesk"}`
	huge := strings.Repeat("x", 1<<20+1)

	cases := []struct {
		name, method, path, body string
		contentType              string // default application/json; "-" for none
		authorization            string // default the administrator's token; "-" for none
		status                   int
		field                    string // the field the error must name
		says                     string // what the message must say
	}{
		// POST /api/v1/users
		{name: "malformed JSON", method: "POST", path: users, body: `{"username": "zed",`, status: 400, says: "JSON"},
		{name: "not JSON", method: "POST", path: users, body: `username=zed`, status: 400, says: "not valid JSON"},
		{name: "body over 1 MiB", method: "POST", path: users, body: `{"username": "` + huge + `"}`, status: 413, says: "larger than"},
		{name: "unknown field", method: "POST", path: users, body: `{"username": "zed", "password": "` + secPassword + `", "role": "Helpdesk", "admin": true}`, status: 400, field: "admin", says: "unknown field"},
		{name: "wrong Content-Type", method: "POST", path: users, body: valid, contentType: "text/plain", status: 415, says: "application/json"},
		{name: "form Content-Type", method: "POST", path: users, body: "username=zed", contentType: "application/x-www-form-urlencoded", status: 415, says: "application/json"},
		{name: "no Content-Type", method: "POST", path: users, body: valid, contentType: "-", status: 415, says: "application/json"},
		{name: "empty body", method: "POST", path: users, body: "", status: 400, says: "empty"},
		{name: "a list, not an object", method: "POST", path: users, body: `[]`, status: 400, says: "must be a JSON object"},
		{name: "a string, not an object", method: "POST", path: users, body: `"zed"`, status: 400, says: "must be a JSON object"},
		{name: "two objects", method: "POST", path: users, body: valid + valid, status: 400, says: "nothing after"},
		{name: "user name a number", method: "POST", path: users, body: `{"username": 5, "password": "` + secPassword + `", "role": "Helpdesk"}`, status: 400, field: "username", says: "must be a string"},
		{name: "role a list", method: "POST", path: users, body: `{"username": "zed", "password": "` + secPassword + `", "role": ["Helpdesk"]}`, status: 400, field: "role", says: "must be a string"},
		{name: "no fields", method: "POST", path: users, body: `{}`, status: 422, field: "username", says: "required"},
		{name: "null", method: "POST", path: users, body: `null`, status: 422, field: "username", says: "required"},
		{name: "no password", method: "POST", path: users, body: `{"username": "zed", "role": "Helpdesk"}`, status: 422, field: "password", says: "at least 12"},
		{name: "no role", method: "POST", path: users, body: `{"username": "zed", "password": "` + secPassword + `"}`, status: 422, field: "role", says: "role must be one of"},
		{name: "invalid role", method: "POST", path: users, body: `{"username": "zed", "password": "` + secPassword + `", "role": "Root"}`, status: 422, field: "role", says: strings.Join(cluster.Roles, ", ")},
		{name: "short password", method: "POST", path: users, body: `{"username": "zed", "password": "short", "role": "Helpdesk"}`, status: 422, field: "password", says: "at least 12"},
		{name: "password over 72 bytes", method: "POST", path: users, body: `{"username": "zed", "password": "` + strings.Repeat("p", 73) + `", "role": "Helpdesk"}`, status: 422, field: "password", says: "72"},
		{name: "user name with a space", method: "POST", path: users, body: `{"username": "zed smith", "password": "` + secPassword + `", "role": "Helpdesk"}`, status: 422, field: "username", says: "letters, digits"},
		{name: "user name too long", method: "POST", path: users, body: `{"username": "` + strings.Repeat("z", 65) + `", "password": "` + secPassword + `", "role": "Helpdesk"}`, status: 422, field: "username", says: "64"},
		{name: "NUL in user name", method: "POST", path: users, body: `{"username": "zed\u0000", "password": "` + secPassword + `", "role": "Helpdesk"}`, status: 400, field: "username", says: "NUL"},
		{name: "duplicate user name", method: "POST", path: users, body: `{"username": "victim", "password": "` + secPassword + `", "role": "Helpdesk"}`, status: 422, field: "username", says: "exists already"},
		{name: "duplicate user name in other case", method: "POST", path: users, body: `{"username": "VICTIM", "password": "` + secPassword + `", "role": "Helpdesk"}`, status: 422, field: "username", says: "exists already"},

		// PATCH and DELETE /api/v1/users/{id}
		{name: "PATCH nothing to change", method: "PATCH", path: patch, body: `{}`, status: 400, says: "nothing to change"},
		{name: "PATCH only nulls", method: "PATCH", path: patch, body: `{"role": null, "password": null, "disabled": null}`, status: 400, says: "nothing to change"},
		{name: "PATCH disabled not true or false", method: "PATCH", path: patch, body: `{"disabled": "yes"}`, status: 400, field: "disabled", says: "true or false"},
		{name: "PATCH role a number", method: "PATCH", path: patch, body: `{"role": 1}`, status: 400, field: "role", says: "must be a string"},
		{name: "PATCH unknown field", method: "PATCH", path: patch, body: `{"username": "renamed"}`, status: 400, field: "username", says: "unknown field"},
		{name: "PATCH invalid role", method: "PATCH", path: patch, body: `{"role": "Root"}`, status: 422, field: "role", says: "role must be one of"},
		{name: "PATCH short password", method: "PATCH", path: patch, body: `{"password": "short"}`, status: 422, field: "password", says: "at least 12"},
		{name: "PATCH valid role, short password", method: "PATCH", path: patch, body: `{"role": "ApplianceAdministrator", "password": "short"}`, status: 422, field: "password", says: "at least 12"},
		{name: "PATCH malformed", method: "PATCH", path: patch, body: `{"role"`, status: 400, says: "JSON"},
		{name: "PATCH wrong Content-Type", method: "PATCH", path: patch, body: `{"role": "Helpdesk"}`, contentType: "text/plain", status: 415, says: "application/json"},
		{name: "PATCH body over 1 MiB", method: "PATCH", path: patch, body: `{"password": "` + huge + `"}`, status: 413, says: "larger than"},
		{name: "PATCH unknown user", method: "PATCH", path: users + "/no-such-user", body: `{"role": "Helpdesk"}`, status: 404, field: "id", says: "no user"},
		{name: "DELETE unknown user", method: "DELETE", path: users + "/no-such-user", status: 404, field: "id", says: "no user"},

		// POST /api/v1/auth/token (all refused before the password is checked)
		{name: "token: empty body", method: "POST", path: token, authorization: "-", status: 400, says: "empty"},
		{name: "token: no user name", method: "POST", path: token, authorization: "-", body: `{"password": "x"}`, status: 400, field: "username", says: "required"},
		{name: "token: no password", method: "POST", path: token, authorization: "-", body: `{"username": "admin"}`, status: 400, field: "password", says: "required"},
		{name: "token: unknown field", method: "POST", path: token, authorization: "-", body: `{"username": "admin", "password": "x", "scope": "all"}`, status: 400, field: "scope", says: "unknown field"},
		{name: "token: lifetime a string", method: "POST", path: token, authorization: "-", body: `{"username": "admin", "password": "x", "expiresInMinutes": "ten"}`, status: 400, field: "expiresInMinutes", says: "whole number"},
		{name: "token: lifetime a fraction", method: "POST", path: token, authorization: "-", body: `{"username": "admin", "password": "x", "expiresInMinutes": 1.5}`, status: 400, field: "expiresInMinutes", says: "whole number"},
		{name: "token: negative lifetime", method: "POST", path: token, authorization: "-", body: `{"username": "admin", "password": "x", "expiresInMinutes": -1}`, status: 400, field: "expiresInMinutes", says: "between"},
		{name: "token: lifetime too long", method: "POST", path: token, authorization: "-", body: `{"username": "admin", "password": "x", "expiresInMinutes": 100000}`, status: 400, field: "expiresInMinutes", says: "between"},
		{name: "token: wrong Content-Type", method: "POST", path: token, authorization: "-", body: `{"username": "admin", "password": "x"}`, contentType: "text/plain", status: 415, says: "application/json"},
		{name: "token: body over 1 MiB", method: "POST", path: token, authorization: "-", body: `{"username": "admin", "password": "` + huge + `"}`, status: 413, says: "larger than"},
		{name: "token: NUL in user name", method: "POST", path: token, authorization: "-", body: `{"username": "ad\u0000min", "password": "x"}`, status: 400, field: "username", says: "NUL"},

		// Addresses, queries, credentials.
		{name: "NUL in the path", method: "GET", path: "/api/v1/operations/%00", status: 400, says: "control character"},
		{name: "NUL in a user ID", method: "PATCH", path: users + "/a%00b", body: `{"role": "Helpdesk"}`, status: 400, says: "control character"},
		{name: "bytes not UTF-8 in the query", method: "GET", path: "/api/v1/events?actor=%ff", status: 400, says: "UTF-8"},
		{name: "NUL in the query", method: "GET", path: "/api/v1/events?type=%00", status: 400, says: "control character"},
		{name: "unreadable time", method: "GET", path: "/api/v1/events?since=yesterday", status: 400, field: "since", says: "RFC 3339"},
		{name: "limit out of range", method: "GET", path: "/api/v1/events?limit=0", status: 400, field: "limit", says: "1 to 1000"},
		{name: "unknown operation", method: "GET", path: "/api/v1/operations/no-such-operation", status: 404, field: "id", says: "no operation"},
		{name: "Authorization not Bearer", method: "GET", path: users, authorization: "Basic YWRtaW46eA==", status: 401, says: "Bearer"},
		{name: "unknown token", method: "GET", path: users, authorization: "Bearer cnv_unknown", status: 401, says: "unknown, expired or revoked"},
		{name: "not a token", method: "GET", path: users, authorization: "Bearer " + strings.Repeat("\u00e9", 100), status: 401, says: "token"},
		{name: "unknown endpoint", method: "GET", path: "/api/v1/no-such-thing", status: 404, says: "no such endpoint"},
		{name: "wrong method", method: "PUT", path: users, body: valid, status: 405, says: "not allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := secRequest{method: tc.method, path: tc.path, raw: tc.body, contentType: "application/json", token: admin}
			switch tc.contentType {
			case "-":
				r.contentType = ""
			case "":
			default:
				r.contentType = tc.contentType
			}
			switch tc.authorization {
			case "-":
				r.token = ""
			case "":
			default:
				r.token = ""
				r.header = map[string]string{"Authorization": tc.authorization}
			}
			before := secSnapshot(t, app)
			resp, body := secSend(t, app, nil, r)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d; body %q", resp.StatusCode, tc.status, secShort(body))
			}
			if resp.StatusCode >= 500 {
				t.Errorf("a server error for bad input: %q", secShort(body))
			}
			msg, field := secErrorBody(t, tc.name, resp, body)
			if field != tc.field {
				t.Errorf("field %q, want %q (message %q)", field, tc.field, msg)
			}
			if !strings.Contains(strings.ToLower(msg), strings.ToLower(tc.says)) {
				t.Errorf("message %q does not say %q", msg, tc.says)
			}
			secUnchanged(t, app, before, tc.name)
		})
	}
	// The appliance still works after all that.
	if status := app.JSON(t, admin, http.MethodPost, users, map[string]string{"username": "zed", "password": secPassword, "role": cluster.RoleHelpdesk}, nil); status != http.StatusCreated {
		t.Fatalf("a valid request afterwards: status %d", status)
	}
}

func TestBadInputForms(t *testing.T) {
	app := testapp.Start(t)
	victim := app.CreateUser(t, "victim", secPassword, cluster.RoleHelpdesk)
	admin := app.Client()
	app.Login(t, admin, "admin", testapp.AdminPassword)
	huge := strings.Repeat("x", 70<<10)
	form := "application/x-www-form-urlencoded"

	cases := []struct {
		name, path, body string
		contentType      string // default URL-encoded
		anonymous        bool
		status           int
		says             string
	}{
		{name: "sign-in: empty form", path: "/login", anonymous: true, status: 400, says: "Enter your user name and password"},
		{name: "sign-in: no password", path: "/login", body: "username=admin", anonymous: true, status: 400, says: "Enter your user name and password"},
		{name: "sign-in: blank user name", path: "/login", body: "username=+++&password=x", anonymous: true, status: 400, says: "Enter your user name and password"},
		{name: "sign-in: huge form", path: "/login", body: "username=admin&password=" + huge, anonymous: true, status: 413, says: "larger than"},
		{name: "sign-in: malformed form", path: "/login", body: "username=%zz&password=x", anonymous: true, status: 400, says: "could not be read"},
		{name: "sign-in: JSON", path: "/login", body: `{"username": "admin", "password": "x"}`, contentType: "application/json", anonymous: true, status: 415, says: "x-www-form-urlencoded"},
		{name: "sign-in: multipart", path: "/login", body: "--b\r\n\r\n--b--", contentType: "multipart/form-data; boundary=b", anonymous: true, status: 415, says: "x-www-form-urlencoded"},
		{name: "sign-in: NUL in user name", path: "/login", body: "username=ad%00min&password=x", anonymous: true, status: 400, says: "NUL"},
		{name: "sign-in: bytes not UTF-8", path: "/login", body: "username=ad%ffmin&password=x", anonymous: true, status: 400, says: "UTF-8"},

		{name: "add user: empty form", path: "/users", status: 422, says: "user name is required"},
		{name: "add user: short password", path: "/users", body: "username=zed&password=short&role=Helpdesk", status: 422, says: "at least 12"},
		{name: "add user: invalid role", path: "/users", body: "username=zed&password=" + secPassword + "&role=Root", status: 422, says: "role must be one of"},
		{name: "add user: duplicate", path: "/users", body: "username=Victim&password=" + secPassword + "&role=Helpdesk", status: 422, says: "exists already"},
		{name: "add user: huge form", path: "/users", body: "username=" + huge, status: 413, says: "larger than"},
		{name: "add user: JSON", path: "/users", body: `{"username": "zed"}`, contentType: "application/json", status: 415, says: "x-www-form-urlencoded"},
		{name: "add user: NUL", path: "/users", body: "username=zed&password=" + secPassword + "%00&role=Helpdesk", status: 400, says: "NUL"},
		{name: "change user: unknown change", path: "/users/" + victim + "/name", body: "name=x", status: 404, says: "no such change"},
		{name: "change user: unknown user", path: "/users/no-such-user/role", body: "role=Helpdesk", status: 404, says: "not found"},
		{name: "change user: invalid role", path: "/users/" + victim + "/role", body: "role=Root", status: 422, says: "role must be one of"},
		{name: "change user: short password", path: "/users/" + victim + "/password", body: "password=short", status: 422, says: "at least 12"},
		{name: "change user: NUL in the ID", path: "/users/a%00b/role", body: "role=Helpdesk", status: 400, says: "control character"},

		{name: "settings: no cluster name", path: "/settings", body: "clusterName=&oidcRolesClaim=groups", status: 422, says: "cluster name is required"},
		{name: "settings: cluster name too long", path: "/settings", body: "clusterName=" + strings.Repeat("n", 81) + "&oidcRolesClaim=groups", status: 422, says: "at most 80"},
		{name: "settings: URL not https", path: "/settings", body: "clusterName=C&clusterUrl=ftp%3A%2F%2Fx.example&oidcRolesClaim=groups", status: 422, says: "https://"},
		{name: "settings: not a URL", path: "/settings", body: "clusterName=C&clusterUrl=nonsense&oidcRolesClaim=groups", status: 422, says: "not a URL"},
		{name: "settings: issuer without client", path: "/settings", body: "clusterName=C&oidcIssuer=https%3A%2F%2Fidp.example&oidcRolesClaim=groups", status: 422, says: "client ID is required"},
		{name: "settings: no roles claim", path: "/settings", body: "clusterName=C", status: 422, says: "claim"},
		{name: "settings: bad role mapping", path: "/settings", body: "clusterName=C&oidcRolesClaim=groups&oidcRoleMapping=admins+%3D+Root", status: 422, says: "not a role"},
		{name: "settings: role mapping without =", path: "/settings", body: "clusterName=C&oidcRolesClaim=groups&oidcRoleMapping=admins", status: 422, says: "value = Role"},
		{name: "settings: NUL in cluster name", path: "/settings", body: "clusterName=a%00b&oidcRolesClaim=groups", status: 400, says: "NUL"},
		{name: "settings: NUL in role mapping", path: "/settings", body: "clusterName=C&oidcRolesClaim=groups&oidcRoleMapping=a%00b+%3D+Helpdesk", status: 400, says: "NUL"},
		{name: "settings: huge form", path: "/settings", body: "clusterName=" + huge, status: 413, says: "larger than"},
		{name: "settings: JSON", path: "/settings", body: `{"clusterName": "C"}`, contentType: "application/json", status: 415, says: "x-www-form-urlencoded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := secRequest{method: "POST", path: tc.path, raw: tc.body, contentType: form}
			if tc.contentType != "" {
				r.contentType = tc.contentType
			}
			c := admin
			if tc.anonymous {
				c = app.Client()
			}
			before := secSnapshot(t, app)
			resp, body := secSend(t, app, c, r)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d; body %q", resp.StatusCode, tc.status, secShort(body))
			}
			if resp.StatusCode >= 500 {
				t.Errorf("a server error for bad input: %q", secShort(body))
			}
			if text := strings.ToLower(html.UnescapeString(body)); !strings.Contains(text, strings.ToLower(tc.says)) {
				t.Errorf("the page does not say %q: %q", tc.says, secShort(body))
			}
			if ck := secSessionCookie(resp); ck != nil {
				t.Errorf("sets a session cookie: %s", ck)
			}
			secUnchanged(t, app, before, tc.name)
		})
	}
	if resp, _ := secSend(t, app, admin, secRequest{method: "GET", path: "/users"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("the administrator's session after the bad forms: status %d", resp.StatusCode)
	}
}

// TestBadInputWrongCredentials: a wrong password and an unknown user get
// the same answer, and each failure is audited. Throttling is off here
// (TestThrottling* cover it).
func TestBadInputWrongCredentials(t *testing.T) {
	app := testapp.Start(t, func(c *web.Config) { c.Auth.FreeFailures = 100 })
	admin := app.AdminToken(t)
	const same = "wrong user name or password"

	type attempt struct {
		name, username, password string
	}
	attempts := []attempt{
		{"wrong password", "admin", "not-the-password"},
		{"unknown user", "nobody", "not-the-password"},
		{"unknown user, right password of another", "nobody", testapp.AdminPassword},
		{"user name of 10,000 characters", strings.Repeat("u", 10000), "x"},
		{"user name with characters no user name has", "admin'--; <b>", "x"},
	}
	failures := 0
	for _, a := range attempts {
		before := secSnapshot(t, app)
		resp, body := secSend(t, app, nil, secRequest{method: "POST", path: "/login", form: url.Values{"username": {a.username}, "password": {a.password}}})
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(strings.ToLower(body), same) {
			t.Errorf("sign-in form, %s: status %d, want 401 saying %q; body %q", a.name, resp.StatusCode, same, secShort(body))
		}
		if ck := secSessionCookie(resp); ck != nil {
			t.Errorf("sign-in form, %s: sets a session cookie", a.name)
		}
		resp, body = secSend(t, app, nil, secRequest{method: "POST", path: "/api/v1/auth/token", json: map[string]string{"username": a.username, "password": a.password}})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token API, %s: status %d, want 401; body %q", a.name, resp.StatusCode, secShort(body))
		}
		if msg, _ := secErrorBody(t, "token API, "+a.name, resp, body); msg != same {
			t.Errorf("token API, %s: message %q, want %q", a.name, msg, same)
		}
		secNoDataChange(t, app, before, a.name)
		failures += 2
	}

	evs := secEvents(t, app, admin, "UserLoginFailed")
	if len(evs) != failures {
		t.Fatalf("%d UserLoginFailed events, want %d", len(evs), failures)
	}
	reasons := map[string]int{}
	for _, e := range evs {
		reasons[e.Details["reason"]]++
		if e.Details["address"] != "127.0.0.1" || e.Details["username"] == "" {
			t.Errorf("UserLoginFailed without address or user name: %+v", e)
		}
		if n := len([]rune(e.Details["username"])); n > 100 {
			t.Errorf("UserLoginFailed keeps a user name of %d characters", n)
		}
	}
	if reasons["wrong password"] != 2 || reasons["unknown user"] != failures-2 {
		t.Errorf("reasons %v", reasons)
	}
}

// secClientFrom is a client whose connections come from the loopback
// address ip, so the appliance sees another client address.
func secClientFrom(app *testapp.App, ip string) *http.Client {
	c := app.Client()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c.Transport.(*http.Transport).DialContext = d.DialContext
	return c
}

func secLogin(t *testing.T, app *testapp.App, c *http.Client, username, password string) (*http.Response, string) {
	t.Helper()
	if c == nil {
		c = app.Client()
	}
	return secSend(t, app, c, secRequest{method: "POST", path: "/login", form: url.Values{"username": {username}, "password": {password}}})
}

// secWantThrottled fails the test unless resp is a 429 with Retry-After.
func secWantThrottled(t *testing.T, what string, resp *http.Response, body string, minWait int) {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("%s: status %d, want 429; body %q", what, resp.StatusCode, secShort(body))
		return
	}
	wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || wait < minWait {
		t.Errorf("%s: Retry-After %q, want at least %d seconds", what, resp.Header.Get("Retry-After"), minWait)
	}
	if !strings.Contains(strings.ToLower(body), "too many failed sign-ins") {
		t.Errorf("%s: does not say why: %q", what, secShort(body))
	}
	if ck := secSessionCookie(resp); ck != nil {
		t.Errorf("%s: sets a session cookie", what)
	}
}

// slowThrottle makes the first wait ten minutes, so that a test sees the
// lock however slow the machine is.
func slowThrottle(c *web.Config) {
	c.Auth.FreeFailures = 3
	c.Auth.FirstDelay = 10 * time.Minute
	c.Auth.MaxDelay = time.Hour
}

func TestThrottlingSignInPerUserAndAddress(t *testing.T) {
	app := testapp.Start(t, slowThrottle)
	admin := app.AdminToken(t) // before any failure: the address is locked later
	app.CreateUser(t, "helpdesk", secPassword, cluster.RoleHelpdesk)

	for i := 1; i <= 3; i++ {
		resp, body := secLogin(t, app, nil, "admin", "wrong-password")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401 (not slowed yet); body %q", i, resp.StatusCode, secShort(body))
		}
	}
	before := secSnapshot(t, app)

	// Now even the right password waits: per user name and per address.
	resp, body := secLogin(t, app, nil, "admin", testapp.AdminPassword)
	secWantThrottled(t, "the right password after 3 failures", resp, body, 60)
	resp, body = secSend(t, app, nil, secRequest{method: "POST", path: "/api/v1/auth/token", json: map[string]string{"username": "admin", "password": testapp.AdminPassword}})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("token API while locked: status %d, Retry-After %q; body %q", resp.StatusCode, resp.Header.Get("Retry-After"), secShort(body))
	}
	secErrorBody(t, "token API while locked", resp, body)
	resp, body = secLogin(t, app, nil, "helpdesk", secPassword)
	secWantThrottled(t, "another user from the same address", resp, body, 60)

	other := secClientFrom(app, "127.0.0.2")
	resp, body = secLogin(t, app, other, "admin", testapp.AdminPassword)
	secWantThrottled(t, "the same user from another address", resp, body, 60)
	resp, body = secLogin(t, app, other, "ADMIN", testapp.AdminPassword)
	secWantThrottled(t, "the same user in capitals from another address", resp, body, 60)
	secNoDataChange(t, app, before, "sign-ins while locked")
	resp, body = secLogin(t, app, other, "helpdesk", secPassword)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("another user from another address: status %d, want 303; body %q", resp.StatusCode, secShort(body))
	}

	evs := secEvents(t, app, admin, "UserLoginFailed")
	if len(evs) != 3 {
		t.Fatalf("%d UserLoginFailed events, want 3: %+v", len(evs), evs)
	}
	for _, e := range evs {
		if e.Details["username"] != "admin" || e.Details["address"] != "127.0.0.1" || e.Details["reason"] != "wrong password" || e.Details["failures"] == "" {
			t.Errorf("UserLoginFailed %+v", e)
		}
	}
}

func TestThrottlingTokenAPI(t *testing.T) {
	app := testapp.Start(t, slowThrottle)
	admin := app.AdminToken(t)
	for i := 1; i <= 3; i++ {
		var e struct{ Error string }
		status := app.JSON(t, "", http.MethodPost, "/api/v1/auth/token", map[string]string{"username": "admin", "password": "wrong-password"}, &e)
		if status != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401", i, status)
		}
	}
	resp, body := secSend(t, app, nil, secRequest{method: "POST", path: "/api/v1/auth/token", json: map[string]string{"username": "admin", "password": testapp.AdminPassword}})
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after 3 failures: status %d, want 429; body %q", resp.StatusCode, secShort(body))
	}
	if wait, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || wait < 60 {
		t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if msg, _ := secErrorBody(t, "token while locked", resp, body); !strings.Contains(msg, "too many failed sign-ins") {
		t.Errorf("message %q", msg)
	}
	// A token issued before still works: only signing in is slowed.
	if status := app.JSON(t, admin, http.MethodGet, "/api/v1/users", nil, nil); status != http.StatusOK {
		t.Errorf("an earlier token while sign-in is locked: status %d", status)
	}
	if evs := secEvents(t, app, admin, "UserLoginFailed"); len(evs) != 3 {
		t.Errorf("%d UserLoginFailed events, want 3", len(evs))
	}
}

// TestThrottlingDefaults: with the shipped settings the first waits are
// short; keep failing until one lands inside a wait (each failure doubles
// it), which must happen within a few tries, and never before the free ones.
func TestThrottlingDefaults(t *testing.T) {
	app := testapp.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	free := app.Cfg.Auth.FreeFailures
	for i := 1; ; i++ {
		if ctx.Err() != nil || i > free+8 {
			t.Fatalf("no 429 after %d failed sign-ins", i-1)
		}
		resp, body := secLogin(t, app, nil, "admin", "wrong-password")
		if resp.StatusCode == http.StatusTooManyRequests {
			if i <= free {
				t.Fatalf("slowed after %d failures; the first %d are free", i-1, free)
			}
			secWantThrottled(t, "after repeated failures", resp, body, 1)
			return
		}
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d; body %q", i, resp.StatusCode, secShort(body))
		}
	}
}
