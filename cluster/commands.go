package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"conclave/keyring"
	"conclave/store"
)

// Command is one change to replicated state: a raft log entry. It carries
// everything Apply needs (IDs, times, the acting user, hashed secrets), so
// that every member applies it to the same result without reading the clock,
// random numbers or the network.
type Command struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`     // unique; also the ID of the event it records
	At     time.Time       `json:"at"`     // when it was proposed
	Actor  string          `json:"actor"`  // user name, or "system"
	Member string          `json:"member"` // the member that proposed it
	Data   json.RawMessage `json:"data,omitempty"`
	// Event, when set, is recorded in the audit log in the same transaction
	// as the command's effect (and not at all if the command is rejected).
	Event *EventSpec `json:"event,omitempty"`
}

// NewRecordID is a new ID for a command (and so its events) or a row that
// grows a table for ever, such as an access request: a UUID whose first
// bits are the time (version 7). Rows made one after another then go to the
// right end of their indexes, which stay in memory, instead of a random
// page each; random IDs made every insert of events and access_requests
// read and dirty a leaf page of its primary key anywhere in the index.
func NewRecordID() string { return uuid.Must(uuid.NewV7()).String() }

// EventSpec is the audit event a command records.
type EventSpec struct {
	Type        string            `json:"type"`
	OperationID string            `json:"operationId,omitempty"`
	Details     map[string]string `json:"details,omitempty"`
}

// Command types.
const (
	CmdInitCluster     = "cluster.init"
	CmdPutMember       = "member.put"
	CmdRemoveMember    = "member.remove"
	CmdPutSession      = "session.put"
	CmdDeleteSession   = "session.delete"
	CmdPruneSessions   = "session.prune"
	CmdReplaceCluster  = "cluster.replace"
	CmdPutSettings     = "settings.put"
	CmdRecordEvent     = "event.record"
	CmdCreateUser      = "user.create"
	CmdUpdateUser      = "user.update"
	CmdUpsertOIDCUser  = "user.oidc"
	CmdIssueToken      = "token.issue"
	CmdRevokeToken     = "token.revoke"
	CmdCreateOperation = "operation.create"
	CmdUpdateStep      = "operation.step"
	CmdFinishOperation = "operation.finish"
	// The cluster's data-encryption keys (cluster/secrets.go).
	CmdPutDataKeys = "keyring.datakeys"
)

// Roles.
const (
	RoleAdministrator = "ApplianceAdministrator"
	RoleHelpdesk      = "Helpdesk"
	// The access-request workflow: a Requester asks for accounts, an
	// Approver decides; an administrator is both.
	RoleRequester = "Requester"
	RoleApprover  = "Approver"
)

// Roles lists every role, most powerful first (an identity provider's
// groups map to the first role any of them names). Helpdesk, which changes
// nothing, comes last.
var Roles = []string{RoleAdministrator, RoleApprover, RoleRequester, RoleHelpdesk}

// ValidRole tells whether r names a role.
func ValidRole(r string) bool {
	for _, x := range Roles {
		if x == r {
			return true
		}
	}
	return false
}

// InitCluster is the data of CmdInitCluster.
type InitCluster struct {
	ClusterID string            `json:"clusterId"`
	Member    MemberData        `json:"member"`
	Settings  map[string]string `json:"settings,omitempty"`
	CA        *CA               `json:"ca,omitempty"`
	// DataKeys seal secrets (account passwords); see cluster/secrets.go.
	DataKeys *keyring.Keys `json:"dataKeys,omitempty"`
}

// SessionData is the data of CmdPutSession and CmdDeleteSession.
type SessionData struct {
	IDHash    []byte    `json:"idHash"`
	UserID    string    `json:"userId,omitempty"`
	Data      []byte    `json:"data,omitempty"`
	CreatedAt time.Time `json:"createdAt,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitempty"`
}

// RemoveMember is the data of CmdRemoveMember.
type RemoveMember struct {
	MemberID string `json:"memberId"`
}

// ReplaceCluster is the data of CmdReplaceCluster: an appliance that left
// its cluster keeps its data in a new one-member cluster with a new CA.
type ReplaceCluster struct {
	ClusterID string     `json:"clusterId"`
	Member    MemberData `json:"member"`
	CA        CA         `json:"ca"`
}

// MemberData describes a member in commands.
type MemberData struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address"`
	Version string `json:"version"`
	IsVoter bool   `json:"isVoter"`
}

