package handlers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"conclave/cluster"
	"conclave/store"
	"conclave/views"
)

// clusterData is what the cluster view shows that is the same for every
// viewer, read at most once a second (viewCache).
type clusterData struct {
	members    []cluster.MemberStatus
	operations []store.Operation
	subjects   map[string]string // operation ID → the member it is about
	// primaryChange is the last ClusterPrimaryChanged event, if any.
	primaryChange *store.Event
	links         []cluster.LinkStatus
	linksErr      error
	thresholds    cluster.LinkThresholds
}

func (h *Handlers) loadClusterData(ctx context.Context) (clusterData, error) {
	var d clusterData
	var err error
	if d.members, err = h.Node.MemberStatuses(ctx); err != nil {
		return d, err
	}
	if d.operations, err = h.Store.RecentOperations(ctx, 10); err != nil {
		return d, err
	}
	d.subjects = h.operationSubjects(ctx, d.operations)
	if evs, err := h.Store.Events(ctx, store.EventFilter{Type: "ClusterPrimaryChanged", Limit: 1}); err == nil && len(evs) > 0 {
		d.primaryChange = &evs[0]
	}
	d.links, d.linksErr = h.Node.Links(ctx)
	d.thresholds = h.linkThresholds(ctx)
	return d, nil
}

// ClusterPage is the cluster view.
func (h *Handlers) ClusterPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	data, err := h.clusterViews.get(ctx, "", h.loadClusterData)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	ms, ops := data.members, data.operations
	now := time.Now()
	p := views.ClusterPage{Page: h.page(r, "Cluster", "cluster")}
	isAdmin := p.User != nil && p.User.IsAdmin
	mode := h.Node.Mode()
	if r.URL.Query().Get("done") == "activated" && mode.State == "" {
		p.Flash = h.Node.Name() + " is activated: it is the writable primary of a cluster of its own."
	}
	p.Mode = modeBanner(mode, h.Node.Name(), isAdmin)
	p.AddReplica = h.addReplicaAction(ms, mode, isAdmin, p.Banner)
	if ev := data.primaryChange; ev != nil && isPrimary(ms, ev.Details["primary"]) {
		p.PrimaryChange, p.PrimarySince = primaryChange(*ev), ev.At
	}
	if st := h.Node.SelfState(); isAdmin && (st == cluster.StateReplicaNoQuorum || st == cluster.StatePrimaryNoQuorum) {
		p.Reset = views.Action{Show: true}
		p.Isolate = views.Action{Show: true}
	}
	voters := 0
	for _, m := range ms {
		if m.IsVoter {
			voters++
		}
		row := views.MemberRow{
			ID: m.ID, Name: m.Name, Address: m.Address, Role: m.Role, State: m.State, StateLabel: cluster.StateLabel(m.State),
			StateTone: stateTone(m.State), Version: m.Version, Health: m.Health, HealthReason: m.HealthReason,
			HealthTone: healthTone(m.Health), CheckedAt: m.CheckedAt, EnrolledSince: m.EnrolledSince, IsSelf: m.IsSelf, IsVoter: m.IsVoter,
			Uptime: "—", InQuorum: inQuorum(m.State),
			// Any member may start these (a replica forwards them to the
			// primary); their pages say why when they cannot run now.
			CanUnjoin:   isAdmin && mode.State == "" && m.Role == "Replica",
			CanFailover: isAdmin && mode.State == "" && m.Role == "Replica" && m.IsVoter,
		}
		if !m.UpSince.IsZero() {
			row.Uptime = views.Duration(now.Sub(m.UpSince))
		}
		p.Members = append(p.Members, row)
	}
	p.Summary = clusterSummary(ms)
	if mode.State == cluster.StateIsolated {
		p.Summary = offlineSummary(h.Node.Name())
	}
	switch mode.State {
	case cluster.StateMaintenance:
		p.Summary = h.Node.Name() + " has no cluster of its own while it is being added to one: it waits for the primary that adds it."
	case cluster.StateLeavingCluster:
		p.Summary = h.Node.Name() + " is leaving its cluster and no longer takes part in its consensus."
	}
	if mode.State == "" {
		// (An appliance in a mode of its own has its banner instead.)
		p.Tolerance = toleranceSentence(voters, onlineVoters(ms))
	}
	for _, op := range ops {
		p.Operations = append(p.Operations, operationRow(op, data.subjects[op.ID]))
	}
	p.Diagram = diagram(p.Members)
	if data.linksErr != nil {
		h.Log.Warn("links for the cluster view", "err", data.linksErr)
	} else {
		labelLinks(&p.Diagram, p.Members, data.links, data.thresholds) // link latency (network.go)
	}
	render(w, r, http.StatusOK, views.ClusterView(p))
}

