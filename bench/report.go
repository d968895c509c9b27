// Package bench measures Conclave against the targets of the benchmarks
// issue: enroll, replication, failover and the console under load. The
// benchmarks themselves are in the package's _test files and run with
// `make bench` (go test -run '^$' -bench . ./bench); this file holds what
// they share: the table of targets, the statistics and the Markdown report
// written to bin/bench/results.md.
package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Row is one line of the results table: a target and what was measured.
type Row struct {
	Key    string // stable name, used by the benchmark that fills it
	What   string // what is measured, in plain words
	Target string // the target as the issue states it
	// Result is the headline figure (medians of Runs runs), Details the
	// rest (breakdowns, counts, the baseline); empty until measured.
	Result  string
	Details string
	Runs    int
	// Verdict: "met", "missed", "reference (no target)" for a figure
	// shown for comparison (its target is in parentheses), or why the row
	// is not measured.
	Verdict string
}

// NotRun is the verdict of a row that was not measured in this run.
const NotRun = "not run (benchmark not selected)"

// Targets is every row of the table, in the order of the issue.
func Targets() []Row {
	return []Row{
		{Key: "enroll", What: "Add Replica with 1,000,000 accounts (sealed passwords) and their 50,000 assets on the primary: snapshot, catch-up, consistency check (whole operation)", Target: "≤ 15 s"},
		{Key: "enroll-copy", What: "Baseline: the same rows piped with PostgreSQL COPY from one database to another (no raft, no TLS)", Target: "(about 4 s for reference)"},
		{Key: "repl-latency", What: "A check-out on the primary visible on every member of 3 (access request proposed → applied on all), one at a time", Target: "p99 ≤ 10 ms"},
		{Key: "repl-checkouts", What: "Sustained committed access-request check-outs with 3 members, 64 to 512 concurrent requesters on the primary (the best level shown). One check-out: an access request under a policy without approval (the account is checked out at once), committed; each is then checked in (password changed) before its account is requested again", Target: "≥ 3,000/s"},
		{Key: "failover-planned", What: "Planned Failover of 3 members: Failover confirmed → new primary accepts a write", Target: "≤ 2 s"},
		{Key: "failover-unplanned", What: "Primary of 3 killed (raft stopped, no leadership transfer) → new primary accepts a write", Target: "≤ 3 s"},
		{Key: "quorum-loss", What: "Primary of 3 cut off from both replicas → it shows PrimaryNoQuorum, and the replicas show the loss", Target: "≤ 3 s"},
		{Key: "console-cluster", What: "Cluster view (GET /) of 5 members at 500 requests/s, signed-in sessions, HTTPS on loopback", Target: "p99 ≤ 10 ms, no errors"},
		{Key: "console-network", What: "Network page (GET /network) of 5 members at 500 requests/s, signed-in session, HTTPS on loopback", Target: "p99 ≤ 10 ms, no errors"},
		{Key: "memory", What: "Resident memory per appliance (real `conclave serve` processes, 5 members, 1,000,000 accounts), at idle and under the cluster-view load", Target: "≤ 100 MB"},
		{Key: "probing", What: "Link probing: CPU and bytes per second per member with 5 members, and their growth with members (3 → 5)", Target: "(measure)"},
	}
}

// Report collects results and rewrites the Markdown file after each
// change, so a run that stops half-way still leaves what it measured.
type Report struct {
	mu      sync.Mutex
	path    string
	rows    []Row
	started time.Time
}

// NewReport starts a report that writes to path.
func NewReport(path string) *Report {
	rows := Targets()
	for i := range rows {
		if rows[i].Verdict == "" {
			rows[i].Verdict = NotRun
		}
	}
	return &Report{path: path, rows: rows, started: time.Now()}
}

// Set records the measurement of the row key and rewrites the file.
func (r *Report) Set(key string, runs int, result, details string, met bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.IndexFunc(r.rows, func(row Row) bool { return row.Key == key })
	if i < 0 {
		return fmt.Errorf("report: no row %q", key)
	}
	row := &r.rows[i]
	row.Runs, row.Result, row.Details = runs, result, details
	switch {
	case strings.HasPrefix(row.Target, "("):
		row.Verdict = "reference (no target)"
	case met:
		row.Verdict = "met"
	default:
		row.Verdict = "missed"
	}
	return r.writeLocked()
}

// Rows returns a copy of the rows.
func (r *Report) Rows() []Row {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.rows)
}

func (r *Report) writeLocked() error {
	if r.path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	f, err := os.Create(r.path + ".tmp")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := WriteMarkdown(f, r.rows, Machine(), r.started); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return os.Rename(r.path+".tmp", r.path)
}

// WriteMarkdown writes the results table with the date and the machine.
func WriteMarkdown(w io.Writer, rows []Row, machine string, at time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", at.UTC().Format("2006-01-02 15:04 UTC"), machine)
	b.WriteString("| what is measured | target | result (median) | runs | details | verdict |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, row := range rows {
		runs := ""
		if row.Runs > 0 {
			runs = fmt.Sprint(row.Runs)
		}
		verdict := row.Verdict
		switch verdict {
		case "met":
			verdict = "✅ met"
		case "missed":
			verdict = "❌ **missed**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", cell(row.What), cell(row.Target), cell(row.Result), runs, cell(row.Details), verdict)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// Machine describes this machine: CPU model, cores, Go version.
func Machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	return fmt.Sprintf("%s, %d cores (nproc), %s/%s, %s", model, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// LoadAverage is this machine's load average over the last minute: the
// benchmarks share the machine, and a figure measured while other work
// keeps the cores busy says so.
func LoadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(raw)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// Median of the durations (the mean of the two middle ones for an even
// count).
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// MedianFloat is Median for plain numbers.
func MedianFloat(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Percentile is the p-th percentile (0 < p ≤ 100) of the durations, by the
// nearest-rank method: the smallest value with at least p% of the values
// at or below it.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}

// Ms formats a duration in milliseconds with two decimals below 10 ms.
func Ms(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// Secs formats a duration in seconds with two decimals.
func Secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// Bytes formats a byte count in MB (10^6 bytes, like network rates).
func Bytes(n int64) string {
	if n < 1_000_000 {
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}
