package cluster_test

import (
	"context"
	"errors"
	"testing"

	"conclave/cluster"
	"conclave/internal/testpg"
	"conclave/keyring"
	"conclave/store"
)

// The cluster's data keys are made with the cluster, kept over a restart,
// and a second set (two primaries' proposals crossing) is refused: a
// password sealed under the first opens for good.
func TestDataKeysMadeWithTheClusterAndKept(t *testing.T) {
	dir, url := t.TempDir(), testpg.NewDatabase(t)
	m := startNode(t, dir, url)
	ctx := context.Background()
	keys, err := m.node.DataKeys(ctx)
	if err != nil {
		t.Fatalf("data keys of a new cluster: %v", err)
	}
	sealed, err := keys.Seal([]byte("pw"), "account:x")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := keyring.New()
	err = m.node.ProposeData(ctx, cluster.CmdPutDataKeys, "system", other, nil)
	var rej *store.Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("a second set of data keys: %v, want a rejection", err)
	}
	m.stop()
	m = startNode(t, dir, url)
	again, err := m.node.DataKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.Current != keys.Current {
		t.Fatalf("data key after restart %s, want %s", again.Current, keys.Current)
	}
	if pw, err := again.Open(sealed, "account:x"); err != nil || string(pw) != "pw" {
		t.Fatalf("open after restart: %q, %v", pw, err)
	}
}
