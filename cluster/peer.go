package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"conclave/store"
)

// PeerClient calls other members' node API (/node/v1) with mutual TLS,
// through the node's Dialer.
type PeerClient struct {
	n    *Node
	http *http.Client
}

func newPeerClient(n *Node) *PeerClient {
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			cfg, err := n.PeerClientTLS()
			if err != nil {
				return nil, err
			}
			return dialTLS(ctx, n.cfg.Dialer, addr, cfg)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	return &PeerClient{n: n, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// PeerError is an error a member answered.
type PeerError struct {
	Status  int
	Message string `json:"error"`
	Field   string `json:"field,omitempty"`
}

func (e *PeerError) Error() string { return e.Message }

func doJSON(ctx context.Context, c *http.Client, method, url, auth string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		pe := &PeerError{Status: resp.StatusCode}
		if json.Unmarshal(raw, pe) != nil || pe.Message == "" {
			pe.Message = fmt.Sprintf("%s answered %d: %s", req.URL.Host, resp.StatusCode, strings.TrimSpace(string(raw)))
		}
		return pe
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s: unreadable answer: %w", url, err)
		}
	}
	return nil
}

// ProposeAnswer is the leader's answer to a forwarded proposal.
type ProposeAnswer struct {
	Index     uint64           `json:"index"`
	Rejection *store.Rejection `json:"rejection,omitempty"`
}

// Propose forwards a proposal to the leader at addr.
func (p *PeerClient) Propose(ctx context.Context, addr string, data []byte) (uint64, error) {
	var ans ProposeAnswer
	err := doJSON(ctx, p.http, http.MethodPost, "https://"+addr+"/node/v1/propose", "", bytes.NewReader(data), "application/json", &ans)
	var pe *PeerError
	if errors.As(err, &pe) && pe.Status == http.StatusServiceUnavailable {
		return 0, ErrNotLeader
	}
	if err != nil && neverSent(err) {
		// The primary this member knew does not take connections (it
		// stopped; an election is under way): nothing was proposed, so
		// the caller may wait for the next primary and try again.
		return 0, fmt.Errorf("%w (the primary at %s does not answer: %v)", ErrNotLeader, addr, err)
	}
	if err != nil {
		return 0, fmt.Errorf("forward to the primary at %s: %w", addr, err)
	}
	if ans.Rejection != nil {
		return ans.Index, ans.Rejection
	}
	return ans.Index, nil
}

// PeerStatus is what a member says of itself.
type PeerStatus struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	State        string    `json:"state"`
	Health       string    `json:"health"`
	HealthReason string    `json:"healthReason"`
	Version      string    `json:"version"`
	AppliedIndex uint64    `json:"appliedIndex"`
	UpSince      time.Time `json:"upSince"`
	// RunningOperations are the operations this member's runner runs.
	RunningOperations []string `json:"runningOperations"`
	// Links are this member's measurements of its links to the others
	// (links.go); MeasuredAt is left out, MeasuredAgoMs says it.
	Links []LinkStatus `json:"links"`
}

// Status asks the member at addr how it is.
func (p *PeerClient) Status(ctx context.Context, addr string) (PeerStatus, error) {
	var st PeerStatus
	err := doJSON(ctx, p.http, http.MethodGet, "https://"+addr+"/node/v1/status", "", nil, "", &st)
	return st, err
}

// ChecksumsAnswer is a member's table checksums at an applied index.
type ChecksumsAnswer struct {
	Index     uint64                         `json:"index"`
	Checksums map[string]store.TableChecksum `json:"checksums"`
	// Method is how the rows were hashed: ChecksumRecordHash when asked
	// for and the member's PostgreSQL has the major version asked for,
	// else ChecksumMD5.
	Method string `json:"method,omitempty"`
}

// The ways of checksumming the replicated tables (store.Snapshot).
const (
	ChecksumMD5        = "md5"         // Checksums: portable
	ChecksumRecordHash = "record-hash" // RecordHashChecksums: fast, same PostgreSQL major version only
)

// Checksums asks the member at addr for its table checksums once it has
// applied index atLeast; with postgresMajor above 0, PostgreSQL's record
// hashes if its server has that major version.
func (p *PeerClient) Checksums(ctx context.Context, addr string, atLeast uint64, postgresMajor int) (ChecksumsAnswer, error) {
	var ans ChecksumsAnswer
	url := fmt.Sprintf("https://%s/node/v1/checksums?atLeast=%d", addr, atLeast)
	if postgresMajor > 0 {
		url += fmt.Sprintf("&method=%s&postgres=%d", ChecksumRecordHash, postgresMajor)
	}
	err := doJSON(ctx, p.http, http.MethodGet, url, "", nil, "", &ans)
	if ans.Method == "" {
		ans.Method = ChecksumMD5
	}
	return ans, err
}

// Leave tells the member at addr that it is being removed from the cluster.
func (p *PeerClient) Leave(ctx context.Context, addr string) error {
	return doJSON(ctx, p.http, http.MethodPost, "https://"+addr+"/node/v1/leave", "", nil, "", nil)
}

// PublicClient calls an appliance that is not (yet) a member: the TLS
// certificate is its self-signed appliance certificate, pinned by
// fingerprint once it was shown to the administrator.
func (n *Node) PublicClient(fingerprint string) *http.Client {
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			cfg := &tls.Config{
				MinVersion:         tls.VersionTLS12,
				InsecureSkipVerify: true, // the fingerprint pin below is the check
				VerifyConnection: func(cs tls.ConnectionState) error {
					if fingerprint == "" || len(cs.PeerCertificates) == 0 {
						return nil
					}
					if got := CertFingerprint(cs.PeerCertificates[0].Raw); got != fingerprint {
						return fmt.Errorf("the appliance's certificate changed: fingerprint %s, expected %s", got, fingerprint)
					}
					return nil
				},
			}
			return dialTLS(ctx, n.cfg.Dialer, addr, cfg)
		},
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Minute}
}

// CertFingerprint is the SHA-256 of a DER certificate, in upper-case hex
// pairs as browsers show it.
func CertFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// OperationRequest asks the primary to start an operation for a member.
type OperationRequest struct {
	Actor    string `json:"actor"`
	MemberID string `json:"memberId"`
}

// startOnLeader asks the primary to start an operation (a replica's console
// or API forwards it) and returns the operation's ID.
func (p *PeerClient) startOnLeader(ctx context.Context, n *Node, kind, actor, memberID string) (string, error) {
	addr, id := n.r().LeaderWithID()
	if id == "" {
		return "", ErrNotLeader
	}
	body, _ := json.Marshal(OperationRequest{Actor: actor, MemberID: memberID})
	var ans struct {
		OperationID string `json:"operationId"`
	}
	err := doJSON(ctx, p.http, http.MethodPost, "https://"+string(addr)+"/node/v1/operations/"+kind, "", bytes.NewReader(body), "application/json", &ans)
	var pe *PeerError
	if errors.As(err, &pe) && pe.Status < 500 {
		return "", store.Reject(pe.Field, "%s", pe.Message)
	}
	if err != nil {
		return "", fmt.Errorf("ask the primary: %w", err)
	}
	return ans.OperationID, nil
}

// neverSent tells whether a request failed before anything reached the
// other side: the connection was refused or could not be made.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial")
}
