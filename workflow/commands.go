package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"conclave/cluster"
	"conclave/store"
)

// Command types of the workflow. Each carries everything Apply needs: IDs,
// the acting user, sealed secrets generated before proposing; the time is
// the command's.
const (
	CmdPutAsset       = "workflow.asset.put"
	CmdDeleteAsset    = "workflow.asset.delete"
	CmdPutAccount     = "workflow.account.put"
	CmdDeleteAccount  = "workflow.account.delete"
	CmdImportBatch    = "workflow.import.batch"
	CmdImportCommit   = "workflow.import.commit"
	CmdImportDrop     = "workflow.import.drop"
	CmdPutPolicy      = "workflow.policy.put"
	CmdDeletePolicy   = "workflow.policy.delete"
	CmdCreateRequest  = "workflow.request.create"
	CmdDecideRequest  = "workflow.request.decide"
	CmdReleaseRequest = "workflow.request.release"
	CmdCheckin        = "workflow.request.checkin"
	CmdExpire         = "workflow.request.expire"
)

// Event types of the workflow, in the audit log.
const (
	EvAssetCreated      = "AssetCreated"
	EvAssetUpdated      = "AssetUpdated"
	EvAssetDeleted      = "AssetDeleted"
	EvAccountCreated    = "AccountCreated"
	EvAccountUpdated    = "AccountUpdated"
	EvAccountDeleted    = "AccountDeleted"
	EvAccountsImported  = "AccountsImported"
	EvPolicySaved       = "PolicySaved"
	EvPolicyDeleted     = "PolicyDeleted"
	EvRequestCreated    = "AccessRequestCreated"
	EvRequestApproved   = "AccessRequestApproved"
	EvRequestDenied     = "AccessRequestDenied"
	EvPasswordReleased  = "AccessRequestPasswordReleased"
	EvRequestCheckedIn  = "AccessRequestCheckedIn"
	EvRequestExpired    = "AccessRequestExpired"
	EvPasswordChanged   = "AccessRequestPasswordChanged"
	EvPasswordBypassed  = "AccessRequestPasswordResetByPassed"
	importStaleAfter    = time.Hour
	maxExpiriesPerBatch = 500
)

// PutAsset is the data of CmdPutAsset.
type PutAsset struct {
	AssetID  string `json:"assetId"`
	Create   bool   `json:"create"`
	Name     string `json:"name"`
	Address  string `json:"address"`
	Platform string `json:"platform"`
}

// PutAccount is the data of CmdPutAccount. Secret is the sealed password;
// empty on an update that keeps the password.
type PutAccount struct {
	AccountID string `json:"accountId"`
	Create    bool   `json:"create"`
	AssetID   string `json:"assetId"`
	Username  string `json:"username"`
	Secret    string `json:"secret,omitempty"`
}

// ByID is the data of the delete commands and of a release.
type ByID struct {
	ID     string `json:"id"`
	UserID string `json:"userId,omitempty"`
}

// ImportBatch is the data of CmdImportBatch: some rows of an import,
// staged until its commit. Field names are short: an import of 100,000
// rows is some 25 of these.
type ImportBatch struct {
	ImportID string      `json:"importId"`
	Rows     []importRow `json:"rows"`
}

type importRow struct {
	Line      int    `json:"l"`
	AssetID   string `json:"a"`
	NewAsset  bool   `json:"n,omitempty"`
	AssetName string `json:"an"`
	Address   string `json:"ad"`
	Platform  string `json:"p"`
	AccountID string `json:"c"`
	Username  string `json:"u"`
	Secret    string `json:"s"`
}

// ImportCommit is the data of CmdImportCommit and CmdImportDrop.
type ImportCommit struct {
	ImportID string `json:"importId"`
	Rows     int    `json:"rows"`
}

