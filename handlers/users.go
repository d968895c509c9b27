package handlers

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"conclave/auth"
	"conclave/cluster"
	"conclave/store"
	"conclave/views"
)

// UsersPage lists users; administrators can change them.
func (h *Handlers) UsersPage(w http.ResponseWriter, r *http.Request) {
	h.renderUsers(w, r, http.StatusOK, nil, "", "", "")
}

// renderUsers shows the users page; formErr belongs to the row of
// formUserID, or to the "Add a user" form when that is empty.
func (h *Handlers) renderUsers(w http.ResponseWriter, r *http.Request, status int, formErr error, formUserID, newName, newRole string) {
	users, err := h.Auth.Users(r.Context())
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	me, _ := principal(r)
	p := views.UsersPage{Page: h.page(r, "Users", "users"), Roles: cluster.Roles, CanEdit: me.IsAdmin(), NewName: newName, NewRole: newRole, MinPassLen: auth.MinPasswordLength, FormUserID: formUserID}
	for _, u := range users {
		p.Users = append(p.Users, views.UserRow{ID: u.ID, Username: u.Username, Role: u.Role, Source: u.Source, Disabled: u.Disabled, CreatedAt: u.CreatedAt, IsSelf: u.ID == me.UserID})
	}
	if formErr != nil {
		var fe *auth.FieldError
		var rej *store.Rejection
		switch {
		case errors.As(formErr, &fe):
			p.FormError, p.FormField = fe.Message, fe.Field
		case errors.As(formErr, &rej):
			p.FormError, p.FormField = rej.Message, rej.Field
		default:
			_, ae := h.errorStatus(r, formErr)
			p.FormError = ae.Message
		}
	}
	render(w, r, status, views.Users(p))
}

// CreateUserForm adds a user from the users page.
func (h *Handlers) CreateUserForm(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	me, _ := principal(r)
	nu := auth.NewUser{Username: r.PostFormValue("username"), Password: r.PostFormValue("password"), Role: r.PostFormValue("role")}
	if _, err := h.Auth.CreateUser(r.Context(), me.Username, nu); err != nil {
		h.renderUsers(w, r, formStatus(err), err, "", nu.Username, nu.Role)
		return
	}
	http.Redirect(w, r, "/users?done=user-added", http.StatusSeeOther)
}

func formStatus(err error) int {
	var fe *auth.FieldError
	var rej *store.Rejection
	if errors.As(err, &fe) || errors.As(err, &rej) {
		return http.StatusUnprocessableEntity
	}
	return http.StatusServiceUnavailable
}

// UpdateUserForm handles the role, password and disabled forms of a user.
func (h *Handlers) UpdateUserForm(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	me, _ := principal(r)
	var up auth.UserUpdate
	switch chi.URLParam(r, "field") {
	case "role":
		v := r.PostFormValue("role")
		up.Role = &v
	case "password":
		v := r.PostFormValue("password")
		up.Password = &v
	case "disabled":
		v := r.PostFormValue("disabled") == "true"
		up.Disabled = &v
	default:
		h.renderMessage(w, r, http.StatusNotFound, "no such change")
		return
	}
	if err := h.Auth.UpdateUser(r.Context(), me.Username, chi.URLParam(r, "id"), up); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			h.renderError(w, r, err)
			return
		}
		h.renderUsers(w, r, formStatus(err), err, chi.URLParam(r, "id"), "", "")
		return
	}
	http.Redirect(w, r, "/users?done=saved", http.StatusSeeOther)
}

type userJSON struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	Source    string    `json:"source"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func toUserJSON(u store.User) userJSON {
	return userJSON{ID: u.ID, Username: u.Username, Role: u.Role, Source: u.Source, Disabled: u.Disabled, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// APIUsers is GET /api/v1/users.
func (h *Handlers) APIUsers(w http.ResponseWriter, r *http.Request) {
	users, err := h.Auth.Users(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]userJSON, 0, len(users))
	for _, u := range users {
		out = append(out, toUserJSON(u))
	}
	writeJSON(w, http.StatusOK, out)
}

// apiFieldError turns an auth.FieldError into the API's error.
func apiFieldError(err error) error {
	var fe *auth.FieldError
	if errors.As(err, &fe) {
		return &apiError{Status: http.StatusUnprocessableEntity, Message: fe.Message, Field: fe.Field}
	}
	return err
}

// APICreateUser is POST /api/v1/users.
func (h *Handlers) APICreateUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Role     string `json:"role"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	me, _ := principal(r)
	id, err := h.Auth.CreateUser(r.Context(), me.Username, auth.NewUser{Username: req.Username, Password: req.Password, Role: req.Role})
	if err != nil {
		h.writeError(w, r, apiFieldError(err))
		return
	}
	u, err := h.Store.UserByID(r.Context(), id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/users/"+id)
	writeJSON(w, http.StatusCreated, toUserJSON(u))
}

// APIUpdateUser is PATCH /api/v1/users/{id}.
func (h *Handlers) APIUpdateUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Role     *string `json:"role"`
		Password *string `json:"password"`
		Disabled *bool   `json:"disabled"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if req.Role == nil && req.Password == nil && req.Disabled == nil {
		h.writeError(w, r, badRequest("", "nothing to change: send one or more of role, password, disabled"))
		return
	}
	h.updateUser(w, r, auth.UserUpdate{Role: req.Role, Password: req.Password, Disabled: req.Disabled})
}

// APIDisableUser is DELETE /api/v1/users/{id}: users are disabled, never
// deleted, so the audit log keeps naming them.
func (h *Handlers) APIDisableUser(w http.ResponseWriter, r *http.Request) {
	t := true
	h.updateUser(w, r, auth.UserUpdate{Disabled: &t})
}

func (h *Handlers) updateUser(w http.ResponseWriter, r *http.Request, up auth.UserUpdate) {
	me, _ := principal(r)
	id := chi.URLParam(r, "id")
	if err := h.Auth.UpdateUser(r.Context(), me.Username, id, up); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeJSON(w, http.StatusNotFound, apiError{Message: "no user with this id", Field: "id"})
			return
		}
		h.writeError(w, r, apiFieldError(err))
		return
	}
	u, err := h.Store.UserByID(r.Context(), id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toUserJSON(u))
}

var _ = strings.TrimSpace
