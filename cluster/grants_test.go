package cluster

import (
	"errors"
	"testing"
	"time"
)

// An enrollment grant is refused once expired, for another cluster, when
// made up, and a second time (replayed).
func TestGrantExpiredReplayedForeign(t *testing.T) {
	n := &Node{}
	g := n.IssueGrant("cluster-a", "admin")
	if _, err := n.CheckGrant(g, "cluster-b"); !errors.Is(err, ErrGrant) {
		t.Errorf("a grant for another cluster: %v", err)
	}
	if _, err := n.CheckGrant("cng_made-up", "cluster-a"); !errors.Is(err, ErrGrant) {
		t.Errorf("a made-up grant: %v", err)
	}
	if err := n.UseGrant(g, "cluster-a"); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := n.UseGrant(g, "cluster-a"); !errors.Is(err, ErrGrantUsed) {
		t.Errorf("a replayed grant: %v", err)
	}

	old := n.IssueGrant("cluster-a", "admin")
	n.grants.mu.Lock()
	v := n.grants.m[hashString(old)]
	v.expires = time.Now().Add(-time.Second) // issued more than 15 minutes ago
	n.grants.m[hashString(old)] = v
	n.grants.mu.Unlock()
	if _, err := n.CheckGrant(old, "cluster-a"); !errors.Is(err, ErrGrant) {
		t.Errorf("an expired grant, checked: %v", err)
	}
	if err := n.UseGrant(old, "cluster-a"); !errors.Is(err, ErrGrant) {
		t.Errorf("an expired grant, used: %v", err)
	}
	// Expired grants are forgotten when the next one is issued.
	n.IssueGrant("cluster-a", "admin")
	if _, ok := n.grants.m[hashString(old)]; ok {
		t.Error("an expired grant is still kept")
	}
}