// modeBanner explains a mode of this appliance on the cluster view; nil
// for an ordinary member.
func modeBanner(m cluster.Mode, name string, isAdmin bool) *views.ModeBanner {
	b := &views.ModeBanner{State: m.State, Since: m.Since}
	switch m.State {
	case cluster.StateStandaloneRO:
		b.Tone = "warn"
		b.Headline = name + " left its cluster and is read-only"
		b.Text = "It was unjoined and kept all its data, in a cluster of its own. Nothing can be changed here: no users, settings or password check-outs. " +
			"Activate it to make it a writable primary, but only if the cluster it left no longer manages the same accounts. " +
			"Or add it to a cluster again from that cluster's primary: its data is then replaced."
		b.Activate = isAdmin
	case cluster.StateMaintenance:
		b.Tone = "info"
		b.Headline = name + " is in Maintenance: it is being added to a cluster"
		b.Text = "It serves no one and accepts no changes until the primary has finished. Follow the progress on the primary's console."
		if strings.Contains(m.Reason, "failed") {
			b.Tone = "bad"
			b.Headline = "Adding " + name + " to a cluster failed"
			b.Text = "It is still in Maintenance and serves no one until a primary adds it again (one of this appliance's administrators approves again)."
		}
		b.Reason = m.Reason
		if m.ClusterName != "" && b.Reason == "" {
			b.Reason = "being added to cluster " + m.ClusterName
		}
	case cluster.StateLeavingCluster:
		b.Tone = "warn"
		b.Headline = name + " is leaving its cluster"
		b.Text = "In a moment it is Online Read-only, in a cluster of its own, with the data it has now."
		b.Reason = m.Reason
	default:
		return nil
	}
	return b
}

// addReplicaAction is the Add Replica button of the cluster view: for
// administrators, enabled on the primary of a working cluster, otherwise
// with the reason and, on a replica, the way to the primary.
func (h *Handlers) addReplicaAction(ms []cluster.MemberStatus, mode cluster.Mode, isAdmin bool, lock *views.Banner) views.Action {
	a := views.Action{Show: isAdmin}
	if !isAdmin {
		return a
	}
	switch {
	case mode.State == cluster.StateStandaloneRO:
		a.Reason = "This appliance left its cluster and is read-only: activate it first, or add it to another cluster from that cluster's primary."
	case mode.State != "":
		a.Reason = h.Node.ReadOnlyReason()
	case !h.Node.IsLeader():
		a.Reason = "Add Replica runs on the primary, and no primary is known now."
		for _, m := range ms {
			if m.Role == "Primary" && !m.IsSelf {
				a.Reason = "Add Replica runs on the primary, " + m.Name + "."
				a.LinkURL = "https://" + m.Address + "/cluster/add-replica"
				a.LinkLabel = "Open Add Replica on " + m.Name
			}
		}
	case lock != nil:
		a.Reason = "Wait until the running " + operationLabel(lock.Kind) + " has ended: one operation at a time."
		a.LinkURL = "/operations/" + lock.OperationID
		a.LinkLabel = "Follow it"
	}
	return a
}

