package web_test

// The safety of the access-request workflow: while the cluster has
// consensus, two people never hold the same account at once, whatever
// the network and the primary do.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"conclave/internal/testapp"
	"conclave/store"
	"conclave/workflow"
)

// TestOneHolderUnderFaults runs requesters and approvers against three
// members (each request on a member chosen at random: replicas forward
// them) while random faults hit the cluster: partitions, one-way cuts, a
// frozen member, a member or the primary stopped and started again, the
// primary cut off from the others. Meanwhile the primary's expiry runs now
// and then with a time far ahead, so check-outs also end while their
// holders still use them.
//
// Every check-out (a request Available at once, or approved), every
// release of a password and every check-in is recorded as the clients saw
// it, with the times of call and answer. Afterwards:
//
//   - the history is linearizable (porcupine) against a lease per account:
//     a check-out succeeds only while the account is free, a release and a
//     check-in only for its holder, a refusal "X has it checked out" only
//     while a request of X holds it;
//   - on every member, the events of each account in raft order never
//     start a holding interval while another is open, and at most one
//     request per account is Available.
//
// Answers that leave the outcome open (a timeout, a closed connection, a
// 5xx) are settled from the cluster's own record at the end: a request
// carries its client's operation in its reason. The faults come from a
// fixed seed, printed; CONCLAVE_SAFETY_SEED=N plays another sequence,
// CONCLAVE_SAFETY_ROUNDS=N more rounds.
func TestOneHolderUnderFaults(t *testing.T) {
	rng, rounds := faultSeed(t, 20261146, "CONCLAVE_SAFETY_SEED", 5, "CONCLAVE_SAFETY_ROUNDS")
	c := startFaultCluster(t, "alpha", "beta", "gamma")
	alpha := c.apps["alpha"]
	admin := alpha.AdminToken(t)

	// Four requesters, two approvers; two accounts checked out without
	// approval, one that needs it (requests for it wait, and approvals
	// race each other).
	requesters := []string{"rita", "ravi", "rosa", "rune"}
	approvers := []string{"abel", "anna"}
	tokens := map[string]string{}
	for _, u := range requesters {
		alpha.CreateUser(t, u, secPassword, "Requester")
		tokens[u] = alpha.Token(t, u, secPassword)
	}
	for _, u := range approvers {
		alpha.CreateUser(t, u, secPassword, "Approver")
		tokens[u] = alpha.Token(t, u, secPassword)
	}
	var asset struct{ ID string }
	if status := alpha.JSON(t, admin, http.MethodPost, "/api/v1/assets", map[string]string{"name": "vault", "address": "10.9.0.1", "platform": "Linux"}, &asset); status != http.StatusCreated {
		t.Fatalf("create asset: status %d", status)
	}
	accounts := map[string]string{} // ID → name
	var direct, queued []string
	for i, name := range []string{"root", "oracle", "backup"} {
		var a struct{ ID string }
		if status := alpha.JSON(t, admin, http.MethodPost, "/api/v1/accounts", map[string]string{"assetId": asset.ID, "username": name, "password": "initial-" + name}, &a); status != http.StatusCreated {
			t.Fatalf("create account %s: status %d", name, status)
		}
		accounts[a.ID] = name
		if i < 2 {
			direct = append(direct, a.ID)
		} else {
			queued = append(queued, a.ID)
		}
	}
	for _, p := range []map[string]any{
		{"name": "Direct", "accountIds": direct, "requesters": []string{"Requester"}, "approvers": []string{}, "approvalRequired": false, "durationMinutes": 60, "changeAfterCheckin": true},
		{"name": "Queued", "accountIds": queued, "requesters": []string{"Requester"}, "approvers": approvers, "approvalRequired": true, "durationMinutes": 60, "changeAfterCheckin": false},
	} {
		if status := alpha.JSON(t, admin, http.MethodPost, "/api/v1/policies", p, nil); status != http.StatusCreated {
			t.Fatalf("create policy %s: status %d", p["name"], status)
		}
	}
	// Every member has the users, tokens and policies before the clients start.
	for _, app := range c.running()[1:] {
		waitSameData(t, alpha, app)
	}

	h := &holderHistory{start: time.Now()}
	c.background(c.watchLeaders)
	for i, u := range requesters {
		cl := &safetyClient{c: c, h: h, user: u, token: tokens[u], id: i, rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(i)))}
		c.background(func(stop chan struct{}) { cl.request(stop, direct, queued) })
	}
	for i, u := range approvers {
		cl := &safetyClient{c: c, h: h, user: u, token: tokens[u], id: len(requesters) + i, rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(i)))}
		c.background(cl.approve)
	}
	c.background(func(stop chan struct{}) { h.expire(c, stop) })

	for round := range rounds {
		c.playFault(rng, round, faultIsolatePrimary+1)
	}
	c.halt()

	// Settle: the same data everywhere, then read the record.
	apps := c.running()
	primary := waitNewPrimary(t, apps...)
	for _, app := range apps {
		if app != primary {
			waitSameData(t, primary, app)
		}
	}
	for _, app := range apps {
		checkRaftOrder(t, app, accounts)
	}
	ops, requesterOf := h.settle(t, primary)
	counts := map[string]int{}
	for _, op := range ops {
		in, out := op.Input.(leaseInput), op.Output.(leaseOutput)
		counts[in.kind+" "+string(out)]++
	}
	t.Logf("%d operations recorded (%v), %d answers left open; primaries by raft term: %v", len(ops), counts, h.open, c.leaders)
	for reason, n := range h.reasons {
		t.Logf("  %d× %s", n, reason)
	}
	if counts["acquire ok"] == 0 || counts["release ok"] == 0 {
		t.Fatalf("the clients checked out %d times and in %d times: the test exercised nothing", counts["acquire ok"], counts["release ok"])
	}
	model := leaseModel(accounts, requesterOf)
	res, info := porcupine.CheckOperationsVerbose(model, ops, 20*time.Second)
	switch res {
	case porcupine.Ok:
		t.Logf("the history of %d operations is linearizable", len(ops))
	case porcupine.Unknown:
		t.Errorf("the linearizability check did not finish in 20 s")
	default:
		path := filepath.Join(t.ArtifactDir(), "holders.html")
		if err := porcupine.VisualizePath(model, info, path); err != nil {
			t.Logf("visualize: %v", err)
		}
		t.Errorf("the history is not linearizable: no order of the operations gives each account one holder at a time and explains every answer "+
			"(two holders, a password released to a request that no longer held the account, a refusal while free …); see %s", path)
	}
}