// PutPolicy is the data of CmdPutPolicy.
type PutPolicy struct {
	PolicyID           string   `json:"policyId"`
	Create             bool     `json:"create"`
	Name               string   `json:"name"`
	AccountIDs         []string `json:"accountIds"`
	Requesters         []string `json:"requesters"`
	Approvers          []string `json:"approvers"`
	ApprovalRequired   bool     `json:"approvalRequired"`
	DurationMinutes    int      `json:"durationMinutes"`
	ChangeAfterCheckin bool     `json:"changeAfterCheckin"`
}

// CreateRequest is the data of CmdCreateRequest.
type CreateRequest struct {
	RequestID   string `json:"requestId"`
	AccountID   string `json:"accountId"`
	PolicyID    string `json:"policyId"`
	RequesterID string `json:"requesterId"`
	Reason      string `json:"reason"`
}

// DecideRequest is the data of CmdDecideRequest.
type DecideRequest struct {
	RequestID string `json:"requestId"`
	DeciderID string `json:"deciderId"`
	Approve   bool   `json:"approve"`
	Comment   string `json:"comment,omitempty"`
}

// Checkin is the data of CmdCheckin: NewSecret is the account's next
// password, sealed, when the request's policy changes it after check-in.
type Checkin struct {
	RequestID string `json:"requestId"`
	UserID    string `json:"userId"`
	NewSecret string `json:"newSecret,omitempty"`
	// BypassPasswordChange: checked in during Offline Workflow, where the
	// policy's password change is skipped (offline.go).
	BypassPasswordChange bool `json:"bypassPasswordChange,omitempty"`
}

// Expire is the data of CmdExpire: requests whose time ended, each with
// the account's next password when it changes.
type Expire struct {
	Requests []Checkin `json:"requests"`
}

// Apply applies a workflow command inside the FSM's transaction; it is
// cluster.Config.Apply. handled is false for commands of other packages.
func Apply(ctx context.Context, tx *store.Tx, cmd cluster.Command) (handled bool, err error) {
	a := applier{tx: tx, cmd: cmd}
	switch cmd.Type {
	case CmdPutAsset:
		return true, withData(cmd, a.putAsset)
	case CmdDeleteAsset:
		return true, withData(cmd, a.deleteAsset)
	case CmdPutAccount:
		return true, withData(cmd, a.putAccount)
	case CmdDeleteAccount:
		return true, withData(cmd, a.deleteAccount)
	case CmdImportBatch:
		return true, withData(cmd, a.importBatch)
	case CmdImportCommit:
		return true, withData(cmd, a.importCommit)
	case CmdImportDrop:
		return true, withData(cmd, func(ctx context.Context, d ImportCommit) error { return tx.DropImport(ctx, d.ImportID) })
	case CmdPutPolicy:
		return true, withData(cmd, a.putPolicy)
	case CmdDeletePolicy:
		return true, withData(cmd, a.deletePolicy)
	case CmdCreateRequest:
		return true, withData(cmd, a.createRequest)
	case CmdDecideRequest:
		return true, withData(cmd, a.decideRequest)
	case CmdReleaseRequest:
		return true, withData(cmd, a.release)
	case CmdCheckin:
		return true, withData(cmd, a.checkin)
	case CmdExpire:
		return true, withData(cmd, a.expire)
	}
	return false, nil
}

func withData[T any](cmd cluster.Command, fn func(context.Context, T) error) error {
	var d T
	if err := json.Unmarshal(cmd.Data, &d); err != nil {
		return store.Reject("", "malformed %s command: %v", cmd.Type, err)
	}
	return fn(context.Background(), d)
}

type applier struct {
	tx     *store.Tx
	cmd    cluster.Command
	events int
}

// event records an audit event of this command; a command may record
// several (a check-in and the password change it caused).
func (a *applier) event(ctx context.Context, typ string, details map[string]string) error {
	return a.tx.InsertEvent(ctx, a.newEvent(typ, details))
}

// newEvent is the next audit event of this command, not yet written.
func (a *applier) newEvent(typ string, details map[string]string) store.Event {
	id := a.cmd.ID
	if a.events > 0 {
		id += "-" + strconv.Itoa(a.events)
	}
	a.events++
	return store.Event{ID: id, Type: typ, MemberID: a.cmd.Member, Actor: a.cmd.Actor, At: a.cmd.At, Details: details}
}

