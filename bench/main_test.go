package bench

import (
	"flag"
	"sync"
	"testing"

	"conclave/internal/testapp"
	"conclave/internal/testpg"
)

var (
	resultsPath = flag.String("results", "../bin/bench/results.md", "where the benchmarks write the Markdown table")
	runsFlag    = flag.Int("runs", 3, "how many times each measurement is repeated (the table shows medians)")
	rowsFlag    = flag.Int("rows", 1_000_000, "how many rows the primary holds for the enroll and memory benchmarks")
)

func TestMain(m *testing.M) { testpg.Main(m) }

var (
	reportOnce sync.Once
	report     *Report
)

// results is the report of this run, made on first use so that `go test`
// without -bench never writes a file.
func results() *Report {
	reportOnce.Do(func() { report = NewReport(*resultsPath) })
	return report
}

// record sets a row and fails the benchmark if the file cannot be written.
func record(b *testing.B, key string, runs int, result, details string, met bool) {
	b.Helper()
	details += "; load average " + LoadAverage() + " when recorded"
	if err := results().Set(key, runs, result, details, met); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: %s (%s) met=%v", key, result, details, met)
}

// formCluster starts n appliances named m1…mn and adds the others to m1's
// cluster; opts(i) gives each appliance's extra options.
func formCluster(b *testing.B, n int, opts func(i int) []testapp.Option) []*testapp.App {
	b.Helper()
	apps := make([]*testapp.App, n)
	for i := range apps {
		o := []testapp.Option{testapp.Named(memberName(i))}
		if opts != nil {
			o = append(o, opts(i)...)
		}
		apps[i] = testapp.Start(b, o...)
	}
	for _, r := range apps[1:] {
		apps[0].AddReplica(b, r)
	}
	return apps
}

func memberName(i int) string { return "m" + string(rune('1'+i)) }

// runs is how many times each measurement is repeated.
func runs() int { return max(1, *runsFlag) }
