package store_test

import (
	"context"
	"testing"
	"time"

	"conclave/store"
)

// Link history is appliance-local and bounded: buckets are replaced, not
// added twice, read per resolution oldest first, and deleted by age.
func TestLinkSamplesBounded(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 14, 2, 0, 0, time.UTC)
	avg := 1.5
	var rows []store.LinkSample
	for i := range 30 {
		at := now.Add(-time.Duration(i) * time.Hour)
		rows = append(rows,
			store.LinkSample{FromID: "a", ToID: "c", Resolution: 10 * time.Second, At: at, Probes: 10, Lost: 0, MinMs: &avg, AvgMs: &avg, MaxMs: &avg},
			store.LinkSample{FromID: "a", ToID: "c", Resolution: time.Minute, At: at, Probes: 60, Lost: 60})
	}
	if err := st.PutLinkSamples(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if err := st.PutLinkSamples(ctx, rows[:2]); err != nil { // again: replaced
		t.Fatal(err)
	}
	if n, err := st.CountLinkSamples(ctx); err != nil || n != 60 {
		t.Fatalf("%d samples (%v), want 60", n, err)
	}
	h, err := st.LinkHistory(ctx, "a", "c", time.Minute, now.Add(-5*time.Hour))
	if err != nil || len(h) != 6 || !h[0].At.Before(h[5].At) || h[0].AvgMs != nil || h[0].Lost != 60 {
		t.Fatalf("last 5 hours of 1-minute buckets: %+v (%v), want 6, oldest first, all lost", h, err)
	}
	if n, err := st.DeleteLinkSamplesBefore(ctx, 10*time.Second, now.Add(-3*time.Hour)); err != nil || n != 26 {
		t.Fatalf("deleted %d 10-second buckets (%v), want 26", n, err)
	}
	if n, err := st.DeleteLinkSamplesBefore(ctx, time.Minute, now.Add(-48*time.Hour)); err != nil || n != 0 {
		t.Fatalf("deleted %d 1-minute buckets (%v), want 0", n, err)
	}
	if n, _ := st.CountLinkSamples(ctx); n != 34 {
		t.Fatalf("%d samples left, want 34", n)
	}
}
