package handlers

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// viewCache keeps what a page reads from the database and from the other
// members, for pages that many people (or one wall screen) reload every
// second. An entry is used while this member has applied no raft entry
// since it was read, and while it is younger than maxAge: a page never
// shows less than the last change this member applied (an administrator
// who just started an operation sees it), and never data older than
// maxAge. Callers that find an entry stale at the same time share one
// read; an entry that is only old (up to twice maxAge, nothing applied
// since) is still shown while one read refreshes it in the background.
type viewCache[T any] struct {
	maxAge time.Duration
	index  func() uint64 // this member's applied raft index
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]cachedView[T]
	flight  singleflight.Group
}

type cachedView[T any] struct {
	v     T
	index uint64
	at    time.Time
}

// viewLoadTimeout bounds a shared read of a viewCache.
const viewLoadTimeout = 15 * time.Second

func newViewCache[T any](maxAge time.Duration, index func() uint64) *viewCache[T] {
	return &viewCache[T]{maxAge: maxAge, index: index, now: time.Now, entries: map[string]cachedView[T]{}}
}

// get returns the entry for key, reading it with load when it is stale.
// An error is returned to every caller that shared the read, and not kept.
func (c *viewCache[T]) get(ctx context.Context, key string, load func(context.Context) (T, error)) (T, error) {
	index := c.index()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && e.index == index {
		switch age := c.now().Sub(e.at); {
		case age < c.maxAge:
			return e.v, nil
		case age < 2*c.maxAge:
			// Only old, not changed here: it is shown while one read
			// brings it up to date in the background, so that no viewer
			// waits for the members' answers once a second.
			c.flight.DoChan(key, func() (any, error) { return c.read(ctx, key, load) })
			return e.v, nil
		}
	}
	v, err, _ := c.flight.Do(key, func() (any, error) { return c.read(ctx, key, load) })
	if err != nil {
		var zero T
		return zero, err
	}
	return v.(T), nil
}

// read loads the entry for key and keeps it. The index is read before the
// data: if an entry is applied meanwhile, the data may hold it but is
// filed under the older index, so the next caller reads again. The read is
// shared: one caller giving up must not fail the others, so it has a
// deadline of its own.
func (c *viewCache[T]) read(ctx context.Context, key string, load func(context.Context) (T, error)) (T, error) {
	index, at := c.index(), c.now()
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), viewLoadTimeout)
	defer cancel()
	v, err := load(lctx)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	c.entries[key] = cachedView[T]{v: v, index: index, at: at}
	c.mu.Unlock()
	return v, nil
}
