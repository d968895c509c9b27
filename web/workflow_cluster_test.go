package web_test

import (
	"net/http"
	"strings"
	"testing"

	"conclave/internal/testapp"
	"conclave/internal/testnet"
)

type availability struct {
	ApplianceCurrentState      string
	IsPrimary, IsReplica       bool
	IsPasswordRequestAvailable bool
	IsPolicyChangeAvailable    bool
}

func availabilityOf(t *testing.T, app *testapp.App) availability {
	t.Helper()
	var a availability
	if status := app.JSON(t, "", http.MethodGet, "/service/notification/v4/Status/Availability", nil, &a); status != http.StatusOK {
		t.Fatalf("availability of %s: status %d", app.Cfg.Name, status)
	}
	return a
}

type accessRequest struct {
	ID, State, Requester, DecidedBy string
	PasswordChanged                 bool
}

// A three-member cluster: assets, accounts and policies are made on the
// primary and read-only on replicas; a request made on one replica,
// approved on the other, its password released and checked in on
// replicas, all through the primary; the same data on every member; and a
// replica cut off from the others refuses requests with a reason and says
// so on the availability endpoint.
func TestWorkflowAcrossTheCluster(t *testing.T) {
	net := testnet.New()
	alpha := testapp.Start(t, named("alpha"), testapp.WithNetwork(net, "alpha"))
	beta := testapp.Start(t, named("beta"), testapp.WithNetwork(net, "beta"))
	gamma := testapp.Start(t, named("gamma"), testapp.WithNetwork(net, "gamma"))
	addReplica(t, alpha, beta)
	addReplica(t, alpha, gamma)
	alpha.CreateUser(t, "rita", secPassword, "Requester")
	alpha.CreateUser(t, "abel", secPassword, "Approver")
	admin := alpha.AdminToken(t)

	// Configuration on the primary.
	var asset struct{ ID string }
	if status := alpha.JSON(t, admin, http.MethodPost, "/api/v1/assets", map[string]string{"name": "db-1", "address": "10.0.0.1", "platform": "Linux"}, &asset); status != http.StatusCreated {
		t.Fatalf("create asset: status %d", status)
	}
	var account struct{ ID string }
	if status := alpha.JSON(t, admin, http.MethodPost, "/api/v1/accounts", map[string]string{"assetId": asset.ID, "username": "root", "password": "s3cret-root"}, &account); status != http.StatusCreated {
		t.Fatalf("create account: status %d", status)
	}
	if status := alpha.JSON(t, admin, http.MethodPost, "/api/v1/policies", map[string]any{"name": "Databases", "accountIds": []string{account.ID},
		"requesters": []string{"rita"}, "approvers": []string{"abel"}, "approvalRequired": true, "durationMinutes": 60, "changeAfterCheckin": true}, nil); status != http.StatusCreated {
		t.Fatalf("create policy: status %d", status)
	}
	// Replicas show configuration read-only.
	var refusal struct{ Error string }
	if status := beta.JSON(t, beta.AdminToken(t), http.MethodPost, "/api/v1/assets", map[string]string{"name": "db-2", "address": "10.0.0.2", "platform": "Linux"}, &refusal); status != http.StatusConflict || !strings.Contains(refusal.Error, "replica") {
		t.Fatalf("create asset on a replica: status %d, %q; want 409 saying it is a replica", status, refusal.Error)
	}
	browser := beta.Client()
	beta.Login(t, browser, "admin", testapp.AdminPassword)
	resp, page := secSend(t, beta, browser, secRequest{method: "GET", path: "/assets"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="read-only-note"`) || strings.Contains(page, `id="add-asset"`) || !strings.Contains(page, "root@db-1") {
		t.Errorf("Assets & accounts on a replica: status %d; want the accounts, read-only, without forms:\n%s", resp.StatusCode, secShort(page))
	}
	if a := availabilityOf(t, alpha); !a.IsPasswordRequestAvailable || !a.IsPolicyChangeAvailable || a.ApplianceCurrentState != "Online" {
		t.Errorf("availability of the primary: %+v", a)
	}
	if a := availabilityOf(t, beta); !a.IsPasswordRequestAvailable || a.IsPolicyChangeAvailable || a.ApplianceCurrentState != "ReplicaWithQuorum" {
		t.Errorf("availability of a replica with quorum: %+v", a)
	}

	// The request on beta, the approval on gamma: both forwarded.
	rita := beta.Token(t, "rita", secPassword)
	var req accessRequest
	if status := beta.JSON(t, rita, http.MethodPost, "/api/v1/access-requests", map[string]string{"accountId": account.ID, "reason": "INC-42"}, &req); status != http.StatusCreated || req.State != "Pending" {
		t.Fatalf("request on a replica: status %d, %+v", status, req)
	}
	abel := gamma.Token(t, "abel", secPassword)
	if status := gamma.JSON(t, abel, http.MethodPost, "/api/v1/access-requests/"+req.ID+"/approve", nil, &req); status != http.StatusOK || req.State != "Available" || req.DecidedBy != "abel" {
		t.Fatalf("approve on the other replica: status %d, %+v", status, req)
	}
	var pw struct{ Password string }
	if status := beta.JSON(t, rita, http.MethodGet, "/api/v1/access-requests/"+req.ID+"/password", nil, &pw); status != http.StatusOK || pw.Password != "s3cret-root" {
		t.Fatalf("password on a replica: status %d, %q", status, pw.Password)
	}
	if status := gamma.JSON(t, gamma.Token(t, "rita", secPassword), http.MethodPost, "/api/v1/access-requests/"+req.ID+"/checkin", nil, &req); status != http.StatusOK || req.State != "CheckedIn" || !req.PasswordChanged {
		t.Fatalf("check in on a replica: status %d, %+v", status, req)
	}
	waitSameData(t, alpha, beta)
	waitSameData(t, alpha, gamma)

	// Beta loses the others: no requests there, with the reason.
	net.Partition("beta", "alpha")
	net.Partition("beta", "gamma")
	waitState(t, beta, "ReplicaNoQuorum")
	if a := availabilityOf(t, beta); a.IsPasswordRequestAvailable || a.IsPolicyChangeAvailable {
		t.Errorf("availability of a replica without quorum: %+v", a)
	}
	if status := beta.JSON(t, rita, http.MethodPost, "/api/v1/access-requests", map[string]string{"accountId": account.ID, "reason": "INC-43"}, &refusal); status != http.StatusServiceUnavailable || !strings.Contains(refusal.Error, "no contact with a majority") {
		t.Fatalf("request without quorum: status %d, %q; want 503 with the reason", status, refusal.Error)
	}
	// The rest of the cluster goes on.
	if a := availabilityOf(t, alpha); !a.IsPasswordRequestAvailable {
		t.Errorf("availability of the primary while a replica is cut off: %+v", a)
	}
	net.Heal("beta", "alpha")
	net.Heal("beta", "gamma")
	waitState(t, beta, "ReplicaWithQuorum")
	if status := beta.JSON(t, rita, http.MethodPost, "/api/v1/access-requests", map[string]string{"accountId": account.ID, "reason": "INC-44"}, &req); status != http.StatusCreated {
		t.Fatalf("request once healed: status %d", status)
	}
}
