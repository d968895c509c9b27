package handlers

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"conclave/cluster"
	"conclave/store"
	"conclave/views"
)

// ClusterPage is the cluster view.
func (h *Handlers) ClusterPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ms, err := h.Node.MemberStatuses(ctx)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	ops, err := h.Store.RecentOperations(ctx, 10)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	now := time.Now()
	p := views.ClusterPage{Page: h.page(r, "Cluster", "cluster")}
	voters := 0
	for _, m := range ms {
		if m.IsVoter {
			voters++
		}
		row := views.MemberRow{
			ID: m.ID, Name: m.Name, Address: m.Address, Role: m.Role, State: m.State, StateLabel: cluster.StateLabel(m.State),
			StateTone: stateTone(m.State), Version: m.Version, Health: m.Health, HealthReason: m.HealthReason,
			HealthTone: healthTone(m.Health), CheckedAt: m.CheckedAt, EnrolledSince: m.EnrolledSince, IsSelf: m.IsSelf, IsVoter: m.IsVoter,
			Uptime: "—",
		}
		if !m.UpSince.IsZero() {
			row.Uptime = views.Duration(now.Sub(m.UpSince))
		}
		p.Members = append(p.Members, row)
	}
	p.Summary = clusterSummary(ms)
	p.Tolerance = toleranceSentence(voters, onlineVoters(ms))
	for _, op := range ops {
		p.Operations = append(p.Operations, operationRow(op))
	}
	p.Diagram = diagram(p.Members)
	render(w, r, http.StatusOK, views.ClusterView(p))
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
		if m.IsVoter && (m.State == cluster.StateOnline || m.State == cluster.StateReplicaWithQuorum) {
			n++
		}
	}
	return n
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

// diagram places members on a circle (one member in the middle).
func diagram(ms []views.MemberRow) views.Diagram {
	d := views.Diagram{Width: 720, Height: 300}
	n := len(ms)
	cx, cy := d.Width/2, d.Height/2
	for i, m := range ms {
		x, y := cx, cy
		if n > 1 {
			angle := -math.Pi/2 + 2*math.Pi*float64(i)/float64(n)
			x = cx + int(250*math.Cos(angle))
			y = cy + int(95*math.Sin(angle))
		}
		d.Nodes = append(d.Nodes, views.DiagramNode{X: x, Y: y, Name: m.Name, Role: m.Role, State: m.StateLabel, Tone: m.StateTone, IsPrimary: m.Role == "Primary", IsSelf: m.IsSelf})
	}
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			a, b := d.Nodes[i], d.Nodes[j]
			d.Links = append(d.Links, views.DiagramLink{X1: a.X, Y1: a.Y, X2: b.X, Y2: b.Y, Tone: "info"})
		}
	}
	return d
}

func operationRow(op store.Operation) views.OperationRow {
	return views.OperationRow{ID: op.ID, Kind: op.Kind, State: op.State, Tone: opTone(op.State), Actor: op.Actor, StartedAt: op.StartedAt, EndedAt: op.EndedAt, Error: op.Error}
}

// OperationPage shows one operation's steps and progress.
func (h *Handlers) OperationPage(w http.ResponseWriter, r *http.Request) {
	op, err := h.Store.Operation(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	p := views.OperationPage{Page: h.page(r, op.Kind, "cluster"), Operation: operationRow(op), Running: op.EndedAt == nil}
	for _, s := range op.Steps {
		p.Steps = append(p.Steps, views.StepRow{Name: s.Name, State: s.State, Tone: stepTone(s.State), Message: s.Message, Percent: s.Percent, StartedAt: s.StartedAt, EndedAt: s.EndedAt})
	}
	render(w, r, http.StatusOK, views.OperationView(p))
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
	op, err := h.Store.Operation(r.Context(), chi.URLParam(r, "id"))
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
