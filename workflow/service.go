package workflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"conclave/cluster"
	"conclave/keyring"
	"conclave/store"
)

// Writer is where the workflow's commands go. Normally the cluster node:
// raft commits them, and a replica forwards them to the primary. Offline
// Workflow Mode can pass a writer that keeps them in a local store while
// the member is isolated.
type Writer interface {
	Propose(ctx context.Context, cmd cluster.Command) error
}

// Service runs the workflow on one appliance.
type Service struct {
	store  *store.Store
	node   *cluster.Node
	writer Writer
	log    *slog.Logger
}

// New returns the workflow of an appliance; its writes go through node.
func New(st *store.Store, node *cluster.Node, log *slog.Logger) *Service {
	return &Service{store: st, node: node, writer: offlineWriter{node: node}, log: log}
}

// UnavailableError refuses a workflow change on a member that cannot make
// one now (no consensus, Maintenance, …), with the reason in plain words.
type UnavailableError struct{ Reason string }

func (e *UnavailableError) Error() string { return e.Reason }

// RequestsAvailable tells whether access requests (and every other
// workflow change) can be made on this appliance now: it must be the
// primary or a replica in contact with it. It is what the availability
// endpoint reports as IsPasswordRequestAvailable.
func (s *Service) RequestsAvailable() (bool, string) {
	state := s.node.SelfState()
	switch state {
	case cluster.StateOnline, cluster.StateReplicaWithQuorum:
		return true, ""
	case cluster.StateIsolated:
		if s.node.Isolated() {
			return true, ""
		}
		if !s.node.Mode().Resuming {
			return false, fmt.Sprintf("Access requests are not possible on %s for a moment: it is starting Offline Workflow. Try again in a few seconds.", s.node.Name())
		}
		return false, fmt.Sprintf("Access requests are not possible on %s for a moment: it is resuming online. Try again once it is a replica again.", s.node.Name())
	case cluster.StateReplicaNoQuorum, cluster.StatePrimaryNoQuorum:
		return false, fmt.Sprintf("Access requests are not possible on %s now: it has no contact with a majority of the cluster (%s), "+
			"so it cannot record a request, an approval or a check-in. Use another member of the cluster, or try again once consensus is back.",
			s.node.Name(), cluster.StateLabel(state))
	}
	return false, fmt.Sprintf("Access requests are not possible on %s now: it is %s. Use another member of the cluster.",
		s.node.Name(), cluster.StateLabel(state))
}

// PolicyChangesAvailable tells whether assets, accounts and policies can be
// changed here: on the primary only (replicas show them read-only).
func (s *Service) PolicyChangesAvailable() bool {
	return s.node.SelfState() == cluster.StateOnline
}

// propose sends a workflow command through the writer, once this member can.
func (s *Service) propose(ctx context.Context, actor string, typ string, data any) error {
	if ok, reason := s.RequestsAvailable(); !ok {
		return &UnavailableError{Reason: reason}
	}
	cmd, err := cluster.Encode(typ, data)
	if err != nil {
		return err
	}
	cmd.Actor = actor
	return s.writer.Propose(ctx, cmd)
}

// --- input checks

// checkText trims a value and checks that it is present, not longer than
// max characters, and free of control characters.
func checkText(field, label, v string, max int) (string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return v, store.Reject(field, "%s is required", label)
	case !utf8.ValidString(v):
		return v, store.Reject(field, "%s must be text (UTF-8)", label)
	case utf8.RuneCountInString(v) > max:
		return v, store.Reject(field, "%s must have at most %d characters", label, max)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return v, store.Reject(field, "%s must not hold control characters (tabs, line breaks)", label)
		}
	}
	return v, nil
}

// checkPassword checks an account password (kept as given, not trimmed).
func checkPassword(field, v string) error {
	switch {
	case v == "":
		return store.Reject(field, "the password is required")
	case !utf8.ValidString(v) || strings.ContainsRune(v, 0):
		return store.Reject(field, "the password must be text (UTF-8) without NUL characters")
	case len(v) > 1024:
		return store.Reject(field, "the password must have at most 1024 bytes")
	}
	return nil
}

// Limits of the workflow's fields.
const (
	MaxNameLen      = 200
	MaxAddressLen   = 255
	MaxPlatformLen  = 64
	MaxUsernameLen  = 128
	MaxReasonLen    = 1000
	MaxDuration     = 7 * 24 * 60 // minutes
	newPasswordSize = 24
)

// --- assets

