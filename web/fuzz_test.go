package web_test

import (
	"net/http"
	"strings"
	"testing"

	"conclave/cluster"
	"conclave/internal/testapp"
)

// fuzzRoute is a state-changing route the HTTP fuzz test sends input to.
// Routes that reach out to an address from their input (Add Replica, the
// identity provider's settings) are left out: a fuzzer must not dial
// addresses it makes up.
type fuzzRoute struct {
	method, path, contentType string
	session                   bool // a signed-in browser rather than a token
	audited                   bool // a refusal is recorded as an event (failed sign-ins)
}

func fuzzRoutes(self, victim string) []fuzzRoute {
	return []fuzzRoute{
		{method: "POST", path: "/api/v1/users", contentType: "application/json"},
		{method: "PATCH", path: "/api/v1/users/" + victim, contentType: "application/json"},
		{method: "DELETE", path: "/api/v1/users/" + victim, contentType: "application/json"},
		{method: "POST", path: "/api/v1/auth/token", contentType: "application/json", audited: true},
		{method: "POST", path: "/login", contentType: "application/x-www-form-urlencoded", audited: true},
		{method: "POST", path: "/users", contentType: "application/x-www-form-urlencoded", session: true},
		{method: "POST", path: "/users/" + victim + "/role", contentType: "application/x-www-form-urlencoded", session: true},
		{method: "POST", path: "/backups", contentType: "application/x-www-form-urlencoded", session: true},
		{method: "POST", path: "/node/v1/enroll/prepare", contentType: "application/json"},
		{method: "POST", path: "/node/v1/enroll/credentials", contentType: "application/json"},
		{method: "POST", path: "/node/v1/enroll/snapshot", contentType: "application/octet-stream"},
		{method: "POST", path: "/api/v1/backups", contentType: "application/json"},
		{method: "POST", path: "/api/v1/backups/restore", contentType: "multipart/form-data; boundary=fuzz"},
		{method: "POST", path: "/api/v1/cluster/unlock", contentType: "application/json"},
		{method: "POST", path: "/api/v1/cluster/activate", contentType: "application/json"},
		{method: "POST", path: "/api/v1/cluster/reset", contentType: "application/json"},
		{method: "POST", path: "/api/v1/cluster/members/" + self + "/promote", contentType: "application/json"},
		{method: "DELETE", path: "/api/v1/cluster/members/" + self, contentType: "application/json"},
	}
}

// FuzzHTTP sends made-up bodies, content types and credentials to the
// state-changing routes of a running appliance. The property: never a
// server error, and a refused request changes no replicated table (a
// refused sign-in only adds its audit event).
func FuzzHTTP(f *testing.F) {
	app := testapp.Start(f)
	admin := app.AdminToken(f)
	victim := app.CreateUser(f, "fuzz-victim", "fuzz-victim-password", cluster.RoleHelpdesk)
	app.CreateUser(f, "fuzz-helpdesk", "fuzz-helpdesk-password", cluster.RoleHelpdesk)
	helpdesk := app.Token(f, "fuzz-helpdesk", "fuzz-helpdesk-password")
	browser := app.Client()
	app.Login(f, browser, "admin", testapp.AdminPassword)
	routes := fuzzRoutes(app.Node.ID(), victim)

	for i := range routes {
		f.Add(uint8(i), uint8(1), "", []byte(`{}`), "")
	}
	f.Add(uint8(0), uint8(1), "", []byte(`{"username":"fuzzed","password":"a password of length","role":"Helpdesk"}`), "")
	f.Add(uint8(0), uint8(2), "", []byte(`{"username":"x","password":"y","role":"ApplianceAdministrator"}`), "")
	f.Add(uint8(1), uint8(1), "", []byte(`{"role":"Nobody","disabled":"yes"}`), "")
	f.Add(uint8(3), uint8(0), "", []byte(`{"username":"admin","password":"wrong"}`), "")
	f.Add(uint8(4), uint8(0), "", []byte(`username=admin&password=%00`), "")
	f.Add(uint8(5), uint8(0), "", []byte(`username=a&password=b&role=Helpdesk`), "")
	f.Add(uint8(8), uint8(3), "", []byte(`{"clusterId":"c","version":"test"}`), "Grant cng_forged")
	f.Add(uint8(11), uint8(1), "", []byte(`{"passphrase":"`+strings.Repeat("p", 20)+`"}`), "")
	f.Add(uint8(12), uint8(1), "", []byte("--fuzz\r\nContent-Disposition: form-data; name=\"confirm\"\r\n\r\nRestore\r\n--fuzz--\r\n"), "")
	f.Add(uint8(15), uint8(1), "", []byte(`{"memberIds":[],"primaryId":"","confirm":"Reset Cluster"}`), "")
	f.Add(uint8(0), uint8(1), "", []byte(strings.Repeat(`{"a":`, 10000)), "")
	f.Add(uint8(0), uint8(1), "text/json", []byte(`{}`), "")

	f.Fuzz(func(t *testing.T, route, who uint8, contentType string, body []byte, header string) {
		rt := routes[int(route)%len(routes)]
		if contentType == "" {
			contentType = rt.contentType
		}
		req, err := http.NewRequest(rt.method, app.URL+rt.path, strings.NewReader(string(body)))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", contentType)
		c := app.Client()
		switch who % 4 {
		case 1:
			req.Header.Set("Authorization", "Bearer "+admin)
			if rt.session {
				req.Header.Del("Authorization")
				c = browser
			}
		case 2:
			req.Header.Set("Authorization", "Bearer "+helpdesk)
		case 3:
			req.Header.Set("Authorization", header)
		}
		before := tableSums(t, app)
		resp, err := c.Do(req)
		if err != nil {
			return // the request could not be sent (a header Go refuses)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s (%s): status %d", rt.method, rt.path, contentType, resp.StatusCode)
		}
		if resp.StatusCode < 400 {
			return
		}
		after := tableSums(t, app)
		for table, sum := range before {
			if table == "events" && rt.audited {
				continue
			}
			if after[table] != sum {
				t.Fatalf("%s %s refused with %d changed table %s", rt.method, rt.path, resp.StatusCode, table)
			}
		}
	})
}
