package cluster

import (
	"context"
	"errors"
	"time"

	"conclave/store"
)

// SessionBackend keeps browser sessions for the session package: reads and
// activity from this appliance's database, creation and deletion through
// raft, so that a session started on one member is valid on every member.
type SessionBackend struct{ n *Node }

// Sessions returns the node's session backend.
func (n *Node) Sessions() SessionBackend { return SessionBackend{n: n} }

// SessionByHash reads a session.
func (b SessionBackend) SessionByHash(ctx context.Context, idHash []byte, now time.Time) (store.SessionRow, error) {
	return b.n.store.SessionByHash(ctx, idHash, now)
}

// PutSession creates or updates a session in the cluster. Without a
// primary to write to (consensus lost), a new session is kept by this
// appliance alone, so that an administrator can still sign in to repair the
// cluster; a session kept that way stays this appliance's.
func (b SessionBackend) PutSession(ctx context.Context, r store.SessionRow) error {
	if local, err := b.n.store.IsLocalSession(ctx, r.IDHash); err != nil || local {
		if err != nil {
			return err
		}
		return b.n.store.PutLocalSession(ctx, r)
	}
	// An isolated member has no primary to wait for (offline.go).
	if b.n.Isolated() {
		return b.n.store.PutLocalSession(ctx, r)
	}
	// During a change of primary the session waits the election out; only
	// when no primary comes is it kept here.
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := b.n.ProposeDataRetrying(wctx, CmdPutSession, "system", SessionData{IDHash: r.IDHash, UserID: r.UserID, Data: r.Data, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}, nil)
	if errors.Is(err, ErrNotLeader) {
		b.n.log.Warn("no primary to record a session with: it is valid on this appliance only")
		return b.n.store.PutLocalSession(ctx, r)
	}
	return err
}

// DeleteSession ends a session in the cluster (and here, if it was this
// appliance's own).
func (b SessionBackend) DeleteSession(ctx context.Context, idHash []byte) error {
	if local, err := b.n.store.IsLocalSession(ctx, idHash); err != nil || local {
		if err != nil {
			return err
		}
		return b.n.store.DeleteLocalSession(ctx, idHash)
	}
	return b.n.ProposeData(ctx, CmdDeleteSession, "system", SessionData{IDHash: idHash}, nil)
}

// TouchSession records activity on this appliance only.
func (b SessionBackend) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	return b.n.store.TouchSession(ctx, idHash, at)
}

// PruneSessions deletes sessions past their absolute end, on the primary,
// and says whether it proposed the deletion: with no such session it
// proposes nothing, so that an idle cluster writes no raft entry every
// sweep.
func (n *Node) PruneSessions(ctx context.Context) (proposed bool, err error) {
	if !n.IsLeader() {
		return false, nil
	}
	if expired, err := n.store.HasSessionsExpiredBefore(ctx, time.Now()); err != nil || !expired {
		return false, err
	}
	return true, n.Propose(ctx, Command{Type: CmdPruneSessions})
}
