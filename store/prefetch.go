package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// prefetched is what the check-outs and check-ins of a batch read, fetched
// for the whole batch in one round trip (Tx.PrefetchCheckouts) instead of
// one per command. An entry is used only while nothing earlier in the batch
// may have changed it: a new access request dirties its account, the end
// of a check-out its account and its request, and any other write
// (txConn.Exec, CopyFrom) drops everything.
type prefetched struct {
	users    map[string]fetched[User]
	accounts map[string]fetched[Account]
	policies map[string][]Policy  // by account
	open     map[[2]string]string // account, user → open request ID
	requests map[string]fetched[AccessRequest]
	keys     map[string][]byte // cluster_keys values
	dirty    map[string]bool   // account and request IDs
	// misses counts the reads it could not answer (Store.PrefetchMisses).
	misses *atomic.Int64
}

type fetched[T any] struct {
	v   T
	err error // nil or ErrNotFound
}

// fileNotFound files the ids that m did not get as not found.
func fileNotFound[T any](m map[string]fetched[T], ids []string) {
	for _, id := range ids {
		if _, ok := m[id]; !ok {
			m[id] = fetched[T]{err: ErrNotFound}
		}
	}
}

// CheckoutKey names what a new access request reads (User, Account) or a
// check-in reads (User, Request).
type CheckoutKey struct {
	User, Account, Request string
}

