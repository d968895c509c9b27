package web_test

// Who may call what: every route of the router, called by an anonymous
// visitor, a Helpdesk user (browser session and bearer token) and an
// ApplianceAdministrator (session and token), with the status each gets.
// A route added to the router without a row here fails
// TestRouteTableMatchesRouter.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	"conclave/web"
)

// routeWho is who makes a request in the route table.
type routeWho int

const (
	whoAnonymous routeWho = iota
	whoHelpdeskSession
	whoHelpdeskToken
	whoAdminSession
	whoAdminToken
	whoCount
)

var whoNames = [whoCount]string{"anonymous", "Helpdesk session", "Helpdesk token", "Administrator session", "Administrator token"}

func (w routeWho) String() string { return whoNames[w] }
func (w routeWho) isAdmin() bool  { return w == whoAdminSession || w == whoAdminToken }
func (w routeWho) isToken() bool  { return w == whoHelpdeskToken || w == whoAdminToken }
func (w routeWho) isSession() bool {
	return w == whoHelpdeskSession || w == whoAdminSession
}

// routeWant is the status each of the five gets, in routeWho order.
type routeWant [whoCount]int

// forAll: the same for everyone, signed in or not.
func forAll(s int) routeWant { return routeWant{s, s, s, s, s} }

// forUsers: a console page every role may see; anonymous visitors are sent
// to the sign-in page.
func forUsers(s int) routeWant { return routeWant{http.StatusSeeOther, s, s, s, s} }

// forAPIUsers: an API call every role may make; anonymous calls get 401.
func forAPIUsers(s int) routeWant { return routeWant{http.StatusUnauthorized, s, s, s, s} }

// forAdmins: a console change only administrators may make.
func forAdmins(s int) routeWant {
	return routeWant{http.StatusSeeOther, http.StatusForbidden, http.StatusForbidden, s, s}
}

// forAPIAdmins: an API change only administrators may make.
func forAPIAdmins(s int) routeWant {
	return routeWant{http.StatusUnauthorized, http.StatusForbidden, http.StatusForbidden, s, s}
}

// secPassword is the password of every user the tests create.
const secPassword = "a-password-for-tests-1"

// secRequest is one HTTP request of a test.
type secRequest struct {
	method, path string
	form         url.Values // sent URL-encoded when set
	json         any        // sent as JSON when set
	raw          string     // sent as is, with contentType, when neither is set
	contentType  string
	token        string
	header       map[string]string
}

// secSend makes r with c (a new client when nil) and returns the response
// with its body read.
func secSend(t testing.TB, app *testapp.App, c *http.Client, r secRequest) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	ct := r.contentType
	switch {
	case r.form != nil:
		body = strings.NewReader(r.form.Encode())
		if ct == "" {
			ct = "application/x-www-form-urlencoded"
		}
	case r.json != nil:
		raw, err := json.Marshal(r.json)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(raw)
		if ct == "" {
			ct = "application/json"
		}
	case r.raw != "":
		body = strings.NewReader(r.raw)
	}
	req, err := http.NewRequest(r.method, app.URL+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if c == nil {
		c = app.Client()
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", r.method, r.path, err)
	}
	return resp, string(raw)
}

// secState is what a refused or read-only request must leave as it was:
// the raft index applied (every replicated change, audit events included,
// moves it), the users and settings themselves, for the message, and the
// appliance's own state (Maintenance, leaving, read-only), which is not
// replicated.
type secState struct {
	index uint64
	data  string
	state string
}

func secSnapshot(t testing.TB, app *testapp.App) secState {
	t.Helper()
	ctx := context.Background()
	index, _, err := app.Store.AppliedIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return secState{index: index, data: secData(t, app), state: secApplianceState(app)}
}

// secApplianceState is the appliance's state and mode as it knows them.
func secApplianceState(app *testapp.App) string {
	m := app.Node.Mode()
	return fmt.Sprintf("%s (mode %q: %s)", app.Node.SelfState(), m.State, m.Reason)
}

// secData lists the users and settings.
func secData(t testing.TB, app *testapp.App) string {
	t.Helper()
	ctx := context.Background()
	users, err := app.Store.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, u := range users {
		fmt.Fprintf(&b, "user %s %s %s disabled=%v hash=%s updated=%s\n", u.ID, u.Username, u.Role, u.Disabled, u.PasswordHash, u.UpdatedAt.Format(time.RFC3339Nano))
	}
	settings, err := app.Store.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "setting %s = %s\n", k, settings[k])
	}
	return b.String()
}

// secUnchanged fails the test when anything changed since before.
func secUnchanged(t testing.TB, app *testapp.App, before secState, what string) {
	t.Helper()
	after := secSnapshot(t, app)
	if after.data != before.data {
		t.Errorf("%s changed users or settings:\nbefore:\n%s\nafter:\n%s", what, before.data, after.data)
	} else if after.index != before.index {
		t.Errorf("%s changed replicated state (applied raft index %d -> %d)", what, before.index, after.index)
	}
	if after.state != before.state {
		t.Errorf("%s changed the appliance's state: %s -> %s", what, before.state, after.state)
	}
}

