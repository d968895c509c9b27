package handlers

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"conclave/auth"
	"conclave/cluster"
	"conclave/session"
	"conclave/store"
	"conclave/views"
)

type ctxKey int

const principalKey ctxKey = 1

func withPrincipal(ctx context.Context, p auth.Principal) context.Context {
	return context.WithValue(ctx, principalKey, p)
}

// principal is who made the request; ok is false for anonymous requests.
func principal(r *http.Request) (auth.Principal, bool) {
	p, ok := r.Context().Value(principalKey).(auth.Principal)
	return p, ok
}

// Authenticate finds who makes the request, from a bearer token or the
// session cookie, and puts it in the request's context. It rejects nothing
// itself, except a bearer token that is not valid.
func (h *Handlers) Authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if authz := r.Header.Get("Authorization"); authz != "" {
			token, ok := strings.CutPrefix(authz, "Bearer ")
			if !ok {
				writeJSON(w, http.StatusUnauthorized, apiError{Message: "the Authorization header must be 'Bearer <token>'"})
				return
			}
			p, err := h.Auth.Bearer(r.Context(), strings.TrimSpace(token))
			if errors.Is(err, auth.ErrBadToken) || errors.Is(err, auth.ErrDisabled) || errors.Is(err, store.ErrNotFound) {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				writeJSON(w, http.StatusUnauthorized, apiError{Message: err.Error()})
				return
			}
			if err != nil {
				h.writeError(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
			return
		}
		sess, err := h.Sessions.Get(r, h.cookieName(r))
		if err == nil && !sess.IsNew {
			if uid, _ := sess.Values["uid"].(string); uid != "" {
				p, err := h.Auth.User(r.Context(), uid)
				if err == nil {
					next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
					return
				}
				if primary, ok := h.Node.Refilling(r.Context()); ok && errors.Is(err, store.ErrNotFound) {
					// Reset Cluster emptied this member, which copies the
					// new primary's data now: the user is not lost, just not
					// here yet. Neither end the session nor ask to sign in.
					w.Header().Set("Refresh", "2")
					w.Header().Set("Retry-After", "2")
					h.renderMessage(w, r, http.StatusServiceUnavailable, "Reset Cluster: this appliance dropped its data and is copying "+primary+"'s now. This page reloads by itself in a moment.")
					return
				}
				if errors.Is(err, auth.ErrDisabled) || errors.Is(err, store.ErrNotFound) {
					// The account was disabled: end the session for good,
					// so that enabling the account again does not revive it.
					if err := h.Sessions.Delete(r, w, sess); err != nil {
						h.Log.Warn("end session of disabled user", "err", err)
					}
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

func isAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }

// RequireUser lets signed-in users through. Anonymous browsers go to the
// sign-in page; anonymous API calls get 401.
func (h *Handlers) RequireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := principal(r); ok {
			next.ServeHTTP(w, r)
			return
		}
		if isAPI(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="conclave"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Message: "sign in first: send 'Authorization: Bearer <token>' with a token from POST /api/v1/auth/token"})
			return
		}
		target := "/login"
		if r.Method == http.MethodGet && r.URL.Path != "/" {
			target += "?return=" + url.QueryEscape(r.URL.RequestURI())
		}
		if _, err := h.Sessions.Get(r, h.cookieName(r)); errors.Is(err, session.ErrExpired) {
			if strings.Contains(target, "?") {
				target += "&expired=1"
			} else {
				target += "?expired=1"
			}
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
	})
}

// RequireAdmin lets only ApplianceAdministrators through.
func (h *Handlers) RequireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(r)
		if ok && p.IsAdmin() {
			next.ServeHTTP(w, r)
			return
		}
		msg := "only an " + cluster.RoleAdministrator + " may do this; you are signed in as " + p.Username + " (" + p.Role + ")"
		if isAPI(r) {
			writeJSON(w, http.StatusForbidden, apiError{Message: msg})
			return
		}
		h.renderMessage(w, r, http.StatusForbidden, msg)
	})
}

// LoginPage shows the sign-in form.
func (h *Handlers) LoginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := principal(r); ok {
		http.Redirect(w, r, safeReturn(r.URL.Query().Get("return")), http.StatusSeeOther)
		return
	}
	msg := ""
	if r.URL.Query().Get("expired") == "1" {
		msg = session.ErrExpired.Error()
	}
	h.renderLogin(w, r, http.StatusOK, "", msg)
}

func (h *Handlers) renderLogin(w http.ResponseWriter, r *http.Request, status int, username, msg string) {
	oidc := h.oidcSettings(r.Context())
	name := oidc.DisplayName
	if name == "" {
		name = "your identity provider"
	}
	p := views.LoginPage{
		Page:         h.page(r, "Sign in", ""),
		Username:     username,
		Error:        msg,
		OIDCEnabled:  oidc.Enabled(),
		OIDCName:     name,
		ReturnTo:     safeReturn(r.FormValue("return")),
		ApplianceURL: h.ApplianceURL,
	}
	p.Page.User = nil
	render(w, r, status, views.Login(p))
}