// PrefetchCheckouts reads, in one round trip, the inputs of the batch's
// new access requests and check-ins (RequestInputs, CheckinInputs) and the
// data keys. It does nothing off the fast path.
func (t *Tx) PrefetchCheckouts(ctx context.Context, keys []CheckoutKey) error {
	if !t.tx.fast || len(keys) == 0 {
		return nil
	}
	p := &prefetched{users: map[string]fetched[User]{}, accounts: map[string]fetched[Account]{}, policies: map[string][]Policy{},
		open: map[[2]string]string{}, requests: map[string]fetched[AccessRequest]{}, keys: map[string][]byte{}, dirty: map[string]bool{},
		misses: &t.tx.store.prefetchMisses}
	// One statement a kind of row, for the whole batch: a statement costs
	// PostgreSQL more than a row.
	var userIDs, accountIDs, requestIDs []string
	var pairs [][2]string // account, user
	seen := map[string]bool{}
	once := func(kind, id string) bool {
		if seen[kind+id] {
			return false
		}
		seen[kind+id] = true
		return true
	}
	for _, k := range keys {
		if !IsUUID(k.User) {
			continue
		}
		if once("u", k.User) {
			userIDs = append(userIDs, k.User)
		}
		switch {
		case k.Account != "" && IsUUID(k.Account):
			if once("a", k.Account) {
				accountIDs = append(accountIDs, k.Account)
			}
			if once("o", k.Account+k.User) {
				pairs = append(pairs, [2]string{k.Account, k.User})
			}
		case k.Request != "" && IsUUID(k.Request):
			if once("r", k.Request) {
				requestIDs = append(requestIDs, k.Request)
			}
		}
	}
	// The rows are read without row locks (for update): every writer of
	// accounts and access requests holds the fsm_state row first (the
	// FSM's batches, ApplyOffline) or runs while raft applies nothing
	// (restores, truncation, the offline base), and this transaction took
	// that row before these reads. Locking each row again wrote every
	// account and request of the batch a second time (its tuple header, a
	// WAL record) on every member.
	b := &pgx.Batch{}
	var reads []func(pgx.BatchResults) error
	// each reads the rows of the next statement with scan.
	each := func(what string, scan func(pgx.Rows) error) func(pgx.BatchResults) error {
		return func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err != nil {
				return fmt.Errorf("prefetch %s: %w", what, err)
			}
			defer rows.Close()
			for rows.Next() {
				if err := scan(rows); err != nil {
					return fmt.Errorf("prefetch %s: %w", what, err)
				}
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("prefetch %s: %w", what, err)
			}
			return nil
		}
	}
	if len(userIDs) > 0 {
		b.Queue(userSelect+` where id = any($1)`, userIDs)
		reads = append(reads, each("users", func(r pgx.Rows) error {
			u, err := scanUser(r)
			p.users[u.ID] = fetched[User]{v: u}
			return err
		}))
	}
	if len(accountIDs) > 0 {
		b.Queue(accountsByIDsSQL, accountIDs)
		reads = append(reads, each("accounts", func(r pgx.Rows) error {
			a, err := scanAccount(r)
			p.accounts[a.ID] = fetched[Account]{v: a}
			return err
		}))
		// policySelect's columns, with the account each covers, in the
		// order of policiesOfAccountSQL.
		b.Queue(`select pa.account_id::text, `+strings.TrimPrefix(policySelect, "select ")+`
			join policy_accounts pa on pa.policy_id = p.id where pa.account_id = any($1::uuid[]) order by lower(p.name)`, accountIDs)
		reads = append(reads, each("policies", func(r pgx.Rows) error {
			var account string
			var pol Policy
			err := r.Scan(&account, &pol.ID, &pol.Name, &pol.Requesters, &pol.Approvers, &pol.ApprovalRequired, &pol.DurationMinutes, &pol.ChangeAfterCheckin, &pol.CreatedAt, &pol.UpdatedAt)
			p.policies[account] = append(p.policies[account], pol)
			return err
		}))
		b.Queue(`select account_id::text, requester_id, id::text from access_requests
			where account_id = any($1::uuid[]) and state in ('Pending', 'Available') order by id`, accountIDs)
		reads = append(reads, each("open requests", func(r pgx.Rows) error {
			var key [2]string
			var id string
			if err := r.Scan(&key[0], &key[1], &id); err != nil {
				return err
			}
			if p.open[key] == "" {
				p.open[key] = id
			}
			return nil
		}))
	}
	if len(requestIDs) > 0 {
		b.Queue(requestSelect+` where r.id = any($1::uuid[])`, requestIDs)
		reads = append(reads, each("access requests", func(r pgx.Rows) error {
			req, err := scanRequest(r)
			p.requests[req.ID] = fetched[AccessRequest]{v: req}
			return err
		}))
	}
	b.Queue(`select name, value from cluster_keys`)
	reads = append(reads, each("cluster keys", func(r pgx.Rows) error {
		var name string
		var value []byte
		err := r.Scan(&name, &value)
		p.keys[name] = append([]byte(nil), value...)
		return err
	}))
	br := t.tx.SendBatch(ctx, b)
	for _, read := range reads {
		if err := read(br); err != nil {
			br.Close()
			return err
		}
	}
	if err := br.Close(); err != nil {
		return err
	}
	// What was asked for and is not there is not found; a pair with no
	// open request has none.
	fileNotFound(p.users, userIDs)
	fileNotFound(p.accounts, accountIDs)
	fileNotFound(p.requests, requestIDs)
	for _, key := range pairs {
		if _, ok := p.open[key]; !ok {
			p.open[key] = ""
		}
	}
	t.tx.pre = p
	return nil
}

// prefetchedRequestInputs are RequestInputs from the batch's prefetch, if
// there and still current.
func (t *Tx) prefetchedRequestInputs(userID, accountID string) (RequestInputs, bool) {
	p := t.tx.pre
	if p == nil {
		return RequestInputs{}, false
	}
	u, okU := p.users[userID]
	a, okA := p.accounts[accountID]
	open, okO := p.open[[2]string{accountID, userID}]
	// Not found may mean made earlier in this batch: ask the database.
	if p.dirty[accountID] || !okU || !okA || !okO || u.err != nil || a.err != nil {
		p.misses.Add(1)
		return RequestInputs{}, false
	}
	return RequestInputs{User: u.v, UserErr: u.err, Account: a.v, AccountErr: a.err, Policies: p.policies[accountID], OpenRequestID: open}, true
}

