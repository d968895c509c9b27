package web_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"conclave/internal/testapp"
)

// An import with bad rows through the API and the page: 422, every bad
// line named with its reason, and nothing imported.
func TestImportBadRowsThroughAPIAndPage(t *testing.T) {
	app := testapp.Start(t)
	token := app.AdminToken(t)
	file := "asset,address,platform,username,password\nweb-1,10.0.0.1,Linux,root,pw\nweb-1,10.0.0.2,Linux,admin,pw\nweb-2,10.0.0.3,Linux,,pw\n"

	resp, body := secSend(t, app, nil, secRequest{method: "POST", path: "/api/v1/import", raw: file, contentType: "text/csv", token: token})
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("API import: status %d, body %s", resp.StatusCode, secShort(body))
	}
	var out struct {
		Error    string
		Field    string
		Problems []struct {
			Line  int
			Field string
			Error string
		}
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.Error, "nothing was imported") || len(out.Problems) != 2 ||
		out.Problems[0].Line != 3 || out.Problems[0].Field != "address" || out.Problems[1].Line != 4 || out.Problems[1].Field != "username" {
		t.Fatalf("API import answer: %+v", out)
	}
	// Not CSV at all.
	resp, body = secSend(t, app, nil, secRequest{method: "POST", path: "/api/v1/import", raw: file, contentType: "application/json", token: token})
	if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(body, "text/csv") {
		t.Fatalf("API import as JSON: status %d, body %s", resp.StatusCode, secShort(body))
	}

	c := app.Client()
	app.Login(t, c, "admin", testapp.AdminPassword)
	raw, ct := importBodyOf(file)
	resp, body = secSend(t, app, c, secRequest{method: "POST", path: "/import", raw: raw, contentType: ct})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Line 3") || !strings.Contains(body, "Line 4") {
		t.Fatalf("page import: status %d, body %s", resp.StatusCode, secShort(body))
	}
	var accounts []any
	app.JSON(t, token, http.MethodGet, "/api/v1/accounts", nil, &accounts)
	if len(accounts) != 0 {
		t.Fatalf("%d accounts after refused imports, want none", len(accounts))
	}
	// The good rows alone go in.
	raw, ct = importBodyOf("web-1,10.0.0.1,Linux,root,pw\nweb-1,10.0.0.1,Linux,admin,pw\n")
	resp, body = secSend(t, app, c, secRequest{method: "POST", path: "/import", raw: raw, contentType: ct})
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "accounts=2") {
		t.Fatalf("page import of good rows: status %d, location %q, body %s", resp.StatusCode, resp.Header.Get("Location"), secShort(body))
	}
}
