package web_test

// The access-request workflow's rows of the route table (routes_test.go),
// and the objects they act on: each role's request gets objects of its own,
// so that an administrator's first call does not change what the second
// finds.

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"testing"

	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/workflow"
)

// workflowFixture holds, per purpose, one object for each of the five
// callers of the route table.
type workflowFixture struct {
	assetID, accountID, policyID, requestID string
	putPolicyID                             string // a policy the route table replaces
	per                                     map[string][whoCount]string
}

func (w *workflowFixture) of(purpose string, who routeWho) string { return w.per[purpose][who] }

func newWorkflowFixture(t *testing.T, app *testapp.App) *workflowFixture {
	t.Helper()
	ctx := t.Context()
	wf := app.Workflow
	adminUser, err := app.Store.UserByUsername(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	admin := workflow.Actor{UserID: adminUser.ID, Username: "admin", Role: adminUser.Role}
	rita := workflow.Actor{UserID: app.CreateUser(t, "route-rita", secPassword, cluster.RoleRequester), Username: "route-rita", Role: cluster.RoleRequester}
	w := &workflowFixture{per: map[string][whoCount]string{}}
	must := func(id string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("workflow fixture: %v", err)
		}
		return id
	}
	w.assetID = must(wf.CreateAsset(ctx, admin, workflow.AssetInput{Name: "route-db", Address: "10.9.9.9", Platform: "Linux"}))
	w.accountID = must(wf.CreateAccount(ctx, admin, w.assetID, "route-root", "route-password"))
	account := func(purpose string, who routeWho) string {
		return must(wf.CreateAccount(ctx, admin, w.assetID, fmt.Sprintf("%s-%d", purpose, who), "a-password"))
	}
	accounts := func(purposes ...string) []string {
		var ids []string
		for _, p := range purposes {
			var row [whoCount]string
			for who := range whoCount {
				row[who] = account(p, who)
				ids = append(ids, row[who])
			}
			w.per[p] = row
		}
		return ids
	}
	approval := accounts("page-request", "api-request", "page-approve", "page-deny", "api-approve", "api-deny")
	free := accounts("page-password", "page-checkin", "api-password", "api-checkin", "view")
	accounts("page-delete-account", "api-delete-account")
	w.policyID = must(wf.SavePolicy(ctx, admin, "", workflow.PolicyInput{Name: "route-approval", AccountIDs: append(approval, w.accountID),
		Requesters: []string{cluster.RoleRequester}, Approvers: []string{cluster.RoleApprover}, ApprovalRequired: true, DurationMinutes: 60}))
	must(wf.SavePolicy(ctx, admin, "", workflow.PolicyInput{Name: "route-free", AccountIDs: free,
		Requesters: []string{cluster.RoleRequester}, DurationMinutes: 60}))
	w.putPolicyID = must(wf.SavePolicy(ctx, admin, "", workflow.PolicyInput{Name: "route-put", AccountIDs: []string{w.accountID},
		Requesters: []string{cluster.RoleRequester}, DurationMinutes: 5}))
	for _, p := range []string{"page-approve", "page-deny", "api-approve", "api-deny"} {
		var row [whoCount]string
		for who := range whoCount {
			row[who] = must(wf.Request(ctx, rita, w.per[p][who], "route table"))
		}
		w.per[p+"-request"] = row
	}
	for _, p := range []string{"page-password", "page-checkin", "api-password", "api-checkin"} {
		var row [whoCount]string
		for who := range whoCount {
			row[who] = must(wf.Request(ctx, admin, w.per[p][who], "route table"))
		}
		w.per[p+"-request"] = row
	}
	w.requestID = must(wf.Request(ctx, admin, w.per["view"][0], "route table"))
	for _, p := range []string{"page-delete-asset", "api-delete-asset"} {
		var row [whoCount]string
		for who := range whoCount {
			row[who] = must(wf.CreateAsset(ctx, admin, workflow.AssetInput{Name: fmt.Sprintf("%s-%d", p, who), Address: "10.1.1.1", Platform: "Linux"}))
		}
		w.per[p] = row
	}
	for _, p := range []string{"page-delete-policy", "api-delete-policy"} {
		var row [whoCount]string
		for who := range whoCount {
			row[who] = must(wf.SavePolicy(ctx, admin, "", workflow.PolicyInput{Name: fmt.Sprintf("%s-%d", p, who), AccountIDs: []string{w.accountID},
				Requesters: []string{cluster.RoleRequester}, DurationMinutes: 5}))
		}
		w.per[p] = row
	}
	return w
}

