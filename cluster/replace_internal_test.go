package cluster

import (
	"path/filepath"
	"testing"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// A raft life that would start once Shutdown began (an Unjoin, a Reset or a
// restore finishing as the appliance stops) is not started: Shutdown has
// closed the instance it found, and a new one would hold the raft log's
// file lock for ever, so the next start of the appliance would hang.
func TestNoRaftLifeStartsAfterShutdown(t *testing.T) {
	n, _ := startInternalNode(t, DefaultTiming())
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}

	ran := false
	err := n.restartRaftWith(func() error { ran = true; return nil }, true, false)
	if err == nil || ran {
		t.Fatalf("a raft restart after Shutdown: err %v, between ran %v; want it refused before anything", err, ran)
	}
	if err := n.swapRaft(nil, true); err == nil {
		t.Fatal("a dormant raft started after Shutdown")
	}
	// The log is free: another raft life (the next start) can open it.
	logStore, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(n.raftDir(), "log.bolt"),
		BoltOptions: &bbolt.Options{Timeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatalf("the raft log is still held after Shutdown: %v", err)
	}
	logStore.Close()
}
