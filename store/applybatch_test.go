package store_test

import (
	"context"
	"errors"
	"testing"

	"conclave/store"
)

// A batch applies in one transaction: a rejected entry in the middle is
// undone alone, the others keep their effect, the last index is recorded,
// and entries applied before are skipped.
func TestApplyBatchRejectionInTheMiddle(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	if _, _, err := st.Apply(ctx, 1, 1, createUser("ann")); err != nil {
		t.Fatal(err)
	}
	ranReplay := false
	res, err := st.ApplyBatch(ctx, []store.Entry{
		{Index: 1, Term: 1, Fn: func(*store.Tx) error { ranReplay = true; return nil }},
		{Index: 2, Term: 1, Fn: createUser("bob")},
		{Index: 3, Term: 1, Fn: func(tx *store.Tx) error {
			// A write that must be undone, then a rejection (ann exists).
			if err := createUser("cid")(tx); err != nil {
				return err
			}
			return createUser("ann")(tx)
		}},
		{Index: 4, Term: 2, Fn: createUser("dee")},
	})
	if err != nil {
		t.Fatalf("apply batch: %v", err)
	}
	if ranReplay || !res[0].Skipped {
		t.Fatalf("entry 1 (applied before): skipped=%v ran=%v; want skipped, not run", res[0].Skipped, ranReplay)
	}
	var rej *store.Rejection
	if res[1].Outcome != nil || !errors.As(res[2].Outcome, &rej) || res[3].Outcome != nil {
		t.Fatalf("outcomes %+v; want only entry 3 rejected", res)
	}
	for name, want := range map[string]bool{"ann": true, "bob": true, "cid": false, "dee": true} {
		_, err := st.UserByUsername(ctx, name)
		if got := err == nil; got != want {
			t.Errorf("user %s exists: %v, want %v (err %v)", name, got, want, err)
		}
	}
	if idx, term, _ := st.AppliedIndex(ctx); idx != 4 || term != 2 {
		t.Fatalf("applied index = %d/%d; want 4/2", idx, term)
	}
}

// An infrastructure error anywhere in a batch applies none of it.
func TestApplyBatchErrorAppliesNothing(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	_, err := st.ApplyBatch(ctx, []store.Entry{
		{Index: 1, Term: 1, Fn: createUser("ann")},
		{Index: 2, Term: 1, Fn: func(*store.Tx) error { return errors.New("disk on fire") }},
	})
	if err == nil {
		t.Fatal("want the error back")
	}
	if _, err := st.UserByUsername(ctx, "ann"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ann exists after a failed batch: %v", err)
	}
	if idx, _, _ := st.AppliedIndex(ctx); idx != 0 {
		t.Fatalf("applied index = %d; want 0", idx)
	}
}