func (a *applier) putAsset(ctx context.Context, d PutAsset) error {
	as := store.Asset{ID: d.AssetID, Name: d.Name, Address: d.Address, Platform: d.Platform, CreatedAt: a.cmd.At}
	ev := EvAssetUpdated
	if d.Create {
		ev = EvAssetCreated
		if err := a.tx.InsertAsset(ctx, as); err != nil {
			return err
		}
	} else if err := a.tx.UpdateAsset(ctx, as, a.cmd.At); err != nil {
		return err
	}
	return a.event(ctx, ev, map[string]string{"assetId": d.AssetID, "asset": d.Name, "address": d.Address, "platform": d.Platform})
}

func (a *applier) deleteAsset(ctx context.Context, d ByID) error {
	if err := a.tx.DeleteAsset(ctx, d.ID); err != nil {
		return err
	}
	return a.event(ctx, EvAssetDeleted, map[string]string{"assetId": d.ID})
}

func (a *applier) putAccount(ctx context.Context, d PutAccount) error {
	if err := cluster.CheckSealedKey(ctx, a.tx, d.Secret); err != nil {
		return err
	}
	ev := EvAccountUpdated
	if d.Create {
		ev = EvAccountCreated
		if d.Secret == "" {
			return store.Reject("password", "a new account needs a password")
		}
		if err := a.tx.InsertAccount(ctx, store.Account{ID: d.AccountID, AssetID: d.AssetID, Username: d.Username, Secret: d.Secret, CreatedAt: a.cmd.At}); err != nil {
			return err
		}
	} else if err := a.tx.UpdateAccount(ctx, d.AccountID, d.Username, d.Secret, a.cmd.At); err != nil {
		return err
	}
	details := map[string]string{"accountId": d.AccountID, "account": d.Username}
	if d.Secret != "" && !d.Create {
		details["password"] = "changed"
	}
	return a.event(ctx, ev, details)
}

func (a *applier) deleteAccount(ctx context.Context, d ByID) error {
	if err := a.tx.DeleteAccount(ctx, d.ID); err != nil {
		return err
	}
	return a.event(ctx, EvAccountDeleted, map[string]string{"accountId": d.ID})
}

func (a *applier) importBatch(ctx context.Context, d ImportBatch) error {
	rows := make([]store.ImportRow, len(d.Rows))
	for i, r := range d.Rows {
		if err := cluster.CheckSealedKey(ctx, a.tx, r.Secret); err != nil {
			return err
		}
		rows[i] = store.ImportRow{Line: r.Line, AssetID: r.AssetID, NewAsset: r.NewAsset, AssetName: r.AssetName, Address: r.Address,
			Platform: r.Platform, AccountID: r.AccountID, Username: r.Username, Secret: r.Secret}
	}
	return a.tx.StageImport(ctx, d.ImportID, rows, a.cmd.At)
}

func (a *applier) importCommit(ctx context.Context, d ImportCommit) error {
	// Imports whose proposer stopped before their commit are forgotten.
	if err := a.tx.DropStaleImports(ctx, a.cmd.At.Add(-importStaleAfter)); err != nil {
		return err
	}
	assets, accounts, err := a.tx.CommitImport(ctx, d.ImportID, d.Rows, a.cmd.At)
	if err != nil {
		return err
	}
	return a.event(ctx, EvAccountsImported, map[string]string{"importId": d.ImportID, "assets": strconv.Itoa(assets), "accounts": strconv.Itoa(accounts)})
}

