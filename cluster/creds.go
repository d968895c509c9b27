package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"conclave/store"
)

// Credentials are this member's TLS identity in the cluster.
type Credentials struct {
	CA   CA
	Pool *x509.CertPool
	Cert *tls.Certificate // nil until the member has a certificate
}

func (n *Node) memberCertPaths() (string, string) {
	dir := filepath.Join(n.cfg.DataDir, "tls")
	return filepath.Join(dir, "member.crt"), filepath.Join(dir, "member.key")
}

// loadCredentials reads the cluster CA from the key ring and this member's
// certificate from the data directory; either may be missing yet.
func (n *Node) loadCredentials(ctx context.Context) error {
	var ca CA
	raw, err := n.store.Key(ctx, keyCA)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if m := n.Mode(); m.CA != nil {
			ca = *m.CA // being enrolled: the new cluster's CA
		} else {
			n.creds.Store(nil)
			return nil
		}
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(raw, &ca); err != nil {
			return fmt.Errorf("cluster CA: %w", err)
		}
		if m := n.Mode(); m.CA != nil && m.State == StateMaintenance {
			ca = *m.CA
		}
	}
	pool, err := ca.Pool()
	if err != nil {
		return err
	}
	c := &Credentials{CA: ca, Pool: pool}
	certPath, keyPath := n.memberCertPaths()
	certPEM, err1 := os.ReadFile(certPath)
	keyPEM, err2 := os.ReadFile(keyPath)
	if err1 == nil && err2 == nil {
		cert, err := MemberCertificate(certPEM, keyPEM)
		if err == nil && signedBy(cert, pool) {
			c.Cert = &cert
		}
	}
	n.creds.Store(c)
	return nil
}

func signedBy(cert tls.Certificate, pool *x509.CertPool) bool {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// Credentials returns this member's TLS identity, or nil.
func (n *Node) Credentials() *Credentials { return n.creds.Load() }

// saveMemberCertificate keeps this member's certificate and key.
func (n *Node) saveMemberCertificate(certPEM, keyPEM []byte) error {
	certPath, keyPath := n.memberCertPaths()
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("save member key: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return fmt.Errorf("save member certificate: %w", err)
	}
	return nil
}

// ensureOwnCertificate signs this member's certificate with the cluster CA
// when it has none from that CA (the first member, or after Unjoin).
func (n *Node) ensureOwnCertificate(ctx context.Context) error {
	if err := n.loadCredentials(ctx); err != nil {
		return err
	}
	c := n.creds.Load()
	if c == nil {
		return errors.New("the cluster has no CA")
	}
	if c.Cert != nil {
		return nil
	}
	keyPEM, csrPEM, err := NewMemberKey(n.ID())
	if err != nil {
		return err
	}
	certPEM, err := c.CA.SignMember(n.ID(), csrPEM)
	if err != nil {
		return err
	}
	if err := n.saveMemberCertificate(certPEM, keyPEM); err != nil {
		return err
	}
	return n.loadCredentials(ctx)
}

// pending are members allowed to talk before they are in the raft
// configuration: the replica during its enrollment, the primary for the
// replica being enrolled.
type pendingPeers struct {
	mu  sync.Mutex
	ids map[string]int
}

func (p *pendingPeers) add(id string) func() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = map[string]int{}
	}
	p.ids[id]++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.ids[id]--; p.ids[id] <= 0 {
			delete(p.ids, id)
		}
	}
}

func (p *pendingPeers) has(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ids[id] > 0
}

// IsPeerAllowed tells whether a member certificate's owner may talk to this
// member: it must be in the raft configuration (or about to join). A member
// removed by Unjoin or Reset is refused, although its certificate is valid.
func (n *Node) IsPeerAllowed(id string) bool {
	if id == n.ID() || n.pending.has(id) {
		return true
	}
	if m := n.Mode(); m.State == StateMaintenance && m.PrimaryID == id {
		return true
	}
	if n.inst.Load().dormant {
		// Isolated (offline.go): the dormant raft knows no configuration;
		// the members are those raft had applied when it stopped.
		return n.isStoredMember(id)
	}
	f := n.r().GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

func (n *Node) verifyPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no member certificate")
	}
	id, ok := PeerMemberID(cs.PeerCertificates[0])
	if !ok {
		return errors.New("the certificate names no member")
	}
	if !n.IsPeerAllowed(id) {
		return fmt.Errorf("member %s is not part of this cluster (removed, or never added)", id)
	}
	return nil
}

// PeerServerTLS is the TLS configuration the HTTPS server uses for a
// handshake that asks for PeerServerName: the member certificate, and a
// verified certificate of a current member required in return. It is nil
// while this appliance has no member certificate.
func (n *Node) PeerServerTLS() *tls.Config {
	c := n.creds.Load()
	if c == nil || c.Cert == nil {
		return nil
	}
	return &tls.Config{
		Certificates:     []tls.Certificate{*c.Cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        c.Pool,
		MinVersion:       tls.VersionTLS13,
		NextProtos:       []string{"http/1.1", RaftALPN},
		VerifyConnection: n.verifyPeer,
	}
}

// PeerClientTLS is the TLS configuration for connections to other members.
func (n *Node) PeerClientTLS() (*tls.Config, error) {
	c := n.creds.Load()
	if c == nil || c.Cert == nil {
		return nil, errors.New("this appliance has no member certificate yet")
	}
	return &tls.Config{
		Certificates:     []tls.Certificate{*c.Cert},
		RootCAs:          c.Pool,
		ServerName:       PeerServerName,
		MinVersion:       tls.VersionTLS13,
		VerifyConnection: n.verifyPeer,
	}, nil
}
