package cluster

// Add Replica, seen from both sides. The primary runs the operation; the
// appliance being added (the replica) answers on its public node API,
// authorised by a one-time grant from its own sign-in page (browser) or by
// an administrator's API token (scripts).

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// ApplianceInfo is what an appliance says of itself to anyone (GET
// /node/v1/info): enough for an administrator to recognise it.
type ApplianceInfo struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	State       string `json:"state"`
	Address     string `json:"address"`
	ClusterID   string `json:"clusterId"`
	ClusterName string `json:"clusterName"`
	Members     int    `json:"members"`
	// Standalone: a one-member cluster that may be added to another.
	Standalone bool `json:"standalone"`
}

// Info describes this appliance.
func (n *Node) Info(ctx context.Context) ApplianceInfo {
	info := ApplianceInfo{ID: n.ID(), Name: n.cfg.Name, Version: n.cfg.Version, State: n.SelfState(), Address: n.cfg.Advertise}
	if c, err := n.store.Cluster(ctx); err == nil {
		info.ClusterID = c.ID
	}
	if s, err := LoadSettings(ctx, n.store); err == nil {
		info.ClusterName = s.ClusterName
	}
	if f := n.r().GetConfiguration(); f.Error() == nil {
		info.Members = len(f.Configuration().Servers)
	}
	m := n.Mode()
	info.Standalone = m.State == StateMaintenance || (info.Members <= 1 && m.State != StateLeavingCluster)
	return info
}

// Grants: a one-time permission, given on the replica by one of its
// administrators, for one primary to enroll it.
type grants struct {
	mu sync.Mutex
	m  map[string]grant // by hash
}

type grant struct {
	clusterID string
	actor     string
	expires   time.Time
}

const grantTTL = 15 * time.Minute

// IssueGrant makes a grant for the cluster clusterID to enroll this
// appliance, valid for 15 minutes.
func (n *Node) IssueGrant(clusterID, actor string) string {
	b := make([]byte, 32)
	rand.Read(b)
	g := "cng_" + base64.RawURLEncoding.EncodeToString(b)
	n.grants.mu.Lock()
	defer n.grants.mu.Unlock()
	if n.grants.m == nil {
		n.grants.m = map[string]grant{}
	}
	for k, v := range n.grants.m {
		if time.Now().After(v.expires) {
			delete(n.grants.m, k)
		}
	}
	n.grants.m[hashString(g)] = grant{clusterID: clusterID, actor: actor, expires: time.Now().Add(grantTTL)}
	return g
}