// secNoDataChange fails the test when users or settings changed (audit
// events may have been added).
func secNoDataChange(t testing.TB, app *testapp.App, before secState, what string) {
	t.Helper()
	if after := secData(t, app); after != before.data {
		t.Errorf("%s changed users or settings:\nbefore:\n%s\nafter:\n%s", what, before.data, after)
	}
}

// secErrorBody decodes a JSON API error and checks that it says something.
func secErrorBody(t testing.TB, what string, resp *http.Response, body string) (msg, field string) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want JSON; body %q", what, ct, secShort(body))
		return "", ""
	}
	var e struct {
		Error string `json:"error"`
		Field string `json:"field"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Errorf("%s: error body is not JSON: %v; body %q", what, err, secShort(body))
	}
	if strings.TrimSpace(e.Error) == "" {
		t.Errorf("%s: error body has no message: %q", what, secShort(body))
	}
	return e.Error, e.Field
}

func secShort(s string) string {
	if len(s) > 400 {
		return s[:400] + "…"
	}
	return s
}

// secRunOperation runs a one-step operation to its end and returns its ID,
// so that the operation pages have something to show.
func secRunOperation(t testing.TB, app *testapp.App) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := app.Node.Runner().Start(ctx, "admin", cluster.OperationSpec{Kind: "Test", Steps: []cluster.StepSpec{
		{Name: "Nothing to do", Run: func(context.Context, *cluster.Progress) error { return nil }},
	}})
	if err != nil {
		t.Fatalf("start operation: %v", err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		op, err := app.Store.Operation(ctx, id)
		if err == nil && op.EndedAt != nil {
			return id
		}
		select {
		case <-ctx.Done():
			t.Fatalf("operation %s did not end: %v (last read: %v)", id, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// routeFixture is an appliance with a Helpdesk user, users to change, an
// operation, and a signed-in session and a token for each role.
type routeFixture struct {
	app         *testapp.App
	operationID string
	victims     map[string]string // user name -> ID
	clients     [whoCount]*http.Client
	tokens      [whoCount]string
	n           int
	wf          *workflowFixture // the access-request workflow's objects
}

func newRouteFixture(t *testing.T) *routeFixture {
	t.Helper()
	app := testapp.Start(t)
	f := &routeFixture{app: app, victims: map[string]string{}}
	app.CreateUser(t, "helpdesk", secPassword, cluster.RoleHelpdesk)
	for _, name := range []string{"victim-form", "victim-patch", "victim-delete"} {
		f.victims[name] = app.CreateUser(t, name, secPassword, cluster.RoleHelpdesk)
	}
	for who := range whoCount {
		switch {
		case who.isSession():
			f.clients[who] = f.signIn(t, who)
		case who.isToken():
			f.tokens[who] = f.token(t, who)
		}
	}
	f.operationID = secRunOperation(t, app)
	f.wf = newWorkflowFixture(t, app)
	return f
}

// credentials are who's user name and password; anonymous visitors use
// the Helpdesk user's when they sign in.
func (f *routeFixture) credentials(who routeWho) (string, string) {
	if who.isAdmin() {
		return "admin", testapp.AdminPassword
	}
	return "helpdesk", secPassword
}

func (f *routeFixture) signIn(t *testing.T, who routeWho) *http.Client {
	t.Helper()
	c := f.app.Client()
	user, pass := f.credentials(who)
	f.app.Login(t, c, user, pass)
	return c
}

func (f *routeFixture) token(t *testing.T, who routeWho) string {
	t.Helper()
	user, pass := f.credentials(who)
	return f.app.Token(t, user, pass)
}

// unique is a new user name.
func (f *routeFixture) unique(prefix string, who routeWho) string {
	f.n++
	return fmt.Sprintf("%s-%d-%d", prefix, who, f.n)
}

// as returns the client and token to make rc's request as who: the
// signed-in ones of the fixture, or new ones when rc ends them.
func (f *routeFixture) as(t *testing.T, rc routeCase, who routeWho) (*http.Client, string) {
	t.Helper()
	switch {
	case who.isSession() && rc.fresh:
		return f.signIn(t, who), ""
	case who.isSession():
		return f.clients[who], ""
	case who.isToken() && rc.fresh:
		return nil, f.token(t, who)
	case who.isToken():
		return nil, f.tokens[who]
	}
	return nil, ""
}

// routeCase is one route of the router.
type routeCase struct {
	method, route string // as chi.Walk names the route
	req           func(f *routeFixture, who routeWho) secRequest
	want          routeWant
	// oneOf, when set, replaces want: any of these, the same for everyone.
	oneOf []int
	// fresh: the request ends the session or token it is made with, so it
	// is made with a new one.
	fresh bool
	// audits: a GET that records an audit event (a password release).
	audits bool
}

func (rc routeCase) name() string { return rc.method + " " + rc.route }

// adminOnly tells whether only administrators may make the request.
func (rc routeCase) adminOnly() bool { return rc.want[whoHelpdeskSession] == http.StatusForbidden }

func routePath(p string) func(*routeFixture, routeWho) secRequest {
	return func(*routeFixture, routeWho) secRequest { return secRequest{path: p} }
}

// routeCases lists every route of web.Routes with what each role gets.
func routeCases() []routeCase {
	return append([]routeCase{
		// No sign-in.
		{method: "GET", route: "/healthz", req: routePath("/healthz"), want: forAll(http.StatusOK)},
		{method: "GET", route: "/readyz", req: routePath("/readyz"), want: forAll(http.StatusOK)},
		{method: "GET", route: "/service/notification/v4/Status/Availability", req: routePath("/service/notification/v4/Status/Availability"), want: forAll(http.StatusOK)},
		{method: "GET", route: "/static/*", req: routePath("/static/app.css"), want: forAll(http.StatusOK)},
		{method: "HEAD", route: "/static/*", req: routePath("/static/app.js"), want: forAll(http.StatusOK)},

		// Signing in and out.
		{method: "GET", route: "/login", req: routePath("/login"),
			want: routeWant{http.StatusOK, http.StatusSeeOther, http.StatusSeeOther, http.StatusSeeOther, http.StatusSeeOther}},
		{method: "POST", route: "/login", want: forAll(http.StatusSeeOther),
			req: func(f *routeFixture, who routeWho) secRequest {
				user, pass := f.credentials(who)
				return secRequest{path: "/login", form: url.Values{"username": {user}, "password": {pass}}}
			}},
		{method: "POST", route: "/logout", req: routePath("/logout"), want: forAll(http.StatusSeeOther), fresh: true},
		// Not configured here: refused for everyone. (It answers 503 today;
		// "not configured" would better be a 4xx.)
		{method: "GET", route: "/auth/oidc/start", req: routePath("/auth/oidc/start"),
			oneOf: []int{http.StatusNotFound, http.StatusConflict, http.StatusBadRequest, http.StatusServiceUnavailable}},
		{method: "GET", route: "/auth/oidc/callback", req: routePath("/auth/oidc/callback?code=x&state=y"), want: forAll(http.StatusBadRequest)},
		{method: "POST", route: "/api/v1/auth/token", want: forAll(http.StatusOK),
			req: func(f *routeFixture, who routeWho) secRequest {
				user, pass := f.credentials(who)
				return secRequest{path: "/api/v1/auth/token", json: map[string]string{"username": user, "password": pass}}
			}},
		{method: "DELETE", route: "/api/v1/auth/token", req: routePath("/api/v1/auth/token"), fresh: true,
			want: routeWant{http.StatusUnauthorized, http.StatusBadRequest, http.StatusNoContent, http.StatusBadRequest, http.StatusNoContent}},

		// Every role reads.
		{method: "GET", route: "/", req: routePath("/"), want: forUsers(http.StatusOK)},
		{method: "GET", route: "/operations/{id}", want: forUsers(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest { return secRequest{path: "/operations/" + f.operationID} }},
		{method: "GET", route: "/activity", req: routePath("/activity"), want: forUsers(http.StatusOK)},
		{method: "GET", route: "/users", req: routePath("/users"), want: forUsers(http.StatusOK)},
		{method: "GET", route: "/settings", req: routePath("/settings"), want: forUsers(http.StatusOK)},
		{method: "GET", route: "/api/v1/cluster/members", req: routePath("/api/v1/cluster/members"), want: forAPIUsers(http.StatusOK)},
		{method: "GET", route: "/api/v1/cluster/status", req: routePath("/api/v1/cluster/status"), want: forAPIUsers(http.StatusOK)},
		{method: "GET", route: "/api/v1/operations/{id}", want: forAPIUsers(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/operations/" + f.operationID}
			}},
		{method: "GET", route: "/api/v1/events", req: routePath("/api/v1/events?type=UserCreated"), want: forAPIUsers(http.StatusOK)},
		{method: "GET", route: "/api/v1/users", req: routePath("/api/v1/users"), want: forAPIUsers(http.StatusOK)},
		{method: "GET", route: "/api/v1/events/chain", req: routePath("/api/v1/events/chain"), want: forAPIUsers(http.StatusOK)},

		// Link latency: every role reads and may run Test link (the one
		// member has no link, so Test link is refused with a reason).
		{method: "GET", route: "/network", req: routePath("/network?range=day"), want: forUsers(http.StatusOK)},
		{method: "POST", route: "/network/test", want: routeWant{http.StatusSeeOther, http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, http.StatusUnprocessableEntity},
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/network/test", form: url.Values{"from": {f.app.Node.ID()}, "to": {f.app.Node.ID()}}}
			}},
		{method: "GET", route: "/api/v1/cluster/links", req: routePath("/api/v1/cluster/links"), want: forAPIUsers(http.StatusOK)},
		{method: "POST", route: "/api/v1/cluster/links/test", want: routeWant{http.StatusUnauthorized, http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, http.StatusUnprocessableEntity},
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/cluster/links/test", json: map[string]string{"from": f.app.Node.ID(), "to": f.app.Node.ID()}}
			}},
		// Prometheus: a token (or session) of any role; 401 without.
		{method: "GET", route: "/metrics", req: routePath("/metrics"), want: routeWant{http.StatusUnauthorized, http.StatusOK, http.StatusOK, http.StatusOK, http.StatusOK}},

		// Only administrators change.
		{method: "POST", route: "/users", want: forAdmins(http.StatusSeeOther),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/users", form: url.Values{"username": {f.unique("form-user", who)}, "password": {secPassword}, "role": {cluster.RoleHelpdesk}}}
			}},
		{method: "POST", route: "/users/{id}/{field}", want: forAdmins(http.StatusSeeOther),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/users/" + f.victims["victim-form"] + "/role", form: url.Values{"role": {cluster.RoleAdministrator}}}
			}},
		{method: "POST", route: "/settings", want: forAdmins(http.StatusSeeOther),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/settings", form: url.Values{"clusterName": {"Named by " + who.String()}, "oidcRolesClaim": {"groups"}}}
			}},
		{method: "POST", route: "/api/v1/users", want: forAPIAdmins(http.StatusCreated),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/api/v1/users", json: map[string]string{"username": f.unique("api-user", who), "password": secPassword, "role": cluster.RoleHelpdesk}}
			}},
		{method: "PATCH", route: "/api/v1/users/{id}", want: forAPIAdmins(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/users/" + f.victims["victim-patch"], json: map[string]string{"role": cluster.RoleAdministrator}}
			}},
		{method: "DELETE", route: "/api/v1/users/{id}", want: forAPIAdmins(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/users/" + f.victims["victim-delete"]}
			}},

		// Cluster operations in the console: administrators only. The
		// fixture is a one-member cluster, so each operation is refused
		// with a reason (nothing answers at routeNobody, the only member is
		// the primary, it is not read-only), and nothing changes.
		{method: "GET", route: "/cluster/add-replica", req: routePath("/cluster/add-replica"), want: forAdmins(http.StatusOK)},
		{method: "POST", route: "/cluster/add-replica", want: forAdmins(http.StatusUnprocessableEntity),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/cluster/add-replica", form: url.Values{"address": {routeNobody}}}
			}},
		{method: "GET", route: "/cluster/add-replica/confirm", want: forAdmins(http.StatusUnprocessableEntity),
			req: routePath("/cluster/add-replica/confirm?" + url.Values{"address": {routeNobody}, "fp": {"AB:CD"}, "grant": {"cng_x"}}.Encode())},
		{method: "POST", route: "/cluster/add-replica/confirm", want: forAdmins(http.StatusUnprocessableEntity),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/cluster/add-replica/confirm", form: url.Values{"address": {routeNobody}, "fp": {"AB:CD"}, "grant": {"cng_x"}, "confirm": {handlers.PhraseAddReplica}}}
			}},
		// On the appliance to add: one of its administrators approves.
		{method: "GET", route: "/enroll/authorize", want: forAdmins(http.StatusOK),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/enroll/authorize?" + routeAuthorizeForm().Encode()}
			}},
		{method: "POST", route: "/enroll/authorize", want: forAdmins(http.StatusSeeOther),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/enroll/authorize", form: routeAuthorizeForm()}
			}},
		{method: "GET", route: "/cluster/members/{id}/unjoin", want: forAdmins(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/cluster/members/" + f.app.Node.ID() + "/unjoin"}
			}},
		{method: "POST", route: "/cluster/members/{id}/unjoin", want: forAdmins(http.StatusConflict),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/cluster/members/" + f.app.Node.ID() + "/unjoin", form: url.Values{"confirm": {handlers.PhraseUnjoin}}}
			}},
		{method: "GET", route: "/cluster/activate", req: routePath("/cluster/activate"), want: forAdmins(http.StatusOK)},
		{method: "POST", route: "/cluster/activate", want: forAdmins(http.StatusConflict),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/cluster/activate", form: url.Values{"confirm": {handlers.PhraseActivate}}}
			}},
		{method: "POST", route: "/api/v1/cluster/members", want: forAPIAdmins(http.StatusUnprocessableEntity),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/api/v1/cluster/members", json: map[string]string{"address": routeNobody, "authenticationToken": "cnt_x", "confirm": handlers.PhraseAddReplica}}
			}},
		{method: "DELETE", route: "/api/v1/cluster/members/{id}", want: forAPIAdmins(http.StatusConflict),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/cluster/members/" + f.app.Node.ID(), json: map[string]string{"confirm": handlers.PhraseUnjoin}}
			}},
		{method: "POST", route: "/api/v1/cluster/activate", want: forAPIAdmins(http.StatusConflict),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/api/v1/cluster/activate", json: map[string]string{"confirm": handlers.PhraseActivate}}
			}},

		// Failover, Unlock Cluster, Reset Cluster: the one member is the
		// primary, the cluster is not locked and has consensus, so each is
		// refused with a reason and nothing changes.
		{method: "GET", route: "/cluster/members/{id}/failover", want: forAdmins(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/cluster/members/" + f.app.Node.ID() + "/failover"}
			}},
		{method: "POST", route: "/cluster/members/{id}/failover", want: forAdmins(http.StatusConflict),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/cluster/members/" + f.app.Node.ID() + "/failover", form: url.Values{"confirm": {handlers.PhraseFailover}}}
			}},
		{method: "GET", route: "/cluster/reset", req: routePath("/cluster/reset"), want: forAdmins(http.StatusOK)},
		{method: "POST", route: "/cluster/reset", want: forAdmins(http.StatusConflict),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/cluster/reset", form: url.Values{"keep": {f.app.Node.ID()}, "primary": {f.app.Node.ID()},
					"primaryName": {f.app.Node.Name()}, "confirm": {handlers.PhraseReset}}}
			}},
		{method: "GET", route: "/cluster/unlock", req: routePath("/cluster/unlock"), want: forAdmins(http.StatusOK)},
		{method: "POST", route: "/cluster/unlock", want: forAdmins(http.StatusConflict),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/cluster/unlock", form: url.Values{"confirm": {handlers.PhraseUnlock}}}
			}},
		{method: "POST", route: "/api/v1/cluster/members/{id}/promote", want: forAPIAdmins(http.StatusConflict),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/cluster/members/" + f.app.Node.ID() + "/promote", json: map[string]string{"confirm": handlers.PhraseFailover}}
			}},
		{method: "POST", route: "/api/v1/cluster/unlock", want: forAPIAdmins(http.StatusConflict),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/api/v1/cluster/unlock", json: map[string]string{"confirm": handlers.PhraseUnlock}}
			}},
		{method: "POST", route: "/api/v1/cluster/reset", want: forAPIAdmins(http.StatusConflict),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/cluster/reset", json: map[string]any{"memberIds": []string{f.app.Node.ID()}, "primaryId": f.app.Node.ID(), "confirm": handlers.PhraseReset}}
			}},
		// Offline Workflow Mode: refused on an appliance with consensus that is not isolated.
		{method: "GET", route: "/cluster/isolate", req: routePath("/cluster/isolate"), want: forAdmins(http.StatusOK)},
		{method: "POST", route: "/cluster/isolate", want: forAdmins(http.StatusConflict),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/cluster/isolate", form: url.Values{"confirm": {handlers.PhraseIsolate}}}
			}},
		{method: "GET", route: "/cluster/reintegrate", req: routePath("/cluster/reintegrate"), want: forAdmins(http.StatusOK)},
		{method: "POST", route: "/cluster/reintegrate", want: forAdmins(http.StatusConflict),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/cluster/reintegrate", form: url.Values{"confirm": {handlers.PhraseReintegrate}}}
			}},
		{method: "POST", route: "/api/v1/cluster/isolate", want: forAPIAdmins(http.StatusConflict),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/api/v1/cluster/isolate", json: map[string]string{"confirm": handlers.PhraseIsolate}}
			}},
		{method: "POST", route: "/api/v1/cluster/reintegrate", want: forAPIAdmins(http.StatusConflict),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/api/v1/cluster/reintegrate", json: map[string]string{"confirm": handlers.PhraseReintegrate}}
			}},

		// Backup and restore: administrators only. A restore without a
		// backup file is refused for its content type, and nothing changes.
		{method: "GET", route: "/backups", req: routePath("/backups"), want: forAdmins(http.StatusOK)},
		{method: "POST", route: "/backups", want: forAdmins(http.StatusSeeOther),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/backups", form: url.Values{"passphrase": {routeBackupPass}, "passphrase2": {routeBackupPass}}}
			}},
		{method: "GET", route: "/backups/{name}", req: routePath("/backups/conclave-none.ccbackup"), want: forAdmins(http.StatusNotFound)},
		{method: "POST", route: "/backups/restore", want: forAdmins(http.StatusUnsupportedMediaType),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/backups/restore", form: url.Values{"confirm": {cluster.PhraseRestore}}}
			}},
		{method: "GET", route: "/api/v1/backups", req: routePath("/api/v1/backups"), want: forAPIAdmins(http.StatusOK)},
		{method: "POST", route: "/api/v1/backups", want: forAPIAdmins(http.StatusCreated),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/api/v1/backups", json: map[string]string{"passphrase": routeBackupPass}}
			}},
		{method: "GET", route: "/api/v1/backups/{name}", req: routePath("/api/v1/backups/conclave-none.ccbackup"), want: forAPIAdmins(http.StatusNotFound)},
		{method: "POST", route: "/api/v1/backups/restore", want: forAPIAdmins(http.StatusUnsupportedMediaType),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/api/v1/backups/restore", json: map[string]string{"confirm": cluster.PhraseRestore}}
			}},

		// Data keys: administrators only. A wrong phrase is refused (the
		// rotation itself is tested in web/keys_test.go).
		{method: "GET", route: "/keys", req: routePath("/keys"), want: forAdmins(http.StatusOK)},
		{method: "POST", route: "/keys/rotate", want: forAdmins(http.StatusUnprocessableEntity),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/keys/rotate", form: url.Values{"confirm": {"rotate key"}}}
			}},
		{method: "GET", route: "/api/v1/keys", req: routePath("/api/v1/keys"), want: forAPIAdmins(http.StatusOK)},
		{method: "POST", route: "/api/v1/keys/rotate", want: forAPIAdmins(http.StatusUnprocessableEntity),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/api/v1/keys/rotate", json: map[string]string{"confirm": "Rotate"}}
			}},

		// The node API. Who the appliance is: public.
		{method: "GET", route: "/node/v1/info", req: routePath("/node/v1/info"), want: forAll(http.StatusOK)},
		// Enrollment calls, made before the appliance has a member
		// certificate: a grant from its approval page or a token of one of
		// its administrators. prepare refuses anything else with 401; the
		// administrator's token passes, and the request is then refused for
		// its content (another build). The others answer 409 to everyone
		// while the appliance is not being added to a cluster
		// (TestEnrollCallsNeedAGrant covers them during an enrollment).
		{method: "POST", route: "/node/v1/enroll/prepare",
			want: routeWant{http.StatusUnauthorized, http.StatusUnauthorized, http.StatusUnauthorized, http.StatusUnauthorized, http.StatusConflict},
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/node/v1/enroll/prepare", json: routePrepare("another-build")}
			}},
		{method: "POST", route: "/node/v1/enroll/credentials", want: forAll(http.StatusConflict),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/node/v1/enroll/credentials", json: map[string]string{"certificate": ""}}
			}},
		{method: "POST", route: "/node/v1/enroll/snapshot", want: forAll(http.StatusConflict),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/node/v1/enroll/snapshot", raw: "not a snapshot", contentType: "application/octet-stream"}
			}},
		{method: "POST", route: "/node/v1/enroll/abort", want: forAll(http.StatusConflict),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/node/v1/enroll/abort", json: map[string]string{"reason": "a test"}}
			}},
		// Members only (mutual TLS with a current member's certificate):
		// browsers, sessions and tokens have none.
		{method: "GET", route: "/node/v1/status", req: routePath("/node/v1/status"), want: forAll(http.StatusForbidden)},
		{method: "GET", route: "/node/v1/checksums", req: routePath("/node/v1/checksums?atLeast=1"), want: forAll(http.StatusForbidden)},
		{method: "POST", route: "/node/v1/propose", want: forAll(http.StatusForbidden),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/node/v1/propose", raw: `{"type": "PruneSessions"}`, contentType: "application/json"}
			}},
		{method: "POST", route: "/node/v1/leave", req: routePath("/node/v1/leave"), want: forAll(http.StatusForbidden)},
		{method: "POST", route: "/node/v1/standalone", req: routePath("/node/v1/standalone"), want: forAll(http.StatusForbidden)},
		{method: "POST", route: "/node/v1/enroll/complete", req: routePath("/node/v1/enroll/complete"), want: forAll(http.StatusForbidden)},
		{method: "POST", route: "/node/v1/operations/{kind}", want: forAll(http.StatusForbidden),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/node/v1/operations/unjoin", json: cluster.OperationRequest{Actor: "admin", MemberID: f.app.Node.ID()}}
			}},
		{method: "POST", route: "/node/v1/reset/follow", want: forAll(http.StatusForbidden),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/node/v1/reset/follow", json: map[string]string{}}
			}},
		{method: "GET", route: "/node/v1/probe", req: routePath("/node/v1/probe"), want: forAll(http.StatusForbidden)},
		{method: "GET", route: "/node/v1/links/history", req: routePath("/node/v1/links/history?to=x&range=hour"), want: forAll(http.StatusForbidden)},
		{method: "POST", route: "/node/v1/links/test", want: forAll(http.StatusForbidden),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/node/v1/links/test", json: map[string]string{"to": "x"}}
			}},
		{method: "POST", route: "/node/v1/reset/lead", want: forAll(http.StatusForbidden),
			req: func(*routeFixture, routeWho) secRequest {
				return secRequest{path: "/node/v1/reset/lead", json: map[string]string{}}
			}},
	}, workflowRouteCases()...)
}

// routeBackupPass is the passphrase of the backups the route table makes.
const routeBackupPass = "a backup passphrase for tests"

// routeNobody is an address where no appliance answers.
const routeNobody = "127.0.0.1:1"

// routeAuthorizeForm is what a primary's Add Replica page sends to the
// approval page of the appliance to add.
func routeAuthorizeForm() url.Values {
	return url.Values{"cluster": {"a-cluster-id"}, "clusterName": {"Another cluster"}, "primary": {"other-primary"},
		"return": {"https://" + routeNobody + "/cluster/add-replica/confirm?address=x&fp=y"}}
}

// routePrepare is a primary's first enrollment call, for a build.
func routePrepare(version string) cluster.PrepareRequest {
	ca, err := cluster.NewCA("a-cluster-id")
	if err != nil {
		panic(err)
	}
	return cluster.PrepareRequest{ClusterID: "a-cluster-id", ClusterName: "Another cluster", PrimaryID: "other-primary-id", PrimaryName: "other-primary",
		Version: version, CA: cluster.CA{CertPEM: ca.CertPEM}}
}

// routerRoutes lists the router's routes as "METHOD pattern".
func routerRoutes(t *testing.T) []string {
	t.Helper()
	var out []string
	// Building the router runs no handler, so empty dependencies do.
	r := web.Routes(handlers.New(handlers.Deps{}), testapp.Logger())
	err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatalf("walk the router: %v", err)
	}
	slices.Sort(out)
	return out
}

func TestRouteTableMatchesRouter(t *testing.T) {
	routes := routerRoutes(t)
	if len(routes) == 0 {
		t.Fatal("the router has no routes")
	}
	inTable := map[string]bool{}
	for _, rc := range routeCases() {
		if inTable[rc.name()] {
			t.Errorf("route %s is twice in the table", rc.name())
		}
		inTable[rc.name()] = true
		if !slices.Contains(routes, rc.name()) {
			t.Errorf("the table has %s, which the router does not serve", rc.name())
		}
	}
	for _, r := range routes {
		if !inTable[r] {
			t.Errorf("route %s is not in the table of routes_test.go: add the status each role must get", r)
		}
	}
}

func TestRoutesByRole(t *testing.T) {
	f := newRouteFixture(t)
	app := f.app
	for _, rc := range routeCases() {
		t.Run(rc.name(), func(t *testing.T) {
			var got [whoCount]int
			for who := range whoCount {
				c, token := f.as(t, rc, who)
				r := rc.req(f, who)
				r.method, r.token = rc.method, token
				before := secSnapshot(t, app)
				resp, body := secSend(t, app, c, r)
				got[who] = resp.StatusCode
				what := fmt.Sprintf("%s as %s", rc.name(), who)
				switch {
				case rc.oneOf != nil:
					if !slices.Contains(rc.oneOf, resp.StatusCode) {
						t.Errorf("%s: status %d, want one of %v; body %q", what, resp.StatusCode, rc.oneOf, secShort(body))
					}
				case resp.StatusCode != rc.want[who]:
					t.Errorf("%s: status %d, want %d; body %q", what, resp.StatusCode, rc.want[who], secShort(body))
					continue
				}
				if resp.StatusCode == http.StatusInternalServerError {
					t.Errorf("%s: 500", what)
				}
				refused := resp.StatusCode >= 400 || (who == whoAnonymous && rc.adminOnly())
				if (rc.method == http.MethodGet || rc.method == http.MethodHead) && !rc.audits || refused {
					secUnchanged(t, app, before, what)
				}
				if who == whoAnonymous && resp.StatusCode == http.StatusSeeOther && rc.route != "/login" && rc.route != "/logout" {
					if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "/login") {
						t.Errorf("%s: redirected to %q, want the sign-in page", what, loc)
					}
				}
				if (strings.HasPrefix(rc.route, "/api/") || strings.HasPrefix(rc.route, "/node/")) && resp.StatusCode >= 400 {
					secErrorBody(t, what, resp, body)
				}
				switch {
				case resp.StatusCode != http.StatusForbidden:
				case strings.HasPrefix(rc.route, "/node/"):
					// The members' API: what is missing is a member's
					// certificate, not a role.
					if !strings.Contains(body, "certificate") {
						t.Errorf("%s: 403 does not say that a member's certificate is needed: %q", what, secShort(body))
					}
				case !strings.Contains(body, cluster.RoleAdministrator):
					t.Errorf("%s: 403 does not say who may do this: %q", what, secShort(body))
				}
			}
			t.Logf("%-40s %v", rc.name(), got)
		})
	}

}

// TestEnrollCallsNeedAGrant puts an appliance in Maintenance the way a
// primary does (an administrator approves on its page, the primary calls
// prepare with the grant), then makes the later enrollment calls without
// the grant: with nothing, a made-up grant, a grant for another cluster, a
// Helpdesk token and an administrator's browser session. Each is refused
// with 401 and changes nothing: not the data (snapshot would replace it),
// not the appliance's state. The grant itself still works afterwards.
func TestEnrollCallsNeedAGrant(t *testing.T) {
	app := testapp.Start(t)
	app.CreateUser(t, "helpdesk", secPassword, cluster.RoleHelpdesk)
	helpdeskToken := app.Token(t, "helpdesk", secPassword)
	admin := app.Client()
	app.Login(t, admin, "admin", testapp.AdminPassword)

	resp, body := secSend(t, app, admin, secRequest{method: "POST", path: "/enroll/authorize", form: routeAuthorizeForm()})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: status %d; body %q", resp.StatusCode, secShort(body))
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	grant := loc.Query().Get("grant")
	if !strings.HasPrefix(grant, "cng_") {
		t.Fatalf("approve: no grant in %q", loc)
	}
	otherGrant := app.Node.IssueGrant("another-cluster-id", "admin")

	// prepare refuses anything but the grant for this cluster.
	prepare := routePrepare(app.Cfg.Version)
	for name, authz := range map[string]string{
		"no authorization": "", "a made-up grant": "Grant cng_made-up", "a grant for another cluster": "Grant " + otherGrant,
		"a Helpdesk token": "Bearer " + helpdeskToken, "a token that does not exist": "Bearer cnt_nonsense", "Basic": "Basic YWRtaW46eA==",
	} {
		before := secSnapshot(t, app)
		resp, body := secSend(t, app, nil, secRequest{method: "POST", path: "/node/v1/enroll/prepare", json: prepare, header: map[string]string{"Authorization": authz}})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("prepare with %s: status %d, want 401; body %q", name, resp.StatusCode, secShort(body))
		}
		secErrorBody(t, "prepare with "+name, resp, body)
		secUnchanged(t, app, before, "prepare with "+name)
	}

	// With the grant: Maintenance, waiting for the primary.
	enrollPrepare(t, app, grant)
	// The grant is one-time: it starts no second enrollment.
	resp, body = secSend(t, app, nil, secRequest{method: "POST", path: "/node/v1/enroll/prepare", json: routePrepare(app.Cfg.Version),
		header: map[string]string{"Authorization": "Grant " + grant}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "used") {
		t.Errorf("a second prepare with the same grant: status %d, want 401 saying it was used; body %q", resp.StatusCode, secShort(body))
	}

	calls := []secRequest{
		{path: "/node/v1/enroll/credentials", json: map[string]string{"certificate": ""}},
		{path: "/node/v1/enroll/snapshot", raw: "not a snapshot", contentType: "application/octet-stream"},
		{path: "/node/v1/enroll/abort", json: map[string]string{"reason": "a stranger says so"}},
	}
	for _, call := range calls {
		for name, who := range map[string]struct {
			c     *http.Client
			authz string
		}{
			"no authorization":            {nil, ""},
			"a made-up grant":             {nil, "Grant cng_made-up"},
			"a grant for another cluster": {nil, "Grant " + otherGrant},
			"a Helpdesk token":            {nil, "Bearer " + helpdeskToken},
			"an administrator's session":  {admin, ""},
		} {
			what := call.path + " with " + name
			r := call
			r.method = "POST"
			r.header = map[string]string{"Authorization": who.authz}
			if who.authz == "" {
				r.header = nil
			}
			before := secSnapshot(t, app)
			resp, body := secSend(t, app, who.c, r)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s: status %d, want 401; body %q", what, resp.StatusCode, secShort(body))
			}
			secErrorBody(t, what, resp, body)
			secUnchanged(t, app, before, what)
		}
	}
	if users, err := app.Store.Users(t.Context()); err != nil || len(users) != 2 {
		t.Errorf("the appliance's users after the refused calls: %d, %v; want admin and helpdesk", len(users), err)
	}

	// The grant itself works: abort records the reason.
	resp, body = secSend(t, app, nil, secRequest{method: "POST", path: "/node/v1/enroll/abort", json: map[string]string{"reason": "the test ends"},
		header: map[string]string{"Authorization": "Grant " + grant}})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("abort with the grant: status %d; body %q", resp.StatusCode, secShort(body))
	}
	if m := app.Node.Mode(); m.State != cluster.StateMaintenance || !strings.Contains(m.Reason, "the test ends") {
		t.Errorf("after abort the appliance is %+v, want Maintenance with the reason", m)
	}
}

// enrollPrepare makes the first call of a primary that enrolls app, with
// a grant of app's administrator: app enters Maintenance.
func enrollPrepare(t *testing.T, app *testapp.App, grant string) {
	t.Helper()
	resp, body := secSend(t, app, nil, secRequest{method: "POST", path: "/node/v1/enroll/prepare", json: routePrepare(app.Cfg.Version),
		header: map[string]string{"Authorization": "Grant " + grant}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("prepare with the grant: status %d; body %q", resp.StatusCode, secShort(body))
	}
	if m := app.Node.Mode(); m.State != cluster.StateMaintenance {
		t.Fatalf("after prepare the appliance is %+v, want Maintenance", m)
	}
}

// TestApprovalFormAction: the approval page of Add Replica may send its
// form's answer (a redirect) to the primary that asked, and nowhere else:
// its form-action names the https origin of a primary's confirmation
// page, and a return address that could smuggle a directive into the
// policy leaves it as it is.
func TestApprovalFormAction(t *testing.T) {
	app := testapp.Start(t)
	c := app.Client()
	app.Login(t, c, "admin", testapp.AdminPassword)
	cases := []struct{ ret, want string }{
		{"https://10.0.0.5:8441/cluster/add-replica/confirm?address=x", "form-action 'self' https://10.0.0.5:8441;"},
		{"https://primary.example/cluster/add-replica/confirm", "form-action 'self' https://primary.example;"},
		{"https://[fd00::5]:8441/cluster/add-replica/confirm", "form-action 'self' https://[fd00::5]:8441;"},
		{"http://10.0.0.5:8441/cluster/add-replica/confirm", "form-action 'self';"},
		{"https://10.0.0.5:8441/settings", "form-action 'self';"},
		{"https://evil.example;script-src%20*/cluster/add-replica/confirm", "form-action 'self';"},
		{"https://a.example%20'unsafe-inline'/cluster/add-replica/confirm", "form-action 'self';"},
		{"https://user@a.example/cluster/add-replica/confirm", "form-action 'self';"},
		{"", "form-action 'self';"},
	}
	for _, tc := range cases {
		resp, body := secSend(t, app, c, secRequest{method: "GET", path: "/enroll/authorize?" + url.Values{"return": {tc.ret}, "cluster": {"x"}}.Encode()})
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, tc.want) {
			t.Errorf("return %q: Content-Security-Policy %q, want %q (status %d; body %q)", tc.ret, csp, tc.want, resp.StatusCode, secShort(body))
		}
		if strings.Count(csp, ";") != 7 {
			t.Errorf("return %q: Content-Security-Policy %q has another number of directives", tc.ret, csp)
		}
	}
}
