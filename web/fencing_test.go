package web_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
)

// peerGet calls a member's node API with a member certificate, as another
// member would.
func peerGet(addr string, cert tls.Certificate, pool *x509.CertPool) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialTLSContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, network, a, &tls.Config{
				Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: cluster.PeerServerName, MinVersion: tls.VersionTLS13,
			})
			if err != nil {
				return nil, err
			}
			return conn, nil
		},
	}}
	resp, err := c.Get("https://" + addr + "/node/v1/status")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &httpStatusError{resp.StatusCode}
	}
	return nil
}

type httpStatusError struct{ status int }

func (e *httpStatusError) Error() string { return http.StatusText(e.status) }

// A member removed by Unjoin keeps a certificate the cluster CA signed;
// the members refuse it all the same, because it is no longer in the raft
// configuration (fencing). A current member's certificate is let in.
func TestRemovedMemberIsFenced(t *testing.T) {
	alpha := testapp.Start(t, named("alpha"))
	beta := testapp.Start(t, named("beta"))
	gamma := testapp.Start(t, named("gamma"))
	addReplica(t, alpha, beta)
	addReplica(t, alpha, gamma)

	load := func(app *testapp.App) tls.Certificate {
		dir := filepath.Join(app.Cfg.DataDir, "tls")
		certPEM, err := os.ReadFile(filepath.Join(dir, "member.crt"))
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := os.ReadFile(filepath.Join(dir, "member.key"))
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	pool := alpha.Node.Credentials().Pool
	gammaCert := load(gamma) // kept from before its removal
	if err := peerGet(alpha.Addr(), load(beta), pool); err != nil {
		t.Fatalf("a current member's certificate was refused: %v", err)
	}
	if err := peerGet(alpha.Addr(), gammaCert, pool); err != nil {
		t.Fatalf("gamma, still a member, was refused: %v", err)
	}

	tok := alpha.AdminToken(t)
	var out struct{ OperationID string }
	if status := alpha.JSON(t, tok, http.MethodDelete, "/api/v1/cluster/members/"+members(t, alpha, tok)["gamma"].ID, map[string]string{"confirm": "Unjoin"}, &out); status != http.StatusAccepted {
		t.Fatalf("unjoin: status %d", status)
	}
	if op := waitOperation(t, alpha, tok, out.OperationID); op.State != "Succeeded" {
		t.Fatalf("unjoin: %+v", op)
	}
	// The old certificate still verifies against the cluster CA, but the
	// members refuse it at the handshake.
	for _, app := range []*testapp.App{alpha, beta} {
		if err := peerGet(app.Addr(), gammaCert, pool); err == nil {
			t.Fatalf("%s let the removed gamma in with its old member certificate", app.Cfg.Name)
		}
	}
	if err := peerGet(alpha.Addr(), load(beta), pool); err != nil {
		t.Fatalf("beta, still a member, was refused after the Unjoin: %v", err)
	}
}