func clusterSummary(ms []cluster.MemberStatus) string {
	primary := ""
	healthy := 0
	for _, m := range ms {
		if m.Role == "Primary" {
			primary = m.Name
		}
		if m.State == cluster.StateOnline || m.State == cluster.StateReplicaWithQuorum {
			healthy++
		}
	}
	if primary == "" {
		return fmt.Sprintf("No primary is known: %d of %d members are in contact. Changes are not possible until a primary is elected.", healthy, len(ms))
	}
	if len(ms) == 1 {
		return fmt.Sprintf("One appliance, %s, is the primary and is %s.", primary, cluster.StateLabel(ms[0].State))
	}
	return fmt.Sprintf("%d members; %s is the primary; %d of %d are online.", len(ms), primary, healthy, len(ms))
}

func onlineVoters(ms []cluster.MemberStatus) int {
	n := 0
	for _, m := range ms {
		if m.IsVoter && inQuorum(m.State) {
			n++
		}
	}
	return n
}

// inQuorum tells whether a member in this state takes part in consensus:
// the primary with its majority, a replica in contact, or an appliance
// that stands alone (read-only or not) as the only member of its cluster.
func inQuorum(state string) bool {
	switch state {
	case cluster.StateOnline, cluster.StateReplicaWithQuorum, cluster.StateStandaloneRO:
		return true
	}
	return false
}

// toleranceSentence says how many more members may fail, counting the
// voters that are online now, not only the configured ones.
func toleranceSentence(voters, online int) string {
	majority := voters/2 + 1
	spare := online - majority
	switch {
	case voters <= 1:
		return "With one member, the cluster stops if it fails. Add two replicas so that one member may fail without losing consensus."
	case online < majority:
		return fmt.Sprintf("Consensus is lost: %d of %d voting members are online and %d are needed.", online, voters, majority)
	case spare == 0 && online == voters:
		return fmt.Sprintf("No member of %d may fail without losing consensus. Add a member to tolerate one failure.", voters)
	case spare == 0:
		return fmt.Sprintf("No further member may fail: %d of %d voting members are online, and %d are needed for consensus.", online, voters, majority)
	}
	return fmt.Sprintf("%d of %d members may fail before consensus is lost.", spare, voters)
}

// diagram places the members: one in the middle, two side by side, three
// to five around an ellipse, the primary first (at the top, or on the left
// for two). Every pair of members has a link: they all probe each other;
// the primary's links are raft's replication paths.
func diagram(ms []views.MemberRow) views.Diagram {
	d := views.Diagram{Width: 760, Height: 460}
	n := len(ms)
	order := make([]views.MemberRow, 0, n)
	for _, m := range ms {
		if m.Role == "Primary" {
			order = append(order, m)
		}
	}
	for _, m := range ms {
		if m.Role != "Primary" {
			order = append(order, m)
		}
	}
	cx, cy := d.Width/2, d.Height/2
	for i, m := range order {
		x, y := cx, cy
		switch {
		case n == 2:
			x = cx - 210 + 420*i
		case n > 2:
			angle := -math.Pi/2 + 2*math.Pi*float64(i)/float64(n)
			x = cx + int(math.Round(260*math.Cos(angle)))
			y = cy + int(math.Round(160*math.Sin(angle)))
		}
		d.Nodes = append(d.Nodes, views.DiagramNode{X: x, Y: y, Name: m.Name, Role: m.Role, State: m.StateLabel, Tone: m.StateTone, IsPrimary: m.Role == "Primary", IsSelf: m.IsSelf})
	}
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			a, b := d.Nodes[i], d.Nodes[j]
			d.Links = append(d.Links, views.DiagramLink{X1: a.X, Y1: a.Y, X2: b.X, Y2: b.Y, Tone: linkTone(order[i], order[j]),
				Replication: a.IsPrimary || b.IsPrimary})
		}
	}
	return d
}