func (a *applier) putPolicy(ctx context.Context, d PutPolicy) error {
	if !d.Create {
		if err := a.tx.PolicyExists(ctx, d.PolicyID); err != nil {
			return err
		}
	}
	p := store.Policy{ID: d.PolicyID, Name: d.Name, Requesters: d.Requesters, Approvers: d.Approvers, ApprovalRequired: d.ApprovalRequired,
		DurationMinutes: d.DurationMinutes, ChangeAfterCheckin: d.ChangeAfterCheckin, AccountIDs: d.AccountIDs}
	if err := a.tx.PutPolicy(ctx, p, a.cmd.At); err != nil {
		return err
	}
	return a.event(ctx, EvPolicySaved, map[string]string{"policyId": d.PolicyID, "policy": d.Name, "accounts": strconv.Itoa(len(d.AccountIDs)),
		"approvalRequired": strconv.FormatBool(d.ApprovalRequired), "durationMinutes": strconv.Itoa(d.DurationMinutes),
		"changeAfterCheckin": strconv.FormatBool(d.ChangeAfterCheckin)})
}

func (a *applier) deletePolicy(ctx context.Context, d ByID) error {
	if err := a.tx.DeletePolicy(ctx, d.ID); err != nil {
		return err
	}
	return a.event(ctx, EvPolicyDeleted, map[string]string{"policyId": d.ID})
}

// requestDetails are what every event of a request names.
func requestDetails(r store.AccessRequest) map[string]string {
	return map[string]string{"requestId": r.ID, "account": r.AccountName + "@" + r.AssetName, "requester": r.Requester}
}

func (a *applier) user(ctx context.Context, id string) (store.User, error) {
	return activeUser(a.tx.UserByID(ctx, id))
}

// activeUser refuses a user the cluster does not know or has disabled.
func activeUser(u store.User, err error) (store.User, error) {
	if errors.Is(err, store.ErrNotFound) {
		return u, store.Reject("", "the user is not known to the cluster")
	}
	if err == nil && u.Disabled {
		return u, store.Reject("", "the user %s is disabled", u.Username)
	}
	return u, err
}

func (a *applier) createRequest(ctx context.Context, d CreateRequest) error {
	// One round trip for the four reads (store.Tx.RequestInputs).
	in, err := a.tx.RequestInputs(ctx, d.RequesterID, d.AccountID)
	if err != nil {
		return err
	}
	u, err := activeUser(in.User, in.UserErr)
	if err != nil {
		return err
	}
	acct := in.Account
	if errors.Is(in.AccountErr, store.ErrNotFound) {
		return store.Reject("accountId", "no account with this id")
	}
	p, ok := policyFor(in.Policies, d.PolicyID, u.Username, u.Role)
	if !ok {
		return store.Reject("accountId", "no access policy lets %s request %s@%s", u.Username, acct.Username, acct.AssetName)
	}
	// Without approval the account is checked out at once: it must be
	// free. A request that needs approval may wait for a held account.
	if acct.Holder != "" && !p.ApprovalRequired {
		return heldRefusal(acct)
	}
	open := in.OpenRequestID
	if open != "" {
		return store.Reject("accountId", "you have an open request for %s@%s already", acct.Username, acct.AssetName)
	}
	r := store.AccessRequest{ID: d.RequestID, AccountID: d.AccountID, AccountName: acct.Username, AssetName: acct.AssetName, PolicyID: p.ID,
		RequesterID: u.ID, Requester: u.Username, Reason: d.Reason, State: store.RequestPending, ApprovalRequired: p.ApprovalRequired,
		Approvers: p.Approvers, DurationMinutes: p.DurationMinutes, ChangeAfterCheckin: p.ChangeAfterCheckin, RequestedAt: a.cmd.At}
	if !p.ApprovalRequired {
		r.State = store.RequestAvailable
		at, until := a.cmd.At, a.cmd.At.Add(time.Duration(p.DurationMinutes)*time.Minute)
		r.AvailableAt, r.ExpiresAt = &at, &until
	}
	if err := a.tx.InsertRequest(ctx, r); err != nil {
		return err
	}
	details := requestDetails(r)
	details["reason"] = d.Reason
	details["policy"] = p.Name
	if !p.ApprovalRequired {
		details["approval"] = "not required"
	}
	return a.event(ctx, EvRequestCreated, details)
}

