package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/testapp"
	"conclave/internal/testnet"
)

type event struct {
	Type    string
	At      time.Time
	Details map[string]string
}

func eventsOfType(t *testing.T, app *testapp.App, token, typ string) []event {
	t.Helper()
	var evs []event
	app.JSON(t, token, http.MethodGet, "/api/v1/events?type="+typ, nil, &evs)
	return evs
}

func waitState(t *testing.T, app *testapp.App, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for app.Node.SelfState() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s after 30 s; want %s", app.Cfg.Name, app.Node.SelfState(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The primary is cut off from both replicas: it says it lost its quorum,
// the two replicas elect a new primary by themselves and go on taking
// writes; when the network heals the old primary rejoins as a replica,
// catches up, and the events of the split are in the log.
func TestPrimaryCutOffLosesQuorumAndRejoins(t *testing.T) {
	net := testnet.New()
	alpha := testapp.Start(t, named("alpha"), testapp.WithNetwork(net, "alpha"))
	beta := testapp.Start(t, named("beta"), testapp.WithNetwork(net, "beta"))
	gamma := testapp.Start(t, named("gamma"), testapp.WithNetwork(net, "gamma"))
	addReplica(t, alpha, beta)
	addReplica(t, alpha, gamma)
	alpha.CreateUser(t, "before-split", "before-split-pw", "Helpdesk")
	// Without quorum no token can be issued (it is a write); get it first.
	atok := alpha.AdminToken(t)

	net.Partition("alpha", "beta")
	net.Partition("alpha", "gamma")
	waitState(t, alpha, "PrimaryNoQuorum")
	newPrimary := waitNewPrimary(t, beta, gamma)
	// The loss is recorded on alpha (debounced), waiting for a primary to
	// write it to.
	deadline := time.Now().Add(30 * time.Second)
	for alpha.Node.PendingEvents() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("alpha queued %d events for its loss of quorum; want 2", alpha.Node.PendingEvents())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Writes continue on the new primary.
	newPrimary.CreateUser(t, "during-split", "during-split-pw", "Helpdesk")
	if status := alpha.JSON(t, atok, http.MethodGet, "/api/v1/cluster/members", nil, nil); status != http.StatusOK {
		t.Fatalf("reads on the cut-off primary: status %d", status)
	}
	var avail struct {
		ApplianceCurrentState      string
		IsPrimary                  bool
		IsPasswordRequestAvailable bool
	}
	alpha.JSON(t, "", http.MethodGet, "/service/notification/v4/Status/Availability", nil, &avail)
	if avail.ApplianceCurrentState != "PrimaryNoQuorum" || avail.IsPrimary || avail.IsPasswordRequestAvailable {
		t.Fatalf("availability of the cut-off primary: %+v", avail)
	}

	net.Heal("alpha", "beta")
	net.Heal("alpha", "gamma")
	waitState(t, alpha, "ReplicaWithQuorum")
	tok := newPrimary.AdminToken(t)
	deadline = time.Now().Add(30 * time.Second)
	for {
		lost := eventsOfType(t, newPrimary, tok, "ClusterPrimaryQuorumLost")
		var users []struct{ Username string }
		alpha.JSON(t, atok, http.MethodGet, "/api/v1/users", nil, &users)
		caughtUp := false
		for _, u := range users {
			caughtUp = caughtUp || u.Username == "during-split"
		}
		if len(lost) == 1 && caughtUp {
			if lost[0].Details["member"] != "alpha" {
				t.Fatalf("ClusterPrimaryQuorumLost = %+v; want it for alpha", lost[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after healing: %d ClusterPrimaryQuorumLost events (want 1), alpha caught up: %v", len(lost), caughtUp)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// No divergent data: every replicated table is the same on both.
	waitSameData(t, newPrimary, alpha)
}

// The primary dies: the two replicas elect a new primary by themselves
// within seconds, every write committed before is on it, and writes go on.
// When the old primary comes back it is a replica and catches up.
func TestPrimaryKilledReplicasElectANewOne(t *testing.T) {
	alpha := testapp.Start(t, named("alpha"))
	beta := testapp.Start(t, named("beta"))
	gamma := testapp.Start(t, named("gamma"))
	addReplica(t, alpha, beta)
	addReplica(t, alpha, gamma)
	for _, name := range []string{"w1", "w2", "w3"} {
		alpha.CreateUser(t, "before-"+name, "before-kill-password", "Helpdesk")
	}
	alpha.Stop(t)

	newPrimary := waitNewPrimary(t, beta, gamma)
	tok := newPrimary.AdminToken(t)
	var users []struct{ Username string }
	newPrimary.JSON(t, tok, http.MethodGet, "/api/v1/users", nil, &users)
	names := map[string]bool{}
	for _, u := range users {
		names[u.Username] = true
	}
	for _, name := range []string{"w1", "w2", "w3"} {
		if !names["before-"+name] {
			t.Fatalf("the write before-%s, committed before the kill, is missing on the new primary: %v", name, names)
		}
	}
	newPrimary.CreateUser(t, "after-kill", "after-kill-password", "Helpdesk")

	// Every surviving console says who the new primary is, since when and
	// why; the event log has it once.
	changes := eventsOfType(t, newPrimary, tok, "ClusterPrimaryChanged")
	if len(changes) != 1 || changes[0].Details["primary"] != newPrimary.Cfg.Name || changes[0].Details["previous"] != "alpha" || changes[0].Details["reason"] != "election" {
		t.Fatalf("ClusterPrimaryChanged after the kill: %+v", changes)
	}
	for _, app := range []*testapp.App{beta, gamma} {
		c := app.Client()
		if resp, _ := secLogin(t, app, c, "admin", testapp.AdminPassword); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign in on %s: %d", app.Cfg.Name, resp.StatusCode)
		}
		resp, page := secSend(t, app, c, secRequest{method: "GET", path: "/"})
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="primary-change"`) || !strings.Contains(page, newPrimary.Cfg.Name+" was elected primary when alpha stopped answering") {
			t.Fatalf("%s's cluster view does not say who the new primary is and since when (status %d)", app.Cfg.Name, resp.StatusCode)
		}
	}

	alpha = alpha.Restart(t)
	waitState(t, alpha, "ReplicaWithQuorum")
	// Same data everywhere: the new primary compares its tables with the
	// old one's, row counts and checksums at one raft index.
	waitSameData(t, newPrimary, alpha)
}

// waitNewPrimary waits until one of apps is the primary and returns it.
func waitNewPrimary(t *testing.T, apps ...*testapp.App) *testapp.App {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, app := range apps {
			if app.Node.IsLeader() {
				return app
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no new primary within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitSameData waits until b has every replicated table as a has it: row
// counts and checksums at one raft index (b may still be catching up).
func waitSameData(t *testing.T, a, b *testapp.App) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := a.Node.CompareWith(t.Context(), b.Addr(), nil)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s differs from %s: %v", b.Cfg.Name, a.Cfg.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
