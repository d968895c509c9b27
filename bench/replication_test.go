package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/store"
	"conclave/workflow"
)

// waitAllApplied returns when every app has applied index. It waits on
// each member's wake-up at every applied index (cluster.Node.WaitApplied),
// so the time is exact without a polling loop taking CPU from the members
// being measured.
func waitAllApplied(ctx context.Context, apps []*testapp.App, index uint64) error {
	for _, a := range apps {
		if err := a.Node.WaitApplied(ctx, index); err != nil {
			return fmt.Errorf("%s applied %d, want %d: %w", a.Cfg.Name, a.Node.AppliedIndex(), index, err)
		}
	}
	return nil
}

// checkoutCluster is 3 members holding checkoutAccounts accounts, a policy
// without approval over the first maxWriters·accountsAWriter of them, and
// requesters who may use it.
type checkoutCluster struct {
	apps       []*testapp.App
	requesters []workflow.Actor
	accountIDs []string // covered by the policy
}

// checkoutWriters are the numbers of concurrent requesters the sustained
// rate is measured with. More in flight make bigger batches (one raft
// round, one transaction on each member for many commands), so the rate
// grows with them until the machine is saturated; the table shows the
// best, the details every level.
var checkoutWriters = []int{64, 256, 512}

func maxWriters() int { return slices.Max(checkoutWriters) }

const (
	checkoutAccounts = 100_000 // held by the cluster, so that the tables are not toy-sized
	accountsAWriter  = 50      // each writer goes round its own accounts
	requesterUsers   = 8
)

func startCheckoutCluster(b *testing.B) *checkoutCluster {
	b.Helper()
	ctx := b.Context()
	primary := testapp.Start(b, testapp.Named(memberName(0)))
	ids, err := seedAccounts(ctx, primary.Store, checkoutAccounts)
	if err != nil {
		b.Fatal(err)
	}
	apps := []*testapp.App{primary}
	for i := 1; i < 3; i++ {
		r := testapp.Start(b, testapp.Named(memberName(i)))
		primary.AddReplica(b, r)
		apps = append(apps, r)
	}
	c := &checkoutCluster{apps: apps, accountIDs: ids[:maxWriters()*accountsAWriter]}
	for i := 0; i < requesterUsers; i++ {
		name := fmt.Sprintf("requester-%d", i+1)
		id := primary.CreateUser(b, name, "requester-password-0123", cluster.RoleRequester)
		c.requesters = append(c.requesters, workflow.Actor{UserID: id, Username: name, Role: cluster.RoleRequester})
	}
	admin := primary.CreateUser(b, "bench-admin", "admin-password-0123456", cluster.RoleAdministrator)
	if _, err := primary.Workflow.SavePolicy(ctx, workflow.Actor{UserID: admin, Username: "bench-admin", Role: cluster.RoleAdministrator}, "", workflow.PolicyInput{
		Name: "Servers", AccountIDs: c.accountIDs, Requesters: []string{cluster.RoleRequester},
		DurationMinutes: 60, ChangeAfterCheckin: true,
	}); err != nil {
		b.Fatal(err)
	}
	return c
}

// checkout requests an account (checked out at once) and returns the
// request's ID.
func (c *checkoutCluster) checkout(ctx context.Context, who workflow.Actor, account string) (string, error) {
	return c.apps[0].Workflow.Request(ctx, who, account, "benchmark")
}

// checkRequests checks that every member holds exactly checkedIn requests
// checked in and available ones open.
func (c *checkoutCluster) checkRequests(b *testing.B, checkedIn, available int64) {
	b.Helper()
	for _, a := range c.apps {
		for state, want := range map[string]int64{store.RequestCheckedIn: checkedIn, store.RequestAvailable: available} {
			got, err := a.Store.CountRequests(b.Context(), state)
			if err != nil {
				b.Fatal(err)
			}
			if got != want {
				b.Fatalf("%s holds %d requests %s, want %d", a.Cfg.Name, got, state, want)
			}
		}
	}
}