// AssetInput is an asset as a person enters it.
type AssetInput struct {
	Name, Address, Platform string
}

func (in AssetInput) check() (AssetInput, error) {
	var err error
	if in.Name, err = checkText("name", "the asset's name", in.Name, MaxNameLen); err != nil {
		return in, err
	}
	if in.Address, err = checkText("address", "the address", in.Address, MaxAddressLen); err != nil {
		return in, err
	}
	if in.Platform, err = checkText("platform", "the platform", in.Platform, MaxPlatformLen); err != nil {
		return in, err
	}
	return in, nil
}

// CreateAsset adds an asset and returns its ID.
func (s *Service) CreateAsset(ctx context.Context, actor Actor, in AssetInput) (string, error) {
	in, err := in.check()
	if err != nil {
		return "", err
	}
	id := uuid.NewString()
	return id, s.propose(ctx, actor.Username, CmdPutAsset, PutAsset{AssetID: id, Create: true, Name: in.Name, Address: in.Address, Platform: in.Platform})
}

// UpdateAsset changes an asset.
func (s *Service) UpdateAsset(ctx context.Context, actor Actor, id string, in AssetInput) error {
	if _, err := s.store.AssetByID(ctx, id); err != nil {
		return err
	}
	in, err := in.check()
	if err != nil {
		return err
	}
	return s.propose(ctx, actor.Username, CmdPutAsset, PutAsset{AssetID: id, Name: in.Name, Address: in.Address, Platform: in.Platform})
}

// DeleteAsset deletes an asset without accounts.
func (s *Service) DeleteAsset(ctx context.Context, actor Actor, id string) error {
	if _, err := s.store.AssetByID(ctx, id); err != nil {
		return err
	}
	return s.propose(ctx, actor.Username, CmdDeleteAsset, ByID{ID: id})
}

// --- accounts

// sealPassword seals an account's password, bound to the account.
func sealPassword(keys keyring.Keys, accountID, password string) (string, error) {
	return keys.Seal([]byte(password), "account:"+accountID)
}

// CreateAccount adds an account to an asset and returns its ID.
func (s *Service) CreateAccount(ctx context.Context, actor Actor, assetID, username, password string) (string, error) {
	if _, err := s.store.AssetByID(ctx, assetID); errors.Is(err, store.ErrNotFound) {
		return "", store.Reject("assetId", "no asset with this id")
	} else if err != nil {
		return "", err
	}
	username, err := checkText("username", "the account's user name", username, MaxUsernameLen)
	if err != nil {
		return "", err
	}
	if err := checkPassword("password", password); err != nil {
		return "", err
	}
	keys, err := s.node.DataKeys(ctx)
	if err != nil {
		return "", err
	}
	id := uuid.NewString()
	secret, err := sealPassword(keys, id, password)
	if err != nil {
		return "", err
	}
	return id, s.propose(ctx, actor.Username, CmdPutAccount, PutAccount{AccountID: id, Create: true, AssetID: assetID, Username: username, Secret: secret})
}

// UpdateAccount renames an account and, when password is not nil, sets
// its password.
func (s *Service) UpdateAccount(ctx context.Context, actor Actor, id string, username, password *string) error {
	acct, err := s.store.AccountByID(ctx, id)
	if err != nil {
		return err
	}
	d := PutAccount{AccountID: id, AssetID: acct.AssetID, Username: acct.Username}
	if username != nil {
		if d.Username, err = checkText("username", "the account's user name", *username, MaxUsernameLen); err != nil {
			return err
		}
	}
	if password != nil {
		if err := checkPassword("password", *password); err != nil {
			return err
		}
		keys, err := s.node.DataKeys(ctx)
		if err != nil {
			return err
		}
		if d.Secret, err = sealPassword(keys, id, *password); err != nil {
			return err
		}
	}
	return s.propose(ctx, actor.Username, CmdPutAccount, d)
}

// DeleteAccount deletes an account nobody holds or waits for.
func (s *Service) DeleteAccount(ctx context.Context, actor Actor, id string) error {
	if _, err := s.store.AccountByID(ctx, id); err != nil {
		return err
	}
	return s.propose(ctx, actor.Username, CmdDeleteAccount, ByID{ID: id})
}

// --- policies

// PolicyInput is a policy as a person enters it.
type PolicyInput struct {
	Name               string
	AccountIDs         []string
	Requesters         []string
	Approvers          []string
	ApprovalRequired   bool
	DurationMinutes    int
	ChangeAfterCheckin bool
}

