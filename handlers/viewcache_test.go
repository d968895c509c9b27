package handlers

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestViewCache(t *testing.T) {
	var index atomic.Uint64
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	c := newViewCache[int](time.Second, index.Load)
	c.now = func() time.Time { return now }
	loads := 0
	load := func(context.Context) (int, error) { loads++; return loads, nil }
	get := func() int {
		t.Helper()
		v, err := c.get(context.Background(), "k", load)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := get(); v != 1 {
		t.Fatalf("first read: %d", v)
	}
	now = now.Add(999 * time.Millisecond)
	if v := get(); v != 1 {
		t.Fatalf("within a second, nothing applied: %d, want the kept 1", v)
	}
	index.Store(1) // a change applied on this member
	if v := get(); v != 2 {
		t.Fatalf("after a change: %d, want a new read", v)
	}
	// Between one and two seconds old, with nothing applied: the kept
	// entry is shown while one read refreshes it in the background.
	now = now.Add(1500 * time.Millisecond)
	refreshed := make(chan struct{})
	v, err := c.get(context.Background(), "k", func(context.Context) (int, error) {
		defer close(refreshed)
		loads++
		return loads, nil
	})
	if err != nil || v != 2 {
		t.Fatalf("a second and a half later: %d %v, want the kept 2 while it is refreshed", v, err)
	}
	<-refreshed
	for kept := 0; kept != 3; runtime.Gosched() { // until the refresh is kept
		c.mu.Lock()
		kept = c.entries["k"].v
		c.mu.Unlock()
	}
	if v := get(); v != 3 {
		t.Fatalf("after the refresh: %d, want 3", v)
	}
	// Two seconds old: read before answering.
	now = now.Add(2 * time.Second)
	if v := get(); v != 4 {
		t.Fatalf("two seconds later: %d, want a new read", v)
	}
	if v, _ := c.get(context.Background(), "other", load); v != 5 {
		t.Fatalf("another key: %d, want its own read", v)
	}

	// A failed read is not kept.
	now = now.Add(3 * time.Second)
	boom := errors.New("database down")
	if _, err := c.get(context.Background(), "k", func(context.Context) (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("failed read: %v", err)
	}
	if v := get(); v != 6 {
		t.Fatalf("after a failed read: %d, want a new read", v)
	}
}

// Callers that find the entry stale together share one read, which a
// caller that gives up does not cancel for the others.
func TestViewCacheSharesOneRead(t *testing.T) {
	var index atomic.Uint64
	c := newViewCache[int](time.Second, index.Load)
	var loads atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{})
	load := func(ctx context.Context) (int, error) {
		if loads.Add(1) == 1 {
			close(started)
		}
		<-release
		return 7, ctx.Err()
	}
	gone, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.get(gone, "k", load)
	}()
	<-started
	results := make(chan int, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.get(context.Background(), "k", load)
			if err != nil {
				t.Error(err)
			}
			results <- v
		}()
	}
	cancel()
	// The ten others are waiting on the first read, or will find its
	// result kept: either way, one read.
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		if v != 7 {
			t.Errorf("a caller got %d, want 7", v)
		}
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("%d reads, want 1", n)
	}
}