func hashString(s string) string {
	h := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// ErrGrant is a refused grant.
var ErrGrant = errors.New("the enrollment grant is unknown, expired, or for another cluster; sign in on the replica again")

// CheckGrant tells whether g lets cluster clusterID enroll this appliance.
func (n *Node) CheckGrant(g, clusterID string) (actor string, err error) {
	n.grants.mu.Lock()
	defer n.grants.mu.Unlock()
	v, ok := n.grants.m[hashString(g)]
	if !ok || time.Now().After(v.expires) || v.clusterID != clusterID {
		return "", ErrGrant
	}
	return v.actor, nil
}

// PrepareRequest is the primary's first call to the replica.
type PrepareRequest struct {
	ClusterID   string `json:"clusterId"`
	ClusterName string `json:"clusterName"`
	PrimaryID   string `json:"primaryId"`
	PrimaryName string `json:"primaryName"`
	Version     string `json:"version"`
	CA          CA     `json:"ca"`
}

// PrepareAnswer is the replica's answer: who it is and its certificate request.
type PrepareAnswer struct {
	MemberID string `json:"memberId"`
	Name     string `json:"name"`
	Address  string `json:"address"`
	CSR      []byte `json:"csr"`
}

// PrepareEnrollment puts this appliance in Maintenance for the cluster of
// req: its raft stops being a cluster of its own, and it makes a key and a
// certificate request for its new membership.
func (n *Node) PrepareEnrollment(ctx context.Context, req PrepareRequest, actor string) (PrepareAnswer, error) {
	if req.Version != n.cfg.Version {
		return PrepareAnswer{}, fmt.Errorf("this appliance runs build %s and the cluster %s; both must run the same build", n.cfg.Version, req.Version)
	}
	info := n.Info(ctx)
	if !info.Standalone {
		return PrepareAnswer{}, fmt.Errorf("this appliance is a member of a cluster with %d members; unjoin it there first", info.Members)
	}
	if m := n.Mode(); m.State == StateMaintenance && m.ClusterID != "" && m.ClusterID != req.ClusterID {
		return PrepareAnswer{}, fmt.Errorf("this appliance is being added to another cluster (%s)", m.ClusterName)
	}
	if _, err := req.CA.Pool(); err != nil {
		return PrepareAnswer{}, err
	}
	keyPEM, csrPEM, err := NewMemberKey(n.ID())
	if err != nil {
		return PrepareAnswer{}, err
	}
	n.enrollKey.Store(&keyPEM)
	err = n.setMode(Mode{State: StateMaintenance, Reason: fmt.Sprintf("being added to cluster %q by %s (approved by %s)", req.ClusterName, req.PrimaryName, actor),
		PrimaryID: req.PrimaryID, ClusterID: req.ClusterID, ClusterName: req.ClusterName, CA: &req.CA})
	if err != nil {
		return PrepareAnswer{}, err
	}
	n.log.Info("entering Maintenance to be added to a cluster", "cluster", req.ClusterName, "primary", req.PrimaryName)
	// Its own one-member cluster ends here: raft waits, with no state, for
	// the primary to add it.
	if err := n.restartRaft(false, true); err != nil {
		return PrepareAnswer{}, err
	}
	return PrepareAnswer{MemberID: n.ID(), Name: n.cfg.Name, Address: n.cfg.Advertise, CSR: csrPEM}, nil
}

// InstallCredentials keeps the member certificate the primary signed.
func (n *Node) InstallCredentials(ctx context.Context, certPEM []byte) error {
	m := n.Mode()
	keyPEM := n.enrollKey.Load()
	if m.State != StateMaintenance || m.CA == nil || keyPEM == nil {
		return errors.New("this appliance is not being added to a cluster (prepare first)")
	}
	cert, err := MemberCertificate(certPEM, *keyPEM)
	if err != nil {
		return err
	}
	pool, _ := m.CA.Pool()
	if !signedBy(cert, pool) {
		return errors.New("the member certificate is not signed by the cluster's CA")
	}
	if err := n.saveMemberCertificate(certPEM, *keyPEM); err != nil {
		return err
	}
	return n.loadCredentials(ctx)
}

// RestoreFromPrimary replaces this appliance's replicated data with the
// primary's snapshot, in one transaction.
func (n *Node) RestoreFromPrimary(ctx context.Context, r io.Reader) (uint64, error) {
	if n.Mode().State != StateMaintenance {
		return 0, errors.New("this appliance is not being added to a cluster")
	}
	index, err := n.store.RestoreSnapshot(ctx, r)
	if err != nil {
		return 0, err
	}
	n.applied.Store(index)
	return index, n.loadCredentials(ctx)
}

// CompleteEnrollment ends Maintenance once the primary made this appliance
// a voting member.
func (n *Node) CompleteEnrollment(ctx context.Context) error {
	if n.Mode().State != StateMaintenance {
		return nil
	}
	n.enrollKey.Store(nil)
	if err := n.setMode(Mode{}); err != nil {
		return err
	}
	return n.loadCredentials(ctx)
}

// AbortEnrollment records that the enrollment failed; the appliance stays
// in Maintenance, waiting to be added again.
func (n *Node) AbortEnrollment(reason string) error {
	m := n.Mode()
	if m.State != StateMaintenance {
		return nil
	}
	m.Reason = "adding it to the cluster failed (" + reason + "); add it again from the primary"
	return n.setMode(m)
}

// EnrollTarget is the appliance an administrator chose to add.
type EnrollTarget struct {
	Address     string
	Fingerprint string // of its appliance certificate, as shown to the administrator
	Auth        string // "Grant <grant>" or "Bearer <token>", for the replica
	Info        ApplianceInfo
}

// FetchInfo reaches an appliance's public info and its certificate's
// fingerprint.
func (n *Node) FetchInfo(ctx context.Context, address string) (ApplianceInfo, string, error) {
	var fp string
	tr := n.PublicClient("").Transport.(*http.Transport)
	tr.DialTLSContext = wrapFingerprint(tr.DialTLSContext, &fp)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var info ApplianceInfo
	if err := doJSON(ctx, c, http.MethodGet, "https://"+address+"/node/v1/info", "", nil, "", &info); err != nil {
		return info, "", fmt.Errorf("cannot reach an appliance at %s: %w", address, err)
	}
	return info, fp, nil
}

func wrapFingerprint(dial func(ctx context.Context, network, addr string) (net.Conn, error), fp *string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(interface {
			ConnectionState() tls.ConnectionState
		}); ok {
			if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
				*fp = CertFingerprint(certs[0].Raw)
			}
		}
		return c, nil
	}
}

