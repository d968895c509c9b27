package bench

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/internal/testnet"
)

// netCluster is a cluster of n members on one test network, so that a
// member can be cut off.
func netCluster(b *testing.B, n int) (*testnet.Network, []*testapp.App) {
	b.Helper()
	net := testnet.New()
	apps := formCluster(b, n, func(i int) []testapp.Option {
		return []testapp.Option{testapp.WithNetwork(net, memberName(i))}
	})
	return net, apps
}

// leaderOf returns the index of the member that is the primary, waiting
// up to 30 s for one.
func leaderOf(b *testing.B, apps []*testapp.App) int {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for i, a := range apps {
			if a.Appliance != nil && a.Node.IsLeader() {
				return i
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("no primary within 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// acceptsWrite polls until one of candidates is the primary and a write
// proposed on it is acknowledged; it returns that member and when.
func acceptsWrite(b *testing.B, candidates []*testapp.App, n int) (*testapp.App, time.Time) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, a := range candidates {
			if !a.Node.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(b.Context(), time.Second)
			err := write(ctx, a, n)
			cancel()
			if err == nil {
				return a, time.Now()
			}
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatal("no member accepted a write within 30 s")
	return nil, time.Time{}
}

// waitCaughtUp waits until every member is in a state with quorum and has
// applied what the primary has.
func waitCaughtUp(b *testing.B, apps []*testapp.App) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		p := apps[leaderOf(b, apps)]
		ok := true
		for _, a := range apps {
			s := a.Node.SelfState()
			ok = ok && (s == "Online" || s == "ReplicaWithQuorum") && a.Node.AppliedIndex() >= p.Node.AppliedIndex()
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("the cluster did not settle within 60 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkFailover: planned Failover, a killed primary, and a primary cut
// off from its replicas, each repeated on a cluster of 3.
func BenchmarkFailover(b *testing.B) {
	net, apps := netCluster(b, 3)
	written := int64(0)
	wrote := func(a *testapp.App) {
		if err := write(b.Context(), a, int(written)); err != nil {
			b.Fatalf("write before the failover: %v", err)
		}
		written++
	}

	// Planned: Failover confirmed through the API → the chosen replica,
	// now primary, acknowledges a write.
	var planned, plannedOp []time.Duration
	for run := 0; run < runs(); run++ {
		waitCaughtUp(b, apps)
		cur := apps[leaderOf(b, apps)]
		wrote(cur)
		var target *testapp.App
		for _, a := range apps {
			if a != cur {
				target = a
				break
			}
		}
		tok, targetTok := cur.AdminToken(b), target.AdminToken(b)
		var out struct{ OperationID, Error string }
		start := time.Now()
		if status := cur.JSON(b, tok, http.MethodPost, "/api/v1/cluster/members/"+target.Node.ID()+"/promote", map[string]string{"confirm": "Failover"}, &out); status != http.StatusAccepted {
			b.Fatalf("failover: status %d: %s", status, out.Error)
		}
		got, at := acceptsWrite(b, []*testapp.App{target}, int(written))
		written++
		planned = append(planned, at.Sub(start))
		op := target.WaitOperation(b, targetTok, out.OperationID, time.Minute)
		if op.State != "Succeeded" || got != target {
			b.Fatalf("failover: %s %s %+v", op.State, op.Error, op.Steps)
		}
		var sum time.Duration
		for _, s := range op.Steps {
			if s.StartedAt != nil && s.EndedAt != nil {
				sum += s.EndedAt.Sub(*s.StartedAt)
			}
		}
		plannedOp = append(plannedOp, sum)
	}
	waitCaughtUp(b, apps)
	checkWrites(b, apps, written)
	record(b, "failover-planned", runs(), Secs(Median(planned)),
		fmt.Sprintf("runs: %s; the operation's steps took %s in all; every write before and after counted on every member", durations(planned), Secs(Median(plannedOp))),
		Median(planned) <= 2*time.Second)

	// Unplanned: the primary is cut off from both replicas (no byte gets
	// out from that moment, as if it died) and stopped; raft never hands
	// leadership over. Then it comes back as a replica for the next run.
	var unplanned []time.Duration
	for run := 0; run < runs(); run++ {
		waitCaughtUp(b, apps)
		i := leaderOf(b, apps)
		dead := apps[i]
		wrote(dead)
		var others []*testapp.App
		for _, a := range apps {
			if a != dead {
				net.Partition(dead.Cfg.Name, a.Cfg.Name)
				others = append(others, a)
			}
		}
		start := time.Now()
		stopped := make(chan struct{})
		go func() { dead.Stop(b); close(stopped) }()
		_, at := acceptsWrite(b, others, int(written))
		written++
		unplanned = append(unplanned, at.Sub(start))
		<-stopped
		for _, a := range others {
			net.Heal(dead.Cfg.Name, a.Cfg.Name)
		}
		apps[i] = dead.Restart(b)
	}
	waitCaughtUp(b, apps)
	checkWrites(b, apps, written)
	record(b, "failover-unplanned", runs(), Secs(Median(unplanned)),
		fmt.Sprintf("runs: %s; raft heartbeat and election timeouts %s/%s (cluster.DefaultTiming); every write before and after counted on every member",
			durations(unplanned), cluster.DefaultTiming().Heartbeat, cluster.DefaultTiming().Election),
		Median(unplanned) <= 3*time.Second)

	// Quorum loss: the primary is cut off from both replicas; it must say
	// PrimaryNoQuorum, and the replicas elect another primary.
	var shown, replaced []time.Duration
	for run := 0; run < runs(); run++ {
		waitCaughtUp(b, apps)
		cut := apps[leaderOf(b, apps)]
		var others []*testapp.App
		for _, a := range apps {
			if a != cut {
				others = append(others, a)
			}
		}
		start := time.Now()
		for _, a := range others {
			net.Partition(cut.Cfg.Name, a.Cfg.Name)
		}
		var lost, elected time.Duration
		deadline := time.Now().Add(30 * time.Second)
		for lost == 0 || elected == 0 {
			if lost == 0 && cut.Node.SelfState() == "PrimaryNoQuorum" {
				lost = time.Since(start)
			}
			for _, a := range others {
				if elected == 0 && a.Node.IsLeader() {
					elected = time.Since(start)
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("after 30 s: the cut-off primary is %s; a replica elected: %v", cut.Node.SelfState(), elected > 0)
			}
			time.Sleep(time.Millisecond)
		}
		shown, replaced = append(shown, lost), append(replaced, elected)
		for _, a := range others {
			net.Heal(cut.Cfg.Name, a.Cfg.Name)
		}
	}
	waitCaughtUp(b, apps)
	worst := max(Median(shown), Median(replaced))
	record(b, "quorum-loss", runs(), fmt.Sprintf("primary shows PrimaryNoQuorum after %s; replicas elect a new primary after %s", Secs(Median(shown)), Secs(Median(replaced))),
		fmt.Sprintf("runs (PrimaryNoQuorum): %s; runs (new primary): %s", durations(shown), durations(replaced)),
		worst <= 3*time.Second)
}

func durations(ds []time.Duration) string {
	s := ""
	for i, d := range ds {
		if i > 0 {
			s += ", "
		}
		s += Secs(d)
	}
	return s
}