// SavePolicy creates a policy (id empty) or replaces one, and returns its ID.
func (s *Service) SavePolicy(ctx context.Context, actor Actor, id string, in PolicyInput) (string, error) {
	name, err := checkText("name", "the policy's name", in.Name, MaxNameLen)
	if err != nil {
		return "", err
	}
	if in.DurationMinutes < 1 || in.DurationMinutes > MaxDuration {
		return "", store.Reject("durationMinutes", "the check-out duration must be between 1 and %d minutes (a week)", MaxDuration)
	}
	requesters, approvers := normalizeNames(in.Requesters), normalizeNames(in.Approvers)
	if len(requesters) == 0 {
		return "", store.Reject("requesters", "name at least one requester: a user name, or a role (%s) for every user of it", cluster.RoleRequester)
	}
	if in.ApprovalRequired && len(approvers) == 0 {
		return "", store.Reject("approvers", "a policy that requires approval needs approvers: user names, or a role (%s)", cluster.RoleApprover)
	}
	if len(in.AccountIDs) == 0 {
		return "", store.Reject("accountIds", "choose at least one account")
	}
	accountIDs := make([]string, 0, len(in.AccountIDs))
	seen := map[string]bool{}
	for _, a := range in.AccountIDs {
		if _, err := uuid.Parse(a); err != nil || len(a) != 36 {
			return "", store.Reject("accountIds", "%q is not an account id", a)
		}
		if !seen[strings.ToLower(a)] {
			seen[strings.ToLower(a)] = true
			accountIDs = append(accountIDs, strings.ToLower(a))
		}
	}
	if err := s.checkUsersExist(ctx, "requesters", requesters); err != nil {
		return "", err
	}
	if err := s.checkUsersExist(ctx, "approvers", approvers); err != nil {
		return "", err
	}
	create := id == ""
	if create {
		id = uuid.NewString()
	} else if _, err := s.store.PolicyByID(ctx, id); err != nil {
		return "", err
	}
	return id, s.propose(ctx, actor.Username, CmdPutPolicy, PutPolicy{PolicyID: id, Create: create, Name: name, AccountIDs: accountIDs,
		Requesters: requesters, Approvers: approvers, ApprovalRequired: in.ApprovalRequired, DurationMinutes: in.DurationMinutes,
		ChangeAfterCheckin: in.ChangeAfterCheckin})
}

// checkUsersExist refuses a name that is neither a role nor a user.
func (s *Service) checkUsersExist(ctx context.Context, field string, list []string) error {
	for _, n := range list {
		if cluster.ValidRole(n) {
			continue
		}
		if _, err := s.store.UserByUsername(ctx, n); errors.Is(err, store.ErrNotFound) {
			return store.Reject(field, "%q is neither a user nor a role (%s)", n, strings.Join(cluster.Roles, ", "))
		} else if err != nil {
			return err
		}
	}
	return nil
}

// DeletePolicy deletes a policy; requests made under it keep its terms.
func (s *Service) DeletePolicy(ctx context.Context, actor Actor, id string) error {
	if _, err := s.store.PolicyByID(ctx, id); err != nil {
		return err
	}
	return s.propose(ctx, actor.Username, CmdDeletePolicy, ByID{ID: id})
}

// --- access requests

// Request asks for an account's password and returns the request's ID.
// Without approval in the policy, the account is checked out at once.
func (s *Service) Request(ctx context.Context, actor Actor, accountID, reason string) (string, error) {
	if !CanRequest(actor.Role) {
		return "", store.Reject("", "only a Requester or an ApplianceAdministrator may request accounts; %s is %s", actor.Username, actor.Role)
	}
	// Whether the account exists is the command's to check when applied,
	// with the same refusal: a read here would cost the primary's database
	// a query for every check-out.
	if !store.IsUUID(accountID) {
		return "", store.Reject("accountId", "no account with this id")
	}
	reason, err := checkText("reason", "the reason", reason, MaxReasonLen)
	if err != nil {
		return "", err
	}
	id := cluster.NewRecordID()
	return id, s.propose(ctx, actor.Username, CmdCreateRequest, CreateRequest{RequestID: id, AccountID: accountID, RequesterID: actor.UserID, Reason: reason})
}

