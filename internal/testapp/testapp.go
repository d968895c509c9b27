// Package testapp starts real appliances for tests: the whole web.Start
// assembly on a loopback port, with a fresh database on the shared test
// PostgreSQL and a data directory of its own.
package testapp

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"conclave/auth"
	"conclave/internal/testnet"
	"conclave/internal/testpg"
	"conclave/web"
)

// AdminPassword is the bootstrap administrator's password in tests.
const AdminPassword = "admin-password-for-tests"

// App is a running appliance.
type App struct {
	*web.Appliance
	URL string // https://127.0.0.1:port (no trailing slash)
	Cfg web.Config
	t   testing.TB
}

// Option changes the configuration before start.
type Option func(*web.Config)

// WithNetwork makes the appliance reach the others through n, where it is
// known as name: a test cuts, delays or drops its links with n. Once the
// appliance listens, its address is registered in n under name.
func WithNetwork(n *testnet.Network, name string) Option {
	return func(c *web.Config) { c.Dialer = n.Dialer(name) }
}

// Start starts an appliance and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *App {
	t.Helper()
	cfg := web.Config{
		Listen:        "127.0.0.1:0",
		DataDir:       t.TempDir(),
		DatabaseURL:   testpg.NewDatabase(t),
		Name:          "test-appliance",
		AdminPassword: AdminPassword,
		Version:       "test",
		Log:           Logger(),
	}
	cfg.Auth = auth.DefaultConfig()
	cfg.Auth.BcryptCost = bcrypt.MinCost
	for _, o := range opts {
		o(&cfg)
	}
	return start(t, cfg)
}

func start(t testing.TB, cfg web.Config) *App {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	a, err := web.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start appliance: %v", err)
	}
	app := &App{Appliance: a, URL: "https://" + a.Addr(), Cfg: cfg, t: t}
	app.Cfg.Listen = a.Addr() // a restart comes back on the same port
	if l, ok := cfg.Dialer.(interface{ Listening(addr string) }); ok {
		l.Listening(a.Addr()) // a testnet dialer learns its appliance's address
	}
	t.Cleanup(app.stop)
	return app
}

func (a *App) stop() {
	if a.Appliance == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		a.t.Errorf("shut appliance down: %v", err)
	}
	a.Appliance = nil
}

// Stop shuts the appliance down (gracefully); Restart starts it again.
func (a *App) Stop(t testing.TB) {
	t.Helper()
	a.stop()
}

// Restart stops the appliance and starts it again on the same data
// directory, database and port.
func (a *App) Restart(t testing.TB) *App {
	t.Helper()
	a.stop()
	return start(t, a.Cfg)
}

// Logger is quiet unless CONCLAVE_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("CONCLAVE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Client is an HTTPS client with a cookie jar that does not follow redirects.
func (a *App) Client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Login signs a browser-like client in with the form and fails the test if
// that does not work.
func (a *App) Login(t testing.TB, c *http.Client, username, password string) {
	t.Helper()
	resp, err := c.PostForm(a.URL+"/login", url.Values{"username": {username}, "password": {password}})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login as %s: status %d, want 303", username, resp.StatusCode)
	}
}

// Token gets an API token for username.
func (a *App) Token(t testing.TB, username, password string) string {
	t.Helper()
	var out struct{ Token string }
	status := a.JSON(t, "", http.MethodPost, "/api/v1/auth/token", map[string]string{"username": username, "password": password}, &out)
	if status != http.StatusOK || out.Token == "" {
		t.Fatalf("token for %s: status %d", username, status)
	}
	return out.Token
}

// AdminToken is a token of the bootstrap administrator.
func (a *App) AdminToken(t testing.TB) string { return a.Token(t, "admin", AdminPassword) }

// JSON sends a JSON API request (body may be nil) and decodes the answer
// into out (may be nil). It returns the status.
func (a *App) JSON(t testing.TB, token, method, path string, body, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = strings.NewReader(string(raw))
	}
	req, err := http.NewRequest(method, a.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: status %d, body %q: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

// CreateUser creates a local user through the API as admin.
func (a *App) CreateUser(t testing.TB, username, password, role string) string {
	t.Helper()
	var out struct{ ID string }
	status := a.JSON(t, a.AdminToken(t), http.MethodPost, "/api/v1/users", map[string]string{"username": username, "password": password, "role": role}, &out)
	if status != http.StatusCreated {
		t.Fatalf("create user %s: status %d", username, status)
	}
	return out.ID
}
