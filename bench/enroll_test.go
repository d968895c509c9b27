package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/testapp"
	"conclave/internal/testpg"
	"conclave/store"
	"conclave/web"
)

// dataset is what the primary holds for the enroll and memory benchmarks.
// Until the workflow's accounts and assets exist, it is audit events of
// about an account's size, inserted straight into the primary's database;
// an accounts dataset replaces it by giving another seed and table.
type dataset struct {
	name  string // as the table says it
	table string // the replicated table that gets the rows
	seed  func(ctx context.Context, st *store.Store, n int, memberID string) error
}

var eventsDataset = dataset{
	name:  "audit events (stand-in for accounts)",
	table: "events",
	seed: func(ctx context.Context, st *store.Store, n int, memberID string) error {
		return st.SeedEvents(ctx, n, memberID)
	},
}

func withDialer(d *CountingDialer) testapp.Option { return func(c *web.Config) { c.Dialer = d } }

// copyBaseline pipes the replicated tables of src into a fresh database
// with PostgreSQL COPY (binary), the way a snapshot moves them but with no
// raft, TLS or network in between, and returns how long it took.
func copyBaseline(b *testing.B, src *store.Store, table string, want int64) time.Duration {
	b.Helper()
	ctx := b.Context()
	dst, err := store.Open(ctx, testpg.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()
	if _, _, err := dst.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	snap, err := src.BeginSnapshot(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer snap.Close(ctx)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(snap.WriteTo(ctx, pw)) }()
	if _, err := dst.RestoreSnapshot(ctx, pr); err != nil {
		b.Fatalf("COPY baseline: %v", err)
	}
	took := time.Since(start)
	if got, err := dst.CountRows(ctx, table); err != nil || got != want {
		b.Fatalf("COPY baseline copied %d rows of %s, want %d (%v)", got, table, want, err)
	}
	return took
}

// BenchmarkEnroll: Add Replica of a new appliance while the primary holds
// -rows rows, measured through the real operation (JSON API, snapshot over
// TLS, catch-up, consistency check), beside the plain COPY baseline.
func BenchmarkEnroll(b *testing.B) {
	ds := eventsDataset
	ctx := b.Context()
	primaryNet := &CountingDialer{}
	primary := testapp.Start(b, testapp.Named("primary"), withDialer(primaryNet))
	seedStart := time.Now()
	if err := ds.seed(ctx, primary.Store, *rowsFlag, primary.Node.ID()); err != nil {
		b.Fatal(err)
	}
	want, err := primary.Store.CountRows(ctx, ds.table)
	if err != nil || want < int64(*rowsFlag) {
		b.Fatalf("seeded %d rows, want at least %d (%v)", want, *rowsFlag, err)
	}
	b.Logf("seeded %d rows of %s in %s", want, ds.table, time.Since(seedStart))

	var baseline []time.Duration
	for run := 0; run < runs(); run++ {
		baseline = append(baseline, copyBaseline(b, primary.Store, ds.table, want))
	}

	var total, snapshot, catchUp, consistency []time.Duration
	var bytes []float64
	tok := primary.AdminToken(b)
	for run := 0; run < runs(); run++ {
		replicaNet := &CountingDialer{}
		replica := testapp.Start(b, testapp.Named(fmt.Sprintf("replica-%d", run+1)), withDialer(replicaNet))
		replica.AdminToken(b) // a first sign-in, outside the measure
		before := primaryNet.Bytes() + replicaNet.Bytes()
		start := time.Now()
		id := primary.StartAddReplica(b, replica)
		op := primary.WaitOperation(b, tok, id, 5*time.Minute)
		took := time.Since(start)
		if op.State != "Succeeded" {
			b.Fatalf("add replica: %s: %s; steps %+v", op.State, op.Error, op.Steps)
		}
		got, err := replica.Store.CountRows(ctx, ds.table)
		if err != nil || got < want {
			b.Fatalf("the replica holds %d rows of %s, want %d (%v)", got, ds.table, want, err)
		}
		total = append(total, took)
		snapshot = append(snapshot, op.StepDuration("Snapshot transfer"))
		catchUp = append(catchUp, op.StepDuration("Catch-up"))
		consistency = append(consistency, op.StepDuration("Consistency check"))
		bytes = append(bytes, float64(primaryNet.Bytes()+replicaNet.Bytes()-before))
		b.Logf("run %d: %s; steps: %s", run+1, Secs(took), stepTimes(op))

		// Back to a cluster of one for the next run.
		var out struct{ OperationID, Error string }
		if status := primary.JSON(b, tok, http.MethodDelete, "/api/v1/cluster/members/"+replica.Node.ID(), map[string]string{"confirm": "Unjoin"}, &out); status != http.StatusAccepted {
			b.Fatalf("unjoin: status %d: %s", status, out.Error)
		}
		if op := primary.WaitOperation(b, tok, out.OperationID, 2*time.Minute); op.State != "Succeeded" {
			b.Fatalf("unjoin: %s %s", op.State, op.Error)
		}
		replica.Stop(b)
	}
	med := Median(total)
	rowsPerSec := float64(want) / Median(snapshot).Seconds()
	record(b, "enroll-copy", runs(), Secs(Median(baseline)),
		fmt.Sprintf("%d rows of %s; runs: %s", want, ds.name, durations(baseline)), true)
	record(b, "enroll", runs(), Secs(med),
		fmt.Sprintf("%d rows of %s; snapshot transfer %s (%.0f rows/s), catch-up %s, consistency check %s; %s over the network; COPY baseline %s; runs: %s",
			want, ds.name, Secs(Median(snapshot)), rowsPerSec, Secs(Median(catchUp)), Secs(Median(consistency)),
			Bytes(int64(MedianFloat(bytes))), Secs(Median(baseline)), durations(total)),
		med <= 15*time.Second)
}

func stepTimes(op testapp.Operation) string {
	var parts []string
	for _, s := range op.Steps {
		parts = append(parts, fmt.Sprintf("%s %s", s.Name, Secs(op.StepDuration(s.Name))))
	}
	return strings.Join(parts, ", ")
}