// Decide approves or denies a pending request.
func (s *Service) Decide(ctx context.Context, actor Actor, id string, approve bool, comment string) error {
	if !CanApprove(actor.Role) {
		return store.Reject("", "only an Approver or an ApplianceAdministrator may decide requests; %s is %s", actor.Username, actor.Role)
	}
	if _, err := s.store.RequestByID(ctx, id); err != nil {
		return err
	}
	comment = strings.TrimSpace(comment)
	if comment != "" {
		var err error
		if comment, err = checkText("comment", "the comment", comment, MaxReasonLen); err != nil {
			return err
		}
	}
	return s.propose(ctx, actor.Username, CmdDecideRequest, DecideRequest{RequestID: id, DeciderID: actor.UserID, Approve: approve, Comment: comment})
}

// Released is a password shown to its requester.
type Released struct {
	Request  store.AccessRequest
	Password string
}

// Release records the release of a request's password in the audit log,
// then opens the password: it is shown only once the release is recorded.
func (s *Service) Release(ctx context.Context, actor Actor, id string) (Released, error) {
	r, err := s.store.RequestByID(ctx, id)
	if err != nil {
		return Released{}, err
	}
	if err := releasable(r, actor.UserID, time.Now()); err != nil {
		return Released{}, err
	}
	if err := s.propose(ctx, actor.Username, CmdReleaseRequest, ByID{ID: id, UserID: actor.UserID}); err != nil {
		return Released{}, err
	}
	acct, err := s.store.AccountByID(ctx, r.AccountID)
	if err != nil {
		return Released{}, err
	}
	keys, err := s.node.DataKeys(ctx)
	if err != nil {
		return Released{}, err
	}
	plain, err := keys.Open(acct.Secret, "account:"+acct.ID)
	if err != nil {
		return Released{}, fmt.Errorf("open the password of account %s: %w", acct.ID, err)
	}
	if r, err = s.store.RequestByID(ctx, id); err != nil {
		return Released{}, err
	}
	return Released{Request: r, Password: string(plain)}, nil
}

// Checkin ends a check-out; when the request's policy says so, the account
// gets a new random password (generated and sealed here, before proposing).
func (s *Service) Checkin(ctx context.Context, actor Actor, id string) error {
	r, err := s.store.CheckinTerms(ctx, id)
	if err != nil {
		return err
	}
	d := Checkin{RequestID: id, UserID: actor.UserID}
	if r.ChangeAfterCheckin && s.node.Isolated() {
		// Offline the new password could not be set on the account's
		// system for the cluster: the change is skipped, and recorded.
		d.BypassPasswordChange = true
	} else if r.ChangeAfterCheckin {
		if d.NewSecret, err = s.newSecret(ctx, r.AccountID); err != nil {
			return err
		}
	}
	return s.propose(ctx, actor.Username, CmdCheckin, d)
}

func (s *Service) newSecret(ctx context.Context, accountID string) (string, error) {
	keys, err := s.node.DataKeys(ctx)
	if err != nil {
		return "", err
	}
	pw, err := keyring.RandomPassword(newPasswordSize)
	if err != nil {
		return "", err
	}
	return sealPassword(keys, accountID, pw)
}

// ExpireDue checks in, as "system", every check-out whose time ended by
// now, in commands of at most 500 requests. The primary runs it every
// second (RunExpiry); Apply never reads the clock, so the time is the
// command's.
func (s *Service) ExpireDue(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		due, err := s.store.DueExpiries(ctx, now, maxExpiriesPerBatch)
		if err != nil || len(due) == 0 {
			return total, err
		}
		d := Expire{}
		for _, r := range due {
			e := Checkin{RequestID: r.ID}
			if r.ChangeAfterCheckin {
				if e.NewSecret, err = s.newSecret(ctx, r.AccountID); err != nil {
					return total, err
				}
			}
			d.Requests = append(d.Requests, e)
		}
		cmd, err := cluster.Encode(CmdExpire, d)
		if err != nil {
			return total, err
		}
		cmd.Actor, cmd.At = "system", now.UTC()
		if err := s.writer.Propose(ctx, cmd); err != nil {
			return total, err
		}
		total += len(due)
		if len(due) < maxExpiriesPerBatch {
			return total, nil
		}
	}
}

// RunExpiry expires check-outs on the primary, every second, until stop
// is closed.
func (s *Service) RunExpiry(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		// Only the primary of a working cluster: an appliance left on its
		// own read-only (after Unjoin) leads a cluster of one, and must not
		// change passwords that the real cluster manages.
		if !s.node.IsLeader() || s.node.SelfState() != cluster.StateOnline {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if n, err := s.ExpireDue(ctx, time.Now()); err != nil {
			s.log.Warn("expire check-outs", "expired", n, "err", err)
		}
		cancel()
	}
}
