package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// The cluster CA signs one certificate per member. Members talk to each
// other (raft, the node API) with mutual TLS on these certificates; each
// certificate names its member by a DNS name "<member id>.member.conclave",
// which is also the TLS server name a peer asks for, so the HTTPS server can
// tell peers from browsers before the handshake ends.

// MemberDomain is the suffix of the names in member certificates.
const MemberDomain = ".member.conclave"

// MemberServerName is the TLS server name of a member.
func MemberServerName(memberID string) string { return memberID + MemberDomain }

// PeerServerName is the TLS server name members ask each other for: every
// member certificate carries it, and the HTTPS server answers it with the
// member certificate and asks for the peer's.
const PeerServerName = "peer" + MemberDomain

// MemberIDFromName returns the member ID of a name made by MemberServerName.
func MemberIDFromName(name string) (string, bool) {
	id, ok := strings.CutSuffix(name, MemberDomain)
	return id, ok && id != "" && id != "peer"
}

const (
	caValidity     = 20 * 365 * 24 * time.Hour
	memberValidity = 5 * 365 * 24 * time.Hour
)

// CA is the cluster's certificate authority, as PEM.
type CA struct {
	CertPEM []byte `json:"certPem"`
	KeyPEM  []byte `json:"keyPem"`
}

// NewCA makes a CA for a new cluster.
func NewCA(clusterID string) (CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return CA{}, fmt.Errorf("cluster CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Conclave cluster " + clusterID, Organization: []string{"Conclave"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return CA{}, fmt.Errorf("cluster CA: %w", err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	return CA{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// Pool is a cert pool holding the CA.
func (ca CA) Pool() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.CertPEM) {
		return nil, errors.New("cluster CA certificate is unreadable")
	}
	return pool, nil
}

// Fingerprint is the SHA-256 of the CA certificate.
func (ca CA) Fingerprint() string {
	block, _ := pem.Decode(ca.CertPEM)
	if block == nil {
		return ""
	}
	sum := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(sum[:])
}

// NewMemberKey makes a member's private key and a request for its certificate.
func NewMemberKey(memberID string) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("member key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: memberID},
		DNSNames: []string{MemberServerName(memberID), PeerServerName},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("member certificate request: %w", err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), nil
}

// SignMember issues a member certificate for a request. The certificate
// names exactly memberID, whatever the request asks for.
func (ca CA) SignMember(memberID string, csrPEM []byte) ([]byte, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("the certificate request is not PEM")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature: %w", err)
	}
	caCert, caKey, err := ca.parse()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: memberID, Organization: []string{"Conclave member"}},
		DNSNames:     []string{MemberServerName(memberID), PeerServerName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(memberValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, csr.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign member certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func (ca CA) parse() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(ca.CertPEM)
	kb, _ := pem.Decode(ca.KeyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("cluster CA is unreadable")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA key: %w", err)
	}
	return cert, key, nil
}

// MemberCertificate is a member's TLS identity.
func MemberCertificate(certPEM, keyPEM []byte) (tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return c, fmt.Errorf("member certificate: %w", err)
	}
	return c, nil
}

// PeerMemberID returns the member a verified peer certificate names.
func PeerMemberID(cert *x509.Certificate) (string, bool) {
	for _, name := range cert.DNSNames {
		if id, ok := MemberIDFromName(name); ok {
			return id, true
		}
	}
	return "", false
}