// --- the history

// leaseInput is one operation on the lease of an account. The holder is a
// request: an account is held by its Available request.
type leaseInput struct {
	account string
	kind    string // acquire, release (check-in), check (password release), expire
	request string // the request's ID; for a creation that left no answer, found at the end
	tag     string // the client's operation, the request's reason (creations)
	by      string // who acts: requester, approver, "system"
	holder  string // for a refusal "X has it checked out": X
}

// leaseOutput is how an operation ended.
type leaseOutput string

const (
	outOK      leaseOutput = "ok"
	outHeld    leaseOutput = "held"    // acquire refused: someone holds the account
	outNotHeld leaseOutput = "notheld" // release or check refused: the request does not hold it
	outOpen    leaseOutput = "open"    // no answer, or one that does not tell
)

// holderHistory collects the operations the clients saw.
type holderHistory struct {
	start   time.Time
	mu      sync.Mutex
	ops     []porcupine.Operation
	open    int
	reasons map[string]int
	// expiries are the expiry runs: the time each ran with, and its window.
	expiries map[int64][2]int64
}

func (h *holderHistory) now() int64 { return int64(time.Since(h.start)) }

func (h *holderHistory) add(client int, in leaseInput, out leaseOutput, call, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if out == outOpen {
		h.open++
		ret = math.MaxInt64
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
}

func (h *holderHistory) note(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reasons == nil {
		h.reasons = map[string]int{}
	}
	h.reasons[reason]++
}

// expire runs the primary's expiry every second or so with a time two
// hours ahead, so that every check-out then open is due, until stop.
func (h *holderHistory) expire(c *faultCluster, stop chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(1200 * time.Millisecond):
		}
		c.mu.Lock()
		var wf *workflow.Service
		for _, name := range c.names {
			if app := c.apps[name]; !c.offline[name] && app.Node.SelfState() == "Online" {
				wf = app.Workflow
			}
		}
		c.mu.Unlock()
		if wf == nil {
			continue
		}
		at := h.start.Add(2*time.Hour + time.Duration(i)*time.Second).UTC().Truncate(time.Microsecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		call := h.now()
		_, err := wf.ExpireDue(ctx, at)
		ret := h.now()
		cancel()
		if err != nil {
			ret = math.MaxInt64 // some of it may have been applied
		}
		h.mu.Lock()
		if h.expiries == nil {
			h.expiries = map[int64][2]int64{}
		}
		h.expiries[at.UnixMicro()] = [2]int64{call, ret}
		h.mu.Unlock()
	}
}