// importBody is a CSV file of one account on a new asset, as the page
// uploads it.
func importBody(asset string) (body, contentType string) {
	return importBodyOf(fmt.Sprintf("asset,address,platform,username,password\n%s,10.2.2.2,Linux,root,pw-%s\n", asset, asset))
}

// importBodyOf is a CSV file as the page uploads it.
func importBodyOf(csv string) (body, contentType string) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, _ := mw.CreateFormFile("file", "accounts.csv")
	fw.Write([]byte(csv))
	mw.Close()
	return b.String(), mw.FormDataContentType()
}

func workflowRouteCases() []routeCase {
	wfPath := func(format, purpose string) func(*routeFixture, routeWho) secRequest {
		return func(f *routeFixture, who routeWho) secRequest {
			return secRequest{path: fmt.Sprintf(format, f.wf.of(purpose, who))}
		}
	}
	return []routeCase{
		// Pages every role reads.
		{method: "GET", route: "/requests", req: routePath("/requests?search=route"), want: forUsers(http.StatusOK)},
		{method: "GET", route: "/assets", req: routePath("/assets"), want: forUsers(http.StatusOK)},
		{method: "GET", route: "/policies", req: routePath("/policies"), want: forUsers(http.StatusOK)},
		{method: "GET", route: "/requests/{id}", want: forUsers(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest { return secRequest{path: "/requests/" + f.wf.requestID} }},
		// Requesting: a Requester or an administrator (Helpdesk is refused).
		{method: "GET", route: "/requests/new", want: forAdmins(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/requests/new?account=" + f.wf.accountID}
			}},
		{method: "POST", route: "/requests", want: forAdmins(http.StatusSeeOther),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/requests", form: url.Values{"accountId": {f.wf.of("page-request", who)}, "reason": {"route table"}}}
			}},
		{method: "POST", route: "/requests/{id}/password", want: forAdmins(http.StatusOK), req: wfPath("/requests/%s/password", "page-password-request")},
		{method: "POST", route: "/requests/{id}/checkin", want: forAdmins(http.StatusSeeOther), req: wfPath("/requests/%s/checkin", "page-checkin-request")},
		// Deciding: an Approver or an administrator.
		{method: "GET", route: "/approvals", req: routePath("/approvals"), want: forAdmins(http.StatusOK)},
		{method: "POST", route: "/requests/{id}/approve", want: forAdmins(http.StatusSeeOther), req: wfPath("/requests/%s/approve", "page-approve-request")},
		{method: "POST", route: "/requests/{id}/deny", want: forAdmins(http.StatusSeeOther), req: wfPath("/requests/%s/deny", "page-deny-request")},
		// Assets, accounts and policies change by administrators only.
		{method: "POST", route: "/assets", want: forAdmins(http.StatusSeeOther),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/assets", form: url.Values{"name": {f.unique("page-asset", who)}, "address": {"10.3.3.3"}, "platform": {"Linux"}}}
			}},
		{method: "POST", route: "/assets/{id}/delete", want: forAdmins(http.StatusSeeOther), req: wfPath("/assets/%s/delete", "page-delete-asset")},
		{method: "POST", route: "/accounts", want: forAdmins(http.StatusSeeOther),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/accounts", form: url.Values{"asset": {"route-db"}, "username": {f.unique("page-account", who)}, "password": {"pw"}}}
			}},
		{method: "POST", route: "/accounts/{id}/delete", want: forAdmins(http.StatusSeeOther), req: wfPath("/accounts/%s/delete", "page-delete-account")},
		{method: "POST", route: "/import", want: forAdmins(http.StatusSeeOther),
			req: func(f *routeFixture, who routeWho) secRequest {
				body, ct := importBody(f.unique("page-import", who))
				return secRequest{path: "/import", raw: body, contentType: ct}
			}},
		{method: "POST", route: "/policies", want: forAdmins(http.StatusSeeOther),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/policies", form: url.Values{"name": {f.unique("page-policy", who)}, "accounts": {"route-root@route-db"},
					"requesters": {"Requester"}, "durationMinutes": {"30"}}}
			}},
		{method: "POST", route: "/policies/{id}/delete", want: forAdmins(http.StatusSeeOther), req: wfPath("/policies/%s/delete", "page-delete-policy")},

		// The JSON API: reading.
		{method: "GET", route: "/api/v1/assets", req: routePath("/api/v1/assets"), want: forAPIUsers(http.StatusOK)},
		{method: "GET", route: "/api/v1/assets/{id}", want: forAPIUsers(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/assets/" + f.wf.assetID}
			}},
		{method: "GET", route: "/api/v1/accounts", req: routePath("/api/v1/accounts?search=route"), want: forAPIUsers(http.StatusOK)},
		{method: "GET", route: "/api/v1/accounts/{id}", want: forAPIUsers(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/accounts/" + f.wf.accountID}
			}},
		{method: "GET", route: "/api/v1/policies", req: routePath("/api/v1/policies"), want: forAPIUsers(http.StatusOK)},
		{method: "GET", route: "/api/v1/policies/{id}", want: forAPIUsers(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/policies/" + f.wf.policyID}
			}},
		{method: "GET", route: "/api/v1/access-requests", req: routePath("/api/v1/access-requests"), want: forAPIUsers(http.StatusOK)},
		{method: "GET", route: "/api/v1/access-requests/{id}", want: forAPIUsers(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/access-requests/" + f.wf.requestID}
			}},
		// Requests, decisions, check-in and the password.
		{method: "POST", route: "/api/v1/access-requests", want: forAPIAdmins(http.StatusCreated),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/api/v1/access-requests", json: map[string]string{"accountId": f.wf.of("api-request", who), "reason": "route table"}}
			}},
		{method: "POST", route: "/api/v1/access-requests/{id}/approve", want: forAPIAdmins(http.StatusOK), req: wfPath("/api/v1/access-requests/%s/approve", "api-approve-request")},
		{method: "POST", route: "/api/v1/access-requests/{id}/deny", want: forAPIAdmins(http.StatusOK), req: wfPath("/api/v1/access-requests/%s/deny", "api-deny-request")},
		{method: "POST", route: "/api/v1/access-requests/{id}/checkin", want: forAPIAdmins(http.StatusOK), req: wfPath("/api/v1/access-requests/%s/checkin", "api-checkin-request")},
		{method: "GET", route: "/api/v1/access-requests/{id}/password", want: forAPIAdmins(http.StatusOK), audits: true,
			req: wfPath("/api/v1/access-requests/%s/password", "api-password-request")},
		// Changing assets, accounts and policies.
		{method: "POST", route: "/api/v1/assets", want: forAPIAdmins(http.StatusCreated),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/api/v1/assets", json: map[string]string{"name": f.unique("api-asset", who), "address": "10.4.4.4", "platform": "Linux"}}
			}},
		{method: "PATCH", route: "/api/v1/assets/{id}", want: forAPIAdmins(http.StatusOK),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/api/v1/assets/" + f.wf.assetID, json: map[string]string{"platform": "Linux " + who.String()}}
			}},
		{method: "DELETE", route: "/api/v1/assets/{id}", want: forAPIAdmins(http.StatusNoContent), req: wfPath("/api/v1/assets/%s", "api-delete-asset")},
		{method: "POST", route: "/api/v1/accounts", want: forAPIAdmins(http.StatusCreated),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/api/v1/accounts", json: map[string]string{"assetId": f.wf.assetID, "username": f.unique("api-account", who), "password": "pw"}}
			}},
		{method: "PATCH", route: "/api/v1/accounts/{id}", want: forAPIAdmins(http.StatusOK),
			req: func(f *routeFixture, _ routeWho) secRequest {
				return secRequest{path: "/api/v1/accounts/" + f.wf.accountID, json: map[string]string{"password": "a-new-password"}}
			}},
		{method: "DELETE", route: "/api/v1/accounts/{id}", want: forAPIAdmins(http.StatusNoContent), req: wfPath("/api/v1/accounts/%s", "api-delete-account")},
		{method: "POST", route: "/api/v1/import", want: forAPIAdmins(http.StatusOK),
			req: func(f *routeFixture, who routeWho) secRequest {
				name := f.unique("api-import", who)
				return secRequest{path: "/api/v1/import", raw: name + ",10.5.5.5,Linux,root,pw\n", contentType: "text/csv"}
			}},
		{method: "POST", route: "/api/v1/policies", want: forAPIAdmins(http.StatusCreated),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/api/v1/policies", json: map[string]any{"name": f.unique("api-policy", who), "accountIds": []string{f.wf.accountID},
					"requesters": []string{"Requester"}, "durationMinutes": 15}}
			}},
		{method: "PUT", route: "/api/v1/policies/{id}", want: forAPIAdmins(http.StatusOK),
			req: func(f *routeFixture, who routeWho) secRequest {
				return secRequest{path: "/api/v1/policies/" + f.wf.putPolicyID, json: map[string]any{"name": "route-put", "accountIds": []string{f.wf.accountID},
					"requesters": []string{"Requester"}, "approvers": []string{"Approver"}, "approvalRequired": true, "durationMinutes": 60 + int(who)}}
			}},
		{method: "DELETE", route: "/api/v1/policies/{id}", want: forAPIAdmins(http.StatusNoContent), req: wfPath("/api/v1/policies/%s", "api-delete-policy")},
	}
}
