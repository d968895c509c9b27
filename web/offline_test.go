package web_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/internal/testnet"
	"conclave/web"
)

type auditEvent struct {
	ID, Type, MemberID, Actor, OperationID string
	At                                     time.Time
	Details                                map[string]string
}

func allEvents(t *testing.T, app *testapp.App, token string) []auditEvent {
	t.Helper()
	var evs []auditEvent
	if status := app.JSON(t, token, http.MethodGet, "/api/v1/events?limit=1000", nil, &evs); status != http.StatusOK {
		t.Fatalf("events of %s: status %d", app.Cfg.Name, status)
	}
	return evs
}

// offlineCluster is three members, gamma to be cut off, with a requester,
// an approver and two accounts: one under a policy without approval whose
// password changes after check-in, one that needs abel's approval.
type offlineCluster struct {
	net                       *testnet.Network
	alpha, beta, gamma        *testapp.App
	quickAccount, slowAccount string
}

func startOfflineCluster(t *testing.T, opts ...testapp.Option) offlineCluster {
	t.Helper()
	c := offlineCluster{net: testnet.New()}
	with := func(name string) []testapp.Option {
		return append([]testapp.Option{named(name), testapp.WithNetwork(c.net, name)}, opts...)
	}
	c.alpha = testapp.Start(t, with("alpha")...)
	c.beta = testapp.Start(t, with("beta")...)
	c.gamma = testapp.Start(t, with("gamma")...)
	addReplica(t, c.alpha, c.beta)
	addReplica(t, c.alpha, c.gamma)
	c.alpha.CreateUser(t, "rita", secPassword, "Requester")
	c.alpha.CreateUser(t, "abel", secPassword, "Approver")
	admin := c.alpha.AdminToken(t)
	var asset struct{ ID string }
	if status := c.alpha.JSON(t, admin, http.MethodPost, "/api/v1/assets", map[string]string{"name": "db-1", "address": "10.0.0.1", "platform": "Linux"}, &asset); status != http.StatusCreated {
		t.Fatalf("create asset: status %d", status)
	}
	for _, a := range []struct {
		user     string
		into     *string
		approval bool
	}{{"root", &c.quickAccount, false}, {"oracle", &c.slowAccount, true}} {
		var account struct{ ID string }
		if status := c.alpha.JSON(t, admin, http.MethodPost, "/api/v1/accounts", map[string]string{"assetId": asset.ID, "username": a.user, "password": "pw-of-" + a.user}, &account); status != http.StatusCreated {
			t.Fatalf("create account: status %d", status)
		}
		*a.into = account.ID
		if status := c.alpha.JSON(t, admin, http.MethodPost, "/api/v1/policies", map[string]any{"name": "policy " + a.user, "accountIds": []string{account.ID},
			"requesters": []string{"rita"}, "approvers": []string{"abel"}, "approvalRequired": a.approval, "durationMinutes": 60, "changeAfterCheckin": true}, nil); status != http.StatusCreated {
			t.Fatalf("create policy: status %d", status)
		}
	}
	waitSameData(t, c.alpha, c.gamma)
	return c
}

func (c offlineCluster) cutGamma(t *testing.T) {
	t.Helper()
	c.net.Partition("gamma", "alpha")
	c.net.Partition("gamma", "beta")
	waitState(t, c.gamma, "ReplicaNoQuorum")
}

func (c offlineCluster) healGamma() {
	c.net.Heal("gamma", "alpha")
	c.net.Heal("gamma", "beta")
}

type apiRefusal struct{ Error, Field string }