// heldRefusal refuses a second holder of an account, naming the first.
func heldRefusal(acct store.Account) error {
	return store.Reject("accountId", "%s has %s@%s checked out until %s; try again once it is checked in",
		acct.Holder, acct.Username, acct.AssetName, acct.HeldUntil.UTC().Format("2006-01-02 15:04 UTC"))
}

// policyFor picks the policy a request uses: the one named, or else the
// first that lets the user request the account. Administrators may request
// any account a policy covers.
func policyFor(policies []store.Policy, id, username, role string) (store.Policy, bool) {
	for _, p := range policies {
		if id != "" && p.ID != id {
			continue
		}
		if MayRequestUnder(p, Actor{Username: username, Role: role}) {
			return p, true
		}
	}
	return store.Policy{}, false
}

// decideRefusal says why a user may not approve or deny a request, or nil.
func decideRefusal(r store.AccessRequest, userID, username, role string) error {
	switch {
	case userID == r.RequesterID:
		return store.Reject("", "nobody approves their own request: another approver must decide")
	case !CanApprove(role):
		return store.Reject("", "only an Approver or an ApplianceAdministrator may decide requests; %s is %s", username, role)
	case role != cluster.RoleAdministrator && !listed(r.Approvers, username, role):
		return store.Reject("", "%s is not an approver of this request's policy", username)
	}
	return nil
}

func (a *applier) decideRequest(ctx context.Context, d DecideRequest) error {
	u, err := a.user(ctx, d.DeciderID)
	if err != nil {
		return err
	}
	r, err := a.request(ctx, d.RequestID)
	if err != nil {
		return err
	}
	if r.State != store.RequestPending {
		return store.Reject("", "the request is %s, not waiting for a decision", r.State)
	}
	if err := decideRefusal(r, u.ID, u.Username, u.Role); err != nil {
		return err
	}
	details := requestDetails(r)
	if d.Comment != "" {
		details["comment"] = d.Comment
	}
	if !d.Approve {
		if err := a.tx.DecideRequest(ctx, r.ID, store.RequestDenied, u.Username, d.Comment, a.cmd.At, nil); err != nil {
			return err
		}
		return a.event(ctx, EvRequestDenied, details)
	}
	acct, err := a.tx.AccountByID(ctx, r.AccountID)
	if err != nil {
		return err
	}
	if acct.Holder != "" {
		return heldRefusal(acct)
	}
	until := a.cmd.At.Add(time.Duration(r.DurationMinutes) * time.Minute)
	if err := a.tx.DecideRequest(ctx, r.ID, store.RequestAvailable, u.Username, d.Comment, a.cmd.At, &until); err != nil {
		return err
	}
	details["until"] = until.UTC().Format(time.RFC3339)
	return a.event(ctx, EvRequestApproved, details)
}

func (a *applier) request(ctx context.Context, id string) (store.AccessRequest, error) {
	r, err := a.tx.RequestForUpdate(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return r, noRequest
	}
	return r, err
}

var noRequest = store.Reject("id", "no access request with this id")

func (a *applier) release(ctx context.Context, d ByID) error {
	r, err := a.request(ctx, d.ID)
	if err != nil {
		return err
	}
	if err := releasable(r, d.UserID, a.cmd.At); err != nil {
		return err
	}
	if err := a.tx.RecordRelease(ctx, r.ID, a.cmd.At); err != nil {
		return err
	}
	details := requestDetails(r)
	details["release"] = strconv.Itoa(r.Releases + 1)
	return a.event(ctx, EvPasswordReleased, details)
}