// CheckEnrollTarget refuses a target with a reason a person can act on.
func (n *Node) CheckEnrollTarget(ctx context.Context, t EnrollTarget) error {
	if !n.IsLeader() {
		return errors.New("Add Replica runs on the primary; open the primary's console")
	}
	if reason := n.ReadOnlyReason(); reason != "" {
		return errors.New(reason)
	}
	members, err := n.store.Members(ctx)
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.ID == t.Info.ID || strings.EqualFold(m.Address, t.Address) {
			return fmt.Errorf("%s (%s) is already a member of this cluster", m.Name, m.Address)
		}
		if mixedFamilies(m.Address, t.Address) {
			return fmt.Errorf("%s is %s and the member %s is %s: members must all use IPv4 or all IPv6", t.Address, family(t.Address), m.Name, family(m.Address))
		}
	}
	if t.Info.Version != n.cfg.Version {
		return fmt.Errorf("%s runs build %s and this cluster %s: upgrade one so both run the same build", t.Info.Name, t.Info.Version, n.cfg.Version)
	}
	if !t.Info.Standalone {
		return fmt.Errorf("%s is a member of a cluster with %d members: unjoin it there first", t.Info.Name, t.Info.Members)
	}
	if t.Info.ID == n.ID() {
		return errors.New("that address is this appliance")
	}
	if lock, err := n.store.Lock(ctx); err == nil {
		return fmt.Errorf("another operation is in progress: %s, started by %s at %s; wait for it to end", lock.Kind, lock.Actor, lock.Since.UTC().Format("15:04:05 MST"))
	}
	return nil
}

func family(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return "a host name"
	case ip.To4() != nil:
		return "IPv4"
	}
	return "IPv6"
}

func mixedFamilies(a, b string) bool {
	fa, fb := family(a), family(b)
	return fa != fb && fa != "a host name" && fb != "a host name"
}

// AddReplicaSteps are the named steps of Add Replica, in order.
var AddReplicaSteps = []string{"Pre-checks", "Replica to Maintenance", "Certificate and key ring", "Snapshot transfer",
	"Add as non-voter", "Catch-up", "Promote to voter", "Consistency check", "Replica online"}

// AddReplica starts the Add Replica operation on the primary.
func (n *Node) AddReplica(ctx context.Context, actor string, t EnrollTarget) (string, error) {
	if err := n.CheckEnrollTarget(ctx, t); err != nil {
		return "", err
	}
	e := &enrollment{n: n, t: t, client: n.PublicClient(t.Fingerprint)}
	run := []StepFunc{e.prechecks, e.prepare, e.credentials, e.snapshot, e.addNonvoter, e.catchUp, e.promote, e.consistency, e.online}
	spec := OperationSpec{Kind: "Enroll", StartEvent: "ClusterReplicaEnrollmentStarted", EndEvent: "ClusterReplicaEnrollmentCompleted",
		Details: map[string]string{"replica": t.Info.Name, "address": t.Address}, OnFailure: e.rollback}
	for i, name := range AddReplicaSteps {
		spec.Steps = append(spec.Steps, StepSpec{Name: name, Run: run[i]})
	}
	return n.runner.Start(ctx, actor, spec)
}

// enrollment is one Add Replica run on the primary.
type enrollment struct {
	n         *Node
	t         EnrollTarget
	client    *http.Client
	memberID  string
	csr       []byte
	snapIndex uint64
	added     bool
	unpend    func()
}

func (e *enrollment) url(path string) string { return "https://" + e.t.Address + path }

func (e *enrollment) prechecks(ctx context.Context, p *Progress) error {
	info, fp, err := e.n.FetchInfo(ctx, e.t.Address)
	if err != nil {
		return err
	}
	if e.t.Fingerprint != "" && fp != e.t.Fingerprint {
		return fmt.Errorf("the appliance at %s now shows certificate %s, not %s as when it was chosen", e.t.Address, fp, e.t.Fingerprint)
	}
	e.t.Fingerprint = fp
	e.t.Info = info
	e.memberID = info.ID
	return nil
}

