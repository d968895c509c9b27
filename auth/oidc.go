package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"conclave/cluster"
	"conclave/store"
)

// OIDC signs people in through an OpenID Connect provider with the
// authorization code flow, state, nonce and PKCE (S256).
type OIDC struct {
	svc    *Service
	client *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
	issuer   string
}

// NewOIDC returns an OIDC sign-in that uses client to reach the provider.
func NewOIDC(svc *Service, client *http.Client) *OIDC {
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	return &OIDC{svc: svc, client: client}
}

// loginTTL is how long a person may take at the provider.
const loginTTL = 10 * time.Minute

// ErrOIDCNotConfigured is returned when no provider is set up.
var ErrOIDCNotConfigured = errors.New("sign-in with an identity provider is not configured; an administrator can set it up under Settings")

func (o *OIDC) providerFor(ctx context.Context, cfg cluster.OIDCSettings) (*oidc.Provider, error) {
	if !cfg.Enabled() {
		return nil, ErrOIDCNotConfigured
	}
	o.mu.Lock()
	p, issuer := o.provider, o.issuer
	o.mu.Unlock()
	if p != nil && issuer == cfg.Issuer {
		return p, nil
	}
	// Discovery runs without the lock: a slow or absent provider must not
	// hold every other sign-in in a queue behind it.
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.client), cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("identity provider %s did not answer its discovery document: %w", cfg.Issuer, err)
	}
	o.mu.Lock()
	o.provider, o.issuer = p, cfg.Issuer
	o.mu.Unlock()
	return p, nil
}

func oauthConfig(p *oidc.Provider, cfg cluster.OIDCSettings, redirectURL string) oauth2.Config {
	scopes := []string{oidc.ScopeOpenID, "profile", "email"}
	if cfg.RolesClaim == "groups" {
		// Most providers release the groups claim only for this scope.
		scopes = append(scopes, "groups")
	}
	return oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  redirectURL,
		Scopes:       scopes,
	}
}

func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Begin starts a sign-in: it records state, nonce and the PKCE verifier, and
// returns the provider's URL to send the browser to, and the state to bind to
// the browser with a cookie.
func (o *OIDC) Begin(ctx context.Context, cfg cluster.OIDCSettings, redirectURL, returnTo string) (authURL, state string, err error) {
	p, err := o.providerFor(ctx, cfg)
	if err != nil {
		return "", "", err
	}
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()
	if err := o.svc.store.PutOIDCLogin(ctx, store.OIDCLogin{State: state, Nonce: nonce, Verifier: verifier, ReturnTo: returnTo, CreatedAt: o.svc.now()}); err != nil {
		return "", "", err
	}
	oc := oauthConfig(p, cfg, redirectURL)
	return oc.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), state, nil
}

// Abandon forgets a sign-in the provider ended with an error, so its state
// cannot be used any more.
func (o *OIDC) Abandon(ctx context.Context, state string) {
	if _, err := o.svc.store.TakeOIDCLogin(ctx, state); err != nil && !errors.Is(err, store.ErrNotFound) {
		o.svc.log.Warn("forget abandoned oidc sign-in", "err", err)
	}
}

// OIDCError is a sign-in through the provider that did not succeed, in
// words for the person at the browser.
type OIDCError struct{ Reason string }

func (e *OIDCError) Error() string { return e.Reason }

// Finish completes a sign-in at the callback: it checks the state, trades
// the code (with the PKCE verifier) for tokens, verifies the ID token and
// its nonce, maps the roles claim to a role, and creates or updates the user.
func (o *OIDC) Finish(ctx context.Context, cfg cluster.OIDCSettings, redirectURL, state, code, remoteAddr string) (store.User, string, error) {
	login, err := o.svc.store.TakeOIDCLogin(ctx, state)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, "", &OIDCError{"this sign-in link is unknown or was used already; start again"}
	}
	if err != nil {
		return store.User{}, "", err
	}
	if o.svc.now().Sub(login.CreatedAt) > loginTTL {
		return store.User{}, "", &OIDCError{"the sign-in took longer than 10 minutes; start again"}
	}
	p, err := o.providerFor(ctx, cfg)
	if err != nil {
		return store.User{}, "", err
	}
	oc := oauthConfig(p, cfg, redirectURL)
	tok, err := oc.Exchange(oidc.ClientContext(ctx, o.client), code, oauth2.VerifierOption(login.Verifier))
	if err != nil {
		return store.User{}, "", &OIDCError{fmt.Sprintf("the identity provider refused the sign-in code: %v", err)}
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return store.User{}, "", &OIDCError{"the identity provider sent no ID token"}
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: cfg.ClientID}).Verify(oidc.ClientContext(ctx, o.client), raw)
	if err != nil {
		return store.User{}, "", &OIDCError{fmt.Sprintf("the ID token is not valid: %v", err)}
	}
	if idt.Nonce != login.Nonce {
		return store.User{}, "", &OIDCError{"the ID token's nonce does not match this sign-in; start again"}
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return store.User{}, "", &OIDCError{fmt.Sprintf("the ID token's claims are unreadable: %v", err)}
	}
	username := firstString(claims, "preferred_username", "email", "sub")
	if err := ValidateUsername(username); err != nil {
		return store.User{}, "", &OIDCError{fmt.Sprintf("the identity provider's user name %q cannot be used: %v", username, err)}
	}
	values := claimValues(claims[cfg.RolesClaim])
	role := MapRole(cfg.RoleMapping, values)
	if role == "" {
		o.svc.audit(ctx, username, "UserLoginFailed", map[string]string{"username": username, "address": remoteAddr, "reason": "no role mapped", "method": "oidc"})
		return store.User{}, "", &OIDCError{fmt.Sprintf("your account (%s) has no Conclave role: none of its %q values %v is mapped to a role in Settings", username, cfg.RolesClaim, values)}
	}
	subject := cfg.Issuer + " " + idt.Subject
	err = o.svc.node.ProposeData(ctx, cluster.CmdUpsertOIDCUser, username, cluster.UpsertOIDCUser{NewUserID: uuid.NewString(), Subject: subject, Username: username, Role: role}, nil)
	var rej *store.Rejection
	if errors.As(err, &rej) {
		o.svc.audit(ctx, username, "UserLoginFailed", map[string]string{"username": username, "address": remoteAddr, "reason": rej.Message, "method": "oidc"})
		return store.User{}, "", &OIDCError{rej.Message}
	}
	if err != nil {
		return store.User{}, "", err
	}
	u, err := o.svc.store.UserBySubject(ctx, subject)
	if err != nil {
		return store.User{}, "", err
	}
	return u, login.ReturnTo, nil
}

func firstString(claims map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := claims[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// claimValues reads a claim that is a string or a list of strings.
func claimValues(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case json.RawMessage:
		var out []string
		json.Unmarshal(x, &out)
		return out
	}
	return nil
}

// MapRole returns the most powerful role any of the claim's values maps to.
func MapRole(mapping map[string]string, values []string) string {
	for _, role := range cluster.Roles {
		for _, v := range values {
			if mapping[v] == role {
				return role
			}
		}
	}
	return ""
}
