package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The access-request workflow's tables: assets, accounts, policies, access
// requests and the rows of imports in progress. Writes happen through Tx
// (the FSM) only.

// Access request states.
const (
	RequestPending   = "Pending"
	RequestAvailable = "Available"
	RequestDenied    = "Denied"
	RequestCheckedIn = "CheckedIn"
	RequestExpired   = "Expired"
)

// Asset is a machine whose accounts the cluster guards.
type Asset struct {
	ID        string
	Name      string
	Address   string
	Platform  string
	CreatedAt time.Time
	UpdatedAt time.Time
	Accounts  int
}

// Account is an account on an asset; Secret is its sealed password.
type Account struct {
	ID                string
	AssetID           string
	AssetName         string
	AssetAddress      string
	Platform          string
	Username          string
	Secret            string
	CreatedAt         time.Time
	PasswordChangedAt time.Time
	// Holder is who holds the account now (an Available request), if anyone.
	Holder    string
	HeldUntil *time.Time
}

// Policy says who may request which accounts, and on what terms.
type Policy struct {
	ID                 string
	Name               string
	Requesters         []string
	Approvers          []string
	ApprovalRequired   bool
	DurationMinutes    int
	ChangeAfterCheckin bool
	// AccountIDs are the accounts it covers, when written; AccountCount
	// how many, when read.
	AccountIDs   []string
	AccountCount int
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// AccessRequest is a request for an account's password.
type AccessRequest struct {
	ID                 string
	AccountID          string
	AccountName        string
	AssetName          string
	AssetAddress       string
	PolicyID           string
	RequesterID        string
	Requester          string
	Reason             string
	State              string
	ApprovalRequired   bool
	Approvers          []string
	DurationMinutes    int
	ChangeAfterCheckin bool
	RequestedAt        time.Time
	DecidedBy          string
	DecidedAt          *time.Time
	DecisionComment    string
	AvailableAt        *time.Time
	ExpiresAt          *time.Time
	Releases           int
	LastReleasedAt     *time.Time
	EndedAt            *time.Time
	EndedBy            string
	PasswordChanged    bool
}

// Key returns a key of the cluster key ring inside the FSM's transaction.
func (t *Tx) Key(ctx context.Context, name string) (json.RawMessage, error) {
	if v, ok := t.prefetchedKey(name); ok {
		return v, nil
	}
	var v []byte
	if err := t.tx.QueryRow(ctx, `select value from cluster_keys where name = $1`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("key %s: %w", name, notFound(err))
	}
	return v, nil
}

// --- assets

const assetSelect = `select s.id::text, s.name, s.address, s.platform, s.created_at, s.updated_at,
	(select count(*) from accounts a where a.asset_id = s.id) from assets s`

func scanAsset(row pgx.Row) (Asset, error) {
	var a Asset
	err := row.Scan(&a.ID, &a.Name, &a.Address, &a.Platform, &a.CreatedAt, &a.UpdatedAt, &a.Accounts)
	return a, notFound(err)
}

// Assets lists assets by name; a non-empty search keeps those whose name or
// address contains it.
func (s *Store) Assets(ctx context.Context, search string, limit int) ([]Asset, error) {
	rows, err := s.pool.Query(ctx, assetSelect+` where $1 = '' or s.name ilike '%' || $1 || '%' or s.address ilike '%' || $1 || '%'
		order by lower(s.name) limit $2`, search, limitOr(limit))
	if err != nil {
		return nil, fmt.Errorf("assets: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Asset, error) { return scanAsset(r) })
}

// AssetByID returns one asset.
func (s *Store) AssetByID(ctx context.Context, id string) (Asset, error) {
	if !IsUUID(id) {
		return Asset{}, fmt.Errorf("asset %q: %w", id, ErrNotFound)
	}
	a, err := scanAsset(s.pool.QueryRow(ctx, assetSelect+` where s.id = $1`, id))
	if err != nil {
		return a, fmt.Errorf("asset %s: %w", id, err)
	}
	return a, nil
}

// AssetByName returns the asset of that name (without regard to case).
func (s *Store) AssetByName(ctx context.Context, name string) (Asset, error) {
	a, err := scanAsset(s.pool.QueryRow(ctx, assetSelect+` where lower(s.name) = lower($1)`, name))
	if err != nil {
		return a, fmt.Errorf("asset %q: %w", name, err)
	}
	return a, nil
}

// InsertAsset creates an asset.
func (t *Tx) InsertAsset(ctx context.Context, a Asset) error {
	_, err := t.tx.Exec(ctx, `insert into assets (id, name, address, platform, created_at, updated_at) values ($1, $2, $3, $4, $5, $5)`,
		a.ID, a.Name, a.Address, a.Platform, a.CreatedAt)
	if isUniqueViolation(err) {
		return Reject("name", "an asset named %q exists already", a.Name)
	}
	if err != nil {
		return fmt.Errorf("insert asset: %w", err)
	}
	return nil
}

// UpdateAsset changes an asset's name, address and platform.
func (t *Tx) UpdateAsset(ctx context.Context, a Asset, at time.Time) error {
	tag, err := t.tx.Exec(ctx, `update assets set name = $2, address = $3, platform = $4, updated_at = $5 where id = $1`,
		a.ID, a.Name, a.Address, a.Platform, at)
	if isUniqueViolation(err) {
		return Reject("name", "an asset named %q exists already", a.Name)
	}
	if err != nil {
		return fmt.Errorf("update asset: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return Reject("id", "no asset with this id")
	}
	return nil
}

// DeleteAsset deletes an asset that has no accounts left.
func (t *Tx) DeleteAsset(ctx context.Context, id string) error {
	var n int
	if err := t.tx.QueryRow(ctx, `select count(*) from accounts where asset_id = $1`, id).Scan(&n); err != nil {
		return fmt.Errorf("delete asset: %w", err)
	}
	if n > 0 {
		return Reject("id", "the asset still has %d accounts; delete them first", n)
	}
	tag, err := t.tx.Exec(ctx, `delete from assets where id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete asset: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return Reject("id", "no asset with this id")
	}
	return nil
}

// --- accounts

const accountSelect = `select a.id::text, a.asset_id::text, s.name, s.address, s.platform, a.username, a.secret, a.created_at, a.password_changed_at,
	coalesce(h.requester, ''), h.expires_at
	from accounts a join assets s on s.id = a.asset_id
	left join access_requests h on h.account_id = a.id and h.state = 'Available'`

// accountsByIDsSQL is accountSelect for a list of ids, for the FSM's
// prefetch (PrefetchCheckouts explains why without row locks). Its holder
// is looked up per account in the one-holder index: joined as a whole
// (accountSelect), the planner may hash every check-out's index entry,
// live or not yet vacuumed, which under a stream of check-outs made it
// the FSM's most expensive statement (2 ms for 13 accounts).
const accountsByIDsSQL = `select a.id::text, a.asset_id::text, s.name, s.address, s.platform, a.username, a.secret, a.created_at, a.password_changed_at,
	coalesce(h.requester, ''), h.expires_at
	from accounts a join assets s on s.id = a.asset_id
	left join lateral (select requester, expires_at from access_requests
		where account_id = a.id and state = 'Available' limit 1) h on true
	where a.id = any($1::uuid[])`

func scanAccount(row pgx.Row) (Account, error) {
	var a Account
	err := row.Scan(&a.ID, &a.AssetID, &a.AssetName, &a.AssetAddress, &a.Platform, &a.Username, &a.Secret, &a.CreatedAt, &a.PasswordChangedAt, &a.Holder, &a.HeldUntil)
	return a, notFound(err)
}

// AccountFilter narrows a list of accounts; zero fields do not filter.
type AccountFilter struct {
	AssetID string
	Search  string // in the asset's name or address, or the account's user name
	IDs     []string
	Limit   int
	Offset  int
}

// Accounts lists accounts by asset and user name.
func (s *Store) Accounts(ctx context.Context, f AccountFilter) ([]Account, error) {
	var where []string
	args := pgx.NamedArgs{"limit": limitOr(f.Limit), "offset": f.Offset}
	if f.AssetID != "" {
		if !IsUUID(f.AssetID) {
			return nil, nil
		}
		where = append(where, "a.asset_id = @asset")
		args["asset"] = f.AssetID
	}
	if f.Search != "" {
		where = append(where, "(s.name ilike '%' || @search || '%' or s.address ilike '%' || @search || '%' or a.username ilike '%' || @search || '%')")
		args["search"] = f.Search
	}
	if f.IDs != nil {
		where = append(where, "a.id = any(@ids::uuid[])")
		args["ids"] = f.IDs
	}
	q := accountSelect
	if len(where) > 0 {
		q += " where " + strings.Join(where, " and ")
	}
	q += " order by lower(s.name), lower(a.username) limit @limit offset @offset"
	rows, err := s.pool.Query(ctx, q, args)
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Account, error) { return scanAccount(r) })
}

// CountAccounts counts every account.
func (s *Store) CountAccounts(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `select count(*) from accounts`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count accounts: %w", err)
	}
	return n, nil
}

// AccountByID returns one account.
func (s *Store) AccountByID(ctx context.Context, id string) (Account, error) {
	if !IsUUID(id) {
		return Account{}, fmt.Errorf("account %q: %w", id, ErrNotFound)
	}
	a, err := scanAccount(s.pool.QueryRow(ctx, accountSelect+` where a.id = $1`, id))
	if err != nil {
		return a, fmt.Errorf("account %s: %w", id, err)
	}
	return a, nil
}

const accountForUpdateSQL = accountSelect + ` where a.id = $1 for update of a`

// AccountByID returns one account inside the FSM's transaction, locked.
func (t *Tx) AccountByID(ctx context.Context, id string) (Account, error) {
	a, err := scanAccount(t.tx.QueryRow(ctx, accountForUpdateSQL, id))
	if err != nil {
		return a, fmt.Errorf("account %s: %w", id, err)
	}
	return a, nil
}

// InsertAccount creates an account.
func (t *Tx) InsertAccount(ctx context.Context, a Account) error {
	_, err := t.tx.Exec(ctx, `insert into accounts (id, asset_id, username, secret, created_at, password_changed_at) values ($1, $2, $3, $4, $5, $5)`,
		a.ID, a.AssetID, a.Username, a.Secret, a.CreatedAt)
	if isUniqueViolation(err) {
		return Reject("username", "the asset has an account %q already", a.Username)
	}
	if isForeignKeyViolation(err) {
		return Reject("assetId", "no asset with this id")
	}
	if err != nil {
		return fmt.Errorf("insert account: %w", err)
	}
	return nil
}

// UpdateAccount changes an account's user name and, when secret is not
// empty, its password.
func (t *Tx) UpdateAccount(ctx context.Context, id, username, secret string, at time.Time) error {
	tag, err := t.tx.Exec(ctx, `update accounts set username = $2,
		secret = case when $3 = '' then secret else $3 end,
		password_changed_at = case when $3 = '' then password_changed_at else $4 end
		where id = $1`, id, username, secret, at)
	if isUniqueViolation(err) {
		return Reject("username", "the asset has an account %q already", username)
	}
	if err != nil {
		return fmt.Errorf("update account: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return Reject("id", "no account with this id")
	}
	return nil
}

// DeleteAccount deletes an account that nobody holds or waits for.
func (t *Tx) DeleteAccount(ctx context.Context, id string) error {
	var open int
	if err := t.tx.QueryRow(ctx, `select count(*) from access_requests where account_id = $1 and state in ('Pending', 'Available')`, id).Scan(&open); err != nil {
		return fmt.Errorf("delete account: %w", err)
	}
	if open > 0 {
		return Reject("id", "the account has an open access request; wait until it is checked in, or deny it")
	}
	tag, err := t.tx.Exec(ctx, `delete from accounts where id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete account: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return Reject("id", "no account with this id")
	}
	return nil
}

// --- policies

// policySelect reads a policy without its accounts (a policy may cover a
// million): AccountCount counts them; PolicyAccountIDs lists them.
const policySelect = `select p.id::text, p.name, p.requesters, p.approvers, p.approval_required, p.duration_minutes, p.change_after_checkin,
	p.created_at, p.updated_at from policies p`

func scanPolicy(row pgx.Row) (Policy, error) {
	var p Policy
	err := row.Scan(&p.ID, &p.Name, &p.Requesters, &p.Approvers, &p.ApprovalRequired, &p.DurationMinutes, &p.ChangeAfterCheckin, &p.CreatedAt, &p.UpdatedAt)
	return p, notFound(err)
}

// Policies lists the policies by name, with how many accounts each covers.
func (s *Store) Policies(ctx context.Context) ([]Policy, error) {
	rows, err := s.pool.Query(ctx, policySelect+` order by lower(p.name)`)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Policy, error) { return scanPolicy(r) })
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	counts := map[string]int{}
	rows, err = s.pool.Query(ctx, `select policy_id::text, count(*) from policy_accounts group by policy_id`)
	if err != nil {
		return nil, fmt.Errorf("policy accounts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("policy accounts: %w", err)
		}
		counts[id] = n
	}
	for i := range ps {
		ps[i].AccountCount = counts[ps[i].ID]
	}
	return ps, rows.Err()
}

// PolicyByID returns one policy, with how many accounts it covers.
func (s *Store) PolicyByID(ctx context.Context, id string) (Policy, error) {
	if !IsUUID(id) {
		return Policy{}, fmt.Errorf("policy %q: %w", id, ErrNotFound)
	}
	p, err := scanPolicy(s.pool.QueryRow(ctx, policySelect+` where p.id = $1`, id))
	if err != nil {
		return p, fmt.Errorf("policy %s: %w", id, err)
	}
	if err := s.pool.QueryRow(ctx, `select count(*) from policy_accounts where policy_id = $1`, id).Scan(&p.AccountCount); err != nil {
		return p, fmt.Errorf("policy %s: %w", id, err)
	}
	return p, nil
}

// PolicyAccountIDs lists the accounts a policy covers; limit 0 lists all.
func (s *Store) PolicyAccountIDs(ctx context.Context, policyID string, limit int) ([]string, error) {
	q := `select account_id::text from policy_accounts where policy_id = $1 order by account_id`
	args := []any{policyID}
	if limit > 0 {
		q += ` limit $2`
		args = append(args, limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("accounts of policy %s: %w", policyID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("accounts of policy %s: %w", policyID, err)
	}
	return ids, nil
}

// PoliciesForAccount lists the policies that cover an account.
func (s *Store) PoliciesForAccount(ctx context.Context, accountID string) ([]Policy, error) {
	return policiesForAccount(ctx, s.pool, accountID)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

const policiesOfAccountSQL = policySelect + ` where exists (select 1 from policy_accounts pa where pa.policy_id = p.id and pa.account_id = $1) order by lower(p.name)`

func policiesForAccount(ctx context.Context, q querier, accountID string) ([]Policy, error) {
	if !IsUUID(accountID) {
		return nil, nil
	}
	rows, err := q.Query(ctx, policiesOfAccountSQL, accountID)
	if err != nil {
		return nil, fmt.Errorf("policies of account %s: %w", accountID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Policy, error) { return scanPolicy(r) })
}

// PutPolicy creates or replaces a policy and the accounts it covers.
func (t *Tx) PutPolicy(ctx context.Context, p Policy, at time.Time) error {
	_, err := t.tx.Exec(ctx, `insert into policies (id, name, requesters, approvers, approval_required, duration_minutes, change_after_checkin, created_at, updated_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8, $8)
		on conflict (id) do update set name = excluded.name, requesters = excluded.requesters, approvers = excluded.approvers,
			approval_required = excluded.approval_required, duration_minutes = excluded.duration_minutes,
			change_after_checkin = excluded.change_after_checkin, updated_at = excluded.updated_at`,
		p.ID, p.Name, p.Requesters, p.Approvers, p.ApprovalRequired, p.DurationMinutes, p.ChangeAfterCheckin, at)
	if isUniqueViolation(err) {
		return Reject("name", "a policy named %q exists already", p.Name)
	}
	if err != nil {
		return fmt.Errorf("put policy: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `delete from policy_accounts where policy_id = $1`, p.ID); err != nil {
		return fmt.Errorf("put policy: %w", err)
	}
	tag, err := t.tx.Exec(ctx, `insert into policy_accounts (policy_id, account_id)
		select $1, a.id from accounts a where a.id = any($2::uuid[])`, p.ID, p.AccountIDs)
	if err != nil {
		return fmt.Errorf("put policy accounts: %w", err)
	}
	if int(tag.RowsAffected()) != len(p.AccountIDs) {
		return Reject("accountIds", "%d of the %d accounts do not exist (any more)", len(p.AccountIDs)-int(tag.RowsAffected()), len(p.AccountIDs))
	}
	return nil
}

// DeletePolicy deletes a policy; requests made under it keep its terms.
func (t *Tx) DeletePolicy(ctx context.Context, id string) error {
	tag, err := t.tx.Exec(ctx, `delete from policies where id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete policy: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return Reject("id", "no policy with this id")
	}
	return nil
}

// --- access requests

const requestSelect = `select r.id::text, r.account_id::text, a.username, s.name, s.address, r.policy_id::text, r.requester_id, r.requester, r.reason, r.state,
	r.approval_required, r.approvers, r.duration_minutes, r.change_after_checkin, r.requested_at, r.decided_by, r.decided_at, r.decision_comment,
	r.available_at, r.expires_at, r.releases, r.last_released_at, r.ended_at, r.ended_by, r.password_changed
	from access_requests r join accounts a on a.id = r.account_id join assets s on s.id = a.asset_id`

func scanRequest(row pgx.Row) (AccessRequest, error) {
	var r AccessRequest
	err := row.Scan(&r.ID, &r.AccountID, &r.AccountName, &r.AssetName, &r.AssetAddress, &r.PolicyID, &r.RequesterID, &r.Requester, &r.Reason, &r.State,
		&r.ApprovalRequired, &r.Approvers, &r.DurationMinutes, &r.ChangeAfterCheckin, &r.RequestedAt, &r.DecidedBy, &r.DecidedAt, &r.DecisionComment,
		&r.AvailableAt, &r.ExpiresAt, &r.Releases, &r.LastReleasedAt, &r.EndedAt, &r.EndedBy, &r.PasswordChanged)
	return r, notFound(err)
}

// RequestFilter narrows a list of access requests; zero fields do not filter.
type RequestFilter struct {
	RequesterID string
	States      []string
	// ApproverOf keeps requests that one of these names (a user name or
	// a role) may approve.
	ApproverOf []string
	AccountID  string
	Limit      int
}

// Requests lists access requests, newest first.
func (s *Store) Requests(ctx context.Context, f RequestFilter) ([]AccessRequest, error) {
	var where []string
	args := pgx.NamedArgs{"limit": limitOr(f.Limit)}
	if f.RequesterID != "" {
		where = append(where, "r.requester_id = @requester")
		args["requester"] = f.RequesterID
	}
	if len(f.States) > 0 {
		where = append(where, "r.state = any(@states)")
		args["states"] = f.States
	}
	if f.ApproverOf != nil {
		where = append(where, "r.approvers && @approvers")
		args["approvers"] = f.ApproverOf
	}
	if f.AccountID != "" {
		if !IsUUID(f.AccountID) {
			return nil, nil
		}
		where = append(where, "r.account_id = @account")
		args["account"] = f.AccountID
	}
	q := requestSelect
	if len(where) > 0 {
		q += " where " + strings.Join(where, " and ")
	}
	q += " order by r.requested_at desc, r.id limit @limit"
	rows, err := s.pool.Query(ctx, q, args)
	if err != nil {
		return nil, fmt.Errorf("access requests: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AccessRequest, error) { return scanRequest(r) })
}

// RequestByID returns one access request.
func (s *Store) RequestByID(ctx context.Context, id string) (AccessRequest, error) {
	if !IsUUID(id) {
		return AccessRequest{}, fmt.Errorf("access request %q: %w", id, ErrNotFound)
	}
	r, err := scanRequest(s.pool.QueryRow(ctx, requestSelect+` where r.id = $1`, id))
	if err != nil {
		return r, fmt.Errorf("access request %s: %w", id, err)
	}
	return r, nil
}

// CheckinTerms is what a check-in must know before it is proposed: the
// request's account, and whether its password changes at check-in.
type CheckinTerms struct {
	AccountID          string
	ChangeAfterCheckin bool
}

// CheckinTerms reads them from the request alone, without RequestByID's
// joins: a check-in proposed on the primary pays this read, and the FSM
// checks everything else (state, holder, user) as it applies it.
func (s *Store) CheckinTerms(ctx context.Context, requestID string) (CheckinTerms, error) {
	if !IsUUID(requestID) {
		return CheckinTerms{}, fmt.Errorf("access request %q: %w", requestID, ErrNotFound)
	}
	var c CheckinTerms
	err := s.pool.QueryRow(ctx, `select account_id::text, change_after_checkin from access_requests where id = $1`, requestID).Scan(&c.AccountID, &c.ChangeAfterCheckin)
	if err != nil {
		return c, fmt.Errorf("access request %s: %w", requestID, notFound(err))
	}
	return c, nil
}

const requestForUpdateSQL = requestSelect + ` where r.id = $1 for update of r`

// RequestForUpdate returns an access request inside the FSM's transaction,
// locked.
func (t *Tx) RequestForUpdate(ctx context.Context, id string) (AccessRequest, error) {
	r, err := scanRequest(t.tx.QueryRow(ctx, requestForUpdateSQL, id))
	if err != nil {
		return r, fmt.Errorf("access request %s: %w", id, err)
	}
	return r, nil
}

// DueExpiries lists the IDs of Available requests whose time ended by now.
func (s *Store) DueExpiries(ctx context.Context, now time.Time, limit int) ([]AccessRequest, error) {
	rows, err := s.pool.Query(ctx, requestSelect+` where r.state = 'Available' and r.expires_at <= $1 order by r.expires_at limit $2`, now, limitOr(limit))
	if err != nil {
		return nil, fmt.Errorf("due expiries: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AccessRequest, error) { return scanRequest(r) })
}

// InsertRequest records a new access request. A second holder of the
// account is refused by the database (unique index on Available requests).
func (t *Tx) InsertRequest(ctx context.Context, r AccessRequest) error {
	t.tx.requestInserted(r)
	if h := t.tx.hotWrite(); h != nil {
		// Written with the batch's other new requests (txConn).
		h.insertRequest(r)
		return nil
	}
	_, err := t.tx.Exec(ctx, `insert into access_requests (id, account_id, policy_id, requester_id, requester, reason, state, approval_required, approvers,
		duration_minutes, change_after_checkin, requested_at, decided_by, decided_at, available_at, expires_at)
		values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		r.ID, r.AccountID, r.PolicyID, r.RequesterID, r.Requester, r.Reason, r.State, r.ApprovalRequired, r.Approvers,
		r.DurationMinutes, r.ChangeAfterCheckin, r.RequestedAt, r.DecidedBy, r.DecidedAt, r.AvailableAt, r.ExpiresAt)
	if isUniqueViolation(err) {
		return errAccountHeld
	}
	if err != nil {
		return fmt.Errorf("insert access request: %w", err)
	}
	return nil
}

// errAccountHeld is the rejection of a second holder of an account.
var errAccountHeld = Reject("accountId", "someone else has this account checked out; try again once it is checked in")

// DecideRequest approves (Available, with its expiry) or denies a Pending
// request.
func (t *Tx) DecideRequest(ctx context.Context, id, state, by, comment string, at time.Time, expiresAt *time.Time) error {
	var availableAt *time.Time
	if state == RequestAvailable {
		availableAt = &at
	}
	_, err := t.tx.Exec(ctx, `update access_requests set state = $2, decided_by = $3, decided_at = $4, decision_comment = $5,
		available_at = $6, expires_at = $7 where id = $1`, id, state, by, at, comment, availableAt, expiresAt)
	if isUniqueViolation(err) {
		return errAccountHeld
	}
	if err != nil {
		return fmt.Errorf("decide access request: %w", err)
	}
	return nil
}

// RecordRelease counts a release of the password.
func (t *Tx) RecordRelease(ctx context.Context, id string, at time.Time) error {
	if _, err := t.tx.Exec(ctx, `update access_requests set releases = releases + 1, last_released_at = $2 where id = $1`, id, at); err != nil {
		return fmt.Errorf("record release: %w", err)
	}
	return nil
}

// --- imports

// ImportRow is one row of a CSV import, checked and with its IDs.
type ImportRow struct {
	Line      int
	AssetID   string
	NewAsset  bool
	AssetName string
	Address   string
	Platform  string
	AccountID string
	Username  string
	Secret    string
}

// ExistingAsset is what an import needs to know of an asset.
type ExistingAsset struct {
	ID, Name, Address, Platform string
	// Usernames of its accounts, lower case.
	Usernames map[string]bool
}

// ExistingAssets returns the assets with these names (lower case keys) and
// the user names of their accounts, in two queries.
func (s *Store) ExistingAssets(ctx context.Context, lowerNames []string) (map[string]*ExistingAsset, error) {
	out := map[string]*ExistingAsset{}
	rows, err := s.pool.Query(ctx, `select id::text, name, address, platform from assets where lower(name) = any($1)`, lowerNames)
	if err != nil {
		return nil, fmt.Errorf("existing assets: %w", err)
	}
	byID := map[string]*ExistingAsset{}
	var ids []string
	for rows.Next() {
		a := &ExistingAsset{Usernames: map[string]bool{}}
		if err := rows.Scan(&a.ID, &a.Name, &a.Address, &a.Platform); err != nil {
			rows.Close()
			return nil, fmt.Errorf("existing assets: %w", err)
		}
		out[strings.ToLower(a.Name)] = a
		byID[a.ID] = a
		ids = append(ids, a.ID)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("existing assets: %w", err)
	}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err = s.pool.Query(ctx, `select asset_id::text, lower(username) from accounts where asset_id = any($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("existing accounts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, fmt.Errorf("existing accounts: %w", err)
		}
		byID[id].Usernames[name] = true
	}
	return out, rows.Err()
}

// StageImport keeps a batch of an import's rows until its commit (COPY).
func (t *Tx) StageImport(ctx context.Context, importID string, rows []ImportRow, at time.Time) error {
	src := pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
		r := rows[i]
		return []any{uuidArg(importID), r.Line, uuidArg(r.AssetID), r.NewAsset, r.AssetName, r.Address, r.Platform, uuidArg(r.AccountID), r.Username, r.Secret, at}, nil
	})
	_, err := t.tx.CopyFrom(ctx, pgx.Identifier{"import_rows"},
		[]string{"import_id", "line", "asset_id", "new_asset", "asset_name", "address", "platform", "account_id", "username", "secret", "staged_at"}, src)
	if isUniqueViolation(err) {
		return Reject("csv", "a batch of this import was sent twice")
	}
	if err != nil {
		return fmt.Errorf("stage import: %w", err)
	}
	return nil
}

// CommitImport moves an import's staged rows into assets and accounts, in
// the FSM's transaction: all of them or, on any conflict, none. want is
// the number of rows the import has; fewer staged rows refuse the commit.
func (t *Tx) CommitImport(ctx context.Context, importID string, want int, at time.Time) (assets, accounts int, err error) {
	var staged int
	if err := t.tx.QueryRow(ctx, `select count(*) from import_rows where import_id = $1`, importID).Scan(&staged); err != nil {
		return 0, 0, fmt.Errorf("commit import: %w", err)
	}
	if staged != want {
		return 0, 0, Reject("csv", "the import is incomplete (%d of %d rows arrived); nothing was imported", staged, want)
	}
	// Conflicts with what was created since the import was checked.
	var line int
	var name string
	err = t.tx.QueryRow(ctx, `select i.line, i.asset_name from import_rows i join assets s on lower(s.name) = lower(i.asset_name)
		where i.import_id = $1 and i.new_asset order by i.line limit 1`, importID).Scan(&line, &name)
	if err == nil {
		return 0, 0, Reject("csv", "line %d: the asset %q was created while the file was imported; nothing was imported, import it again", line, name)
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("commit import: %w", err)
	}
	err = t.tx.QueryRow(ctx, `select i.line, i.username from import_rows i join accounts a on a.asset_id = i.asset_id and lower(a.username) = lower(i.username)
		where i.import_id = $1 order by i.line limit 1`, importID).Scan(&line, &name)
	if err == nil {
		return 0, 0, Reject("csv", "line %d: the account %q was created while the file was imported; nothing was imported, import it again", line, name)
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("commit import: %w", err)
	}
	tag, err := t.tx.Exec(ctx, `insert into assets (id, name, address, platform, created_at, updated_at)
		select distinct on (asset_id) asset_id, asset_name, address, platform, $2, $2 from import_rows
		where import_id = $1 and new_asset order by asset_id, line`, importID, at)
	if err != nil {
		return 0, 0, fmt.Errorf("commit import assets: %w", err)
	}
	assets = int(tag.RowsAffected())
	tag, err = t.tx.Exec(ctx, `insert into accounts (id, asset_id, username, secret, created_at, password_changed_at)
		select account_id, asset_id, username, secret, $2, $2 from import_rows where import_id = $1`, importID, at)
	if err != nil {
		return 0, 0, fmt.Errorf("commit import accounts: %w", err)
	}
	accounts = int(tag.RowsAffected())
	if err := t.DropImport(ctx, importID); err != nil {
		return 0, 0, err
	}
	return assets, accounts, nil
}

// DropImport forgets an import's staged rows.
func (t *Tx) DropImport(ctx context.Context, importID string) error {
	if _, err := t.tx.Exec(ctx, `delete from import_rows where import_id = $1`, importID); err != nil {
		return fmt.Errorf("drop import: %w", err)
	}
	return nil
}

// DropStaleImports forgets the staged rows of imports that never
// committed (their proposer stopped), staged before a time.
func (t *Tx) DropStaleImports(ctx context.Context, before time.Time) error {
	if _, err := t.tx.Exec(ctx, `delete from import_rows where staged_at < $1`, before); err != nil {
		return fmt.Errorf("drop stale imports: %w", err)
	}
	return nil
}

// --- helpers

// uuidArg passes a UUID to COPY in binary (a string would go through a
// failed encoding attempt per value).
func uuidArg(s string) pgtype.UUID {
	var u pgtype.UUID
	if err := u.Scan(s); err != nil {
		return pgtype.UUID{}
	}
	return u
}

func limitOr(n int) int {
	if n <= 0 || n > 10000 {
		return 10000
	}
	return n
}

func isForeignKeyViolation(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr) && pgErr.SQLState() == "23503"
}

// IsUUID tells whether s is a UUID in its usual text form; other IDs are
// not found rather than a database error.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// UserByID reads a user inside the FSM's transaction (the workflow checks
// roles where it applies a command).
func (t *Tx) UserByID(ctx context.Context, id string) (User, error) {
	u, err := scanUser(t.tx.QueryRow(ctx, userByIDSQL, id))
	if err != nil {
		return u, fmt.Errorf("user %s: %w", id, err)
	}
	return u, nil
}

// PolicyExists refuses an ID that names no policy (an update must not
// create one).
func (t *Tx) PolicyExists(ctx context.Context, id string) error {
	var ok bool
	if err := t.tx.QueryRow(ctx, `select exists (select 1 from policies where id = $1)`, id).Scan(&ok); err != nil {
		return fmt.Errorf("policy %s: %w", id, err)
	}
	if !ok {
		return Reject("id", "no policy with this id")
	}
	return nil
}