func (e *enrollment) prepare(ctx context.Context, p *Progress) error {
	creds := e.n.Credentials()
	if creds == nil {
		return errors.New("this primary has no cluster CA")
	}
	c, _ := e.n.store.Cluster(ctx)
	s, _ := LoadSettings(ctx, e.n.store)
	req := PrepareRequest{ClusterID: c.ID, ClusterName: s.ClusterName, PrimaryID: e.n.ID(), PrimaryName: e.n.cfg.Name, Version: e.n.cfg.Version,
		CA: CA{CertPEM: creds.CA.CertPEM}}
	body, _ := json.Marshal(req)
	var ans PrepareAnswer
	if err := doJSON(ctx, e.client, http.MethodPost, e.url("/node/v1/enroll/prepare"), e.t.Auth, bytes.NewReader(body), "application/json", &ans); err != nil {
		return fmt.Errorf("the replica refused: %w", err)
	}
	if ans.MemberID != e.memberID {
		return fmt.Errorf("the replica answered as %s, not %s", ans.MemberID, e.memberID)
	}
	e.csr = ans.CSR
	p.Report(ctx, 100, fmt.Sprintf("%s is in Maintenance", ans.Name))
	return nil
}

func (e *enrollment) credentials(ctx context.Context, p *Progress) error {
	certPEM, err := e.n.Credentials().CA.SignMember(e.memberID, e.csr)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string][]byte{"certificate": certPEM})
	if err := doJSON(ctx, e.client, http.MethodPost, e.url("/node/v1/enroll/credentials"), e.t.Auth, bytes.NewReader(body), "application/json", nil); err != nil {
		return fmt.Errorf("the replica refused its certificate: %w", err)
	}
	e.unpend = e.n.pending.add(e.memberID)
	return nil
}

func (e *enrollment) snapshot(ctx context.Context, p *Progress) error {
	snap, err := e.n.store.BeginSnapshot(ctx)
	if err != nil {
		return err
	}
	defer snap.Close(ctx)
	rows, err := snap.RowCounts(ctx)
	if err != nil {
		return err
	}
	var total int64
	for _, r := range rows {
		total += r
	}
	pr, pw := io.Pipe()
	counter := &countingWriter{w: pw}
	go func() {
		var done int64
		err := snap.WriteToProgress(ctx, counter, func(table string) {
			done += rows[table]
			pct := 100
			if total > 0 {
				pct = int(done * 100 / total)
			}
			p.Report(ctx, min(pct, 99), fmt.Sprintf("%d of %d rows, %s sent", done, total, humanBytes(counter.n.Load())))
		})
		pw.CloseWithError(err)
	}()
	var ans struct {
		Index uint64 `json:"index"`
	}
	if err := doJSON(ctx, e.client, http.MethodPost, e.url("/node/v1/enroll/snapshot"), e.t.Auth, pr, "application/octet-stream", &ans); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("snapshot transfer: %w", err)
	}
	e.snapIndex = ans.Index
	p.Report(ctx, 100, fmt.Sprintf("%d rows, %s copied at index %d", total, humanBytes(counter.n.Load()), ans.Index))
	return nil
}

func (e *enrollment) addNonvoter(ctx context.Context, p *Progress) error {
	err := e.n.ProposeData(ctx, CmdPutMember, "system", MemberData{ID: e.memberID, Name: e.t.Info.Name, Address: e.t.Info.Address, Version: e.t.Info.Version}, nil)
	if err != nil {
		return err
	}
	e.added = true
	if err := e.n.r().AddNonvoter(raft.ServerID(e.memberID), raft.ServerAddress(e.t.Info.Address), 0, 30*time.Second).Error(); err != nil {
		return fmt.Errorf("add to the raft group: %w", err)
	}
	return nil
}

