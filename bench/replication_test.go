package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
)

// The stand-in write until the workflow's check-outs exist: an audit event,
// one raft command applied in one transaction on every member, like a
// check-out will be.
const writeType = "BenchmarkWrite"

func write(ctx context.Context, app *testapp.App, n int) error {
	return app.Node.RecordEvent(ctx, "bench", cluster.EventSpec{Type: writeType, Details: map[string]string{"n": fmt.Sprint(n)}})
}

// waitAllApplied spins until every app has applied index; it returns when
// the last did. Polling an atomic costs microseconds, so the time is exact
// to a few microseconds.
func waitAllApplied(ctx context.Context, apps []*testapp.App, index uint64) error {
	for _, a := range apps {
		for a.Node.AppliedIndex() < index {
			if ctx.Err() != nil {
				return fmt.Errorf("%s applied %d, want %d: %w", a.Cfg.Name, a.Node.AppliedIndex(), index, ctx.Err())
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	return nil
}

// checkWrites checks that every member holds exactly want stand-in writes.
func checkWrites(b *testing.B, apps []*testapp.App, want int64) {
	b.Helper()
	for _, a := range apps {
		got, err := a.Store.CountEvents(b.Context(), writeType)
		if err != nil {
			b.Fatal(err)
		}
		if got != want {
			b.Fatalf("%s holds %d acknowledged writes, want %d", a.Cfg.Name, got, want)
		}
	}
}

// BenchmarkReplication: latency of one write until every member of 3 has
// applied it, and sustained committed writes per second.
func BenchmarkReplication(b *testing.B) {
	apps := formCluster(b, 3, nil)
	primary := apps[0]
	ctx := b.Context()
	var written int64

	const perRun = 500
	var p50s, p99s, ackP50s, ackP99s []time.Duration
	var maxes []time.Duration
	for run := 0; run < runs(); run++ {
		lat := make([]time.Duration, 0, perRun)
		ack := make([]time.Duration, 0, perRun)
		for i := 0; i < perRun; i++ {
			start := time.Now()
			if err := write(ctx, primary, i); err != nil {
				b.Fatalf("write %d: %v", i, err)
			}
			ack = append(ack, time.Since(start))
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := waitAllApplied(wctx, apps, primary.Node.AppliedIndex())
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		written += perRun
		p50s, p99s = append(p50s, Percentile(lat, 50)), append(p99s, Percentile(lat, 99))
		maxes = append(maxes, Percentile(lat, 100))
		ackP50s, ackP99s = append(ackP50s, Percentile(ack, 50)), append(ackP99s, Percentile(ack, 99))
	}
	checkWrites(b, apps, written)
	p99 := Median(p99s)
	record(b, "repl-latency", runs(), fmt.Sprintf("p50 %s, p99 %s", Ms(Median(p50s)), Ms(p99)),
		fmt.Sprintf("%d sequential writes per run; max %s; acknowledged on the primary (committed and applied there): p50 %s, p99 %s; every write counted on every member",
			perRun, Ms(Median(maxes)), Ms(Median(ackP50s)), Ms(Median(ackP99s))),
		p99 <= 10*time.Millisecond)

	const writers = 64
	const duration = 5 * time.Second
	var rates []float64
	var applyLags []time.Duration
	for run := 0; run < runs(); run++ {
		var acked atomic.Int64
		var failed atomic.Value
		var wg sync.WaitGroup
		start := time.Now()
		stop := start.Add(duration)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; time.Now().Before(stop); i++ {
					if err := write(ctx, primary, i); err != nil {
						failed.Store(err)
						return
					}
					acked.Add(1)
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		if err, _ := failed.Load().(error); err != nil {
			b.Fatalf("a write was not acknowledged: %v", err)
		}
		// Committed and applied on the primary; the replicas follow.
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := waitAllApplied(wctx, apps, primary.Node.AppliedIndex())
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		applyLags = append(applyLags, time.Since(start)-elapsed)
		written += acked.Load()
		checkWrites(b, apps, written)
		rates = append(rates, float64(acked.Load())/elapsed.Seconds())
	}
	rate := MedianFloat(rates)
	record(b, "repl-throughput", runs(), fmt.Sprintf("%.0f writes/s", rate),
		fmt.Sprintf("%d writers for %s per run; replicas done %s after the last acknowledgement; every write counted on every member", writers, duration, Ms(Median(applyLags))),
		rate >= 3000)
}
