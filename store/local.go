package store

// Appliance-local tables: never replicated, never in a snapshot.

import (
	"context"
	"fmt"
	"time"
)

// SessionRow is a browser session as stored; the key is a hash of the
// cookie's secret, so a copy of the table opens no session. LastSeenAt is
// this appliance's own record of activity (or the creation time).
type SessionRow struct {
	IDHash     []byte
	UserID     string
	Data       []byte
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
}

// SessionByHash returns a session that has not expired.
func (s *Store) SessionByHash(ctx context.Context, idHash []byte, now time.Time) (SessionRow, error) {
	var r SessionRow
	err := s.pool.QueryRow(ctx, `select s.id_hash, s.user_id, s.data, s.created_at, greatest(s.created_at, a.last_seen_at), s.expires_at
		from (select id_hash, user_id, data, created_at, expires_at from sessions where id_hash = $1
		      union all
		      select id_hash, user_id, data, created_at, expires_at from local_sessions where id_hash = $1) s
		left join session_activity a on a.id_hash = s.id_hash
		where s.expires_at > $2 limit 1`, idHash, now).
		Scan(&r.IDHash, &r.UserID, &r.Data, &r.CreatedAt, &r.LastSeenAt, &r.ExpiresAt)
	if err != nil {
		return r, fmt.Errorf("session: %w", notFound(err))
	}
	return r, nil
}

// PutSession creates or updates a session (applied through raft).
func (t *Tx) PutSession(ctx context.Context, r SessionRow) error {
	_, err := t.tx.Exec(ctx, `insert into sessions (id_hash, user_id, data, created_at, expires_at) values ($1, $2, $3, $4, $5)
		on conflict (id_hash) do update set user_id = excluded.user_id, data = excluded.data, expires_at = excluded.expires_at`,
		r.IDHash, r.UserID, r.Data, r.CreatedAt, r.ExpiresAt)
	if err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

// DeleteSession removes a session (sign-out, rotation; applied through raft).
func (t *Tx) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := t.tx.Exec(ctx, `delete from sessions where id_hash = $1`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// PutLocalSession creates or updates a session valid on this appliance
// only (see local_sessions).
func (s *Store) PutLocalSession(ctx context.Context, r SessionRow) error {
	_, err := s.pool.Exec(ctx, `insert into local_sessions (id_hash, user_id, data, created_at, expires_at) values ($1, $2, $3, $4, $5)
		on conflict (id_hash) do update set user_id = excluded.user_id, data = excluded.data, expires_at = excluded.expires_at`,
		r.IDHash, r.UserID, r.Data, r.CreatedAt, r.ExpiresAt)
	if err != nil {
		return fmt.Errorf("save local session: %w", err)
	}
	return nil
}

// IsLocalSession tells whether a session is one of this appliance's own.
func (s *Store) IsLocalSession(ctx context.Context, idHash []byte) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `select exists (select 1 from local_sessions where id_hash = $1)`, idHash).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up local session: %w", err)
	}
	return ok, nil
}

// DeleteLocalSession removes a session of this appliance's own.
func (s *Store) DeleteLocalSession(ctx context.Context, idHash []byte) error {
	if _, err := s.pool.Exec(ctx, `delete from local_sessions where id_hash = $1`, idHash); err != nil {
		return fmt.Errorf("delete local session: %w", err)
	}
	return nil
}

// HasSessionsExpiredBefore tells whether a replicated session is past its
// absolute end at before: the primary proposes a prune only then, rather
// than a raft command every sweep.
func (s *Store) HasSessionsExpiredBefore(ctx context.Context, before time.Time) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `select exists (select 1 from sessions where expires_at <= $1)`, before).Scan(&ok); err != nil {
		return false, fmt.Errorf("look for expired sessions: %w", err)
	}
	return ok, nil
}

// DeleteSessionsExpiredBefore removes sessions past their absolute end
// (applied through raft, with the time the primary chose).
func (t *Tx) DeleteSessionsExpiredBefore(ctx context.Context, before time.Time) error {
	if _, err := t.tx.Exec(ctx, `delete from sessions where expires_at <= $1`, before); err != nil {
		return fmt.Errorf("delete expired sessions: %w", err)
	}
	return nil
}

// TouchSession records that this appliance saw the session now.
func (s *Store) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	_, err := s.pool.Exec(ctx, `insert into session_activity (id_hash, last_seen_at) values ($1, $2)
		on conflict (id_hash) do update set last_seen_at = excluded.last_seen_at`, idHash, at)
	if err != nil {
		return fmt.Errorf("record session activity: %w", err)
	}
	return nil
}

