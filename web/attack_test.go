package web_test

// Attacks not covered by security_test.go, badinput_test.go and
// routes_test.go (which already try a Helpdesk token on every write, forged
// and replayed grants, and bodies over 1 MiB): another cluster's member
// certificate, a session cookie of another appliance, deeply nested JSON,
// a 100 MB body, and old TLS versions or weak suites.

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/testapp"
	"conclave/session"
)

// A member certificate from another cluster's CA is refused by the node API:
// the TLS handshake fails, or the request is refused, and nothing changes.
func TestAttackCertificateOfAnotherCluster(t *testing.T) {
	alpha := testapp.Start(t, named("alpha"))
	mallory := testapp.Start(t, named("mallory")) // a cluster of its own
	load := func(app *testapp.App) tls.Certificate {
		t.Helper()
		c := app.Node.Credentials()
		if c == nil || c.Cert == nil {
			t.Fatalf("%s has no member certificate", app.Cfg.Name)
		}
		return *c.Cert
	}
	before := secSnapshot(t, alpha)
	// Mallory trusts alpha's CA (it is public) and shows its own member
	// certificate, signed by its own cluster's CA.
	err := peerGet(alpha.Addr(), load(mallory), alpha.Node.Credentials().Pool)
	if err == nil {
		t.Fatal("alpha let in a member certificate of another cluster")
	}
	var status *httpStatusError
	if errors.As(err, &status) && status.status != http.StatusForbidden {
		t.Fatalf("another cluster's certificate: status %d, want the handshake refused or 403", status.status)
	}
	secUnchanged(t, alpha, before, "a certificate of another cluster")
	// Alpha's own certificate is let in (the check above can fail).
	if err := peerGet(alpha.Addr(), load(alpha), alpha.Node.Credentials().Pool); err != nil {
		t.Fatalf("alpha's own member certificate: %v", err)
	}
}

// A session cookie issued by another appliance (another key ring, another
// database) signs nobody in, on pages or the API, and changes nothing.
func TestAttackSessionCookieOfAnotherAppliance(t *testing.T) {
	alpha := testapp.Start(t, named("alpha"))
	other := testapp.Start(t, named("other"))
	c := other.Client()
	other.Login(t, c, "admin", testapp.AdminPassword)
	u, _ := url.Parse(other.URL + "/")
	var cookie string
	for _, ck := range c.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, session.CookieName) {
			cookie = ck.Value
		}
	}
	if cookie == "" {
		t.Fatal("no session cookie from the other appliance")
	}
	stolen := secClientWithSession(t, alpha, cookie)
	before := secSnapshot(t, alpha)
	resp, body := secSend(t, alpha, stolen, secRequest{method: "GET", path: "/users"})
	secWantLogin(t, "a page with another appliance's cookie", resp, body)
	resp, body = secSend(t, alpha, stolen, secRequest{method: "POST", path: "/users", form: url.Values{"username": {"intruder"}, "password": {secPassword}, "role": {"ApplianceAdministrator"}}})
	secWantLogin(t, "a form with another appliance's cookie", resp, body)
	resp, body = secSend(t, alpha, stolen, secRequest{method: "GET", path: "/api/v1/users"})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the API with another appliance's cookie: status %d; body %q", resp.StatusCode, secShort(body))
	}
	secUnchanged(t, alpha, before, "another appliance's session cookie")
}

// Deeply nested JSON and a 100 MB body are refused with a status that says
// so, quickly, and change nothing.
func TestAttackNestedAndHugeBodies(t *testing.T) {
	app := testapp.Start(t)
	admin := app.AdminToken(t)
	before := secSnapshot(t, app)
	nested := `{"username": ` + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + `}`
	resp, body := secSend(t, app, nil, secRequest{method: "POST", path: "/api/v1/users", raw: nested, contentType: "application/json", token: admin})
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("deeply nested JSON: status %d, want 400; body %q", resp.StatusCode, secShort(body))
	}
	secErrorBody(t, "deeply nested JSON", resp, body)
	secUnchanged(t, app, before, "deeply nested JSON")

	for _, c := range []struct {
		path, contentType, prefix string
		token                     bool
		status                    int
	}{
		{"/api/v1/users", "application/json", `{"username": "`, true, http.StatusRequestEntityTooLarge},
		{"/api/v1/auth/token", "application/json", `{"username": "`, false, http.StatusRequestEntityTooLarge},
		{"/login", "application/x-www-form-urlencoded", "username=", false, http.StatusRequestEntityTooLarge},
		{"/node/v1/enroll/prepare", "application/json", `{"clusterId": "`, false, http.StatusRequestEntityTooLarge},
		{"/api/v1/users", "application/json", "", true, http.StatusBadRequest}, // not JSON: refused at its first byte
	} {
		req, _ := http.NewRequest(http.MethodPost, app.URL+c.path, io.MultiReader(strings.NewReader(c.prefix), &endless{left: 100 << 20}))
		req.Header.Set("Content-Type", c.contentType)
		if c.token {
			req.Header.Set("Authorization", "Bearer "+admin)
		}
		start := time.Now()
		resp, err := app.Client().Do(req)
		if err != nil {
			// The server may close the connection while the client still
			// sends: refused all the same, but the status must arrive.
			t.Fatalf("100 MB to %s: %v", c.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("100 MB to %s: status %d, want %d", c.path, resp.StatusCode, c.status)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("100 MB to %s took %s: the body was read, not refused", c.path, d)
		}
	}
	secNoDataChange(t, app, before, "100 MB bodies")
}

// endless is a body of n bytes that is made as it is read.
type endless struct{ left int }

func (e *endless) Read(p []byte) (int, error) {
	if e.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), e.left)
	for i := range p[:n] {
		p[i] = 'a'
	}
	e.left -= n
	return n, nil
}

// Every listener speaks TLS 1.2 and newer only, with forward-secret AEAD
// suites; the console sends HSTS.
func TestAttackOldTLS(t *testing.T) {
	app := testapp.Start(t)
	dial := func(cfg *tls.Config) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d := tls.Dialer{Config: cfg}
		conn, err := d.DialContext(ctx, "tcp", app.Addr())
		if err == nil {
			conn.Close()
		}
		return err
	}
	for name, cfg := range map[string]*tls.Config{
		"TLS 1.0": {MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10},
		"TLS 1.1": {MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11},
		"TLS 1.2 with CBC": {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},
		"TLS 1.0 to the node API": {MaxVersion: tls.VersionTLS10, ServerName: "peer.member.conclave"},
	} {
		cfg.InsecureSkipVerify = true
		if err := dial(cfg); err == nil {
			t.Errorf("%s: the appliance accepted the handshake", name)
		}
	}
	for name, cfg := range map[string]*tls.Config{
		"TLS 1.2 with ECDHE-GCM": {MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12},
		"TLS 1.3":                {MinVersion: tls.VersionTLS13},
	} {
		cfg.InsecureSkipVerify = true
		if err := dial(cfg); err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
	}
	resp, err := app.Client().Get(app.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hsts := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(hsts, "max-age=") {
		t.Errorf("no HSTS on the console: %q", hsts)
	}
}
