package web_test

import (
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"conclave/internal/testapp"
	"conclave/internal/testnet"
)

// faultCluster is three members on one test network that a test hits with
// random faults (TestRandomFaults, TestOneHolderUnderFaults): members may
// be down for a while, and every primary seen is recorded per raft term.
type faultCluster struct {
	t     *testing.T
	net   *testnet.Network
	names []string
	mu    sync.Mutex
	// apps are the members; a member being stopped or started is absent.
	apps    map[string]*testapp.App
	offline map[string]bool
	// leaders is who was seen as the primary in each raft term.
	leaders map[uint64]string
	// stop ends the goroutines started with background; halt closes it
	// and waits for them.
	stop chan struct{}
	wg   sync.WaitGroup
	halt func()
}

// startFaultCluster starts the named members on one network and adds the
// others to the first as replicas.
func startFaultCluster(t *testing.T, names ...string) *faultCluster {
	t.Helper()
	c := &faultCluster{t: t, net: testnet.New(), names: names, apps: map[string]*testapp.App{}, offline: map[string]bool{}, leaders: map[uint64]string{},
		stop: make(chan struct{})}
	c.halt = sync.OnceFunc(func() { close(c.stop); c.wg.Wait() })
	for _, n := range names {
		c.apps[n] = testapp.Start(t, named(n), testapp.WithNetwork(c.net, n))
	}
	for _, n := range names[1:] {
		addReplica(t, c.apps[names[0]], c.apps[n])
	}
	// Cleanups run last registered first: the goroutines stop before the
	// members, also when the test fails half-way.
	t.Cleanup(c.halt)
	return c
}

// background runs fn in a goroutine until stop is closed (by halt).
func (c *faultCluster) background(fn func(stop chan struct{})) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn(c.stop)
	}()
}

// faultSeed is the seed of a test's faults: the fixed one, or the one in
// the environment variable env; the test logs it, and again if it fails.
// rounds likewise comes from envRounds when set.
func faultSeed(t *testing.T, seed uint64, env string, rounds int, envRounds string) (*rand.Rand, int) {
	t.Helper()
	if s := os.Getenv(env); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	if s := os.Getenv(envRounds); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d (run again with %s=%d)", seed, env, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("failed with seed %d: %s=%d go test ./web -run %s", seed, env, seed, t.Name())
		}
	})
	return rand.New(rand.NewPCG(seed, seed^0x5eed)), rounds
}

func (c *faultCluster) down(name string) *testapp.App {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offline[name] = true
	return c.apps[name]
}

// up brings a member restarted with testapp back; the goroutines stop
// before it does at the end of the test.
func (c *faultCluster) up(name string, app *testapp.App) {
	c.t.Cleanup(c.halt)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.apps[name] = app
	delete(c.offline, name)
}

// running returns the members that are up.
func (c *faultCluster) running() []*testapp.App {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*testapp.App
	for _, name := range c.names {
		if !c.offline[name] {
			out = append(out, c.apps[name])
		}
	}
	return out
}

// primaryName is the member that is up and says it is the primary, or "".
func (c *faultCluster) primaryName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range c.names {
		if !c.offline[name] && c.apps[name].Node.SelfState() == "Online" {
			return name
		}
	}
	return ""
}

// watchLeaders records, until stop, which member is the primary in which
// term; two in one term fail the test.
func (c *faultCluster) watchLeaders(stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
		c.mu.Lock()
		for name, app := range c.apps {
			if c.offline[name] {
				continue
			}
			if term, ok := app.Node.LeaderTerm(); ok {
				if other, seen := c.leaders[term]; seen && other != name {
					c.t.Errorf("two primaries in raft term %d: %s and %s", term, other, name)
				}
				c.leaders[term] = name
			}
		}
		c.mu.Unlock()
	}
}

// Kinds of fault that playFault chooses from: the first four are those of
// TestRandomFaults; the last two aim at the primary.
const (
	faultPartition = iota
	faultOneWayCut
	faultFreeze
	faultRestart
	faultRestartPrimary
	faultIsolatePrimary
)

// playFault plays one fault, chosen by rng among the first kinds kinds,
// for a random while (that is the fault, not a wait for a condition), then
// waits until the cluster has recovered.
func (c *faultCluster) playFault(rng *rand.Rand, round, kinds int) {
	c.t.Helper()
	n := len(c.names)
	a, b := c.names[rng.IntN(n)], c.names[rng.IntN(n)]
	for b == a {
		b = c.names[rng.IntN(n)]
	}
	hold := time.Duration(500+rng.IntN(2500)) * time.Millisecond
	kind := rng.IntN(kinds)
	if kind >= faultRestartPrimary {
		if p := c.primaryName(); p != "" {
			a = p
		}
	}
	switch kind {
	case faultPartition:
		c.t.Logf("round %d: partition %s | %s for %s", round, a, b, hold)
		c.net.Partition(a, b)
		time.Sleep(hold)
		c.net.Heal(a, b)
	case faultOneWayCut:
		c.t.Logf("round %d: one-way cut %s → %s for %s", round, a, b, hold)
		c.net.Cut(a, b)
		time.Sleep(hold)
		c.net.Restore(a, b)
	case faultFreeze:
		c.t.Logf("round %d: freeze %s for %s", round, a, hold)
		c.net.Freeze(a)
		time.Sleep(hold)
		c.net.Thaw(a)
	case faultRestart, faultRestartPrimary:
		what := "stop"
		if kind == faultRestartPrimary {
			what = "stop the primary"
		}
		c.t.Logf("round %d: %s %s, start it again after %s", round, what, a, hold)
		app := c.down(a)
		app.Stop(c.t)
		time.Sleep(hold)
		c.up(a, app.Restart(c.t))
	case faultIsolatePrimary:
		c.t.Logf("round %d: cut the primary %s off from the others for %s", round, a, hold)
		for _, o := range c.names {
			if o != a {
				c.net.Partition(a, o)
			}
		}
		time.Sleep(hold)
		for _, o := range c.names {
			if o != a {
				c.net.Heal(a, o)
			}
		}
	}
	c.waitHealthy()
}

// waitHealthy waits until one member is the primary and the others are
// replicas in contact with it.
func (c *faultCluster) waitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		primaries, replicas := 0, 0
		for _, app := range c.running() {
			switch app.Node.SelfState() {
			case "Online":
				primaries++
			case "ReplicaWithQuorum":
				replicas++
			}
		}
		if primaries == 1 && replicas == len(c.names)-1 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the cluster did not recover within a minute: %d primaries, %d replicas in contact", primaries, replicas)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
