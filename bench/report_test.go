package bench

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A smoke test of the harness, run by `make test`: the table has a row for
// every target, in order, and says which are not measured and why.
func TestReportHasEveryTarget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.md")
	r := NewReport(path)
	if err := r.Set("repl-latency", 3, "p50 1.00 ms, p99 2.00 ms", "a | b", true); err != nil {
		t.Fatal(err)
	}
	if err := r.Set("failover-planned", 3, "9.00 s", "", false); err != nil {
		t.Fatal(err)
	}
	if err := r.Set("no-such-row", 1, "", "", true); err == nil {
		t.Fatal("a row that is not a target was accepted")
	}
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, r.Rows(), "test machine", time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if want := len(Targets()) + 4; len(lines) != want {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), want, out)
	}
	for _, want := range []string{
		"Measured 2026-01-02 03:04 UTC on test machine.",
		"| p50 1.00 ms, p99 2.00 ms | 3 | a \\| b | ✅ met |",
		"| 9.00 s | 3 |  | ❌ **missed** |",
		NeedWorkflow, NeedProber, NotRun,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
}

func TestStatistics(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	if got := Median(ms(5, 1, 3)); got != 3*time.Millisecond {
		t.Errorf("median of 5 1 3 = %s", got)
	}
	if got := Median(ms(4, 1, 3, 2)); got != 2500*time.Microsecond {
		t.Errorf("median of 4 1 3 2 = %s", got)
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100 … 1
	}
	for p, want := range map[float64]int{50: 50, 99: 99, 100: 100, 1: 1} {
		if got := Percentile(ms(hundred...), p); got != time.Duration(want)*time.Millisecond {
			t.Errorf("p%v of 1…100 = %s, want %d ms", p, got, want)
		}
	}
}

// The counting dialer counts both directions of what it dialled.
func TestCountingDialer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.CopyN(c, c, 1000) // echo
		c.Close()
	}()
	d := &CountingDialer{}
	c, err := d.DialContext(t.Context(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if d.Bytes() != 2000 {
		t.Fatalf("counted %d bytes, want 2000", d.Bytes())
	}
}
