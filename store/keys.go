package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Rotation of the cluster's data keys: which secrets are sealed under
// which key, and re-sealing them (cluster/keys.go). A sealed value reads
// "v1:<key id>:<base64>", so the key's ID is its second field.

// SealedSecret is a secret as stored: the row's ID and the sealed value.
type SealedSecret struct {
	ID     string
	Sealed string
}

// KeyCreatedAt returns when a key of the cluster key ring was last put.
func (t *Tx) KeyCreatedAt(ctx context.Context, name string) (time.Time, error) {
	var at time.Time
	if err := t.tx.QueryRow(ctx, `select created_at from cluster_keys where name = $1`, name).Scan(&at); err != nil {
		return at, fmt.Errorf("key %s: %w", name, notFound(err))
	}
	return at, nil
}

// AccountSecretsByKey counts the account passwords sealed under each key.
func (s *Store) AccountSecretsByKey(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `select split_part(secret, ':', 2), count(*) from accounts group by 1`)
	if err != nil {
		return nil, fmt.Errorf("count secrets by key: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var kid string
		var n int
		if err := rows.Scan(&kid, &n); err != nil {
			return nil, fmt.Errorf("count secrets by key: %w", err)
		}
		out[kid] = n
	}
	return out, rows.Err()
}

// AccountSecretsNotUnder lists, by account ID, at most limit account
// passwords sealed under another key than keyID, after the account ID
// after (the batches of a re-sealing walk the table once).
func (s *Store) AccountSecretsNotUnder(ctx context.Context, keyID, after string, limit int) ([]SealedSecret, error) {
	rows, err := s.pool.Query(ctx, `select id::text, secret from accounts
		where split_part(secret, ':', 2) <> $1 and ($2 = '' or id > $2::uuid) order by id limit $3`, keyID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list secrets to re-seal: %w", err)
	}
	defer rows.Close()
	var out []SealedSecret
	for rows.Next() {
		var s SealedSecret
		if err := rows.Scan(&s.ID, &s.Sealed); err != nil {
			return nil, fmt.Errorf("list secrets to re-seal: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// ResealAccount replaces an account's sealed password by the same
// password sealed under another key, unless the password changed since
// it was read (then the new value, sealed with the current key, stays).
func (t *Tx) ResealAccount(ctx context.Context, id, from, to string) error {
	if _, err := t.tx.Exec(ctx, `update accounts set secret = $3 where id = $1::uuid and secret = $2`, id, from, to); err != nil {
		return fmt.Errorf("re-seal account %s: %w", id, err)
	}
	return nil
}

// SecretsSealedUnder counts the account passwords sealed under keyID,
// those of imports staged and not committed yet included.
func (t *Tx) SecretsSealedUnder(ctx context.Context, keyID string) (int, error) {
	var n int
	if err := t.tx.QueryRow(ctx, `select (select count(*) from accounts where split_part(secret, ':', 2) = $1)
		+ (select count(*) from import_rows where split_part(secret, ':', 2) = $1)`, keyID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count secrets under key %s: %w", keyID, err)
	}
	return n, nil
}

// Setting returns one replicated setting as stored.
func (t *Tx) Setting(ctx context.Context, key string) (json.RawMessage, error) {
	var v []byte
	if err := t.tx.QueryRow(ctx, `select value from settings where key = $1`, key).Scan(&v); err != nil {
		return nil, fmt.Errorf("setting %s: %w", key, notFound(err))
	}
	return v, nil
}

// StagedSecret is the sealed password of a row of an import not committed
// yet.
type StagedSecret struct {
	ImportID  string
	Line      int
	AccountID string
	Sealed    string
}

// StagedSecretsNotUnder lists at most limit passwords of staged import
// rows sealed under another key than keyID.
func (s *Store) StagedSecretsNotUnder(ctx context.Context, keyID string, limit int) ([]StagedSecret, error) {
	rows, err := s.pool.Query(ctx, `select import_id::text, line, account_id::text, secret from import_rows
		where split_part(secret, ':', 2) <> $1 order by import_id, line limit $2`, keyID, limit)
	if err != nil {
		return nil, fmt.Errorf("list staged secrets to re-seal: %w", err)
	}
	defer rows.Close()
	var out []StagedSecret
	for rows.Next() {
		var s StagedSecret
		if err := rows.Scan(&s.ImportID, &s.Line, &s.AccountID, &s.Sealed); err != nil {
			return nil, fmt.Errorf("list staged secrets to re-seal: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// CountStagedNotUnder counts the staged import rows sealed under another
// key than keyID.
func (s *Store) CountStagedNotUnder(ctx context.Context, keyID string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `select count(*) from import_rows where split_part(secret, ':', 2) <> $1`, keyID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count staged secrets: %w", err)
	}
	return n, nil
}

// ResealStaged replaces the sealed password of a staged import row, unless
// it changed since it was read.
func (t *Tx) ResealStaged(ctx context.Context, importID string, line int, from, to string) error {
	if _, err := t.tx.Exec(ctx, `update import_rows set secret = $4 where import_id = $1::uuid and line = $2 and secret = $3`, importID, line, from, to); err != nil {
		return fmt.Errorf("re-seal staged row %s/%d: %w", importID, line, err)
	}
	return nil
}
