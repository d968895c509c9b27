package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is a person who signs in to the console or the API.
type User struct {
	ID           string
	Username     string
	Role         string
	PasswordHash string
	Source       string // "local" or "oidc"
	Subject      string // the identity provider's "<issuer> <sub>"
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// APIToken is a bearer token for the JSON API; only its hash is kept.
type APIToken struct {
	ID        string
	UserID    string
	Hash      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

const userSelect = `select id, username, role, password_hash, source, subject, disabled, created_at, updated_at from users`

const userByIDSQL = userSelect + ` where id = $1`

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Username, &u.Role, &u.PasswordHash, &u.Source, &u.Subject, &u.Disabled, &u.CreatedAt, &u.UpdatedAt)
	return u, notFound(err)
}

// UserByID returns one user.
func (s *Store) UserByID(ctx context.Context, id string) (User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, userByIDSQL, id))
	if err != nil {
		return u, fmt.Errorf("user %s: %w", id, err)
	}
	return u, nil
}

// UserByUsername returns one user; user names are compared without case.
func (s *Store) UserByUsername(ctx context.Context, username string) (User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, userSelect+` where lower(username) = lower($1)`, username))
	if err != nil {
		return u, fmt.Errorf("user %q: %w", username, err)
	}
	return u, nil
}

// Users lists every user by name.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.pool.Query(ctx, userSelect+` order by lower(username)`)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	defer rows.Close()
	var us []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("users: %w", err)
		}
		us = append(us, u)
	}
	return us, rows.Err()
}

// CountUsers counts the users.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `select count(*) from users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count users: %w", err)
	}
	return n, nil
}

// CreateUser adds a user, or is rejected when the name is taken.
func (t *Tx) CreateUser(ctx context.Context, u User) error {
	_, err := t.tx.Exec(ctx, `insert into users (id, username, role, password_hash, source, subject, disabled, created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
		u.ID, u.Username, u.Role, u.PasswordHash, u.Source, u.Subject, u.Disabled, u.CreatedAt)
	if isUniqueViolation(err) {
		return Reject("username", "a user named %q exists already", u.Username)
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

// UserChange lists the fields to change; nil ones stay as they are.
type UserChange struct {
	Role         *string
	PasswordHash *string
	Disabled     *bool
}

// UpdateUser changes a user.
func (t *Tx) UpdateUser(ctx context.Context, id string, c UserChange, at time.Time) error {
	tag, err := t.tx.Exec(ctx, `update users set
		role = coalesce($2, role),
		password_hash = coalesce($3, password_hash),
		disabled = coalesce($4, disabled),
		updated_at = $5
		where id = $1`, id, c.Role, c.PasswordHash, c.Disabled, at)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return Reject("id", "no user %s", id)
	}
	if c.Disabled != nil && *c.Disabled || c.PasswordHash != nil {
		// A disabled user, or one whose password was reset, keeps no API
		// token and no session: whoever knew the old password is out.
		if _, err := t.tx.Exec(ctx, `update api_tokens set revoked_at = $2 where user_id = $1 and revoked_at is null`, id, at); err != nil {
			return fmt.Errorf("revoke tokens: %w", err)
		}
		if _, err := t.tx.Exec(ctx, `delete from sessions where user_id = $1`, id); err != nil {
			return fmt.Errorf("end sessions: %w", err)
		}
	}
	return nil
}

// CountActiveAdministrators counts enabled users with the given role other
// than the one excluded.
func (t *Tx) CountActiveWithRole(ctx context.Context, role, exceptID string) (int, error) {
	var n int
	err := t.tx.QueryRow(ctx, `select count(*) from users where role = $1 and not disabled and id <> $2`, role, exceptID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count users: %w", err)
	}
	return n, nil
}

// UserForUpdate reads a user inside the applying transaction.
func (t *Tx) UserForUpdate(ctx context.Context, id string) (User, error) {
	u, err := scanUser(t.tx.QueryRow(ctx, userSelect+` where id = $1 for update`, id))
	if err == ErrNotFound {
		return u, Reject("id", "no user %s", id)
	}
	return u, err
}

// UserBySubject reads an identity-provider user inside the applying transaction.
func (t *Tx) UserBySubject(ctx context.Context, subject string) (User, error) {
	return scanUser(t.tx.QueryRow(ctx, userSelect+` where subject = $1 and subject <> ''`, subject))
}

// UserBySubject returns the identity-provider user with this subject.
func (s *Store) UserBySubject(ctx context.Context, subject string) (User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, userSelect+` where subject = $1 and subject <> ''`, subject))
	if err != nil {
		return u, fmt.Errorf("user with subject %q: %w", subject, err)
	}
	return u, nil
}

// UserByUsernameTx reads a user by name inside the applying transaction.
func (t *Tx) UserByUsername(ctx context.Context, username string) (User, error) {
	return scanUser(t.tx.QueryRow(ctx, userSelect+` where lower(username) = lower($1)`, username))
}

// CreateToken records an API token.
func (t *Tx) CreateToken(ctx context.Context, tok APIToken) error {
	_, err := t.tx.Exec(ctx, `insert into api_tokens (id, user_id, token_hash, created_at, expires_at) values ($1, $2, $3, $4, $5)`,
		tok.ID, tok.UserID, tok.Hash, tok.CreatedAt, tok.ExpiresAt)
	if err != nil {
		return fmt.Errorf("create token: %w", err)
	}
	return nil
}

// RevokeToken revokes one API token.
func (t *Tx) RevokeToken(ctx context.Context, id string, at time.Time) error {
	tag, err := t.tx.Exec(ctx, `update api_tokens set revoked_at = $2 where id = $1 and revoked_at is null`, id, at)
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return Reject("id", "no active token %s", id)
	}
	return nil
}

// TokenByHash finds an API token by the hash of its secret.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (APIToken, error) {
	var t APIToken
	err := s.pool.QueryRow(ctx, `select id, user_id, token_hash, created_at, expires_at, revoked_at from api_tokens where token_hash = $1`, hash).
		Scan(&t.ID, &t.UserID, &t.Hash, &t.CreatedAt, &t.ExpiresAt, &t.RevokedAt)
	if err != nil {
		return t, fmt.Errorf("token: %w", notFound(err))
	}
	return t, nil
}
