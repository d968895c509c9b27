package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"conclave/cluster"
	"conclave/store"
)

// FieldError names the field a person must correct.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Message }

// NewUser is a local user to create.
type NewUser struct {
	Username string
	Password string
	Role     string
}

// CreateUser validates and creates a local user, audited as actor.
func (s *Service) CreateUser(ctx context.Context, actor string, nu NewUser) (string, error) {
	nu.Username = strings.TrimSpace(nu.Username)
	if err := ValidateUsername(nu.Username); err != nil {
		return "", &FieldError{"username", err.Error()}
	}
	if !cluster.ValidRole(nu.Role) {
		return "", &FieldError{"role", fmt.Sprintf("role must be one of %s", strings.Join(cluster.Roles, ", "))}
	}
	if err := ValidatePassword(nu.Password); err != nil {
		return "", &FieldError{"password", err.Error()}
	}
	// The FSM refuses a taken name too; asking first spares the raft log
	// an entry that changes nothing.
	if u, err := s.store.UserByUsername(ctx, nu.Username); err == nil {
		return "", &FieldError{"username", fmt.Sprintf("a user named %q exists already", u.Username)}
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	hash, err := s.HashPassword(nu.Password)
	if err != nil {
		return "", err
	}
	id := uuid.NewString()
	err = s.node.ProposeData(ctx, cluster.CmdCreateUser, actor, cluster.CreateUser{UserID: id, Username: nu.Username, Role: nu.Role, PasswordHash: hash, Source: "local"},
		&cluster.EventSpec{Type: "UserCreated", Details: map[string]string{"username": nu.Username, "role": nu.Role}})
	if err != nil {
		return "", err
	}
	return id, nil
}

// UserUpdate lists what to change; nil fields stay.
type UserUpdate struct {
	Role     *string
	Password *string
	Disabled *bool
}

// UpdateUser validates and applies a change to a user, audited as actor.
// Each kind of change is its own event, so the log says what changed.
func (s *Service) UpdateUser(ctx context.Context, actor, id string, up UserUpdate) error {
	u, err := s.store.UserByID(ctx, id)
	if err != nil {
		return err
	}
	if up.Role != nil && !cluster.ValidRole(*up.Role) {
		return &FieldError{"role", fmt.Sprintf("role must be one of %s", strings.Join(cluster.Roles, ", "))}
	}
	if up.Password != nil {
		if u.Source != "local" {
			return &FieldError{"password", u.Username + " signs in through the identity provider and has no local password"}
		}
		if err := ValidatePassword(*up.Password); err != nil {
			return &FieldError{"password", err.Error()}
		}
	}
	// Refuse before changing anything: an update that also resets the
	// password must not half happen. The FSM checks again when it applies.
	if u.Role == cluster.RoleAdministrator && !u.Disabled {
		demoted := up.Role != nil && *up.Role != cluster.RoleAdministrator
		disabled := up.Disabled != nil && *up.Disabled
		if demoted || disabled {
			if err := s.keepOneAdmin(ctx, u, demoted); err != nil {
				return err
			}
		}
	}
	if up.Role != nil && *up.Role != u.Role {
		if err := s.node.ProposeData(ctx, cluster.CmdUpdateUser, actor, cluster.UpdateUser{UserID: id, Role: up.Role},
			&cluster.EventSpec{Type: "UserRoleChanged", Details: map[string]string{"username": u.Username, "role": *up.Role, "previousRole": u.Role}}); err != nil {
			return err
		}
	}
	if up.Password != nil {
		hash, err := s.HashPassword(*up.Password)
		if err != nil {
			return err
		}
		if err := s.node.ProposeData(ctx, cluster.CmdUpdateUser, actor, cluster.UpdateUser{UserID: id, PasswordHash: &hash},
			&cluster.EventSpec{Type: "UserPasswordReset", Details: map[string]string{"username": u.Username}}); err != nil {
			return err
		}
	}
	if up.Disabled != nil && *up.Disabled != u.Disabled {
		typ := "UserEnabled"
		if *up.Disabled {
			typ = "UserDisabled"
		}
		if err := s.node.ProposeData(ctx, cluster.CmdUpdateUser, actor, cluster.UpdateUser{UserID: id, Disabled: up.Disabled},
			&cluster.EventSpec{Type: typ, Details: map[string]string{"username": u.Username}}); err != nil {
			return err
		}
	}
	return nil
}

// keepOneAdmin refuses to demote or disable u when no other enabled
// administrator would remain.
func (s *Service) keepOneAdmin(ctx context.Context, u store.User, demoted bool) error {
	users, err := s.store.Users(ctx)
	if err != nil {
		return err
	}
	for _, o := range users {
		if o.ID != u.ID && o.Role == cluster.RoleAdministrator && !o.Disabled {
			return nil
		}
	}
	field, what := "disabled", "disabled"
	if demoted {
		field, what = "role", "given another role"
	}
	return &FieldError{field, fmt.Sprintf("%s is the last enabled %s and cannot be %s; make another user an administrator first", u.Username, cluster.RoleAdministrator, what)}
}

// Users lists the users.
func (s *Service) Users(ctx context.Context) ([]store.User, error) { return s.store.Users(ctx) }