// linkTone: a link is down when either end does not answer, doubtful when
// either end cannot serve.
func linkTone(a, b views.MemberRow) string {
	switch {
	case a.State == cluster.StateUnreachable || b.State == cluster.StateUnreachable:
		return "bad"
	case a.StateTone == "bad" || b.StateTone == "bad":
		return "warn"
	}
	return "ok"
}

// operationStartEvents: the event that starts each kind of operation; its
// details name the member the operation is about.
var operationStartEvents = map[string]string{
	"Enroll":   "ClusterReplicaEnrollmentStarted",
	"Remove":   "ClusterReplicaRemovalStarted",
	"Failover": "ClusterFailoverStarted",
	"Reset":    "ClusterResetStarted",
}

func operationLabel(kind string) string { return views.OperationLabel(kind) }

// operationSubjects names the member each operation is about, from the
// events that started them.
func (h *Handlers) operationSubjects(ctx context.Context, ops []store.Operation) map[string]string {
	out := map[string]string{}
	seen := map[string]bool{}
	for _, op := range ops {
		typ, ok := operationStartEvents[op.Kind]
		if !ok || seen[typ] {
			continue
		}
		seen[typ] = true
		evs, err := h.Store.Events(ctx, store.EventFilter{Type: typ, Limit: 500})
		if err != nil {
			h.Log.Warn("events of operations", "err", err)
			continue
		}
		for _, e := range evs {
			switch {
			case e.Details["replica"] != "":
				out[e.OperationID] = e.Details["replica"]
			case e.Details["to"] != "" && e.Details["from"] != "":
				out[e.OperationID] = e.Details["from"] + " → " + e.Details["to"]
			case e.Details["to"] != "":
				out[e.OperationID] = e.Details["to"]
			}
		}
	}
	return out
}

func operationRow(op store.Operation, subject string) views.OperationRow {
	return views.OperationRow{ID: op.ID, Kind: op.Kind, Label: operationLabel(op.Kind), Subject: subject, State: op.State, Tone: opTone(op.State),
		Actor: op.Actor, StartedAt: op.StartedAt, EndedAt: op.EndedAt, Error: op.Error}
}