func (e *enrollment) catchUp(ctx context.Context, p *Progress) error {
	target := e.n.r().LastIndex()
	start := e.snapIndex
	deadline := time.Now().Add(5 * time.Minute)
	for {
		st, err := e.n.peers.Status(ctx, e.t.Info.Address)
		if err == nil {
			if st.AppliedIndex >= target {
				p.Report(ctx, 100, fmt.Sprintf("applied up to %d", st.AppliedIndex))
				return nil
			}
			if target > start {
				p.Report(ctx, int((st.AppliedIndex-min(st.AppliedIndex, start))*100/(target-start)), fmt.Sprintf("applied %d of %d", st.AppliedIndex, target))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the replica did not catch up within 5 minutes (last: %v)", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *enrollment) promote(ctx context.Context, p *Progress) error {
	if err := e.n.r().AddVoter(raft.ServerID(e.memberID), raft.ServerAddress(e.t.Info.Address), 0, 30*time.Second).Error(); err != nil {
		return fmt.Errorf("promote to voter: %w", err)
	}
	return e.n.ProposeData(ctx, CmdPutMember, "system", MemberData{ID: e.memberID, Name: e.t.Info.Name, Address: e.t.Info.Address, Version: e.t.Info.Version, IsVoter: true}, nil)
}

func (e *enrollment) consistency(ctx context.Context, p *Progress) error {
	return e.n.CompareWith(ctx, e.t.Info.Address, p)
}

func (e *enrollment) online(ctx context.Context, p *Progress) error {
	if err := doJSON(ctx, e.n.peers.http, http.MethodPost, "https://"+e.t.Info.Address+"/node/v1/enroll/complete", "", nil, "", nil); err != nil {
		return fmt.Errorf("the replica did not leave Maintenance: %w", err)
	}
	if e.unpend != nil {
		e.unpend()
	}
	return nil
}

// rollback leaves the cluster as it was before a failed Add Replica.
func (e *enrollment) rollback(ctx context.Context, failure error) {
	if e.added {
		if err := e.n.r().RemoveServer(raft.ServerID(e.memberID), 0, 30*time.Second).Error(); err != nil {
			e.n.log.Warn("remove the failed replica from raft", "err", err)
		}
		if err := e.n.ProposeData(ctx, CmdRemoveMember, "system", RemoveMember{MemberID: e.memberID}, nil); err != nil {
			e.n.log.Warn("remove the failed replica's member record", "err", err)
		}
	}
	if e.unpend != nil {
		e.unpend()
	}
	body, _ := json.Marshal(map[string]string{"reason": failure.Error()})
	doJSON(ctx, e.client, http.MethodPost, e.url("/node/v1/enroll/abort"), e.t.Auth, bytes.NewReader(body), "application/json", nil)
}

// CompareWith compares the replicated tables of this member and the member
// at addr at the same applied index: row counts and checksums.
func (n *Node) CompareWith(ctx context.Context, addr string, p *Progress) error {
	for attempt := 1; attempt <= 20; attempt++ {
		snap, err := n.store.BeginSnapshot(ctx)
		if err != nil {
			return err
		}
		mine, err := snap.Checksums(ctx)
		index := snap.Index
		snap.Close(ctx)
		if err != nil {
			return err
		}
		theirs, err := n.peers.Checksums(ctx, addr, index)
		if err != nil {
			return fmt.Errorf("checksums of %s: %w", addr, err)
		}
		if theirs.Index != index {
			continue // a write landed in between; compare again
		}
		var bad []string
		var rows int64
		for table, c := range mine {
			rows += c.Rows
			if o := theirs.Checksums[table]; o != c {
				bad = append(bad, fmt.Sprintf("%s (%d rows here, %d there)", table, c.Rows, o.Rows))
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("the replica differs at index %d in %s", index, strings.Join(bad, ", "))
		}
		if p != nil {
			p.Report(ctx, 100, fmt.Sprintf("%d tables, %d rows identical at index %d", len(mine), rows, index))
		}
		return nil
	}
	return errors.New("the cluster kept changing while the tables were compared; try again")
}

// ChecksumsAt computes this member's checksums once it applied atLeast.
func (n *Node) ChecksumsAt(ctx context.Context, atLeast uint64) (ChecksumsAnswer, error) {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.WaitApplied(wctx, atLeast); err != nil {
		return ChecksumsAnswer{}, err
	}
	snap, err := n.store.BeginSnapshot(ctx)
	if err != nil {
		return ChecksumsAnswer{}, err
	}
	defer snap.Close(ctx)
	sums, err := snap.Checksums(ctx)
	return ChecksumsAnswer{Index: snap.Index, Checksums: sums}, err
}

type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
