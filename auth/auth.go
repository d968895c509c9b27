// Package auth signs people in: local passwords (with slowing of repeated
// failures), bearer tokens for the JSON API, and OpenID Connect. Every
// sign-in, failure and token is audited through the cluster.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"conclave/cluster"
	"conclave/store"
)

// Principal is who is making a request.
type Principal struct {
	UserID   string
	Username string
	Role     string
	TokenID  string // set for bearer tokens
}

// IsAdmin tells whether the principal may change things.
func (p Principal) IsAdmin() bool { return p.Role == cluster.RoleAdministrator }

// Errors of signing in, in words a person can act on.
var (
	ErrBadCredentials = errors.New("wrong user name or password")
	ErrDisabled       = errors.New("this account is disabled; ask an administrator to enable it")
	ErrBadToken       = errors.New("the token is unknown, expired or revoked; get a new one from POST /api/v1/auth/token")
)

// ThrottledError says how long to wait before trying again.
type ThrottledError struct{ Wait time.Duration }

func (e *ThrottledError) Error() string {
	secs := int(e.Wait.Round(time.Second) / time.Second)
	secs = max(secs, 1)
	return fmt.Sprintf("too many failed sign-ins; wait %d seconds before trying again", secs)
}

// Config holds the tunables.
type Config struct {
	BcryptCost    int
	TokenTTL      time.Duration
	MaxTokenTTL   time.Duration
	FreeFailures  int           // failures before sign-ins are slowed
	FirstDelay    time.Duration // the wait after FreeFailures failures; it doubles with each further one
	MaxDelay      time.Duration // the longest wait after failures
	ForgetFailure time.Duration // failures older than this are forgotten
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{BcryptCost: 12, TokenTTL: time.Hour, MaxTokenTTL: 24 * time.Hour, FreeFailures: 3, FirstDelay: time.Second, MaxDelay: 30 * time.Second, ForgetFailure: 15 * time.Minute}
}

// Service signs people in.
type Service struct {
	store *store.Store
	node  *cluster.Node
	log   *slog.Logger
	cfg   Config
	now   func() time.Time
	// dummyHash makes a sign-in with an unknown user name cost as much as
	// one with a wrong password, so timing does not tell which names exist.
	dummyHash []byte
}

// NewService returns a Service.
func NewService(st *store.Store, node *cluster.Node, log *slog.Logger, cfg Config) *Service {
	dummy, _ := bcrypt.GenerateFromPassword([]byte("conclave-dummy-password"), cfg.BcryptCost)
	return &Service{store: st, node: node, log: log, cfg: cfg, now: time.Now, dummyHash: dummy}
}

// MinPasswordLength is the shortest password accepted.
const MinPasswordLength = 12

// ValidatePassword checks a new password.
func ValidatePassword(pw string) error {
	if utf8.RuneCountInString(pw) < MinPasswordLength {
		return fmt.Errorf("the password must have at least %d characters", MinPasswordLength)
	}
	if len(pw) > 72 {
		return errors.New("the password must have at most 72 bytes")
	}
	return nil
}

// ValidateUsername checks a new user name.
func ValidateUsername(name string) error {
	if name == "" {
		return errors.New("the user name is required")
	}
	if len(name) > 64 {
		return errors.New("the user name must have at most 64 characters")
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)
		if !ok {
			return fmt.Errorf("the user name may contain letters, digits and . _ - @ only, not %q", r)
		}
	}
	return nil
}

