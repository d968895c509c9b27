package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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
}

type fetched[T any] struct {
	v   T
	err error // nil or ErrNotFound
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
		open: map[[2]string]string{}, requests: map[string]fetched[AccessRequest]{}, keys: map[string][]byte{}, dirty: map[string]bool{}}
	// What is queued, in order, and how to read each answer.
	b := &pgx.Batch{}
	var reads []func(pgx.BatchResults) error
	users := map[string]bool{}
	for _, k := range keys {
		if k.User == "" || users[k.User] || !isUUID(k.User) {
			continue
		}
		users[k.User] = true
		id := k.User
		b.Queue(userByIDSQL, id)
		reads = append(reads, func(br pgx.BatchResults) error {
			u, err := scanUser(br.QueryRow())
			if err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("user %s: %w", id, err)
			}
			p.users[id] = fetched[User]{u, err}
			return nil
		})
	}
	seen := map[string]bool{}
	for _, k := range keys {
		switch {
		case k.Account != "" && isUUID(k.Account) && isUUID(k.User):
			if !seen[k.Account] {
				seen[k.Account] = true
				id := k.Account
				b.Queue(accountForUpdateSQL, id)
				b.Queue(policiesOfAccountSQL, id)
				reads = append(reads, func(br pgx.BatchResults) error {
					a, err := scanAccount(br.QueryRow())
					if err != nil && !errors.Is(err, ErrNotFound) {
						return fmt.Errorf("account %s: %w", id, err)
					}
					p.accounts[id] = fetched[Account]{a, err}
					rows, err := br.Query()
					if err != nil {
						return fmt.Errorf("policies of account %s: %w", id, err)
					}
					ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Policy, error) { return scanPolicy(r) })
					if err != nil {
						return fmt.Errorf("policies of account %s: %w", id, err)
					}
					p.policies[id] = ps
					return nil
				})
			}
			key := [2]string{k.Account, k.User}
			if _, ok := p.open[key]; ok || seen["open "+key[0]+key[1]] {
				continue
			}
			seen["open "+key[0]+key[1]] = true
			b.Queue(openRequestSQL, k.Account, k.User)
			reads = append(reads, func(br pgx.BatchResults) error {
				var id string
				if err := br.QueryRow().Scan(&id); err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("open requests: %w", err)
				}
				p.open[key] = id
				return nil
			})
		case k.Request != "" && isUUID(k.Request) && isUUID(k.User) && !seen[k.Request]:
			seen[k.Request] = true
			id := k.Request
			b.Queue(requestForUpdateSQL, id)
			reads = append(reads, func(br pgx.BatchResults) error {
				r, err := scanRequest(br.QueryRow())
				if err != nil && !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("access request %s: %w", id, err)
				}
				p.requests[id] = fetched[AccessRequest]{r, err}
				return nil
			})
		}
	}
	b.Queue(`select name, value from cluster_keys`)
	reads = append(reads, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("cluster keys: %w", err)
		}
		var name string
		var value []byte
		_, err = pgx.ForEachRow(rows, []any{&name, &value}, func() error {
			p.keys[name] = append([]byte(nil), value...)
			return nil
		})
		return err
	})
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
	t.tx.pre = p
	return nil
}

// prefetchedRequestInputs are RequestInputs from the batch's prefetch, if
// there and still current.
func (t *Tx) prefetchedRequestInputs(userID, accountID string) (RequestInputs, bool) {
	p := t.tx.pre
	if p == nil || p.dirty[accountID] {
		return RequestInputs{}, false
	}
	u, okU := p.users[userID]
	a, okA := p.accounts[accountID]
	open, okO := p.open[[2]string{accountID, userID}]
	// Not found may mean made earlier in this batch: ask the database.
	if !okU || !okA || !okO || u.err != nil || a.err != nil {
		return RequestInputs{}, false
	}
	return RequestInputs{User: u.v, UserErr: u.err, Account: a.v, AccountErr: a.err, Policies: p.policies[accountID], OpenRequestID: open}, true
}

// prefetchedCheckinInputs are CheckinInputs from the batch's prefetch, if
// there and still current.
func (t *Tx) prefetchedCheckinInputs(userID, requestID string) (CheckinInputs, bool) {
	p := t.tx.pre
	if p == nil || p.dirty[requestID] {
		return CheckinInputs{}, false
	}
	u, okU := p.users[userID]
	r, okR := p.requests[requestID]
	if !okU || !okR || u.err != nil || r.err != nil || p.dirty[r.v.AccountID] {
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

// dirty marks account and request IDs changed by this batch.
func (c *txConn) dirty(ids ...string) {
	if c.pre == nil {
		return
	}
	for _, id := range ids {
		c.pre.dirty[id] = true
	}
}
