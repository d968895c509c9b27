package bench

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// probeBytes is what p's prober has sent and received so far, from its
// /metrics (conclave_probe_sent_bytes_total and _received_); token is one
// of the cluster's (a replica's own from before it joined is gone).
func (p *proc) probeBytes(b *testing.B, token string) int64 {
	b.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+p.addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := insecureClient(nil).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("metrics of %s: status %d", p.name, resp.StatusCode)
	}
	var total int64
	found := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "conclave_probe_sent_bytes_total{") || strings.HasPrefix(line, "conclave_probe_received_bytes_total{") {
			n, err := strconv.ParseInt(line[strings.LastIndexByte(line, ' ')+1:], 10, 64)
			if err != nil {
				b.Fatalf("metrics of %s: %q", p.name, line)
			}
			total += n
			found++
		}
	}
	if found != 2 {
		b.Fatalf("metrics of %s lack the probe byte counters", p.name)
	}
	return total
}

// probeFigures is what members spend while idle: CPU (the whole process:
// probing, raft heartbeats, the members' status) and the probe bytes of
// their own probers, both per second.
type probeFigures struct {
	cpu   []float64 // percent of one core
	bytes []float64 // bytes per second
}

func measureIdle(b *testing.B, procs []*proc, token string, d time.Duration) probeFigures {
	b.Helper()
	cpu0, bytes0 := make([]time.Duration, len(procs)), make([]int64, len(procs))
	for i, p := range procs {
		cpu0[i], bytes0[i] = p.cpu(b), p.probeBytes(b, token)
	}
	start := time.Now()
	time.Sleep(d)
	var f probeFigures
	for i, p := range procs {
		el := time.Since(start)
		f.cpu = append(f.cpu, float64(p.cpu(b)-cpu0[i])/float64(el)*100)
		f.bytes = append(f.bytes, float64(p.probeBytes(b, token)-bytes0[i])/el.Seconds())
	}
	return f
}

func (f probeFigures) summary() string {
	var cpu, bytes []string
	for i := range f.cpu {
		cpu = append(cpu, fmt.Sprintf("%.1f%%", f.cpu[i]))
		bytes = append(bytes, fmt.Sprintf("%.0f", f.bytes[i]))
	}
	return fmt.Sprintf("CPU %s (median %.1f%% of a core); probe bytes/s %s (median %s/s)",
		strings.Join(cpu, ", "), MedianFloat(f.cpu), strings.Join(bytes, ", "), Bytes(int64(MedianFloat(f.bytes))))
}

// BenchmarkProbing: what the prober costs each member of an idle cluster
// of real appliances (`conclave serve` processes), with 3 members and
// then 5: the probes each member's prober sent and received (bytes on the
// wire, TLS included) and the CPU of the whole idle process.
func BenchmarkProbing(b *testing.B) {
	const settle, window = 15 * time.Second, 20 * time.Second
	procs := make([]*proc, 5)
	for i := range procs {
		procs[i] = startProc(b, memberName(i))
	}
	for _, r := range procs[1:3] {
		procs[0].addReplica(b, r)
	}
	var three, five []probeFigures
	time.Sleep(settle)
	for run := 0; run < runs(); run++ {
		three = append(three, measureIdle(b, procs[:3], procs[0].token, window))
	}
	for _, r := range procs[3:] {
		procs[0].addReplica(b, r)
	}
	time.Sleep(settle)
	for run := 0; run < runs(); run++ {
		five = append(five, measureIdle(b, procs, procs[0].token, window))
	}
	median := func(fs []probeFigures) (cpu, bytes float64, mid probeFigures) {
		var cpus, bs []float64
		for _, f := range fs {
			cpus, bs = append(cpus, MedianFloat(f.cpu)), append(bs, MedianFloat(f.bytes))
		}
		cpu, bytes = MedianFloat(cpus), MedianFloat(bs)
		for _, f := range fs { // the run whose CPU is the median, for the details
			if MedianFloat(f.cpu) == cpu {
				mid = f
			}
		}
		return cpu, bytes, mid
	}
	cpu3, bytes3, mid3 := median(three)
	cpu5, bytes5, mid5 := median(five)
	// Each member probes every other once a second: its bytes should grow
	// as members-1 (4/2 = 2× from 3 to 5).
	if bytes5 <= 0 || bytes3 <= 0 {
		b.Fatalf("no probe bytes counted: %.0f/s with 3 members, %.0f/s with 5", bytes3, bytes5)
	}
	record(b, "probing", runs(), fmt.Sprintf("5 members: %s/s of probes and %.1f%% of a core per member, the primary %.1f%% (3 members: %s/s, %.1f%%, the primary %.1f%%)",
		Bytes(int64(bytes5)), cpu5, mid5.cpu[0], Bytes(int64(bytes3)), cpu3, mid3.cpu[0]),
		fmt.Sprintf("idle clusters of real `conclave serve` processes, %s per measure after %s to settle; bytes are each member's own prober's (sent and received, TLS included; probes to it are counted by the others), CPU the whole idle process (probing, raft heartbeats, status), so an upper bound for probing (the primary, m1, also asks every member for its status when a page needs it, and runs the cluster's background work); from 3 to 5 members bytes grew %.2f× (probing every other member: 2× expected) and CPU %.2f×; 5 members, each: %s; 3 members, each: %s",
			window, settle, bytes5/bytes3, cpu5/cpu3, mid5.summary(), mid3.summary()),
		true)
}