// --- the clients

// safetyClient is one person using the JSON API of any member.
type safetyClient struct {
	c           *faultCluster
	h           *holderHistory
	user, token string
	id          int
	rng         *rand.Rand
	http        *http.Client
	ops         int
}

// call sends a request to a member chosen at random and returns the
// status and body; status 0 is no answer.
func (cl *safetyClient) call(method, path string, body any) (int, []byte) {
	if cl.http == nil {
		cl.http = &http.Client{Timeout: 4 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	up := cl.c.running()
	app := up[cl.rng.IntN(len(up))]
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, app.URL+path, r)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+cl.token)
	resp, err := cl.http.Do(req)
	if err != nil {
		cl.h.note(fmt.Sprintf("%s %s: no answer: %s", method, pathKind(path), shortErr(err)))
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		json.Unmarshal(raw, &e)
		if heldBy(e.Error) != "" {
			e.Error = "… has the account checked out"
		}
		cl.h.note(fmt.Sprintf("%s %s: %d %.100s", method, pathKind(path), resp.StatusCode, e.Error))
	}
	return resp.StatusCode, raw
}

// pathKind is a path without its request ID, to count answers by kind.
func pathKind(path string) string {
	parts := strings.Split(path, "/")
	if len(parts) > 4 {
		parts[4] = "{id}"
	}
	return strings.Join(parts, "/")
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// refusal is a definite "no" from the workflow's rules (409 or 422); the
// message says which.
func refusal(status int, body []byte) (string, bool) {
	if status != http.StatusConflict && status != http.StatusUnprocessableEntity {
		return "", false
	}
	var e struct{ Error string }
	json.Unmarshal(body, &e)
	return e.Error, true
}

// heldBy is the holder a refusal names ("rita has root@vault checked out
// until …"), or "".
func heldBy(msg string) string {
	if name, _, ok := strings.Cut(msg, " has "); ok && strings.Contains(msg, " checked out until ") {
		return name
	}
	return ""
}

// unavailable is a 503 the workflow gives before proposing anything (the
// member has no consensus, is in Maintenance …): nothing happened.
func unavailable(status int, body []byte) bool {
	return status == http.StatusServiceUnavailable && bytes.Contains(body, []byte("Access requests are not possible"))
}

type requestAnswer struct {
	ID, AccountID, State, Requester string
}

// request is a requester's loop: check out an account (at once, or by a
// request that waits for approval), see its password, check it in.
func (cl *safetyClient) request(stop chan struct{}, direct, queued []string) {
	waiting := map[string]string{} // account → a request of ours that waits for approval
	for {
		select {
		case <-stop:
			return
		default:
		}
		// A request approved meanwhile is ours to use.
		for acct, id := range waiting {
			status, body := cl.call(http.MethodGet, "/api/v1/access-requests/"+id, nil)
			var r requestAnswer
			if status == http.StatusOK && json.Unmarshal(body, &r) == nil && r.State != "Pending" {
				delete(waiting, acct)
				if r.State == "Available" {
					cl.hold(stop, acct, id)
				}
			}
		}
		acct := append(append([]string(nil), direct...), queued...)[cl.rng.IntN(len(direct)+len(queued))]
		if _, ok := waiting[acct]; ok {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		cl.ops++
		tag := fmt.Sprintf("safety %s op %d", cl.user, cl.ops)
		in := leaseInput{account: acct, kind: "acquire", tag: tag, by: cl.user}
		isDirect := slices.Contains(direct, acct)
		call := cl.h.now()
		status, body := cl.call(http.MethodPost, "/api/v1/access-requests", map[string]string{"accountId": acct, "reason": tag})
		ret := cl.h.now()
		var r requestAnswer
		switch msg, refused := refusal(status, body); {
		case status == http.StatusCreated && json.Unmarshal(body, &r) == nil:
			if !isDirect {
				waiting[acct] = r.ID // the approver's approval is the check-out
				continue
			}
			// Checked out at once; the test's own expiry, two hours
			// ahead, may have ended it before the answer read it back.
			if r.State != "Available" && r.State != "Expired" {
				panic(fmt.Sprintf("a request without approval is %s", r.State))
			}
			in.request = r.ID
			cl.h.add(cl.id, in, outOK, call, ret)
			cl.hold(stop, acct, r.ID)
		case refused && heldBy(msg) != "":
			if isDirect {
				in.holder = heldBy(msg)
				cl.h.add(cl.id, in, outHeld, call, ret)
			}
			if heldBy(msg) == cl.user {
				cl.adopt(stop, acct, waiting) // an earlier request of ours, whose answer we never got
			}
		case refused && strings.Contains(msg, "open request"):
			cl.adopt(stop, acct, waiting)
		case refused, unavailable(status, body):
			// Refused before anything changed.
		default:
			if isDirect {
				cl.h.add(cl.id, in, outOpen, call, ret) // settled at the end
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// adopt finds a request of ours for the account that is open although we
// never heard of it (its answer was lost), and uses it or waits for its
// approval.
func (cl *safetyClient) adopt(stop chan struct{}, acct string, waiting map[string]string) {
	status, body := cl.call(http.MethodGet, "/api/v1/access-requests?scope=mine", nil)
	var rs []requestAnswer
	if status != http.StatusOK || json.Unmarshal(body, &rs) != nil {
		return
	}
	for _, r := range rs {
		switch {
		case r.AccountID == acct && r.State == "Available":
			cl.hold(stop, acct, r.ID)
			return
		case r.AccountID == acct && r.State == "Pending":
			waiting[acct] = r.ID
			return
		}
	}
	time.Sleep(50 * time.Millisecond)
}

// hold uses a check-out: the password now and then, then the check-in,
// repeated until its answer is definite.
func (cl *safetyClient) hold(stop chan struct{}, acct, id string) {
	for range 1 + cl.rng.IntN(2) {
		call := cl.h.now()
		status, body := cl.call(http.MethodGet, "/api/v1/access-requests/"+id+"/password", nil)
		ret := cl.h.now()
		in := leaseInput{account: acct, kind: "check", request: id, by: cl.user}
		if status == http.StatusOK {
			cl.h.add(cl.id, in, outOK, call, ret)
		} else if msg, refused := refusal(status, body); refused && strings.HasPrefix(msg, "the request is ") && strings.Contains(msg, "make a new request") {
			// Ended (checked in or expired): not "its time ended", which
			// a request still Available may say.
			cl.h.add(cl.id, in, outNotHeld, call, ret)
			break
		}
		time.Sleep(time.Duration(cl.rng.IntN(30)) * time.Millisecond)
	}
	var giveUp <-chan time.Time // once the test stops: in 3 s
	for {
		call := cl.h.now()
		status, body := cl.call(http.MethodPost, "/api/v1/access-requests/"+id+"/checkin", nil)
		ret := cl.h.now()
		in := leaseInput{account: acct, kind: "release", request: id, by: cl.user}
		msg, refused := refusal(status, body)
		switch {
		case status == http.StatusOK:
			cl.h.add(cl.id, in, outOK, call, ret)
			return
		case refused && strings.Contains(msg, "not checked out"):
			cl.h.add(cl.id, in, outNotHeld, call, ret)
			return
		case refused || unavailable(status, body):
		default:
			cl.h.add(cl.id, in, outOpen, call, ret)
		}
		select {
		case <-giveUp:
			return
		case <-stop:
			if giveUp == nil {
				giveUp = time.After(3 * time.Second)
			}
			time.Sleep(50 * time.Millisecond)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// approve is an approver's loop: approve what waits, racing the other
// approver.
func (cl *safetyClient) approve(stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(10+cl.rng.IntN(40)) * time.Millisecond):
		}
		status, body := cl.call(http.MethodGet, "/api/v1/access-requests?scope=approvals", nil)
		var rs []requestAnswer
		if status != http.StatusOK || json.Unmarshal(body, &rs) != nil {
			continue
		}
		for _, i := range cl.rng.Perm(len(rs)) {
			r := rs[i]
			in := leaseInput{account: r.AccountID, kind: "acquire", request: r.ID, by: cl.user}
			call := cl.h.now()
			status, body := cl.call(http.MethodPost, "/api/v1/access-requests/"+r.ID+"/approve", nil)
			ret := cl.h.now()
			switch msg, refused := refusal(status, body); {
			case status == http.StatusOK:
				var a requestAnswer
				json.Unmarshal(body, &a)
				// Checked out by the approval; its requester (who polls
				// it) or the test's expiry may have ended it before the
				// answer read it back.
				if a.State != "Available" && a.State != "CheckedIn" && a.State != "Expired" {
					panic(fmt.Sprintf("an approved request is %s", a.State))
				}
				cl.h.add(cl.id, in, outOK, call, ret)
			case refused && heldBy(msg) != "":
				in.holder = heldBy(msg)
				cl.h.add(cl.id, in, outHeld, call, ret)
			case refused, unavailable(status, body), status == http.StatusNotFound:
				// Decided by the other approver, or not yet on this member.
			default:
				cl.h.add(cl.id, in, outOpen, call, ret)
			}
		}
	}
}

// --- settling and checking

// settle completes the history from the cluster's record, read on the
// primary once every member holds the same data: open creations become
// the request they made (or are dropped when they made none), open
// approvals are kept only by the approver who decided, and the expiry
// runs become one operation per request they expired. It also returns who
// made each request.
func (h *holderHistory) settle(t *testing.T, primary *testapp.App) ([]porcupine.Operation, map[string]string) {
	t.Helper()
	ctx := t.Context()
	reqs, err := primary.Store.Requests(ctx, store.RequestFilter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	byReason, byID := map[string]store.AccessRequest{}, map[string]store.AccessRequest{}
	requesterOf := map[string]string{}
	for _, r := range reqs {
		byReason[r.Reason], byID[r.ID] = r, r
		requesterOf[r.ID] = r.Requester
	}
	var out []porcupine.Operation
	for _, op := range h.ops {
		in, res := op.Input.(leaseInput), op.Output.(leaseOutput)
		switch {
		case in.kind == "acquire" && in.tag != "":
			r, made := byReason[in.tag]
			switch {
			case res == outOK && (!made || r.ID != in.request):
				t.Errorf("%s was answered with request %s, which the record does not have", in.tag, in.request)
			case res == outHeld && made:
				t.Errorf("%s was refused (%s holds the account), yet the record has its request %s", in.tag, in.holder, r.ID)
			case res == outOpen && !made:
				continue // it never happened
			case res == outOpen:
				in.request = r.ID
				res = outOK // a request without approval is made Available
			}
		case in.kind == "acquire" && res == outOpen:
			if r := byID[in.request]; r.DecidedBy != in.by || r.State == store.RequestDenied {
				continue // the other approver decided, or nobody did
			}
		}
		op.Input, op.Output = in, res
		out = append(out, op)
	}
	expired, err := eventsOfTypeIn(ctx, primary.Store, workflow.EvRequestExpired)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range expired {
		w, ok := h.expiries[e.At.UnixMicro()]
		if !ok {
			t.Errorf("request %s expired at %s, by no expiry run of the test", e.Details["requestId"], e.At)
			continue
		}
		r := byID[e.Details["requestId"]]
		out = append(out, porcupine.Operation{ClientId: 99, Input: leaseInput{account: r.AccountID, kind: "expire", request: r.ID, by: "system"}, Output: outOK, Call: w[0], Return: w[1]})
	}
	return out, requesterOf
}

// leaseModel is one lease per account whose holder is a request (made by
// requesterOf[request]); it is nondeterministic only for operations whose
// outcome nobody saw (a check-in retried after a lost answer).
func leaseModel(accounts, requesterOf map[string]string) porcupine.Model {
	m := porcupine.NondeterministicModel{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			for _, op := range history {
				a := op.Input.(leaseInput).account
				by[a] = append(by[a], op)
			}
			var out [][]porcupine.Operation
			for _, ops := range by {
				out = append(out, ops)
			}
			return out
		},
		Init: func() []any { return []any{""} },
		Step: func(state, input, output any) []any {
			holder, in, out := state.(string), input.(leaseInput), output.(leaseOutput)
			switch in.kind + " " + string(out) {
			case "acquire ok":
				if holder == "" {
					return []any{in.request}
				}
			case "acquire held": // held, by whom the refusal names
				if holder != "" && (in.holder == "" || in.holder == requesterOf[holder]) {
					return []any{holder}
				}
			case "acquire open":
				if holder == "" {
					return []any{"", in.request}
				}
				return []any{holder}
			case "release ok", "expire ok":
				if holder == in.request {
					return []any{""}
				}
			case "release notheld", "check notheld":
				if holder != in.request {
					return []any{holder}
				}
			case "release open":
				if holder == in.request {
					return []any{holder, ""}
				}
				return []any{holder}
			case "check ok":
				if holder == in.request {
					return []any{holder}
				}
			}
			return nil
		},
		Equal: func(a, b any) bool { return a == b },
		DescribeOperation: func(input, output any) string {
			in := input.(leaseInput)
			s := fmt.Sprintf("%s %s of %s by %s → %s", in.kind, short(in.request), accounts[in.account], in.by, output)
			if in.holder != "" {
				s += " (" + in.holder + ")"
			}
			return s
		},
		DescribeState: func(state any) string {
			if state == "" {
				return "free"
			}
			return "held by " + short(state.(string)) + " of " + requesterOf[state.(string)]
		},
	}
	return m.ToModel()
}

func short(id string) string { return id[:min(8, len(id))] }

// checkRaftOrder checks one member's record: in raft order, a check-out
// of an account (a request made Available at once, or approved) never
// comes while another of the same account is open, and a check-in or an
// expiry ends the open one; at most one request per account is Available.
func checkRaftOrder(t *testing.T, app *testapp.App, accounts map[string]string) {
	t.Helper()
	ctx := t.Context()
	reqs, err := app.Store.Requests(ctx, store.RequestFilter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	account := map[string]string{}
	available := map[string]int{}
	for _, r := range reqs {
		account[r.ID] = r.AccountID
		if r.State == store.RequestAvailable {
			available[r.AccountID]++
		}
	}
	for acct, n := range available {
		if n > 1 {
			t.Errorf("%s: %d requests for %s are Available", app.Cfg.Name, n, accounts[acct])
		}
	}
	var evs []store.Event
	for _, typ := range []string{workflow.EvRequestCreated, workflow.EvRequestApproved, workflow.EvRequestCheckedIn, workflow.EvRequestExpired} {
		e, err := eventsOfTypeIn(ctx, app.Store, typ)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e...)
	}
	slices.SortStableFunc(evs, func(a, b store.Event) int { return cmp.Compare(a.RaftIndex, b.RaftIndex) })
	holder := map[string]string{} // account → request
	intervals, wrong := 0, 0
	for _, e := range evs {
		if wrong >= 5 {
			t.Errorf("%s: and more; the first are above", app.Cfg.Name)
			break
		}
		id := e.Details["requestId"]
		acct := account[id]
		switch {
		case e.Type == workflow.EvRequestCreated && e.Details["approval"] != "not required":
			continue // waits for approval
		case e.Type == workflow.EvRequestCreated, e.Type == workflow.EvRequestApproved:
			if h := holder[acct]; h != "" {
				wrong++
				t.Errorf("%s: at raft index %d request %s checks %s out while request %s holds it", app.Cfg.Name, e.RaftIndex, short(id), accounts[acct], short(h))
			}
			holder[acct] = id
			intervals++
		default:
			if h := holder[acct]; h != id {
				wrong++
				t.Errorf("%s: at raft index %d request %s ends (%s), but the holder of %s is %q", app.Cfg.Name, e.RaftIndex, short(id), e.Type, accounts[acct], short(h))
			}
			holder[acct] = ""
		}
	}
	if intervals == 0 {
		t.Errorf("%s: no check-out in the record", app.Cfg.Name)
	}
}

// eventsOfTypeIn reads every event of a type from a member's store, page
// by page (the store answers at most 1,000, newest first).
func eventsOfTypeIn(ctx context.Context, st *store.Store, typ string) ([]store.Event, error) {
	seen := map[string]bool{}
	var out []store.Event
	f := store.EventFilter{Type: typ, Limit: 1000}
	for {
		page, err := st.Events(ctx, f)
		if err != nil {
			return nil, err
		}
		added := 0
		for _, e := range page {
			if !seen[e.ID] {
				seen[e.ID] = true
				out = append(out, e)
				added++
			}
		}
		if len(page) < f.Limit || added == 0 {
			return out, nil
		}
		// The next page: up to the oldest of this one, included (events
		// of one time may straddle the pages).
		f.Until = page[len(page)-1].At.Add(time.Microsecond)
	}
}