// DeleteExpired removes this appliance's local leftovers: activity of
// sessions that are gone, and stale OIDC logins.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) error {
	if _, err := s.pool.Exec(ctx, `delete from local_sessions where expires_at <= $1`, now); err != nil {
		return fmt.Errorf("delete expired local sessions: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `delete from session_activity a where not exists (select 1 from sessions s where s.id_hash = a.id_hash)
		and not exists (select 1 from local_sessions l where l.id_hash = a.id_hash)`); err != nil {
		return fmt.Errorf("delete stale session activity: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `delete from oidc_logins where created_at <= $1`, now.Add(-15*time.Minute)); err != nil {
		return fmt.Errorf("delete stale oidc logins: %w", err)
	}
	return nil
}

// LoginFailure is the count of recent failed sign-ins for a key (a user name
// or an address).
type LoginFailure struct {
	Failures    int
	LockedUntil time.Time
}

// LoginFailureFor returns the failures recorded for key; none is the zero value.
func (s *Store) LoginFailureFor(ctx context.Context, key string) (LoginFailure, error) {
	var f LoginFailure
	err := s.pool.QueryRow(ctx, `select failures, locked_until from login_failures where key = $1`, key).Scan(&f.Failures, &f.LockedUntil)
	if err = notFound(err); err == ErrNotFound {
		return LoginFailure{}, nil
	}
	if err != nil {
		return f, fmt.Errorf("login failures: %w", err)
	}
	return f, nil
}

// RecordLoginFailure counts one more failure for key and sets how long the
// key must wait, from the count, with delay. Failures older than forget are
// forgotten first.
func (s *Store) RecordLoginFailure(ctx context.Context, key string, now time.Time, forget time.Duration, delay func(failures int) time.Duration) (LoginFailure, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return LoginFailure{}, fmt.Errorf("record login failure: %w", err)
	}
	defer tx.Rollback(ctx)
	var f LoginFailure
	var last time.Time
	err = tx.QueryRow(ctx, `select failures, last_failure from login_failures where key = $1 for update`, key).Scan(&f.Failures, &last)
	if err != nil && notFound(err) != ErrNotFound {
		return f, fmt.Errorf("record login failure: %w", err)
	}
	if now.Sub(last) > forget {
		f.Failures = 0
	}
	f.Failures++
	f.LockedUntil = now.Add(delay(f.Failures))
	if _, err := tx.Exec(ctx, `insert into login_failures (key, failures, last_failure, locked_until) values ($1, $2, $3, $4)
		on conflict (key) do update set failures = excluded.failures, last_failure = excluded.last_failure, locked_until = excluded.locked_until`,
		key, f.Failures, now, f.LockedUntil); err != nil {
		return f, fmt.Errorf("record login failure: %w", err)
	}
	return f, tx.Commit(ctx)
}

// ClearLoginFailures forgets the failures of key after a successful sign-in.
func (s *Store) ClearLoginFailures(ctx context.Context, key string) error {
	if _, err := s.pool.Exec(ctx, `delete from login_failures where key = $1`, key); err != nil {
		return fmt.Errorf("clear login failures: %w", err)
	}
	return nil
}

// OIDCLogin is an OIDC sign-in between the redirect and the callback.
type OIDCLogin struct {
	State     string
	Nonce     string
	Verifier  string
	ReturnTo  string
	CreatedAt time.Time
}

// PutOIDCLogin records a sign-in that went to the provider.
func (s *Store) PutOIDCLogin(ctx context.Context, l OIDCLogin) error {
	_, err := s.pool.Exec(ctx, `insert into oidc_logins (state, nonce, verifier, return_to, created_at) values ($1, $2, $3, $4, $5)`,
		l.State, l.Nonce, l.Verifier, l.ReturnTo, l.CreatedAt)
	if err != nil {
		return fmt.Errorf("save oidc login: %w", err)
	}
	return nil
}

// TakeOIDCLogin returns and deletes the sign-in with the given state, so a
// callback can be used once only.
func (s *Store) TakeOIDCLogin(ctx context.Context, state string) (OIDCLogin, error) {
	var l OIDCLogin
	err := s.pool.QueryRow(ctx, `delete from oidc_logins where state = $1 returning state, nonce, verifier, return_to, created_at`, state).
		Scan(&l.State, &l.Nonce, &l.Verifier, &l.ReturnTo, &l.CreatedAt)
	if err != nil {
		return l, fmt.Errorf("oidc login: %w", notFound(err))
	}
	return l, nil
}
