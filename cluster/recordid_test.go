package cluster_test

import (
	"testing"

	"github.com/google/uuid"

	"conclave/cluster"
)

// Record IDs made one after another sort after each other, as text and as
// uuid, so that new events and access requests go to the right end of
// their primary keys.
func TestRecordIDsAreTimeOrdered(t *testing.T) {
	prev := cluster.NewRecordID()
	for i := 0; i < 10000; i++ {
		id := cluster.NewRecordID()
		if id <= prev {
			t.Fatalf("record ID %d: %s does not sort after %s", i, id, prev)
		}
		if u, err := uuid.Parse(id); err != nil || u.Version() != 7 {
			t.Fatalf("record ID %s: version %d, %v; want a UUID of version 7", id, u.Version(), err)
		}
		prev = id
	}
}
