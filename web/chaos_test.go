package web_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"conclave/internal/testapp"
)

// TestRandomFaults runs client writes against three members while faults
// chosen at random hit them: partitions, one-way cuts, a frozen member
// (its links drop everything, as if paused), a member stopped and started
// again. Afterwards every write that was acknowledged is on every member,
// the members hold the same data, and no two members were ever seen as the
// primary in the same raft term.
//
// The faults come from a fixed seed, printed; CONCLAVE_CHAOS_SEED=N plays
// another sequence, CONCLAVE_CHAOS_ROUNDS=N more rounds. A fault lasts a
// random while (that is the fault, not a wait for a condition); after each
// the test waits until the cluster has recovered.
func TestRandomFaults(t *testing.T) {
	rng, rounds := faultSeed(t, 20261122, "CONCLAVE_CHAOS_SEED", 6, "CONCLAVE_CHAOS_ROUNDS")
	c := &chaosCluster{faultCluster: startFaultCluster(t, "alpha", "beta", "gamma")}
	token := c.apps["alpha"].AdminToken(t)

	c.background(c.watchLeaders)
	writeSeed := rng.Uint64()
	c.background(func(stop chan struct{}) { c.write(stop, token, writeSeed) })

	for round := range rounds {
		c.playFault(rng, round, faultRestart+1)
	}
	c.halt()

	acked := c.acknowledged()
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged during the faults")
	}
	t.Logf("%d writes acknowledged, %d refused or unanswered; %d leader terms seen", len(acked), c.failed, len(c.leaders))
	for reason, n := range c.reasons {
		t.Logf("  %d× %s", n, reason)
	}
	apps := c.running()
	for _, app := range apps {
		waitUsers(t, app, acked...)
	}
	primary := waitNewPrimary(t, apps...)
	for _, app := range apps {
		if app != primary {
			waitSameData(t, primary, app)
		}
	}
}

// chaosCluster is the cluster of TestRandomFaults and what its client saw.
type chaosCluster struct {
	*faultCluster
	acks    []string
	failed  int
	reasons map[string]int // why writes failed, for the log
}

// target is where a client sends a write: the member that says it is the
// primary (users are configuration, written on the primary), or, when none
// does, any member that is up (it refuses).
func (c *chaosCluster) target(rng *rand.Rand) *testapp.App {
	c.mu.Lock()
	defer c.mu.Unlock()
	var up []*testapp.App
	for name, app := range c.apps {
		if c.offline[name] {
			continue
		}
		if app.Node.SelfState() == "Online" {
			return app
		}
		up = append(up, app)
	}
	if len(up) == 0 {
		return nil
	}
	return up[rng.IntN(len(up))]
}

// write creates users, one after another, until stop; it remembers the
// ones the cluster acknowledged.
func (c *chaosCluster) write(stop chan struct{}, token string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		app := c.target(rng)
		if app == nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		name := fmt.Sprintf("chaos-%04d", i)
		body, _ := json.Marshal(map[string]string{"username": name, "password": "chaos-password-" + name, "role": "Helpdesk"})
		req, _ := http.NewRequest(http.MethodPost, app.URL+"/api/v1/users", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		c.mu.Lock()
		if err == nil && resp.StatusCode == http.StatusCreated {
			c.acks = append(c.acks, name)
		} else {
			c.failed++
			if c.reasons == nil {
				c.reasons = map[string]int{}
			}
			reason := fmt.Sprint(err)
			if err == nil {
				raw, _ := io.ReadAll(resp.Body)
				reason = fmt.Sprintf("%d %.160s", resp.StatusCode, bytes.Join(bytes.Fields(raw), []byte(" ")))
			}
			c.reasons[reason]++
		}
		c.mu.Unlock()
		ok := err == nil && resp.StatusCode == http.StatusCreated
		if err == nil {
			resp.Body.Close()
		}
		if !ok {
			time.Sleep(10 * time.Millisecond) // a client backs off a little
		}
	}
}

func (c *chaosCluster) acknowledged() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.acks...)
}
