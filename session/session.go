// Package session is a gorilla/sessions store kept in the appliance's
// PostgreSQL. The cookie carries only a random 256-bit session ID; the
// database keeps the session under the ID's SHA-256, with an idle and an
// absolute timeout.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/sessions"

	"conclave/store"
)

// CookieName is the session cookie of an appliance that belongs to no
// cluster yet, and the start of every session cookie's name. The __Host-
// prefix makes the browser insist on Secure, Path=/ and no Domain, so no
// other site can set it.
const CookieName = "__Host-conclave"

// CookieNameFor is the session cookie of a cluster's appliances. Browsers
// keep cookies per host name, not per port: without the cluster in the
// name, signing in to another appliance on the same host (the demo, or a
// replica being added) would replace this one's session. Members of one
// cluster share sessions, so they share the name.
func CookieNameFor(clusterID string) string {
	if clusterID == "" {
		return CookieName
	}
	sum := sha256.Sum256([]byte(clusterID))
	return fmt.Sprintf("%s-%x", CookieName, sum[:4])
}

// Backend keeps the sessions: reads from this appliance's database, writes
// through the cluster (see cluster.SessionBackend).
type Backend interface {
	SessionByHash(ctx context.Context, idHash []byte, now time.Time) (store.SessionRow, error)
	PutSession(ctx context.Context, r store.SessionRow) error
	DeleteSession(ctx context.Context, idHash []byte) error
	TouchSession(ctx context.Context, idHash []byte, at time.Time) error
}

// Store keeps sessions in PostgreSQL.
type Store struct {
	db       Backend
	Idle     time.Duration
	Absolute time.Duration
	now      func() time.Time
}

// NewStore returns a store with the given timeouts.
func NewStore(db Backend, idle, absolute time.Duration) *Store {
	return &Store{db: db, Idle: idle, Absolute: absolute, now: time.Now}
}

// Get returns the request's session, cached for the request.
func (s *Store) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// ErrExpired marks a session that timed out (idle or absolute): the caller
// can tell the person why they must sign in again.
var ErrExpired = errors.New("your session expired; sign in again")

// New loads the session named by the cookie, or starts an empty one.
func (s *Store) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(s, name)
	sess.Options = s.options()
	sess.IsNew = true
	c, err := r.Cookie(name)
	if err != nil || c.Value == "" {
		return sess, nil
	}
	now := s.now()
	row, err := s.db.SessionByHash(r.Context(), hashID(c.Value), now)
	if errors.Is(err, store.ErrNotFound) {
		return sess, ErrExpired
	}
	if err != nil {
		return sess, err
	}
	if now.Sub(row.LastSeenAt) > s.Idle {
		// Idle as far as this appliance saw; another member may have seen
		// it since, so the session itself is left to its absolute end.
		return sess, ErrExpired
	}
	var values map[string]string
	if err := json.Unmarshal(row.Data, &values); err != nil {
		return sess, fmt.Errorf("session data: %w", err)
	}
	for k, v := range values {
		sess.Values[k] = v
	}
	sess.ID = c.Value
	sess.IsNew = false
	// Record activity at most once a minute: a page view is not a write.
	if now.Sub(row.LastSeenAt) > time.Minute {
		if err := s.db.TouchSession(r.Context(), row.IDHash, now); err != nil {
			return sess, err
		}
	}
	return sess, nil
}

func (s *Store) options() *sessions.Options {
	return &sessions.Options{Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

// Save writes the session and sets its cookie; a negative MaxAge deletes it.
func (s *Store) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	if sess.Options != nil && sess.Options.MaxAge < 0 {
		if sess.ID != "" {
			if err := s.db.DeleteSession(r.Context(), hashID(sess.ID)); err != nil {
				return err
			}
		}
		http.SetCookie(w, sessions.NewCookie(sess.Name(), "", sess.Options))
		return nil
	}
	now := s.now()
	values := map[string]string{}
	for k, v := range sess.Values {
		ks, ok1 := k.(string)
		vs, ok2 := v.(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("session values must be strings, got %T=%T", k, v)
		}
		values[ks] = vs
	}
	data, _ := json.Marshal(values)
	row := store.SessionRow{UserID: values["uid"], Data: data, LastSeenAt: now}
	if sess.ID == "" {
		sess.ID = newID()
		row.CreatedAt = now
		row.ExpiresAt = now.Add(s.Absolute)
	} else {
		old, err := s.db.SessionByHash(r.Context(), hashID(sess.ID), now)
		if err != nil {
			return fmt.Errorf("save session: %w", err)
		}
		row.CreatedAt, row.ExpiresAt = old.CreatedAt, old.ExpiresAt
	}
	row.IDHash = hashID(sess.ID)
	if err := s.db.PutSession(r.Context(), row); err != nil {
		return err
	}
	if err := s.db.TouchSession(r.Context(), row.IDHash, now); err != nil {
		return err
	}
	http.SetCookie(w, sessions.NewCookie(sess.Name(), sess.ID, sess.Options))
	return nil
}

// Delete ends sess on the server and tells the browser to drop its cookie.
// sess becomes a fresh, empty session, so a Save later in the same request
// starts a new one rather than reviving the old.
func (s *Store) Delete(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	if sess.ID != "" {
		if err := s.db.DeleteSession(r.Context(), hashID(sess.ID)); err != nil {
			return err
		}
	}
	gone := s.options()
	gone.MaxAge = -1
	http.SetCookie(w, sessions.NewCookie(sess.Name(), "", gone))
	sess.ID = ""
	sess.IsNew = true
	sess.Values = map[any]any{}
	sess.Options = s.options()
	return nil
}

// Renew gives the session a new ID and deletes the old one, so an ID that
// was planted or seen before sign-in is worthless after it.
func (s *Store) Renew(r *http.Request, sess *sessions.Session) error {
	if sess.ID != "" {
		if err := s.db.DeleteSession(r.Context(), hashID(sess.ID)); err != nil {
			return err
		}
	}
	sess.ID = ""
	sess.IsNew = true
	return nil
}

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashID(id string) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:]
}