// HashPassword hashes a password with bcrypt.
func (s *Service) HashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), s.cfg.BcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword signs a user in with a password. Failures are counted per
// user name and per address; after a few, each key must wait longer before
// the next try. Every failure and success is audited.
func (s *Service) CheckPassword(ctx context.Context, username, password, remoteAddr string) (store.User, error) {
	now := s.now()
	// What a person typed may be anything: it is counted and audited in a
	// form the database keeps (UTF-8, no control characters, not too long).
	typed := printableName(username)
	keys := []string{"user:" + strings.ToLower(typed), "addr:" + remoteAddr}
	for _, k := range keys {
		f, err := s.store.LoginFailureFor(ctx, k)
		if err != nil {
			return store.User{}, err
		}
		if f.LockedUntil.After(now) {
			return store.User{}, &ThrottledError{Wait: f.LockedUntil.Sub(now)}
		}
	}
	if ValidateUsername(username) != nil {
		// No local user has such a name: every one was checked when created.
		bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		return store.User{}, s.fail(ctx, keys, typed, remoteAddr, "unknown user")
	}
	u, err := s.store.UserByUsername(ctx, username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		return store.User{}, s.fail(ctx, keys, typed, remoteAddr, "unknown user")
	case err != nil:
		return store.User{}, err
	case u.Source != "local" || u.PasswordHash == "":
		bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		return store.User{}, s.fail(ctx, keys, typed, remoteAddr, "user signs in through the identity provider")
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return store.User{}, s.fail(ctx, keys, typed, remoteAddr, "wrong password")
	}
	if u.Disabled {
		s.audit(ctx, u.Username, "UserLoginFailed", map[string]string{"username": u.Username, "address": remoteAddr, "reason": "account disabled"})
		return store.User{}, ErrDisabled
	}
	for _, k := range keys {
		if err := s.store.ClearLoginFailures(ctx, k); err != nil {
			return store.User{}, err
		}
	}
	return u, nil
}

// printableName is a typed user name as it is counted and audited: valid
// UTF-8 without control characters, at most 80 characters.
func printableName(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, name)
	if utf8.RuneCountInString(name) > 80 {
		name = string([]rune(name)[:80]) + "…"
	}
	return name
}

func (s *Service) fail(ctx context.Context, keys []string, username, remoteAddr, reason string) error {
	var worst store.LoginFailure
	for _, k := range keys {
		f, err := s.store.RecordLoginFailure(ctx, k, s.now(), s.cfg.ForgetFailure, s.delay)
		if err != nil {
			return err
		}
		if f.Failures > worst.Failures {
			worst = f
		}
	}
	s.audit(ctx, username, "UserLoginFailed", map[string]string{
		"username": username, "address": remoteAddr, "reason": reason, "failures": fmt.Sprint(worst.Failures),
	})
	return ErrBadCredentials
}

func (s *Service) delay(failures int) time.Duration {
	if failures < s.cfg.FreeFailures {
		return 0
	}
	first := s.cfg.FirstDelay
	if first <= 0 {
		first = time.Second
	}
	d := first << min(failures-s.cfg.FreeFailures, 10)
	return min(d, max(s.cfg.MaxDelay, first))
}

// electionWait is how long a sign-in or a token waits for a primary to be
// elected before it gives up (or, for a session, keeps it on this
// appliance).
const electionWait = 3 * time.Second

// audit records an event; a failure to record is logged, not fatal to the
// sign-in answer (the person still gets a clear result).
func (s *Service) audit(ctx context.Context, actor, typ string, details map[string]string) {
	if err := s.node.RecordEvent(ctx, actor, cluster.EventSpec{Type: typ, Details: details}); err != nil {
		s.log.Warn("audit event not recorded", "type", typ, "err", err)
	}
}

// RecordLogin audits a successful sign-in.
func (s *Service) RecordLogin(ctx context.Context, u store.User, method, remoteAddr string) {
	s.audit(ctx, u.Username, "UserLoggedIn", map[string]string{"method": method, "address": remoteAddr})
}

// RecordLogout audits a sign-out.
func (s *Service) RecordLogout(ctx context.Context, username, remoteAddr string) {
	s.audit(ctx, username, "UserLoggedOut", map[string]string{"address": remoteAddr})
}

const tokenPrefix = "cnv_"

