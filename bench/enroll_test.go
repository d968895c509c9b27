package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/internal/testpg"
	"conclave/keyring"
	"conclave/store"
	"conclave/web"
)

// dataset is what the primary holds for the enroll and memory benchmarks:
// accounts with sealed passwords on their assets, 20 accounts an asset,
// copied straight into the primary's database (store.SeedAccounts) as the
// workflow itself would have written them.
type dataset struct {
	name   string   // as the table says it
	tables []string // the replicated tables that get the rows
}

const accountsPerAsset = 20

var accountsDataset = dataset{name: "accounts with sealed passwords, 20 an asset", tables: []string{"accounts", "assets"}}

// seedAccounts gives st n accounts (and n/20 assets), each password sealed
// with the cluster's data key, and returns the accounts' IDs.
func seedAccounts(ctx context.Context, st *store.Store, n int) ([]string, error) {
	var keys keyring.Keys
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		// The primary creates the data key right after its election.
		if keys, err = cluster.LoadDataKeys(ctx, st); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, err
		}
	}
	return st.SeedAccounts(ctx, n, accountsPerAsset, func(id string, i int) (string, error) {
		return keys.Seal([]byte(fmt.Sprintf("Bench-password-%07d!", i)), "account:"+id)
	})
}

// countRows counts each table of the dataset on st.
func (d dataset) countRows(ctx context.Context, st *store.Store) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range d.tables {
		n, err := st.CountRows(ctx, t)
		if err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, nil
}

// sameRows fails unless st holds as many rows of each table as want.
func (d dataset) sameRows(b *testing.B, who string, st *store.Store, want map[string]int64) {
	b.Helper()
	got, err := d.countRows(b.Context(), st)
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range d.tables {
		if got[t] != want[t] {
			b.Fatalf("%s holds %d rows of %s, want %d", who, got[t], t, want[t])
		}
	}
}

func withDialer(d *CountingDialer) testapp.Option { return func(c *web.Config) { c.Dialer = d } }

// copyBaseline pipes the replicated tables of src into a fresh database
// with PostgreSQL COPY (binary), the way a snapshot moves them but with no
// raft, TLS or network in between, and returns how long it took.
func copyBaseline(b *testing.B, src *store.Store, ds dataset, want map[string]int64) time.Duration {
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
	ds.sameRows(b, "the COPY baseline's database", dst, want)
	return took
}

// BenchmarkEnroll: Add Replica of a new appliance while the primary holds
// -rows rows, measured through the real operation (JSON API, snapshot over
// TLS, catch-up, consistency check), beside the plain COPY baseline.
func BenchmarkEnroll(b *testing.B) {
	ds := accountsDataset
	ctx := b.Context()
	primaryNet := &CountingDialer{}
	primary := testapp.Start(b, testapp.Named("primary"), withDialer(primaryNet))
	seedStart := time.Now()
	if _, err := seedAccounts(ctx, primary.Store, *rowsFlag); err != nil {
		b.Fatal(err)
	}
	want, err := ds.countRows(ctx, primary.Store)
	if err != nil || want["accounts"] != int64(*rowsFlag) {
		b.Fatalf("seeded %v rows, want %d accounts (%v)", want, *rowsFlag, err)
	}
	rows := want["accounts"] + want["assets"]
	b.Logf("seeded %v in %s", want, time.Since(seedStart))

	var baseline []time.Duration
	for run := 0; run < runs(); run++ {
		baseline = append(baseline, copyBaseline(b, primary.Store, ds, want))
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
		ds.sameRows(b, "the replica", replica.Store, want)
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
	rowsPerSec := float64(rows) / Median(snapshot).Seconds()
	record(b, "enroll-copy", runs(), Secs(Median(baseline)),
		fmt.Sprintf("%d accounts and %d assets (%s); runs: %s", want["accounts"], want["assets"], ds.name, durations(baseline)), true)
	record(b, "enroll", runs(), Secs(med),
		fmt.Sprintf("%d accounts and %d assets (%s), every row counted on the replica; snapshot transfer %s (%.0f rows/s), catch-up %s, consistency check %s; %s over the network; COPY baseline %s; runs: %s",
			want["accounts"], want["assets"], ds.name, Secs(Median(snapshot)), rowsPerSec, Secs(Median(catchUp)), Secs(Median(consistency)),
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
