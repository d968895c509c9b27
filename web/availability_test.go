package web_test

import (
	"net/http"
	"testing"
	"time"

	"conclave/internal/testapp"
)

// availabilityAnswer is every field of the availability endpoint.
type availabilityAnswer struct {
	ApplianceId                string
	ApplianceName              string
	ApplianceCurrentState      string
	IsPrimary                  bool
	IsReplica                  bool
	IsIsolated                 bool
	IsMaintenance              bool
	IsReadOnly                 bool
	IsPasswordRequestAvailable bool
	IsSshKeyRequestAvailable   bool
	IsSessionRequestAvailable  bool
	IsPolicyChangeAvailable    bool
	LastSuccessfulDataSync     *time.Time
}

// wantAvailability is what the endpoint must answer in a state (README,
// "The availability endpoint"); the data sync is checked apart.
type wantAvailability struct {
	primary, replica, maintenance, readOnly, requests, policy bool
}

var availabilityByState = map[string]wantAvailability{
	"Online":             {primary: true, requests: true, policy: true},
	"ReplicaWithQuorum":  {replica: true, readOnly: true, requests: true},
	"ReplicaNoQuorum":    {replica: true, readOnly: true},
	"PrimaryNoQuorum":    {readOnly: true},
	"Maintenance":        {maintenance: true, readOnly: true},
	"StandaloneReadOnly": {readOnly: true},
}

// checkAvailability asks app for its availability, checks every field
// for state, and returns the answer.
func checkAvailability(t *testing.T, app *testapp.App, state string) availabilityAnswer {
	t.Helper()
	var a availabilityAnswer
	if status := app.JSON(t, "", http.MethodGet, "/service/notification/v4/Status/Availability", nil, &a); status != http.StatusOK {
		t.Fatalf("availability of %s: status %d", app.Cfg.Name, status)
	}
	w := availabilityByState[state]
	got := wantAvailability{primary: a.IsPrimary, replica: a.IsReplica, maintenance: a.IsMaintenance, readOnly: a.IsReadOnly,
		requests: a.IsPasswordRequestAvailable, policy: a.IsPolicyChangeAvailable}
	switch {
	case a.ApplianceCurrentState != state:
		t.Errorf("%s: ApplianceCurrentState %q, want %q", app.Cfg.Name, a.ApplianceCurrentState, state)
	case a.ApplianceId != app.Node.ID() || a.ApplianceName != app.Cfg.Name:
		t.Errorf("%s in %s: ApplianceId %q, ApplianceName %q; want %q, %q", app.Cfg.Name, state, a.ApplianceId, a.ApplianceName, app.Node.ID(), app.Cfg.Name)
	case got != w || a.IsIsolated || a.IsSshKeyRequestAvailable || a.IsSessionRequestAvailable:
		t.Errorf("%s in %s: %+v; want %+v and no Isolated, SSH key or session requests", app.Cfg.Name, state, a, w)
	}
	return a
}

// syncWithin checks that the last successful data sync is known and lies
// between from and to.
func syncWithin(t *testing.T, app *testapp.App, a availabilityAnswer, from, to time.Time) {
	t.Helper()
	if a.LastSuccessfulDataSync == nil || a.LastSuccessfulDataSync.Before(from.Add(-time.Millisecond)) || a.LastSuccessfulDataSync.After(to.Add(time.Millisecond)) {
		t.Errorf("%s in %s: LastSuccessfulDataSync %v, want between %s and %s", app.Cfg.Name, a.ApplianceCurrentState, a.LastSuccessfulDataSync,
			from.Format(time.StampMilli), to.Format(time.StampMilli))
	}
}

