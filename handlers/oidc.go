package handlers

import (
	"errors"
	"net/http"

	"conclave/auth"
)

const oidcStateCookie = "__Host-conclave-oidc"

// OIDCStart sends the browser to the identity provider.
func (h *Handlers) OIDCStart(w http.ResponseWriter, r *http.Request) {
	cfg := h.oidcSettings(r.Context())
	authURL, state, err := h.OIDC.Begin(r.Context(), cfg, h.redirectURL(r), safeReturn(r.URL.Query().Get("return")))
	if err != nil {
		h.renderLogin(w, r, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	// The state is bound to this browser: a callback carrying a state that
	// this browser did not start is refused (login CSRF).
	http.SetCookie(w, &http.Cookie{Name: oidcStateCookie, Value: state, Path: "/", MaxAge: 600, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, authURL, http.StatusFound)
}

// OIDCCallback finishes the sign-in when the provider sends the browser back.
func (h *Handlers) OIDCCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	http.SetCookie(w, &http.Cookie{Name: oidcStateCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	if e := q.Get("error"); e != "" {
		msg := "the identity provider did not sign you in: " + e
		if d := q.Get("error_description"); d != "" {
			msg += " (" + d + ")"
		}
		h.renderLogin(w, r, http.StatusUnauthorized, "", msg)
		return
	}
	state := q.Get("state")
	c, err := r.Cookie(oidcStateCookie)
	if state == "" || err != nil || c.Value != state {
		h.renderLogin(w, r, http.StatusBadRequest, "", "this sign-in was not started in this browser (state mismatch); start again")
		return
	}
	u, returnTo, err := h.OIDC.Finish(r.Context(), h.oidcSettings(r.Context()), h.redirectURL(r), state, q.Get("code"), remoteAddr(r))
	var oe *auth.OIDCError
	if errors.As(err, &oe) || errors.Is(err, auth.ErrOIDCNotConfigured) {
		h.renderLogin(w, r, http.StatusUnauthorized, "", err.Error())
		return
	}
	if err != nil {
		_, ae := h.errorStatus(r, err)
		h.renderLogin(w, r, http.StatusServiceUnavailable, "", ae.Message)
		return
	}
	if err := h.startSession(w, r, u, "oidc"); err != nil {
		h.renderError(w, r, err)
		return
	}
	http.Redirect(w, r, safeReturn(returnTo), http.StatusSeeOther)
}