// prefetchedCheckinInputs are CheckinInputs from the batch's prefetch, if
// there and still current.
func (t *Tx) prefetchedCheckinInputs(userID, requestID string) (CheckinInputs, bool) {
	p := t.tx.pre
	if p == nil {
		return CheckinInputs{}, false
	}
	u, okU := p.users[userID]
	r, okR := p.requests[requestID]
	if p.dirty[requestID] || !okU || !okR || u.err != nil || r.err != nil || p.dirty[r.v.AccountID] {
		p.misses.Add(1)
		return CheckinInputs{}, false
	}
	return CheckinInputs{User: u.v, UserErr: u.err, Request: r.v, RequestErr: r.err}, true
}

// prefetchedKey is a cluster key from the batch's prefetch.
func (t *Tx) prefetchedKey(name string) (json.RawMessage, bool) {
	p := t.tx.pre
	if p == nil {
		return nil, false
	}
	v, ok := p.keys[name]
	return v, ok
}

// dirty marks account and request IDs changed by this batch and not kept
// current in the prefetch: reads of them go to the database.
func (c *txConn) dirty(ids ...string) {
	if c.pre == nil {
		return
	}
	for _, id := range ids {
		c.pre.dirty[id] = true
	}
}

// requestInserted keeps the prefetch current after a new access request
// (write-through): the request, its account's holder and the requester's
// open request. What the prefetch does not hold is marked dirty instead.
// (On a replica, a check-out and its check-in often come in one batch.)
func (c *txConn) requestInserted(r AccessRequest) {
	p := c.pre
	if p == nil {
		return
	}
	a, ok := p.accounts[r.AccountID]
	if !ok || a.err != nil || p.dirty[r.AccountID] {
		c.dirty(r.AccountID, r.ID)
		return
	}
	r = asRead(r)
	r.AssetAddress = a.v.AssetAddress
	p.requests[r.ID] = fetched[AccessRequest]{v: r}
	if r.State == RequestAvailable {
		a.v.Holder, a.v.HeldUntil = r.Requester, r.ExpiresAt
		p.accounts[r.AccountID] = a
	}
	key := [2]string{r.AccountID, r.RequesterID}
	if _, ok := p.open[key]; ok && (r.State == RequestPending || r.State == RequestAvailable) {
		p.open[key] = r.ID
	}
}

// checkoutEnded keeps the prefetch current after the end of a check-out.
func (c *txConn) checkoutEnded(e CheckoutEnd) {
	p := c.pre
	if p == nil {
		return
	}
	r, okR := p.requests[e.RequestID]
	a, okA := p.accounts[e.AccountID]
	if !okR || r.err != nil || !okA || a.err != nil || p.dirty[e.RequestID] || p.dirty[e.AccountID] {
		c.dirty(e.RequestID, e.AccountID)
		return
	}
	at := dbTime(e.At)
	r.v.State, r.v.EndedBy, r.v.EndedAt, r.v.PasswordChanged = e.State, e.By, &at, e.NewSecret != ""
	p.requests[e.RequestID] = r
	// The request ended was the account's check-out.
	a.v.Holder, a.v.HeldUntil = "", nil
	if e.NewSecret != "" {
		a.v.Secret, a.v.PasswordChangedAt = e.NewSecret, at
	}
	p.accounts[e.AccountID] = a
	key := [2]string{e.AccountID, r.v.RequesterID}
	if open, ok := p.open[key]; ok && open == e.RequestID {
		p.open[key] = ""
	}
}

// dbTime is t as it reads back from PostgreSQL (microseconds, local time),
// so that what the prefetch keeps equals what the database would answer:
// whether a command reads one or the other depends on how this member's
// batches fell, and every member must apply it alike.
func dbTime(t time.Time) time.Time { return t.Truncate(time.Microsecond).Local() }

func dbTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := dbTime(*t)
	return &v
}

// asRead is r as it reads back from the database.
func asRead(r AccessRequest) AccessRequest {
	r.RequestedAt = dbTime(r.RequestedAt)
	r.DecidedAt, r.AvailableAt, r.ExpiresAt = dbTimePtr(r.DecidedAt), dbTimePtr(r.AvailableAt), dbTimePtr(r.ExpiresAt)
	r.LastReleasedAt, r.EndedAt = dbTimePtr(r.LastReleasedAt), dbTimePtr(r.EndedAt)
	if r.Approvers == nil {
		r.Approvers = []string{}
	}
	return r
}
