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

	"conclave/store"
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
	used      bool // an enrollment started with it; it starts no other
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

// ErrGrantUsed is a grant that already started an enrollment.
var ErrGrantUsed = errors.New("this approval was used for an Add Replica already; approve again on the replica")

// UseGrant marks g as used by the enrollment it starts now: a grant starts
// one enrollment only (the later calls of that enrollment still show it).
func (n *Node) UseGrant(g, clusterID string) error {
	n.grants.mu.Lock()
	defer n.grants.mu.Unlock()
	key := hashString(g)
	v, ok := n.grants.m[key]
	switch {
	case !ok || time.Now().After(v.expires) || v.clusterID != clusterID:
		return ErrGrant
	case v.used:
		return ErrGrantUsed
	}
	v.used = true
	n.grants.m[key] = v
	return nil
}

// PrepareRequest is the primary's first call to the replica.
type PrepareRequest struct {
	ClusterID   string `json:"clusterId"`
	ClusterName string `json:"clusterName"`
	PrimaryID   string `json:"primaryId"`
	PrimaryName string `json:"primaryName"`
	Version     string `json:"version"`
	CA          CA     `json:"ca"`
	// CheckOnly asks the replica whether it would accept the enrollment
	// (its authorisation, build and state) without changing anything: the
	// primary asks before it takes the cluster lock.
	CheckOnly bool `json:"checkOnly,omitempty"`
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
	if req.CheckOnly {
		return PrepareAnswer{MemberID: n.ID(), Name: n.cfg.Name, Address: n.cfg.Advertise}, nil
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
// in Maintenance, waiting to be added again, by the same cluster or by
// another: it is no longer bound to the cluster that failed to add it.
func (n *Node) AbortEnrollment(reason string) error {
	m := n.Mode()
	if m.State != StateMaintenance {
		return nil
	}
	m.Reason = "adding it to the cluster failed (" + reason + "); add it again from the primary"
	m.ClusterID, m.PrimaryID = "", ""
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
	defer tr.CloseIdleConnections() // a transport for one request: keep no connection
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
	if t.Info.ID == n.ID() {
		return fmt.Errorf("%s is the address of this appliance, the primary; give the address of the appliance to add", t.Address)
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
	if ms, err := n.MemberStatuses(ctx); err != nil {
		return err
	} else if err := IsolatedMember(ms); err != nil {
		return err
	}
	if !t.Info.Standalone {
		return fmt.Errorf("%s is a member of a cluster with %d members: unjoin it there first", t.Info.Name, t.Info.Members)
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

// How long the steps of Add Replica wait for the replica. A cut link fails
// a step at once (its connections close); these bound what a link that
// drops packets, or a replica that hangs, costs.
const (
	enrollCallTimeout  = 20 * time.Second // one call to the replica, or one raft change
	enrollPrepareLimit = 30 * time.Second // the replica also restarts its raft
	// The snapshot has no fixed limit (it grows with the data): it fails
	// when no byte of it gets through for snapshotStall, or when the
	// replica has not answered snapshotAnswer after the last byte.
	snapshotStall  = 15 * time.Second
	snapshotAnswer = 2 * time.Minute
	// Catch-up fails when the replica has not answered for catchUpSilence,
	// or has not caught up within catchUpLimit.
	catchUpSilence   = 15 * time.Second
	catchUpLimit     = 5 * time.Minute
	consistencyLimit = time.Minute
	abortTimeout     = 5 * time.Second
)

// AddReplica starts the Add Replica operation on the primary. The replica
// is asked first whether it would accept (its administrator's token or
// grant, its build, its state), so that a refusal comes back at once and
// takes no lock.
func (n *Node) AddReplica(ctx context.Context, actor string, t EnrollTarget) (string, error) {
	if err := n.CheckEnrollTarget(ctx, t); err != nil {
		return "", err
	}
	e := &enrollment{n: n, t: t, client: n.PublicClient(t.Fingerprint)}
	if err := e.askReplica(ctx); err != nil {
		e.client.CloseIdleConnections()
		return "", err
	}
	run := []StepFunc{
		bounded(enrollCallTimeout, e.prechecks),
		bounded(enrollPrepareLimit, e.prepare),
		bounded(enrollCallTimeout, e.credentials),
		e.snapshot,
		bounded(enrollCallTimeout, e.addNonvoter),
		e.catchUp,
		bounded(enrollCallTimeout, e.promote),
		bounded(consistencyLimit, e.consistency),
		bounded(enrollCallTimeout, e.online),
	}
	spec := OperationSpec{Kind: "Enroll", StartEvent: "ClusterReplicaEnrollmentStarted", EndEvent: "ClusterReplicaEnrollmentCompleted",
		Details: map[string]string{"replica": t.Info.Name, "address": t.Address, "memberId": t.Info.ID}, OnFailure: e.rollback}
	for i, name := range AddReplicaSteps {
		spec.Steps = append(spec.Steps, StepSpec{Name: name, Run: run[i]})
	}
	id, err := n.runner.Start(ctx, actor, spec)
	if err != nil {
		e.client.CloseIdleConnections()
	}
	return id, err
}

// bounded runs a step with a time limit, and says so when it ran out.
func bounded(d time.Duration, step StepFunc) StepFunc {
	return func(ctx context.Context, p *Progress) error {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		err := step(ctx, p)
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w (no answer within %s)", err, d)
		}
		return err
	}
}

// enrollment is one Add Replica run on the primary.
type enrollment struct {
	n         *Node
	t         EnrollTarget
	client    *http.Client
	memberID  string
	csr       []byte
	snapIndex uint64
	prepared  bool // the replica went into Maintenance for this cluster
	added     bool
	unpend    func()
	unpendOne sync.Once
}

func (e *enrollment) url(path string) string { return "https://" + e.t.Address + path }

// prepareRequest is what the primary sends the replica to prepare.
func (e *enrollment) prepareRequest(ctx context.Context) (PrepareRequest, error) {
	creds := e.n.Credentials()
	if creds == nil {
		return PrepareRequest{}, errors.New("this primary has no cluster CA")
	}
	c, err := e.n.store.Cluster(ctx)
	if err != nil {
		return PrepareRequest{}, err
	}
	s, _ := LoadSettings(ctx, e.n.store)
	return PrepareRequest{ClusterID: c.ID, ClusterName: s.ClusterName, PrimaryID: e.n.ID(), PrimaryName: e.n.cfg.Name, Version: e.n.cfg.Version,
		CA: CA{CertPEM: creds.CA.CertPEM}}, nil
}

// askReplica asks the replica whether it would accept this enrollment,
// changing nothing there.
func (e *enrollment) askReplica(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, enrollCallTimeout)
	defer cancel()
	req, err := e.prepareRequest(ctx)
	if err != nil {
		return err
	}
	req.CheckOnly = true
	body, _ := json.Marshal(req)
	var ans PrepareAnswer
	err = doJSON(ctx, e.client, http.MethodPost, e.url("/node/v1/enroll/prepare"), e.t.Auth, bytes.NewReader(body), "application/json", &ans)
	var pe *PeerError
	switch {
	case errors.As(err, &pe) && (pe.Status == http.StatusUnauthorized || pe.Status == http.StatusForbidden):
		return store.Reject("authenticationToken", "%s refused the authorisation: %s. Sign in on %s as one of its administrators and use a new token or grant",
			e.t.Info.Name, pe.Message, e.t.Address)
	case errors.As(err, &pe):
		return store.Reject("address", "%s refuses to be added: %s", e.t.Info.Name, pe.Message)
	case err != nil:
		return fmt.Errorf("cannot reach the appliance at %s: %w", e.t.Address, err)
	case ans.MemberID != e.t.Info.ID:
		return store.Reject("address", "the appliance at %s answered as %s, not as %s that was chosen; check the address", e.t.Address, ans.MemberID, e.t.Info.ID)
	}
	return nil
}

// release ends the replica's allowance to talk to this member before it is
// in the raft configuration. It may be called more than once.
func (e *enrollment) release() {
	if e.unpend != nil {
		e.unpendOne.Do(e.unpend)
	}
}

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
	req, err := e.prepareRequest(ctx)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(req)
	var ans PrepareAnswer
	if err := doJSON(ctx, e.client, http.MethodPost, e.url("/node/v1/enroll/prepare"), e.t.Auth, bytes.NewReader(body), "application/json", &ans); err != nil {
		return fmt.Errorf("the replica refused: %w", err)
	}
	e.prepared = true
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

// snapshot streams a consistent copy of the replicated tables to the
// replica. A goroutine writes the copy into a pipe that the request reads;
// whatever ends the request, the goroutine has stopped (and with it the
// COPY on the snapshot's transaction) before the step returns.
func (e *enrollment) snapshot(ctx context.Context, p *Progress) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	snap, err := e.n.store.BeginSnapshot(ctx)
	if err != nil {
		return err
	}
	defer snap.Close(context.Background())
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
	written := make(chan struct{})
	go func() {
		defer close(written)
		var done int64
		err := snap.WriteToProgress(ctx, counter, func(table string) {
			done += rows[table]
			pct := 100
			if total > 0 {
				pct = int(done * 100 / total)
			}
			p.Report(ctx, min(pct, 99), fmt.Sprintf("%d of %d rows, %s sent", done, total, humanBytes(counter.n.Load())))
		})
		pw.CloseWithError(err) // nil: the request body ends
	}()
	// The watchdog ends a transfer that stopped moving.
	watchdogDone := make(chan struct{})
	defer close(watchdogDone)
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		last, lastMoved := counter.n.Load(), time.Now()
		var sentAt time.Time
		for {
			select {
			case <-watchdogDone:
				return
			case <-tick.C:
			}
			if sent := counter.n.Load(); sent != last {
				last, lastMoved = sent, time.Now()
			}
			select {
			case <-written:
				if sentAt.IsZero() {
					sentAt = time.Now()
				}
				if time.Since(sentAt) > snapshotAnswer {
					cancel(fmt.Errorf("the replica did not confirm the snapshot within %s of receiving it", snapshotAnswer))
					return
				}
			default:
				if time.Since(lastMoved) > snapshotStall {
					cancel(fmt.Errorf("no byte of the snapshot got through for %s (%s sent)", snapshotStall, humanBytes(last)))
					return
				}
			}
		}
	}()
	var ans struct {
		Index uint64 `json:"index"`
	}
	// The watchdog bounds the transfer, not the client's overall limit
	// (10 minutes), which a big snapshot on a slow link may need to pass.
	unbounded := *e.client
	unbounded.Timeout = 0
	err = doJSON(ctx, &unbounded, http.MethodPost, e.url("/node/v1/enroll/snapshot"), e.t.Auth, pr, "application/octet-stream", &ans)
	// The request is over: a writer still blocked on the pipe gives up.
	pr.CloseWithError(errors.New("the snapshot transfer ended"))
	<-written
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
			err = cause
		}
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
	if err := e.n.r().AddNonvoter(raft.ServerID(e.memberID), raft.ServerAddress(e.t.Info.Address), 0, enrollCallTimeout).Error(); err != nil {
		return fmt.Errorf("add to the raft group: %w", err)
	}
	return nil
}