// releasable tells whether the password of a request may be shown to a
// user at a time.
func releasable(r store.AccessRequest, userID string, at time.Time) error {
	switch {
	case r.RequesterID != userID:
		return store.Reject("", "only %s, who made the request, may see its password", r.Requester)
	case r.State == store.RequestPending:
		return store.Reject("", "the request waits for approval; the password is released once it is approved")
	case r.State != store.RequestAvailable:
		return store.Reject("", "the request is %s; make a new request to see the password again", r.State)
	case r.ExpiresAt != nil && !at.Before(*r.ExpiresAt):
		return store.Reject("", "the request's time ended at %s; make a new request", r.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"))
	}
	return nil
}

func (a *applier) checkin(ctx context.Context, d Checkin) error {
	// One round trip for both reads (store.Tx.CheckinInputs).
	in, err := a.tx.CheckinInputs(ctx, d.UserID, d.RequestID)
	if err != nil {
		return err
	}
	u, err := activeUser(in.User, in.UserErr)
	if err != nil {
		return err
	}
	r := in.Request
	if errors.Is(in.RequestErr, store.ErrNotFound) {
		return noRequest
	}
	if r.State != store.RequestAvailable {
		return store.Reject("", "the request is %s, not checked out", r.State)
	}
	if u.ID != r.RequesterID && u.Role != cluster.RoleAdministrator {
		return store.Reject("", "only %s, who holds the account, or an administrator may check it in", r.Requester)
	}
	if d.BypassPasswordChange && r.ChangeAfterCheckin {
		return a.endBypassed(ctx, r, u.Username)
	}
	return a.end(ctx, r, d.NewSecret, store.RequestCheckedIn, u.Username, EvRequestCheckedIn)
}

// end ends a check-out and changes the password when the request says so.
func (a *applier) end(ctx context.Context, r store.AccessRequest, newSecret, state, by, ev string) error {
	if r.ChangeAfterCheckin && newSecret == "" {
		return store.Reject("", "the request's policy changes the password after check-in, and no new password came with the command")
	}
	// One round trip for every write (store.Tx.EndCheckout).
	end := store.CheckoutEnd{RequestID: r.ID, State: state, By: by, At: a.cmd.At, AccountID: r.AccountID,
		Events: []store.Event{a.newEvent(ev, requestDetails(r))}}
	if r.ChangeAfterCheckin {
		end.NewSecret = newSecret
		end.Events = append(end.Events, a.newEvent(EvPasswordChanged, requestDetails(r)))
	}
	if r.ChangeAfterCheckin {
		if err := cluster.CheckSealedKey(ctx, a.tx, newSecret); err != nil {
			return err
		}
	}
	return a.tx.EndCheckout(ctx, end)
}

func (a *applier) expire(ctx context.Context, d Expire) error {
	for _, e := range d.Requests {
		r, err := a.tx.RequestForUpdate(ctx, e.RequestID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		// Checked in meanwhile, or not due at the command's time.
		if r.State != store.RequestAvailable || r.ExpiresAt == nil || r.ExpiresAt.After(a.cmd.At) {
			continue
		}
		if err := a.end(ctx, r, e.NewSecret, store.RequestExpired, "system", EvRequestExpired); err != nil {
			return fmt.Errorf("expire %s: %w", r.ID, err)
		}
	}
	return nil
}

// Prefetch reads for a batch of commands, in one round trip, what its new
// access requests and check-ins read (cluster.Prefetcher): under load most
// of a batch is check-outs and check-ins, and reading their inputs one
// command at a time costs a round trip to PostgreSQL each.
func Prefetch(ctx context.Context, tx *store.Tx, cmds []cluster.Command) error {
	var keys []store.CheckoutKey
	for _, cmd := range cmds {
		switch cmd.Type {
		case CmdCreateRequest:
			var d CreateRequest
			if json.Unmarshal(cmd.Data, &d) == nil {
				keys = append(keys, store.CheckoutKey{User: d.RequesterID, Account: d.AccountID})
			}
		case CmdCheckin:
			var d Checkin
			if json.Unmarshal(cmd.Data, &d) == nil {
				keys = append(keys, store.CheckoutKey{User: d.UserID, Request: d.RequestID})
			}
		}
	}
	return tx.PrefetchCheckouts(ctx, keys)
}