// BenchmarkReplication: latency of one check-out until every member of 3
// has applied it, and sustained committed check-outs per second, both
// through the workflow (workflow.Service on the primary, as the console
// and the API call it).
func BenchmarkReplication(b *testing.B) {
	c := startCheckoutCluster(b)
	apps, primary := c.apps, c.apps[0]
	ctx := b.Context()
	var done int64 // check-outs checked in so far

	const perRun = 500
	var p50s, p99s, ackP50s, ackP99s []time.Duration
	var maxes []time.Duration
	who := c.requesters[0]
	for run := 0; run < runs(); run++ {
		lat := make([]time.Duration, 0, perRun)
		ack := make([]time.Duration, 0, perRun)
		for i := 0; i < perRun; i++ {
			start := time.Now()
			id, err := c.checkout(ctx, who, c.accountIDs[i%len(c.accountIDs)])
			if err != nil {
				b.Fatalf("check-out %d: %v", i, err)
			}
			ack = append(ack, time.Since(start))
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = waitAllApplied(wctx, apps, primary.Node.AppliedIndex())
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			if err := primary.Workflow.Checkin(ctx, who, id); err != nil {
				b.Fatalf("check-in %d: %v", i, err)
			}
			// The next check-out starts on a quiet cluster: the check-in
			// is applied everywhere first.
			wctx, cancel = context.WithTimeout(ctx, 10*time.Second)
			err = waitAllApplied(wctx, apps, primary.Node.AppliedIndex())
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
		done += perRun
		p50s, p99s = append(p50s, Percentile(lat, 50)), append(p99s, Percentile(lat, 99))
		maxes = append(maxes, Percentile(lat, 100))
		ackP50s, ackP99s = append(ackP50s, Percentile(ack, 50)), append(ackP99s, Percentile(ack, 99))
	}
	if err := waitAllApplied(ctx, apps, primary.Node.AppliedIndex()); err != nil {
		b.Fatal(err)
	}
	c.checkRequests(b, done, 0)
	p99 := Median(p99s)
	record(b, "repl-latency", runs(), fmt.Sprintf("p50 %s, p99 %s", Ms(Median(p50s)), Ms(p99)),
		fmt.Sprintf("%d sequential check-outs per run (workflow.Service.Request on the primary: its checks, then one raft command), each checked in before the next, untimed; max %s; acknowledged on the primary (committed and applied there): p50 %s, p99 %s; every check-out counted on every member; %d accounts in the cluster",
			perRun, Ms(Median(maxes)), Ms(Median(ackP50s)), Ms(Median(ackP99s)), checkoutAccounts),
		p99 <= 10*time.Millisecond)

	const duration = 5 * time.Second
	var levels []string
	best, bestWriters := 0.0, 0
	var bestLag time.Duration
	for _, writers := range checkoutWriters {
		var rates []float64
		var applyLags []time.Duration
		for run := 0; run < runs(); run++ {
			n, elapsed, lag, err := c.sustain(ctx, writers, duration)
			if err != nil {
				b.Fatal(err)
			}
			done += n
			c.checkRequests(b, done, 0)
			rates = append(rates, float64(n)/elapsed.Seconds())
			applyLags = append(applyLags, lag)
		}
		rate := MedianFloat(rates)
		levels = append(levels, fmt.Sprintf("%d requesters: %.0f/s", writers, rate))
		if rate > best {
			best, bestWriters, bestLag = rate, writers, Median(applyLags)
		}
	}
	record(b, "repl-checkouts", runs(), fmt.Sprintf("%.0f check-outs/s", best),
		fmt.Sprintf("%d concurrent requesters for %s per run (%s), %d requester users, each requester going round its own %d accounts of a policy without approval that changes the password at check-in; each check-out then checked in, so the cluster commits %.0f workflow commands/s; replicas done %s after the last acknowledgement; every check-out and check-in counted on every member; %d accounts in the cluster",
			bestWriters, duration, strings.Join(levels, ", "), requesterUsers, accountsAWriter, 2*best, Ms(bestLag), checkoutAccounts),
		best >= 3000)
}

// sustain runs writers requesters for duration, each checking out and in
// its own accounts in turn, and returns the check-outs acknowledged, the
// time taken, and how long after the last acknowledgement the replicas
// had applied everything.
func (c *checkoutCluster) sustain(ctx context.Context, writers int, duration time.Duration) (int64, time.Duration, time.Duration, error) {
	primary := c.apps[0]
	var checkouts atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(duration)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who := c.requesters[w%len(c.requesters)]
			mine := c.accountIDs[w*accountsAWriter : (w+1)*accountsAWriter]
			for i := 0; time.Now().Before(stop); i++ {
				id, err := c.checkout(ctx, who, mine[i%len(mine)])
				if err != nil {
					failed.Store(fmt.Errorf("check-out: %w", err))
					return
				}
				checkouts.Add(1)
				if err := primary.Workflow.Checkin(ctx, who, id); err != nil {
					failed.Store(fmt.Errorf("check-in: %w", err))
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		return 0, 0, 0, fmt.Errorf("not acknowledged: %w", err)
	}
	// Committed and applied on the primary; the replicas follow.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := waitAllApplied(wctx, c.apps, primary.Node.AppliedIndex()); err != nil {
		return 0, 0, 0, err
	}
	return checkouts.Load(), elapsed, time.Since(start) - elapsed, nil
}