// IssueToken makes a bearer token for u that expires after ttl (the default
// when zero). Only the token's hash is stored.
func (s *Service) IssueToken(ctx context.Context, u store.User, ttl time.Duration, remoteAddr string) (string, time.Time, error) {
	if ttl <= 0 {
		ttl = s.cfg.TokenTTL
	}
	if ttl > s.cfg.MaxTokenTTL {
		return "", time.Time{}, &FieldError{"expiresInMinutes", fmt.Sprintf("a token may live %d minutes at most", int(s.cfg.MaxTokenTTL/time.Minute))}
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(secret)
	id := uuid.NewString()
	expires := s.now().UTC().Add(ttl).Truncate(time.Second)
	// A token asked for during a change of primary waits the election out
	// (a second or two) instead of failing.
	wctx, cancel := context.WithTimeout(ctx, electionWait)
	defer cancel()
	err := s.node.ProposeDataRetrying(wctx, cluster.CmdIssueToken, u.Username, cluster.IssueToken{TokenID: id, UserID: u.ID, Hash: HashToken(token), ExpiresAt: expires},
		&cluster.EventSpec{Type: "ApiTokenIssued", Details: map[string]string{"tokenId": id, "expiresAt": expires.Format(time.RFC3339), "address": remoteAddr}})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: %w", err)
	}
	return token, expires, nil
}

// HashToken is how a token is stored.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// Bearer resolves a bearer token to its user.
func (s *Service) Bearer(ctx context.Context, token string) (Principal, error) {
	if !strings.HasPrefix(token, tokenPrefix) {
		return Principal{}, ErrBadToken
	}
	t, err := s.store.TokenByHash(ctx, HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrBadToken
	}
	if err != nil {
		return Principal{}, err
	}
	if t.RevokedAt != nil || !s.now().Before(t.ExpiresAt) {
		return Principal{}, ErrBadToken
	}
	u, err := s.store.UserByID(ctx, t.UserID)
	if err != nil {
		return Principal{}, err
	}
	if u.Disabled {
		return Principal{}, ErrDisabled
	}
	return Principal{UserID: u.ID, Username: u.Username, Role: u.Role, TokenID: t.ID}, nil
}

// RevokeToken revokes the token p signed in with.
func (s *Service) RevokeToken(ctx context.Context, p Principal) error {
	if p.TokenID == "" {
		return errors.New("this request was not made with a token")
	}
	return s.node.ProposeData(ctx, cluster.CmdRevokeToken, p.Username, cluster.RevokeToken{TokenID: p.TokenID},
		&cluster.EventSpec{Type: "ApiTokenRevoked", Details: map[string]string{"tokenId": p.TokenID}})
}

// User returns the principal for a user ID (sessions keep only the ID, so a
// role change or a disabled account takes effect on the next request).
func (s *Service) User(ctx context.Context, userID string) (Principal, error) {
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return Principal{}, err
	}
	if u.Disabled {
		return Principal{}, ErrDisabled
	}
	return Principal{UserID: u.ID, Username: u.Username, Role: u.Role}, nil
}

// EnsureAdmin creates the bootstrap administrator "admin" when the cluster
// has no user yet. With no password given it makes one and returns it, so
// the caller can print it once.
func (s *Service) EnsureAdmin(ctx context.Context, password string) (generated string, created bool, err error) {
	n, err := s.store.CountUsers(ctx)
	if err != nil || n > 0 {
		return "", false, err
	}
	if password == "" {
		b := make([]byte, 15)
		rand.Read(b)
		password = base64.RawURLEncoding.EncodeToString(b)
		generated = password
	} else if err := ValidatePassword(password); err != nil {
		return "", false, fmt.Errorf("CONCLAVE_ADMIN_PASSWORD: %w", err)
	}
	hash, err := s.HashPassword(password)
	if err != nil {
		return "", false, err
	}
	err = s.node.ProposeData(ctx, cluster.CmdCreateUser, "system", cluster.CreateUser{UserID: uuid.NewString(), Username: "admin", Role: cluster.RoleAdministrator, PasswordHash: hash, Source: "local"},
		&cluster.EventSpec{Type: "UserCreated", Details: map[string]string{"username": "admin", "role": cluster.RoleAdministrator}})
	if err != nil {
		return "", false, fmt.Errorf("create admin: %w", err)
	}
	return generated, true, nil
}