// Offline Workflow end to end: gamma is cut off, isolated, serves a
// request (released and checked in, the password change bypassed) and
// leaves another in flight (approved there by abel, checked out); once healed and resumed, the offline events are
// in every member's audit log exactly once, the request in flight is
// dropped, and gamma is a replica with the same data as the others.
func TestOfflineWorkflowIsolateAndResume(t *testing.T) {
	c := startOfflineCluster(t)
	alpha, beta, gamma := c.alpha, c.beta, c.gamma
	// Tokens are writes: get them while there is consensus.
	gAdmin := gamma.AdminToken(t)
	rita := gamma.Token(t, "rita", secPassword)
	abel := gamma.Token(t, "abel", secPassword)
	aAdmin := alpha.AdminToken(t)

	var refusal apiRefusal
	if status := alpha.JSON(t, aAdmin, http.MethodPost, "/api/v1/cluster/isolate", map[string]string{"confirm": "Enable Offline Workflow"}, &refusal); status != http.StatusConflict ||
		!strings.Contains(refusal.Error, "has consensus") {
		t.Fatalf("isolate a member with consensus: status %d, %+v; want 409 saying it has consensus", status, refusal)
	}

	c.cutGamma(t)
	if status := gamma.JSON(t, gAdmin, http.MethodPost, "/api/v1/cluster/isolate", map[string]string{"confirm": "enable offline workflow"}, &refusal); status != http.StatusUnprocessableEntity || refusal.Field != "confirm" {
		t.Fatalf("isolate with a wrong phrase: status %d, %+v; want 422 on confirm", status, refusal)
	}
	var started struct{ OperationID string }
	if status := gamma.JSON(t, gAdmin, http.MethodPost, "/api/v1/cluster/isolate", map[string]string{"confirm": "Enable Offline Workflow"}, &started); status != http.StatusAccepted {
		t.Fatalf("isolate gamma: status %d", status)
	}
	if op := waitOperation(t, gamma, gAdmin, started.OperationID); op.State != "Succeeded" || op.Kind != "Isolate" {
		t.Fatalf("isolate: %+v", op)
	}
	waitState(t, gamma, "Isolated")
	var avail struct {
		ApplianceCurrentState                                                      string
		IsIsolated, IsPasswordRequestAvailable, IsPolicyChangeAvailable, IsReplica bool
	}
	gamma.JSON(t, "", http.MethodGet, "/service/notification/v4/Status/Availability", nil, &avail)
	if avail.ApplianceCurrentState != "Isolated" || !avail.IsIsolated || !avail.IsPasswordRequestAvailable || avail.IsPolicyChangeAvailable {
		t.Fatalf("availability of an isolated member: %+v", avail)
	}
	// It serves: ready for a load balancer.
	if status := gamma.JSON(t, "", http.MethodGet, "/readyz", nil, nil); status != http.StatusOK {
		t.Errorf("/readyz of an isolated member: status %d; want 200", status)
	}
	// Policy and configuration are read-only.
	if status := gamma.JSON(t, gAdmin, http.MethodPost, "/api/v1/assets", map[string]string{"name": "db-2", "address": "10.0.0.2", "platform": "Linux"}, &refusal); status < 400 ||
		!strings.Contains(refusal.Error, "Offline Workflow") {
		t.Fatalf("create an asset offline: status %d, %+v; want a refusal naming Offline Workflow", status, refusal)
	}

	// A request without approval: released, checked in, password change bypassed.
	var done accessRequest
	if status := gamma.JSON(t, rita, http.MethodPost, "/api/v1/access-requests", map[string]string{"accountId": c.quickAccount, "reason": "INC-1 offline"}, &done); status != http.StatusCreated || done.State != "Available" {
		t.Fatalf("request offline: status %d, %+v", status, done)
	}
	var pw struct{ Password string }
	if status := gamma.JSON(t, rita, http.MethodGet, "/api/v1/access-requests/"+done.ID+"/password", nil, &pw); status != http.StatusOK || pw.Password != "pw-of-root" {
		t.Fatalf("password offline: status %d, %q", status, pw.Password)
	}
	if status := gamma.JSON(t, rita, http.MethodPost, "/api/v1/access-requests/"+done.ID+"/checkin", nil, &done); status != http.StatusOK || done.State != "CheckedIn" || done.PasswordChanged {
		t.Fatalf("check in offline: status %d, %+v; want CheckedIn without a password change", status, done)
	}
	if evs := eventsOfType(t, gamma, gAdmin, "AccessRequestPasswordResetByPassed"); len(evs) != 1 || evs[0].Details["requestId"] != done.ID {
		t.Fatalf("AccessRequestPasswordResetByPassed on gamma: %+v", evs)
	}
	// A second request waits for approval.
	var inFlight accessRequest
	if status := gamma.JSON(t, rita, http.MethodPost, "/api/v1/access-requests", map[string]string{"accountId": c.slowAccount, "reason": "INC-2 offline"}, &inFlight); status != http.StatusCreated || inFlight.State != "Pending" {
		t.Fatalf("second request offline: status %d, %+v", status, inFlight)
	}
	// abel approves it on gamma: checked out, and still so at Resume Online.
	if status := gamma.JSON(t, abel, http.MethodPost, "/api/v1/access-requests/"+inFlight.ID+"/approve", nil, &inFlight); status != http.StatusOK || inFlight.State != "Available" {
		t.Fatalf("approve offline: status %d, %+v", status, inFlight)
	}

	// Resume Online while the majority is still cut off: refused, naming it.
	if status := gamma.JSON(t, gAdmin, http.MethodPost, "/api/v1/cluster/reintegrate", map[string]string{"confirm": "Resume Online"}, &refusal); status != http.StatusConflict ||
		!strings.Contains(refusal.Error, "alpha, beta do not answer") {
		t.Fatalf("resume without a majority: status %d, %+v", status, refusal)
	}

	c.healGamma()
	// Healed but still isolated: no member may be added or removed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		status := alpha.JSON(t, aAdmin, http.MethodDelete, "/api/v1/cluster/members/"+beta.Node.ID(), map[string]string{"confirm": "Unjoin"}, &refusal)
		if status == http.StatusConflict && strings.Contains(refusal.Error, "gamma is in Offline Workflow") {
			break
		}
		if status == http.StatusAccepted || status != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("unjoin while gamma is isolated: status %d, %+v; members seen by alpha: %s", status, refusal, rawMembers(t, alpha, aAdmin))
		}
		time.Sleep(100 * time.Millisecond)
	}
	delta := testapp.Start(t, named("delta"), testapp.WithNetwork(c.net, "delta"))
	if status := alpha.JSON(t, aAdmin, http.MethodPost, "/api/v1/cluster/members", map[string]string{
		"address": delta.Addr(), "authenticationToken": delta.AdminToken(t), "confirm": "Add Replica"}, &refusal); status == http.StatusAccepted ||
		!strings.Contains(refusal.Error, "gamma is in Offline Workflow") {
		t.Fatalf("add replica while gamma is isolated: status %d, %+v", status, refusal)
	}

	if status := gamma.JSON(t, gAdmin, http.MethodPost, "/api/v1/cluster/reintegrate", map[string]string{"confirm": "Resume Online"}, &started); status != http.StatusAccepted {
		t.Fatalf("resume: status %d", status)
	}
	if op := waitOperation(t, gamma, gAdmin, started.OperationID); op.State != "Succeeded" {
		t.Fatalf("resume: %+v", op)
	}
	waitState(t, gamma, "ReplicaWithQuorum")
	if status := gamma.JSON(t, gAdmin, http.MethodPost, "/api/v1/cluster/reintegrate", map[string]string{"confirm": "Resume Online"}, &refusal); status != http.StatusConflict {
		t.Fatalf("resume again: status %d; want 409", status)
	}

	// Every member's audit log has the offline period once, with gamma as
	// the member that recorded it.
	once := []string{"ClusterIsolateStarted", "ClusterIsolateCompleted", "AccessRequestPasswordResetByPassed", "AccessRequestPasswordReleased", "AccessRequestApproved",
		"ClusterReintegrateStarted", "ClusterReintegrateCompleted", "AccessRequestDropped"}
	for _, app := range []*testapp.App{alpha, beta, gamma} {
		tok := app.AdminToken(t)
		deadline := time.Now().Add(30 * time.Second)
		for {
			counts := map[string]int{}
			var created []auditEvent
			var problem string
			for _, e := range allEvents(t, app, tok) {
				counts[e.Type]++
				if e.Type == "AccessRequestCreated" && e.Details["offline"] == "true" {
					created = append(created, e)
				}
				if e.Type == "AccessRequestDropped" && (e.Details["requestId"] != inFlight.ID || e.Details["requester"] != "rita") {
					problem = "dropped the wrong request: " + e.Details["requestId"]
				}
				if e.Details["offline"] == "true" && e.MemberID != gamma.Node.ID() {
					problem = e.Type + " merged with member " + e.MemberID
				}
			}
			for _, typ := range once {
				if counts[typ] != 1 {
					problem += " " + typ + "×" + strconv.Itoa(counts[typ])
				}
			}
			if len(created) != 2 {
				problem += " offline AccessRequestCreated×" + strconv.Itoa(len(created))
			}
			if problem == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("events on %s: %s", app.Cfg.Name, problem)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitSameData(t, alpha, gamma)
	waitSameData(t, alpha, beta)
	// The cluster never had the offline requests, and works on gamma again.
	var gone apiRefusal
	if status := alpha.JSON(t, aAdmin, http.MethodGet, "/api/v1/access-requests/"+inFlight.ID, nil, &gone); status != http.StatusNotFound {
		t.Fatalf("the dropped request on alpha: status %d", status)
	}
	if status := gamma.JSON(t, rita, http.MethodPost, "/api/v1/access-requests", map[string]string{"accountId": c.quickAccount, "reason": "INC-3 online"}, &done); status != http.StatusCreated {
		t.Fatalf("request on gamma once resumed: status %d", status)
	}
	// The requester is told, on any member.
	browser := beta.Client()
	beta.Login(t, browser, "rita", secPassword)
	if resp, page := secSend(t, beta, browser, secRequest{method: "GET", path: "/requests"}); resp.StatusCode != http.StatusOK ||
		!strings.Contains(page, `id="dropped-requests"`) || !strings.Contains(page, "oracle@db-1") {
		t.Errorf("rita's requests on beta do not tell her of the dropped request:\n%s", secShort(page))
	}
}

// waitServingOffline waits until app takes access requests in Offline
// Workflow: it says Isolated from the moment it starts isolating, and
// serves once raft has stopped and the base copy is taken.
func waitServingOffline(t *testing.T, app *testapp.App) {
	t.Helper()
	waitState(t, app, "Isolated")
	deadline := time.Now().Add(30 * time.Second)
	for !app.Node.Isolated() {
		if time.Now().After(deadline) {
			t.Fatalf("%s does not serve in Offline Workflow after 30 s", app.Cfg.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// withOfflineThreshold sets the developer threshold of the automatic modes.
func withOfflineThreshold(d time.Duration) testapp.Option {
	return func(c *web.Config) { c.OfflineThreshold = d }
}

func rawMembers(t *testing.T, app *testapp.App, token string) string {
	var raw []map[string]any
	app.JSON(t, token, http.MethodGet, "/api/v1/cluster/members", nil, &raw)
	return fmt.Sprint(raw)
}

// The automatic modes, with the developer threshold of a second: enabled
// in the settings, a member cut off enables Offline Workflow by itself, and
// resumes by itself once the majority answers again; a threshold below the
// minimum is refused, naming the field.
func TestOfflineWorkflowAutomatic(t *testing.T) {
	c := startOfflineCluster(t, withOfflineThreshold(time.Second))
	alpha, gamma := c.alpha, c.gamma
	browser := alpha.Client()
	alpha.Login(t, browser, "admin", testapp.AdminPassword)
	form := url.Values{"clusterName": {"Conclave"}, "oidcRolesClaim": {"groups"}, "linkOkBelowMs": {"10"}, "linkWarningBelowMs": {"50"},
		"offlineFields": {"1"}, "offlineAutoIsolate": {"on"}, "offlineAutoResume": {"on"},
		"offlineIsolateAfterMinutes": {"4"}, "offlineResumeAfterMinutes": {"5"}}
	resp, page := secSend(t, alpha, browser, secRequest{method: "POST", path: "/settings", form: form})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, `id="offlineIsolateAfterMinutes-error"`) {
		t.Fatalf("a threshold of 4 minutes: status %d; want 422 on offlineIsolateAfterMinutes:\n%s", resp.StatusCode, secShort(page))
	}
	form.Set("offlineIsolateAfterMinutes", "5")
	if resp, page := secSend(t, alpha, browser, secRequest{method: "POST", path: "/settings", form: form}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save the automatic modes: status %d\n%s", resp.StatusCode, secShort(page))
	}
	waitSameData(t, alpha, gamma)
	rita := gamma.Token(t, "rita", secPassword)

	c.cutGamma(t)
	waitServingOffline(t, gamma)
	var raw json.RawMessage
	if status := gamma.JSON(t, rita, http.MethodPost, "/api/v1/access-requests", map[string]string{"accountId": c.quickAccount, "reason": "INC-9 offline"}, &raw); status != http.StatusCreated {
		t.Fatalf("request offline: status %d: %s", status, raw)
	}
	var req accessRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		t.Fatal(err)
	}
	c.healGamma()
	waitState(t, gamma, "ReplicaWithQuorum")
	admin := alpha.AdminToken(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		isolated := eventsOfType(t, alpha, admin, "ClusterIsolateCompleted")
		resumed := eventsOfType(t, alpha, admin, "ClusterReintegrateCompleted")
		dropped := eventsOfType(t, alpha, admin, "AccessRequestDropped")
		if len(isolated) == 1 && len(resumed) == 1 && len(dropped) == 1 {
			if !strings.HasPrefix(isolated[0].Details["reason"], "automatic") || dropped[0].Details["requestId"] != req.ID {
				t.Fatalf("automatic isolation %+v, dropped %+v", isolated[0], dropped[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the automatic modes: %d ClusterIsolateCompleted, %d ClusterReintegrateCompleted, %d AccessRequestDropped; want 1 each",
				len(isolated), len(resumed), len(dropped))
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitSameData(t, alpha, gamma)
}

// An isolated member that restarts is still isolated, with its offline
// requests, and resumes after the restart without losing them.
func TestOfflineWorkflowSurvivesRestart(t *testing.T) {
	c := startOfflineCluster(t)
	gAdmin := c.gamma.AdminToken(t)
	rita := c.gamma.Token(t, "rita", secPassword)
	c.cutGamma(t)
	var started struct{ OperationID string }
	if status := c.gamma.JSON(t, gAdmin, http.MethodPost, "/api/v1/cluster/isolate", map[string]string{"confirm": "Enable Offline Workflow"}, &started); status != http.StatusAccepted {
		t.Fatalf("isolate: status %d", status)
	}
	var req accessRequest
	if status := c.gamma.JSON(t, rita, http.MethodPost, "/api/v1/access-requests", map[string]string{"accountId": c.quickAccount, "reason": "INC-7 offline"}, &req); status != http.StatusCreated {
		t.Fatalf("request offline: status %d", status)
	}
	gamma := c.gamma.Restart(t)
	waitState(t, gamma, "Isolated")
	var again accessRequest
	if status := gamma.JSON(t, rita, http.MethodGet, "/api/v1/access-requests/"+req.ID, nil, &again); status != http.StatusOK || again.State != "Available" {
		t.Fatalf("the offline request after a restart: status %d, %+v", status, again)
	}
	c.healGamma()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status := gamma.JSON(t, gAdmin, http.MethodPost, "/api/v1/cluster/reintegrate", map[string]string{"confirm": "Resume Online"}, &started)
		if status == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resume after a restart: status %d", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if op := waitOperation(t, gamma, gAdmin, started.OperationID); op.State != "Succeeded" {
		t.Fatalf("resume: %+v", op)
	}
	admin := c.alpha.AdminToken(t)
	deadline = time.Now().Add(30 * time.Second)
	for {
		created := 0
		for _, e := range eventsOfType(t, c.alpha, admin, "AccessRequestCreated") {
			if e.Details["requestId"] == req.ID {
				created++
			}
		}
		if created == 1 && len(eventsOfType(t, c.alpha, admin, "AccessRequestDropped")) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the offline request on alpha after resume: created %d times", created)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitSameData(t, c.alpha, gamma)
}

// Resume Online is idempotent: some offline events reached the cluster
// before the member crashed (a merge cut short), and the member stops in
// the middle of Resume Online; once it has resumed, every offline event is
// in the cluster's audit log exactly once.
func TestOfflineWorkflowMergeOnceAfterCrash(t *testing.T) {
	c := startOfflineCluster(t)
	gAdmin := c.gamma.AdminToken(t)
	rita := c.gamma.Token(t, "rita", secPassword)
	c.cutGamma(t)
	var started struct{ OperationID string }
	if status := c.gamma.JSON(t, gAdmin, http.MethodPost, "/api/v1/cluster/isolate", map[string]string{"confirm": "Enable Offline Workflow"}, &started); status != http.StatusAccepted {
		t.Fatalf("isolate: status %d", status)
	}
	var req accessRequest
	if status := c.gamma.JSON(t, rita, http.MethodPost, "/api/v1/access-requests", map[string]string{"accountId": c.quickAccount, "reason": "INC-5 offline"}, &req); status != http.StatusCreated {
		t.Fatalf("request offline: status %d", status)
	}
	if status := c.gamma.JSON(t, rita, http.MethodPost, "/api/v1/access-requests/"+req.ID+"/checkin", nil, &req); status != http.StatusOK {
		t.Fatalf("check in offline: status %d", status)
	}
	spool, err := c.gamma.Store.UnmergedOfflineEvents(t.Context())
	if err != nil || len(spool) < 4 {
		t.Fatalf("offline spool: %d events, %v", len(spool), err)
	}
	c.healGamma()
	// A merge cut short: the first events reached the cluster, the spool
	// does not know.
	for _, e := range spool[:2] {
		e.Details["offline"] = "true"
		cmd := cluster.Command{Type: cluster.CmdRecordEvent, ID: e.ID, At: e.At, Actor: e.Actor, Member: e.MemberID,
			Event: &cluster.EventSpec{Type: e.Type, OperationID: e.OperationID, Details: e.Details}}
		if err := c.alpha.Node.Propose(t.Context(), cmd); err != nil {
			t.Fatalf("propose %s: %v", e.Type, err)
		}
	}
	resume := func(app *testapp.App) int {
		return app.JSON(t, gAdmin, http.MethodPost, "/api/v1/cluster/reintegrate", map[string]string{"confirm": "Resume Online"}, nil)
	}
	deadline := time.Now().Add(30 * time.Second)
	for resume(c.gamma) != http.StatusAccepted {
		if time.Now().After(deadline) {
			t.Fatal("Resume Online was not accepted once healed")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Stopped in the middle; after the restart it finishes by itself, or
	// an administrator asks again.
	gamma := c.gamma.Restart(t)
	deadline = time.Now().Add(time.Minute)
	for gamma.Node.SelfState() != "ReplicaWithQuorum" {
		if gamma.Node.Isolated() {
			resume(gamma)
		}
		if time.Now().After(deadline) {
			t.Fatalf("gamma is %s a minute after the restart", gamma.Node.SelfState())
		}
		time.Sleep(200 * time.Millisecond)
	}
	admin := c.alpha.AdminToken(t)
	deadline = time.Now().Add(30 * time.Second)
	for {
		seen := map[string]int{}
		for _, e := range allEvents(t, c.alpha, admin) {
			seen[e.ID]++
		}
		problem := ""
		for _, e := range spool {
			if seen[e.ID] != 1 {
				problem += fmt.Sprintf(" %s %s×%d", e.Type, e.ID, seen[e.ID])
			}
		}
		if problem == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offline events on alpha after resume:%s", problem)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitSameData(t, c.alpha, gamma)
}
