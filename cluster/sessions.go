package cluster

import (
	"context"
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

// PutSession creates or updates a session in the cluster.
func (b SessionBackend) PutSession(ctx context.Context, r store.SessionRow) error {
	return b.n.ProposeData(ctx, CmdPutSession, "system", SessionData{IDHash: r.IDHash, UserID: r.UserID, Data: r.Data, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}, nil)
}

// DeleteSession ends a session in the cluster.
func (b SessionBackend) DeleteSession(ctx context.Context, idHash []byte) error {
	return b.n.ProposeData(ctx, CmdDeleteSession, "system", SessionData{IDHash: idHash}, nil)
}

// TouchSession records activity on this appliance only.
func (b SessionBackend) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	return b.n.store.TouchSession(ctx, idHash, at)
}

// PruneSessions deletes sessions past their absolute end, on the primary.
func (n *Node) PruneSessions(ctx context.Context) error {
	if !n.IsLeader() {
		return nil
	}
	return n.Propose(ctx, Command{Type: CmdPruneSessions})
}