// PutSettings is the data of CmdPutSettings.
type PutSettings struct {
	Values map[string]json.RawMessage `json:"values"`
}

// CreateUser is the data of CmdCreateUser.
type CreateUser struct {
	UserID       string `json:"userId"`
	Username     string `json:"username"`
	Role         string `json:"role"`
	PasswordHash string `json:"passwordHash"`
	Source       string `json:"source"`
}

// UpdateUser is the data of CmdUpdateUser; nil fields stay as they are.
type UpdateUser struct {
	UserID       string  `json:"userId"`
	Role         *string `json:"role,omitempty"`
	PasswordHash *string `json:"passwordHash,omitempty"`
	Disabled     *bool   `json:"disabled,omitempty"`
}

// UpsertOIDCUser is the data of CmdUpsertOIDCUser: a user who signed in
// through the identity provider, created on first sign-in, role refreshed on
// every sign-in.
type UpsertOIDCUser struct {
	NewUserID string `json:"newUserId"`
	Subject   string `json:"subject"` // "<issuer> <sub>": who the person is
	Username  string `json:"username"`
	Role      string `json:"role"`
}

// IssueToken is the data of CmdIssueToken.
type IssueToken struct {
	TokenID   string    `json:"tokenId"`
	UserID    string    `json:"userId"`
	Hash      []byte    `json:"hash"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// RevokeToken is the data of CmdRevokeToken.
type RevokeToken struct {
	TokenID string `json:"tokenId"`
}

// CreateOperation is the data of CmdCreateOperation.
type CreateOperation struct {
	OperationID string   `json:"operationId"`
	Kind        string   `json:"kind"`
	Steps       []string `json:"steps"`
}

// UpdateStep is the data of CmdUpdateStep.
type UpdateStep struct {
	OperationID string     `json:"operationId"`
	Index       int        `json:"index"`
	Step        store.Step `json:"step"`
}

// FinishOperation is the data of CmdFinishOperation.
type FinishOperation struct {
	OperationID string `json:"operationId"`
	State       string `json:"state"`
	Error       string `json:"error,omitempty"`
}

// Operation states.
const (
	OpPending       = "Pending"
	OpRunning       = "Running"
	OpSucceeded     = "Succeeded"
	OpFailed        = "Failed"
	OpResultUnknown = "ResultUnknown"
)

// Step states.
const (
	StepPending   = "Pending"
	StepRunning   = "Running"
	StepSucceeded = "Succeeded"
	StepFailed    = "Failed"
	StepSkipped   = "Skipped"
)

// Applier applies the commands of another package (the workflow) inside
// the FSM's transaction; handled is false for a command it does not know.
type Applier func(ctx context.Context, tx *store.Tx, cmd Command) (handled bool, err error)

// Prefetcher reads, before a batch of commands is applied, what they will
// read, in as few round trips as it can (workflow.Prefetch). It may read
// nothing; the commands read what is missing themselves.
type Prefetcher func(ctx context.Context, tx *store.Tx, cmds []Command) error

// apply performs cmd inside the FSM's transaction.
func apply(ctx context.Context, tx *store.Tx, cmd Command, extra Applier) error {
	if err := applyEffect(ctx, tx, cmd, extra); err != nil {
		return err
	}
	if cmd.Event != nil {
		return tx.InsertEvent(ctx, store.Event{
			ID:          cmd.ID,
			Type:        cmd.Event.Type,
			MemberID:    cmd.Member,
			Actor:       cmd.Actor,
			At:          cmd.At,
			OperationID: cmd.Event.OperationID,
			Details:     cmd.Event.Details,
		})
	}
	return nil
}

func decode[T any](cmd Command) (T, error) {
	var v T
	if err := json.Unmarshal(cmd.Data, &v); err != nil {
		return v, store.Reject("", "malformed %s command: %v", cmd.Type, err)
	}
	return v, nil
}

func applyEffect(ctx context.Context, tx *store.Tx, cmd Command, extra Applier) error {
	switch cmd.Type {
	case CmdInitCluster:
		d, err := decode[InitCluster](cmd)
		if err != nil {
			return err
		}
		if err := tx.InitCluster(ctx, store.ClusterInfo{ID: d.ClusterID, CreatedAt: cmd.At}); err != nil {
			return err
		}
		if d.CA != nil {
			if err := putCA(ctx, tx, *d.CA, cmd.At); err != nil {
				return err
			}
		}
		if d.DataKeys != nil {
			if err := putDataKeys(ctx, tx, *d.DataKeys, cmd.At); err != nil {
				return err
			}
		}
		for k, v := range d.Settings {
			raw, _ := json.Marshal(v)
			if err := tx.PutSetting(ctx, k, raw, cmd.At, cmd.Actor); err != nil {
				return err
			}
		}
		return tx.PutMember(ctx, memberRow(d.Member, cmd.At))
	case CmdPutSession:
		d, err := decode[SessionData](cmd)
		if err != nil {
			return err
		}
		return tx.PutSession(ctx, store.SessionRow{IDHash: d.IDHash, UserID: d.UserID, Data: d.Data, CreatedAt: d.CreatedAt, ExpiresAt: d.ExpiresAt})
	case CmdDeleteSession:
		d, err := decode[SessionData](cmd)
		if err != nil {
			return err
		}
		return tx.DeleteSession(ctx, d.IDHash)
	case CmdPruneSessions:
		return tx.DeleteSessionsExpiredBefore(ctx, cmd.At)
	case CmdRemoveMember:
		d, err := decode[RemoveMember](cmd)
		if err != nil {
			return err
		}
		return tx.RemoveMember(ctx, d.MemberID)
	case CmdReplaceCluster:
		d, err := decode[ReplaceCluster](cmd)
		if err != nil {
			return err
		}
		if err := putCA(ctx, tx, d.CA, cmd.At); err != nil {
			return err
		}
		return tx.ReplaceCluster(ctx, store.ClusterInfo{ID: d.ClusterID, CreatedAt: cmd.At}, memberRow(d.Member, cmd.At))
	case CmdPutMember:
		d, err := decode[MemberData](cmd)
		if err != nil {
			return err
		}
		return tx.PutMember(ctx, memberRow(d, cmd.At))
	case CmdPutSettings:
		d, err := decode[PutSettings](cmd)
		if err != nil {
			return err
		}
		for k, v := range d.Values {
			if err := tx.PutSetting(ctx, k, v, cmd.At, cmd.Actor); err != nil {
				return err
			}
		}
		return nil
	case CmdRecordEvent:
		if cmd.Event == nil {
			return store.Reject("", "event.record without an event")
		}
		return nil
	case CmdCreateUser:
		d, err := decode[CreateUser](cmd)
		if err != nil {
			return err
		}
		return tx.CreateUser(ctx, store.User{ID: d.UserID, Username: d.Username, Role: d.Role, PasswordHash: d.PasswordHash, Source: d.Source, CreatedAt: cmd.At})
	case CmdUpdateUser:
		d, err := decode[UpdateUser](cmd)
		if err != nil {
			return err
		}
		return applyUpdateUser(ctx, tx, d, cmd.At)
	case CmdUpsertOIDCUser:
		d, err := decode[UpsertOIDCUser](cmd)
		if err != nil {
			return err
		}
		return applyUpsertOIDCUser(ctx, tx, d, cmd.At)
	case CmdIssueToken:
		d, err := decode[IssueToken](cmd)
		if err != nil {
			return err
		}
		return tx.CreateToken(ctx, store.APIToken{ID: d.TokenID, UserID: d.UserID, Hash: d.Hash, CreatedAt: cmd.At, ExpiresAt: d.ExpiresAt})
	case CmdRevokeToken:
		d, err := decode[RevokeToken](cmd)
		if err != nil {
			return err
		}
		return tx.RevokeToken(ctx, d.TokenID, cmd.At)
	case CmdCreateOperation:
		d, err := decode[CreateOperation](cmd)
		if err != nil {
			return err
		}
		steps := make([]store.Step, len(d.Steps))
		for i, name := range d.Steps {
			steps[i] = store.Step{Name: name, State: StepPending}
		}
		if err := tx.CreateOperation(ctx, store.Operation{ID: d.OperationID, Kind: d.Kind, State: OpPending, OwnerID: cmd.Member, Actor: cmd.Actor, StartedAt: cmd.At, Steps: steps}); err != nil {
			return err
		}
		return tx.InsertEvent(ctx, store.Event{ID: cmd.ID + "-lock", Type: "ClusterLocked", MemberID: cmd.Member, Actor: cmd.Actor, At: cmd.At, OperationID: d.OperationID,
			Details: map[string]string{"kind": d.Kind}})
	case CmdUpdateStep:
		d, err := decode[UpdateStep](cmd)
		if err != nil {
			return err
		}
		return tx.UpdateStep(ctx, d.OperationID, d.Index, d.Step)
	case CmdFinishOperation:
		d, err := decode[FinishOperation](cmd)
		if err != nil {
			return err
		}
		if err := tx.FinishOperation(ctx, d.OperationID, d.State, d.Error, cmd.At); err != nil {
			return err
		}
		return tx.InsertEvent(ctx, store.Event{ID: cmd.ID + "-unlock", Type: "ClusterUnlocked", MemberID: cmd.Member, Actor: cmd.Actor, At: cmd.At, OperationID: d.OperationID,
			Details: map[string]string{"result": d.State}})
	case CmdPutDataKeys:
		d, err := decode[keyring.Keys](cmd)
		if err != nil {
			return err
		}
		return applyPutDataKeys(ctx, tx, d, cmd.At)
	// Data key rotation (cluster/keys.go).
	case CmdRotateDataKey, CmdResealSecrets, CmdRetireDataKey:
		return applyKeyCommand(ctx, tx, cmd)
	}
	if extra != nil {
		if handled, err := extra(ctx, tx, cmd); handled {
			return err
		}
	}
	return store.Reject("", "unknown command type %q (is every member on the same build?)", cmd.Type)
}

func memberRow(m MemberData, at time.Time) store.Member {
	return store.Member{ID: m.ID, Name: m.Name, Address: m.Address, Version: m.Version, IsVoter: m.IsVoter, EnrolledSince: at}
}

func applyUpdateUser(ctx context.Context, tx *store.Tx, d UpdateUser, at time.Time) error {
	u, err := tx.UserForUpdate(ctx, d.UserID)
	if err != nil {
		return err
	}
	losesAdmin := u.Role == RoleAdministrator && !u.Disabled &&
		((d.Role != nil && *d.Role != RoleAdministrator) || (d.Disabled != nil && *d.Disabled))
	if losesAdmin {
		n, err := tx.CountActiveWithRole(ctx, RoleAdministrator, u.ID)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.Reject("role", "%s is the last enabled %s; make another user an administrator first", u.Username, RoleAdministrator)
		}
	}
	if d.PasswordHash != nil && u.Source != "local" {
		return store.Reject("password", "%s signs in through the identity provider and has no local password", u.Username)
	}
	return tx.UpdateUser(ctx, u.ID, store.UserChange{Role: d.Role, PasswordHash: d.PasswordHash, Disabled: d.Disabled}, at)
}

// Encode builds a command with data.
func Encode(typ string, data any) (Command, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Command{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	return Command{Type: typ, Data: raw}, nil
}

// applyUpsertOIDCUser finds the person by the provider's subject, never by
// the user name alone: a name can be changed at the provider, a subject
// cannot.
func applyUpsertOIDCUser(ctx context.Context, tx *store.Tx, d UpsertOIDCUser, at time.Time) error {
	if d.Subject == "" {
		return store.Reject("subject", "the identity provider sent no subject")
	}
	u, err := tx.UserBySubject(ctx, d.Subject)
	if err == store.ErrNotFound {
		byName, err := tx.UserByUsername(ctx, d.Username)
		switch {
		case err == store.ErrNotFound:
			return tx.CreateUser(ctx, store.User{ID: d.NewUserID, Username: d.Username, Role: d.Role, Source: "oidc", Subject: d.Subject, CreatedAt: at})
		case err != nil:
			return err
		case byName.Source != "oidc":
			return store.Reject("username", "%q is a local user; the identity provider cannot sign in as it", d.Username)
		default:
			return store.Reject("username", "the user name %q belongs to another identity-provider account; ask an administrator", d.Username)
		}
	}
	if err != nil {
		return err
	}
	if u.Disabled {
		return store.Reject("username", "user %q is disabled", u.Username)
	}
	if u.Role == d.Role {
		return nil
	}
	return tx.UpdateUser(ctx, u.ID, store.UserChange{Role: &d.Role}, at)
}

// keyCA is the name of the cluster CA in the key ring.
const keyCA = "ca"

func putCA(ctx context.Context, tx *store.Tx, ca CA, at time.Time) error {
	raw, err := json.Marshal(ca)
	if err != nil {
		return err
	}
	return tx.PutKey(ctx, keyCA, raw, at)
}
