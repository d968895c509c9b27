package bench

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/store"
)

// load sends GET url at rate requests a second for d, each from its own
// goroutine at its scheduled time (an open loop: a slow answer does not
// delay the next request, and its latency counts from when it was due).
// check validates each answer's body.
func load(c *http.Client, url string, rate int, d time.Duration, check func(string) error) (lat []time.Duration, errs int64, firstErr error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var nerr atomic.Int64
	var errOnce sync.Once
	interval := time.Second / time.Duration(rate)
	n := int(d / interval)
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := func() error {
				resp, err := c.Get(url)
				if err != nil {
					return err
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					return err
				}
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return check(string(body))
			}()
			took := time.Since(due)
			if err != nil {
				nerr.Add(1)
				errOnce.Do(func() { firstErr = err })
			}
			mu.Lock()
			lat = append(lat, took)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, nerr.Load(), firstErr
}

// BenchmarkConsole: the cluster view of a cluster of 5 real appliances
// (separate processes) under 500 requests/s, and each appliance's resident
// memory at idle and under that load, with -rows rows replicated.
func BenchmarkConsole(b *testing.B) {
	const members, rate = 5, 500
	const loadFor, idleFor, settleFor = 10 * time.Second, 10 * time.Second, 60 * time.Second
	procs := make([]*proc, members)
	for i := range procs {
		procs[i] = startProc(b, memberName(i))
	}
	primary := procs[0]
	var self []struct {
		ID     string
		IsSelf bool `json:"isSelf"`
		Name   string
	}
	primary.json(b, primary.token, http.MethodGet, "/api/v1/cluster/members", nil, &self)
	if len(self) != 1 {
		b.Fatalf("a new appliance lists %d members", len(self))
	}
	st, err := store.Open(b.Context(), primary.dbURL)
	if err != nil {
		b.Fatal(err)
	}
	if err := eventsDataset.seed(b.Context(), st, *rowsFlag, self[0].ID); err != nil {
		b.Fatal(err)
	}
	st.Close()
	for _, r := range procs[1:] {
		primary.addReplica(b, r)
	}

	// Idle: every member settled, nobody asking anything. Right after
	// copying a million rows into each database, PostgreSQL's autovacuum
	// analyzes and vacuums them for a while: the cluster is measured once
	// it is in its steady state.
	time.Sleep(settleFor)
	cpu0 := make([]time.Duration, members)
	for i, p := range procs {
		cpu0[i] = p.cpu(b)
	}
	time.Sleep(idleFor)
	idleRSS := make([]int64, members)
	idleCPU := make([]float64, members)
	for i, p := range procs {
		idleRSS[i] = p.rss(b)
		idleCPU[i] = float64(p.cpu(b)-cpu0[i]) / float64(idleFor) * 100
	}

	// Under load: the cluster view of the primary, signed in.
	c := primary.session(b)
	names := make([]string, members)
	for i, p := range procs {
		names[i] = p.name
	}
	check := func(body string) error {
		for _, n := range names {
			if !strings.Contains(body, ">"+n+"<") {
				return fmt.Errorf("the cluster view does not show member %s", n)
			}
		}
		return nil
	}
	// Warm-up at the full rate: the client opens the connections it needs
	// (TLS handshakes) before the measure, as browsers keep theirs open.
	if _, errs, err := load(c, "https://"+primary.addr+"/", rate, 3*time.Second, check); errs > 0 {
		b.Fatalf("warm-up: %d errors, first: %v", errs, err)
	}
	loadRSS := make([]int64, members)
	var p50s, p99s, cpuPerReq []time.Duration
	var errors int64
	var firstErr error
	for run := 0; run < runs(); run++ {
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				for i, p := range procs {
					loadRSS[i] = max(loadRSS[i], p.rss(b))
				}
				select {
				case <-stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
			}
		}()
		cpuBefore := primary.cpu(b)
		lat, errs, err := load(c, "https://"+primary.addr+"/", rate, loadFor, check)
		cpuPerReq = append(cpuPerReq, (primary.cpu(b)-cpuBefore)/time.Duration(len(lat)))
		close(stop)
		<-sampled
		if len(lat) != int(loadFor/(time.Second/rate)) {
			b.Fatalf("%d answers, want %d", len(lat), int(loadFor/(time.Second/rate)))
		}
		errors += errs
		if firstErr == nil {
			firstErr = err
		}
		p50s, p99s = append(p50s, Percentile(lat, 50)), append(p99s, Percentile(lat, 99))
	}
	p99 := Median(p99s)
	errNote := "no errors"
	if errors > 0 {
		errNote = fmt.Sprintf("%d errors, first: %v", errors, firstErr)
	}
	record(b, "console-cluster", runs(), fmt.Sprintf("p50 %s, p99 %s; %s", Ms(Median(p50s)), Ms(p99), errNote),
		fmt.Sprintf("%d requests/s for %s per run to the primary's cluster view, open loop (latency counts from when a request was due), one signed-in session, each answer checked to list all %d members; the primary spends %s of CPU per request; %d rows replicated",
			rate, loadFor, members, Ms(Median(cpuPerReq)), *rowsFlag),
		p99 <= 10*time.Millisecond && errors == 0)

	var worst int64
	var perMember []string
	for i := range procs {
		worst = max(worst, idleRSS[i], loadRSS[i])
		perMember = append(perMember, fmt.Sprintf("%s %s idle (CPU %.1f%%) / %s loaded", names[i], Bytes(idleRSS[i]), idleCPU[i], Bytes(loadRSS[i])))
	}
	record(b, "memory", runs(), fmt.Sprintf("largest %s", Bytes(worst)),
		fmt.Sprintf("VmRSS of each `conclave serve` process (its PostgreSQL not included), idle for %s after %s to settle, and the most seen under the load above: %s; %d rows of %s",
			idleFor, settleFor, strings.Join(perMember, "; "), *rowsFlag, eventsDataset.name),
		worst <= 100_000_000)
}