// Login checks a local user's password and starts a session.
func (h *Handlers) Login(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		status, ae := h.errorStatus(r, err)
		h.renderLogin(w, r, status, "", ae.Message)
		return
	}
	username := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	if username == "" || password == "" {
		h.renderLogin(w, r, http.StatusBadRequest, username, "Enter your user name and password.")
		return
	}
	u, err := h.Auth.CheckPassword(r.Context(), username, password, remoteAddr(r))
	var thr *auth.ThrottledError
	switch {
	case errors.As(err, &thr):
		w.Header().Set("Retry-After", strconv.Itoa(int(thr.Wait.Seconds())+1))
		h.renderLogin(w, r, http.StatusTooManyRequests, username, thr.Error())
		return
	case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrDisabled):
		h.renderLogin(w, r, http.StatusUnauthorized, username, err.Error())
		return
	case err != nil:
		_, ae := h.errorStatus(r, err)
		h.renderLogin(w, r, http.StatusServiceUnavailable, username, ae.Message)
		return
	}
	if err := h.startSession(w, r, u, "password"); err != nil {
		h.renderError(w, r, err)
		return
	}
	http.Redirect(w, r, safeReturn(r.PostFormValue("return")), http.StatusSeeOther)
}

// startSession rotates the session ID and binds the session to u.
func (h *Handlers) startSession(w http.ResponseWriter, r *http.Request, u store.User, method string) error {
	sess, _ := h.Sessions.Get(r, h.cookieName(r))
	if err := h.Sessions.Renew(r, sess); err != nil {
		return err
	}
	sess.Values = map[any]any{"uid": u.ID, "method": method}
	if err := sess.Save(r, w); err != nil {
		return err
	}
	h.Auth.RecordLogin(r.Context(), u, method, remoteAddr(r))
	return nil
}

// Logout ends the session on the server, not just in the browser.
func (h *Handlers) Logout(w http.ResponseWriter, r *http.Request) {
	sess, _ := h.Sessions.Get(r, h.cookieName(r))
	if p, ok := principal(r); ok && !sess.IsNew {
		// Audited when a session ends, not for a bearer token or a
		// browser that was signed out already.
		h.Auth.RecordLogout(r.Context(), p.Username, remoteAddr(r))
	}
	if err := h.Sessions.Delete(r, w, sess); err != nil {
		h.renderError(w, r, err)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

type tokenRequest struct {
	Username         string `json:"username"`
	Password         string `json:"password"`
	ExpiresInMinutes int    `json:"expiresInMinutes"`
}

type tokenResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// IssueToken is POST /api/v1/auth/token.
func (h *Handlers) IssueToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	switch {
	case strings.TrimSpace(req.Username) == "":
		h.writeError(w, r, badRequest("username", "username is required"))
		return
	case req.Password == "":
		h.writeError(w, r, badRequest("password", "password is required"))
		return
	case req.ExpiresInMinutes < 0 || req.ExpiresInMinutes > 24*60:
		h.writeError(w, r, badRequest("expiresInMinutes", "expiresInMinutes must be between 1 and 1440 (leave it out for 60)"))
		return
	}
	u, err := h.Auth.CheckPassword(r.Context(), strings.TrimSpace(req.Username), req.Password, remoteAddr(r))
	var thr *auth.ThrottledError
	switch {
	case errors.As(err, &thr):
		w.Header().Set("Retry-After", strconv.Itoa(int(thr.Wait.Seconds())+1))
		writeJSON(w, http.StatusTooManyRequests, apiError{Message: thr.Error()})
		return
	case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrDisabled):
		writeJSON(w, http.StatusUnauthorized, apiError{Message: err.Error()})
		return
	case err != nil:
		h.writeError(w, r, err)
		return
	}
	token, expires, err := h.Auth.IssueToken(r.Context(), u, time.Duration(req.ExpiresInMinutes)*time.Minute, remoteAddr(r))
	if err != nil {
		h.writeError(w, r, apiFieldError(err))
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{Token: token, ExpiresAt: expires})
}

// RevokeToken is DELETE /api/v1/auth/token: it revokes the token used.
func (h *Handlers) RevokeToken(w http.ResponseWriter, r *http.Request) {
	p, _ := principal(r)
	if p.TokenID == "" {
		h.writeError(w, r, badRequest("", "revoke a token by calling this with 'Authorization: Bearer <token>'"))
		return
	}
	if err := h.Auth.RevokeToken(r.Context(), p); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// RequireWritable refuses configuration changes on an appliance that is not
// a writable primary (a replica, Maintenance, read-only after Unjoin),
// naming where to make them instead.
func (h *Handlers) RequireWritable(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reason := h.Node.ReadOnlyReason()
		if reason == "" {
			next.ServeHTTP(w, r)
			return
		}
		if st := h.Node.Status(); st.LeaderAddr != "" && !h.Node.IsLeader() {
			reason += " The primary is https://" + st.LeaderAddr + "/."
		}
		if isAPI(r) {
			writeJSON(w, http.StatusConflict, apiError{Message: reason})
			return
		}
		h.renderMessage(w, r, http.StatusConflict, reason)
	})
}

// cookieName is the session cookie of this appliance's cluster.
func (h *Handlers) cookieName(r *http.Request) string {
	return session.CookieNameFor(h.Node.ClusterID(r.Context()))
}
