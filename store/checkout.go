package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequestInputs is what applying a new access request reads: the
// requester, the account with its holder (locked), the policies that cover
// it, and the requester's open request for it. UserErr and AccountErr are
// ErrNotFound when there is no such user or account.
type RequestInputs struct {
	User          User
	UserErr       error
	Account       Account
	AccountErr    error
	Policies      []Policy
	OpenRequestID string
}

// openRequestSQL finds a user's Pending or Available request for an account.
const openRequestSQL = `select id::text from access_requests where account_id = $1 and requester_id = $2 and state in ('Pending', 'Available') limit 1`

// RequestInputs reads them inside the FSM's transaction in one round trip
// to PostgreSQL (a pgx batch) instead of four: the FSM applies commands one
// after another, so every round trip of a check-out is paid once per
// check-out on every member.
func (t *Tx) RequestInputs(ctx context.Context, userID, accountID string) (RequestInputs, error) {
	if in, ok := t.prefetchedRequestInputs(userID, accountID); ok {
		return in, nil
	}
	var in RequestInputs
	if !IsUUID(accountID) {
		in.User, in.UserErr = t.UserByID(ctx, userID)
		if in.UserErr != nil && !errors.Is(in.UserErr, ErrNotFound) {
			return in, in.UserErr
		}
		in.AccountErr = ErrNotFound
		return in, nil
	}
	b := &pgx.Batch{}
	b.Queue(userByIDSQL, userID)
	b.Queue(accountForUpdateSQL, accountID)
	b.Queue(policiesOfAccountSQL, accountID)
	b.Queue(openRequestSQL, accountID, userID)
	br := t.tx.SendBatch(ctx, b)
	defer br.Close()
	in.User, in.UserErr = scanUser(br.QueryRow())
	if in.UserErr != nil && !errors.Is(in.UserErr, ErrNotFound) {
		return in, fmt.Errorf("user %s: %w", userID, in.UserErr)
	}
	in.Account, in.AccountErr = scanAccount(br.QueryRow())
	if in.AccountErr != nil && !errors.Is(in.AccountErr, ErrNotFound) {
		return in, fmt.Errorf("account %s: %w", accountID, in.AccountErr)
	}
	rows, err := br.Query()
	if err != nil {
		return in, fmt.Errorf("policies of account %s: %w", accountID, err)
	}
	if in.Policies, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Policy, error) { return scanPolicy(r) }); err != nil {
		return in, fmt.Errorf("policies of account %s: %w", accountID, err)
	}
	if err := br.QueryRow().Scan(&in.OpenRequestID); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return in, fmt.Errorf("open requests: %w", err)
	}
	return in, br.Close()
}

// CheckinInputs is what applying a check-in reads: the user checking in
// and the request (locked). UserErr and RequestErr are ErrNotFound when
// there is no such user or request.
type CheckinInputs struct {
	User       User
	UserErr    error
	Request    AccessRequest
	RequestErr error
}

// CheckinInputs reads them in one round trip (see RequestInputs).
func (t *Tx) CheckinInputs(ctx context.Context, userID, requestID string) (CheckinInputs, error) {
	if in, ok := t.prefetchedCheckinInputs(userID, requestID); ok {
		return in, nil
	}
	var in CheckinInputs
	if !IsUUID(requestID) {
		in.User, in.UserErr = t.UserByID(ctx, userID)
		if in.UserErr != nil && !errors.Is(in.UserErr, ErrNotFound) {
			return in, in.UserErr
		}
		in.RequestErr = ErrNotFound
		return in, nil
	}
	b := &pgx.Batch{}
	b.Queue(userByIDSQL, userID)
	b.Queue(requestForUpdateSQL, requestID)
	br := t.tx.SendBatch(ctx, b)
	defer br.Close()
	in.User, in.UserErr = scanUser(br.QueryRow())
	if in.UserErr != nil && !errors.Is(in.UserErr, ErrNotFound) {
		return in, fmt.Errorf("user %s: %w", userID, in.UserErr)
	}
	in.Request, in.RequestErr = scanRequest(br.QueryRow())
	if in.RequestErr != nil && !errors.Is(in.RequestErr, ErrNotFound) {
		return in, fmt.Errorf("access request %s: %w", requestID, in.RequestErr)
	}
	return in, br.Close()
}

// CheckoutEnd is the end of a check-out (checked in or expired): the
// request's new state, the account's next password when it changes, and
// the audit events.
type CheckoutEnd struct {
	RequestID string
	State     string // RequestCheckedIn or RequestExpired
	By        string
	At        time.Time
	AccountID string
	NewSecret string // sealed; empty when the password stays
	Events    []Event
}

// EndCheckout writes the end of a check-out in two round trips: the
// audit chain's last link, then every write. Its events follow each other
// in the chain (an event's ID is new: the FSM applies a command once).
func (t *Tx) EndCheckout(ctx context.Context, e CheckoutEnd) error {
	seq, prev, err := t.nextChainLink(ctx)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("end check-out of request %s: %w", e.RequestID, err) }
	t.tx.checkoutEnded(e)
	if h := t.tx.hotWrite(); h != nil {
		h.endRequest(requestEnd{id: e.RequestID, state: e.State, by: e.By, at: e.At, passwordChanged: e.NewSecret != ""})
		if e.NewSecret != "" {
			h.setSecret(accountSecret{id: e.AccountID, secret: e.NewSecret, at: e.At})
		}
	} else {
		if _, err := t.tx.Exec(ctx, `update access_requests set state = $2, ended_by = $3, ended_at = $4, password_changed = $5 where id = $1`,
			e.RequestID, e.State, e.By, e.At, e.NewSecret != ""); err != nil {
			return fail(err)
		}
		if e.NewSecret != "" {
			if _, err := t.tx.Exec(ctx, `update accounts set secret = $2, password_changed_at = $3 where id = $1`, e.AccountID, e.NewSecret, e.At); err != nil {
				return fail(err)
			}
		}
	}
	for _, ev := range e.Events {
		args, hash, err := t.eventArgs(ev, seq, prev)
		if err != nil {
			return err
		}
		if err := t.queueEvent(ctx, args, seq, hash); err != nil {
			return fail(err)
		}
		seq, prev = seq+1, hash
	}
	return nil
}