func (e *enrollment) catchUp(ctx context.Context, p *Progress) error {
	// Caught up: applied every command the primary has applied (raft's
	// last index may be a barrier or a configuration change, which no
	// member's database records).
	target := e.n.applied.Load()
	start := e.snapIndex
	began, lastAnswer := time.Now(), time.Now()
	for {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := e.n.peers.Status(sctx, e.t.Info.Address)
		cancel()
		if err == nil {
			lastAnswer = time.Now()
			if st.AppliedIndex >= target {
				p.Report(ctx, 100, fmt.Sprintf("applied up to %d", st.AppliedIndex))
				return nil
			}
			if target > start {
				p.Report(ctx, int((st.AppliedIndex-min(st.AppliedIndex, start))*100/(target-start)), fmt.Sprintf("applied %d of %d", st.AppliedIndex, target))
			}
		} else if time.Since(lastAnswer) > catchUpSilence {
			return fmt.Errorf("the replica has not answered for %s: %w", catchUpSilence, err)
		}
		if time.Since(began) > catchUpLimit {
			return fmt.Errorf("the replica did not catch up within %s (applied %d of %d; last error: %v)", catchUpLimit, st.AppliedIndex, target, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *enrollment) promote(ctx context.Context, p *Progress) error {
	// With one voter, a second one that does not answer costs the cluster
	// its majority at once (and the rollback needs a majority): make sure
	// the replica answers right before it gets a vote.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := e.n.peers.Status(sctx, e.t.Info.Address)
	cancel()
	if err != nil {
		return fmt.Errorf("the replica does not answer; it is not given a vote: %w", err)
	}
	if err := e.n.r().AddVoter(raft.ServerID(e.memberID), raft.ServerAddress(e.t.Info.Address), 0, enrollCallTimeout).Error(); err != nil {
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
	e.release()
	e.client.CloseIdleConnections()
	return nil
}

// rollback leaves the cluster as it was before a failed Add Replica. The
// replica may be unreachable (that may be why it failed): nothing here
// waits on it for long, and what it is not told it learns at the next try.
func (e *enrollment) rollback(ctx context.Context, failure error) {
	defer e.client.CloseIdleConnections()
	if e.added {
		if err := e.n.r().RemoveServer(raft.ServerID(e.memberID), 0, enrollCallTimeout).Error(); err != nil {
			e.n.log.Warn("remove the failed replica from raft", "err", err)
		}
		if err := e.n.ProposeData(ctx, CmdRemoveMember, "system", RemoveMember{MemberID: e.memberID}, nil); err != nil {
			e.n.log.Warn("remove the failed replica's member record", "err", err)
		}
	}
	e.release()
	if !e.prepared {
		return // the replica did not change for this enrollment (it may be another cluster's to add)
	}
	actx, cancel := context.WithTimeout(ctx, abortTimeout)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"reason": failure.Error()})
	if err := doJSON(actx, e.client, http.MethodPost, e.url("/node/v1/enroll/abort"), e.t.Auth, bytes.NewReader(body), "application/json", nil); err != nil {
		e.n.log.Info("the replica was not told that adding it failed", "replica", e.t.Address, "err", err)
	}
}

// settleEnrollment undoes what an Add Replica whose primary stopped mid-way
// left in the cluster: a replica that is in the raft configuration or the
// member list but never came online (it is still in Maintenance, or it
// never was promoted and does not answer) is removed, so that the cluster
// is as before and the replica can be added again. It returns a sentence
// for the operation's result.
func (n *Node) settleEnrollment(ctx context.Context, op store.Operation) Settlement {
	return Settlement{Message: n.undoEnrollment(ctx, op)}
}

func (n *Node) undoEnrollment(ctx context.Context, op store.Operation) string {
	var memberID, name, addr string
	evs, err := n.store.Events(ctx, store.EventFilter{Type: "ClusterReplicaEnrollmentStarted", Limit: 1000})
	if err != nil {
		return ""
	}
	for _, ev := range evs {
		if ev.OperationID == op.ID {
			memberID, name, addr = ev.Details["memberId"], ev.Details["replica"], ev.Details["address"]
		}
	}
	members, err := n.store.Members(ctx)
	if err != nil {
		return ""
	}
	var member *store.Member
	for i, m := range members {
		if (memberID != "" && m.ID == memberID) || (memberID == "" && addr != "" && strings.EqualFold(m.Address, addr)) {
			member = &members[i]
		}
	}
	if member != nil {
		memberID, addr = member.ID, member.Address
		if name == "" {
			name = member.Name
		}
	}
	if memberID == "" || memberID == n.ID() {
		return ""
	}
	inRaft, voter := false, false
	if f := n.r().GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == memberID {
				inRaft, voter = true, s.Suffrage == raft.Voter
				if addr == "" {
					addr = string(s.Address)
				}
			}
		}
	}
	if !inRaft && member == nil {
		return fmt.Sprintf(" %s is not in the cluster; it may still be in Maintenance: add it again.", name)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := n.peers.Status(sctx, addr)
	cancel()
	switch {
	case err == nil && st.State != StateMaintenance:
		return fmt.Sprintf(" %s finished joining and is a member (%s).", name, StateLabel(st.State))
	case err != nil && voter:
		return fmt.Sprintf(" %s was made a voting member but does not answer (%v): when it answers, check it, and Unjoin it if it stays in Maintenance.", name, err)
	}
	if inRaft {
		if err := n.r().RemoveServer(raft.ServerID(memberID), 0, enrollCallTimeout).Error(); err != nil {
			return fmt.Sprintf(" Removing the half-added %s from the raft group failed (%v).", name, err)
		}
	}
	if member != nil {
		if err := n.ProposeData(ctx, CmdRemoveMember, "system", RemoveMember{MemberID: memberID}, nil); err != nil {
			return fmt.Sprintf(" Removing the half-added %s from the members failed (%v).", name, err)
		}
	}
	return fmt.Sprintf(" The half-added %s was removed from the cluster; it stays in Maintenance: add it again.", name)
}

// CompareWith compares the replicated tables of this member and the member
// at addr at the same applied index: row counts and checksums.
func (n *Node) CompareWith(ctx context.Context, addr string, p *Progress) error {
	for attempt := 1; attempt <= 20; attempt++ {
		snap, err := n.store.BeginSnapshot(ctx)
		if err != nil {
			return err
		}
		index := snap.Index
		// Both members read their tables at the same time: with a large
		// table this halves the step. Both hash rows with PostgreSQL's
		// record hash, unless their servers' major versions differ.
		major, err := snap.PostgresMajor(ctx)
		if err != nil {
			snap.Close(ctx)
			return err
		}
		type answer struct {
			a   ChecksumsAnswer
			err error
		}
		peer := make(chan answer, 1)
		go func() {
			a, err := n.peers.Checksums(ctx, addr, index, major)
			peer <- answer{a, err}
		}()
		mine, err := snap.RecordHashChecksums(ctx)
		ans := <-peer
		if err == nil && ans.err == nil && ans.a.Method != ChecksumRecordHash {
			mine, err = snap.Checksums(ctx)
		}
		snap.Close(ctx)
		if err != nil {
			return err
		}
		theirs, err := ans.a, ans.err
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
		// The tables are identical, so is the audit log: its chain is
		// checked once, here.
		chain, err := n.VerifyAuditChain(ctx)
		if err != nil {
			return err
		}
		if p != nil {
			p.Report(ctx, 100, fmt.Sprintf("%d tables, %d rows identical at index %d; audit chain of %d events intact", len(mine), rows, index, chain.Checked))
		}
		return nil
	}
	return errors.New("the cluster kept changing while the tables were compared; try again")
}

// ChecksumsAt computes this member's checksums once it applied atLeast:
// record hashes when asked for them and this member's PostgreSQL has the
// major version postgresMajor, else MD5s.
func (n *Node) ChecksumsAt(ctx context.Context, atLeast uint64, method string, postgresMajor int) (ChecksumsAnswer, error) {
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
	if method == ChecksumRecordHash {
		if major, err := snap.PostgresMajor(ctx); err != nil {
			return ChecksumsAnswer{}, err
		} else if major == postgresMajor {
			sums, err := snap.RecordHashChecksums(ctx)
			return ChecksumsAnswer{Index: snap.Index, Checksums: sums, Method: ChecksumRecordHash}, err
		}
	}
	sums, err := snap.Checksums(ctx)
	return ChecksumsAnswer{Index: snap.Index, Checksums: sums, Method: ChecksumMD5}, err
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
