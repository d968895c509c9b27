package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"conclave/auth"
)

const oidcStateCookie = "__Host-oidc-login"

// OIDCStart sends the browser to the identity provider.
func (h *Handlers) OIDCStart(w http.ResponseWriter, r *http.Request) {
	returnTo := safeReturn(r.URL.Query().Get("return"))
	redirectURL := h.redirectURL(r)
	// The provider sends the browser back to the redirect URL (the cluster
	// URL when one is set), and the state cookie below is bound to the host
	// that sets it. A sign-in started at another address of the appliance
	// would come back without its cookie, so it moves to the redirect URL's
	// host first. The "moved" mark stops a loop when a proxy in front of
	// the appliance changes the Host header.
	if cb, err := url.Parse(redirectURL); err == nil && !sameHost(cb, r.Host) && r.URL.Query().Get("moved") == "" {
		q := url.Values{"return": {returnTo}, "moved": {"1"}}
		http.Redirect(w, r, cb.Scheme+"://"+cb.Host+"/auth/oidc/start?"+q.Encode(), http.StatusFound)
		return
	}
	cfg := h.oidcSettings(r.Context())
	authURL, state, err := h.OIDC.Begin(r.Context(), cfg, redirectURL, returnTo)
	if err != nil {
		h.renderLogin(w, r, http.StatusServiceUnavailable, "", err.Error())
		return
	}
	// The state is bound to this browser: a callback carrying a state that
	// this browser did not start is refused (login CSRF).
	http.SetCookie(w, &http.Cookie{Name: oidcStateCookie, Value: state, Path: "/", MaxAge: 600, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, authURL, http.StatusFound)
}

// sameHost tells whether u names the host the browser asked for, taking a
// default port as absent.
func sameHost(u *url.URL, requestHost string) bool {
	strip := func(host, scheme string) string {
		host = strings.ToLower(host)
		if scheme == "https" {
			return strings.TrimSuffix(host, ":443")
		}
		return strings.TrimSuffix(host, ":80")
	}
	return strip(u.Host, u.Scheme) == strip(requestHost, "https")
}

// OIDCCallback finishes the sign-in when the provider sends the browser back.
func (h *Handlers) OIDCCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	http.SetCookie(w, &http.Cookie{Name: oidcStateCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	// The state is checked before anything else, the provider's error
	// included: otherwise anyone could send a link that shows words of
	// their choosing on this appliance's sign-in page.
	state := q.Get("state")
	c, err := r.Cookie(oidcStateCookie)
	if state == "" || err != nil || c.Value != state {
		h.renderLogin(w, r, http.StatusBadRequest, "", "this sign-in was not started in this browser (state mismatch); start again")
		return
	}
	if e := q.Get("error"); e != "" {
		h.OIDC.Abandon(r.Context(), state)
		msg := "the identity provider did not sign you in: " + e
		if d := q.Get("error_description"); d != "" {
			msg += " (" + d + ")"
		}
		h.renderLogin(w, r, http.StatusUnauthorized, "", msg)
		return
	}
	// The client secret is opened here only, where the code is exchanged.
	cfg, err := h.Node.OpenClientSecret(r.Context(), h.oidcSettings(r.Context()))
	if err != nil {
		h.Log.Error("OIDC sign-in", "err", err)
		h.renderLogin(w, r, http.StatusServiceUnavailable, "", "the identity provider's client secret cannot be opened with the cluster's data keys; an administrator can enter it again under Settings")
		return
	}
	u, returnTo, err := h.OIDC.Finish(r.Context(), cfg, h.redirectURL(r), state, q.Get("code"), remoteAddr(r))
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