// TestAvailabilityPerState checks every field of the availability
// endpoint in each state a member can be in today: Online, Maintenance (a
// replica being added: its snapshot transfer cut half-way, so that it
// stays there), ReplicaWithQuorum, PrimaryNoQuorum and ReplicaNoQuorum (a
// cluster of two split in halves), StandaloneReadOnly (after Unjoin).
func TestAvailabilityPerState(t *testing.T) {
	n, alpha, beta := faultPair(t)
	tok := alpha.AdminToken(t)
	betaTok := beta.AdminToken(t)

	before := time.Now()
	a := checkAvailability(t, alpha, "Online")
	syncWithin(t, alpha, a, before, time.Now()) // the primary is its own data

	// Maintenance: while the snapshot is copied, and after the copy
	// failed (beta waits there until it is added again).
	n.Delay("alpha", "beta", linkDelay)
	id := startAddReplica(t, alpha, tok, beta.Addr(), betaTok)
	waitRunning(t, alpha, tok, id, "Snapshot transfer")
	if a := checkAvailability(t, beta, "Maintenance"); a.LastSuccessfulDataSync != nil {
		t.Errorf("beta in Maintenance: LastSuccessfulDataSync %v; want none (its data is being replaced)", a.LastSuccessfulDataSync)
	}
	n.Partition("alpha", "beta")
	failedAt(t, waitOperation(t, alpha, tok, id), "Snapshot transfer", "is cut")
	n.Heal("alpha", "beta")
	n.Delay("alpha", "beta", 0)
	if a := checkAvailability(t, beta, "Maintenance"); a.LastSuccessfulDataSync != nil {
		t.Errorf("beta in Maintenance after the failed transfer: LastSuccessfulDataSync %v; want none", a.LastSuccessfulDataSync)
	}
	addAgain(t, alpha, tok, beta, betaTok)

	// A replica in contact syncs all the time.
	before = time.Now()
	waitState(t, beta, "ReplicaWithQuorum")
	time.Sleep(600 * time.Millisecond) // a heartbeat (500 ms) at least
	a = checkAvailability(t, beta, "ReplicaWithQuorum")
	syncWithin(t, beta, a, before, time.Now())
	checkAvailability(t, alpha, "Online")

	// Split in halves: neither has quorum; each says when it last had.
	cut := time.Now()
	n.Partition("alpha", "beta")
	waitState(t, alpha, "PrimaryNoQuorum")
	waitState(t, beta, "ReplicaNoQuorum")
	a = checkAvailability(t, alpha, "PrimaryNoQuorum")
	syncWithin(t, alpha, a, cut.Add(-2*time.Second), time.Now())
	b := checkAvailability(t, beta, "ReplicaNoQuorum")
	syncWithin(t, beta, b, cut.Add(-2*time.Second), cut)
	// … and it does not move on while they are apart.
	time.Sleep(300 * time.Millisecond)
	if again := checkAvailability(t, beta, "ReplicaNoQuorum"); !again.LastSuccessfulDataSync.Equal(*b.LastSuccessfulDataSync) {
		t.Errorf("beta without quorum: LastSuccessfulDataSync moved from %v to %v", b.LastSuccessfulDataSync, again.LastSuccessfulDataSync)
	}
	if again := checkAvailability(t, alpha, "PrimaryNoQuorum"); a.LastSuccessfulDataSync != nil && !again.LastSuccessfulDataSync.Equal(*a.LastSuccessfulDataSync) {
		t.Errorf("alpha without quorum: LastSuccessfulDataSync moved from %v to %v", a.LastSuccessfulDataSync, again.LastSuccessfulDataSync)
	}
	n.Heal("alpha", "beta")
	primary := waitNewPrimary(t, alpha, beta)
	replica := beta
	if primary == beta {
		replica = alpha
	}
	waitState(t, primary, "Online")
	waitState(t, replica, "ReplicaWithQuorum")

	// Unjoin the replica: it keeps its data, read-only, and its last sync
	// is when it left.
	ptok := primary.AdminToken(t)
	var out struct{ OperationID string }
	if status := primary.JSON(t, ptok, http.MethodDelete, "/api/v1/cluster/members/"+replica.Node.ID(), map[string]string{"confirm": "Unjoin"}, &out); status != http.StatusAccepted {
		t.Fatalf("unjoin: status %d", status)
	}
	left := time.Now()
	if op := waitOperation(t, primary, ptok, out.OperationID); op.State != "Succeeded" {
		t.Fatalf("unjoin: %s %s %+v", op.State, op.Error, op.Steps)
	}
	waitState(t, replica, "StandaloneReadOnly")
	a = checkAvailability(t, replica, "StandaloneReadOnly")
	syncWithin(t, replica, a, left.Add(-2*time.Second), time.Now())
	time.Sleep(300 * time.Millisecond)
	if again := checkAvailability(t, replica, "StandaloneReadOnly"); a.LastSuccessfulDataSync != nil && !again.LastSuccessfulDataSync.Equal(*a.LastSuccessfulDataSync) {
		t.Errorf("%s read-only on its own: LastSuccessfulDataSync moved from %v to %v", replica.Cfg.Name, a.LastSuccessfulDataSync, again.LastSuccessfulDataSync)
	}
	checkAvailability(t, primary, "Online")
}