// OperationPage shows one operation's steps and progress.
func (h *Handlers) OperationPage(w http.ResponseWriter, r *http.Request) {
	op, err := h.Node.Operation(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	row := operationRow(op, h.operationSubjects(r.Context(), []store.Operation{op})[op.ID])
	title := row.Label
	if row.Subject != "" {
		title += ": " + row.Subject
	}
	p := views.OperationPage{Page: h.page(r, title, "cluster"), Operation: row, Running: op.EndedAt == nil, Current: -1}
	sum := 0
	for i, s := range op.Steps {
		step := views.StepRow{Number: i + 1, Name: s.Name, State: s.State, Tone: stepTone(s.State), Message: s.Message, Percent: s.Percent,
			StartedAt: s.StartedAt, EndedAt: s.EndedAt}
		if s.StartedAt != nil && s.EndedAt != nil {
			step.Took = took(s.EndedAt.Sub(*s.StartedAt))
		}
		switch s.State {
		case cluster.StepSucceeded:
			p.Done++
			sum += 100
		case cluster.StepRunning, cluster.StepFailed:
			if p.Current < 0 {
				p.Current, step.IsCurrent = i, true
			}
			if s.State == cluster.StepRunning {
				sum += s.Percent
			}
		}
		p.Steps = append(p.Steps, step)
	}
	if len(op.Steps) > 0 {
		p.Percent = sum / len(op.Steps)
	}
	if op.EndedAt != nil {
		p.Took = took(op.EndedAt.Sub(op.StartedAt))
	}
	if p.Running {
		p.Page.Refresh = 3
	}
	p.Outcome = operationOutcome(op, p, row.Subject, p.User != nil && p.User.IsAdmin)
	render(w, r, http.StatusOK, views.OperationView(p))
}

// took formats how long something took: milliseconds when short, a
// tenth of a second up to 10 s.
func took(d time.Duration) string {
	switch {
	case d < 0:
		return ""
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return views.Duration(d)
}

// operationOutcome says where an operation is, how it ended, and what to
// do next, in the words of its kind.
func operationOutcome(op store.Operation, p views.OperationPage, subject string, isAdmin bool) views.Outcome {
	who := subject
	if who == "" {
		who = "the member"
	}
	stepName := func() string {
		if p.Current < 0 {
			return ""
		}
		return fmt.Sprintf("step %d of %d, %s", p.Current+1, len(p.Steps), p.Steps[p.Current].Name)
	}
	o := views.Outcome{NextURL: "/", NextLabel: "Open the cluster view"}
	switch op.State {
	case cluster.OpSucceeded:
		o.Tone, o.Headline = "ok", "Succeeded"
		switch op.Kind {
		case "Enroll":
			o.Text = who + " is a replica of this cluster now: it has the cluster's data, votes, and shows as “Replica, in contact” in the cluster view."
		case "Remove":
			o.Text = who + " left the cluster. It kept its data, read-only (“Online Read-only”), in a cluster of its own; on its own console it can be activated, or added to a cluster again."
		case "Failover":
			o.Text = "The primary changed as asked. Writes go to the new primary; the old one is a replica now."
		case cluster.KindKeyRotation:
			o.Text = "Every secret is sealed under the new data key, and the older keys are removed from the key ring."
			o.NextURL, o.NextLabel = "/keys", "Open Keys"
		default:
			o.Text = "The operation ended without an error."
		}
	case cluster.OpFailed:
		o.Tone, o.Headline = "bad", "Failed"
		o.Text = views.Sentence(op.Error)
		if s := stepName(); s != "" {
			// The headline names the step; the text is its error.
			o.Headline = "Failed at " + s
			if msg := p.Steps[p.Current].Message; msg != "" {
				o.Text = views.Period(msg)
			}
		}
		failedFirst := p.Current <= 0
		switch op.Kind {
		case "Enroll":
			if failedFirst {
				o.Next = "Nothing was changed, in this cluster or on " + who + ". Fix the cause above, then start Add Replica again."
			} else {
				o.Next = "This cluster is as it was before: " + who + " was taken out again. " + who + " stays in Maintenance, serving no one, until it is added again. " +
					"Fix the cause above; the replica can be added again with Add Replica (one of its administrators approves again)."
			}
			if isAdmin {
				o.NextURL, o.NextLabel = "/cluster/add-replica", "Add Replica again"
			}
		case "Remove":
			if p.Current <= 1 {
				o.Next = who + " is still a member: nothing was removed. Fix the cause above and Unjoin it again."
			} else {
				o.Next = who + " may already be out of the cluster. Open the cluster view: if it is still listed, Unjoin it again; if not, check its state on its own console."
			}
		case cluster.KindKeyRotation:
			o.Next = "Every secret still opens: the new key seals new secrets, and those not re-sealed yet open with their older key, which stays in the key ring. Fix the cause above, then rotate again."
			o.NextURL, o.NextLabel = "/keys", "Open Keys"
		default:
			o.Next = "Check the cluster view for the members' states, fix the cause above, and start the operation again."
		}
	case cluster.OpResultUnknown:
		o.Tone, o.Headline = "bad", "Result unknown"
		o.Text = views.Sentence(op.Error)
		o.Next = "What it did so far stays done. Compare the members and their states in the cluster view with what the operation meant to do before you start it again."
	default:
		o.Tone, o.Headline = "info", "Running"
		if s := stepName(); s != "" {
			o.Headline = "Running " + s
		} else {
			o.Headline = "Starting"
		}
		o.Text = "It runs on the primary and goes on if you leave this page; the banner at the top of every page follows it."
		o.NextURL, o.NextLabel = "", ""
	}
	return o
}

func stepTone(s string) string {
	switch s {
	case cluster.StepSucceeded:
		return "ok"
	case cluster.StepFailed:
		return "bad"
	case cluster.StepRunning:
		return "info"
	}
	return ""
}

// memberJSON is a member in GET /api/v1/cluster/members.
type memberJSON struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Address       string    `json:"address"`
	Role          string    `json:"role"`
	State         string    `json:"state"`
	Version       string    `json:"version"`
	Health        string    `json:"health"`
	HealthReason  string    `json:"healthReason"`
	EnrolledSince time.Time `json:"enrolledSince"`
	IsVoter       bool      `json:"isVoter"`
	IsLeader      bool      `json:"isLeader"`
	CheckedAt     time.Time `json:"checkedAt"`
}

// APIMembers is GET /api/v1/cluster/members.
func (h *Handlers) APIMembers(w http.ResponseWriter, r *http.Request) {
	ms, err := h.Node.MemberStatuses(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]memberJSON, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberJSON{
			ID: m.ID, Name: m.Name, Address: m.Address, Role: m.Role, State: m.State, Version: m.Version,
			Health: m.Health, HealthReason: m.HealthReason, EnrolledSince: m.EnrolledSince, IsVoter: m.IsVoter,
			IsLeader: m.Role == "Primary", CheckedAt: m.CheckedAt,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

type statusJSON struct {
	Operation   string     `json:"operation"`
	OperationID string     `json:"operationId,omitempty"`
	OwnerID     string     `json:"ownerId,omitempty"`
	Actor       string     `json:"actor,omitempty"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
}

// APIStatus is GET /api/v1/cluster/status: the operation holding the lock.
func (h *Handlers) APIStatus(w http.ResponseWriter, r *http.Request) {
	lock, err := h.Store.Lock(r.Context())
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusOK, statusJSON{Operation: "None"})
		return
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	since := lock.Since
	writeJSON(w, http.StatusOK, statusJSON{Operation: lock.Kind, OperationID: lock.OperationID, OwnerID: lock.OwnerID, Actor: lock.Actor, StartedAt: &since})
}

type operationJSON struct {
	ID        string       `json:"id"`
	Kind      string       `json:"kind"`
	State     string       `json:"state"`
	OwnerID   string       `json:"ownerId"`
	Actor     string       `json:"actor"`
	StartedAt time.Time    `json:"startedAt"`
	EndedAt   *time.Time   `json:"endedAt"`
	Steps     []store.Step `json:"steps"`
	Error     string       `json:"error"`
}

// APIOperation is GET /api/v1/operations/{id}.
func (h *Handlers) APIOperation(w http.ResponseWriter, r *http.Request) {
	op, err := h.Node.Operation(r.Context(), chi.URLParam(r, "id"))
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, apiError{Message: "no operation with this id", Field: "id"})
		return
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, operationJSON{ID: op.ID, Kind: op.Kind, State: op.State, OwnerID: op.OwnerID, Actor: op.Actor, StartedAt: op.StartedAt, EndedAt: op.EndedAt, Steps: op.Steps, Error: op.Error})
}

// primaryChange says how the primary named in a ClusterPrimaryChanged event
// became the primary.
func primaryChange(ev store.Event) string {
	d := ev.Details
	switch d["reason"] {
	case "failover":
		return fmt.Sprintf("%s became the primary by Failover from %s (by %s) at", d["primary"], d["previous"], ev.Actor)
	case "election":
		return fmt.Sprintf("%s was elected primary when %s stopped answering or lost its majority, at", d["primary"], d["previous"])
	}
	return d["primary"] + " became the primary at"
}

func isPrimary(ms []cluster.MemberStatus, name string) bool {
	for _, m := range ms {
		if m.Role == "Primary" && m.Name == name {
			return true
		}
	}
	return false
}
