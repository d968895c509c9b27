package handlers

import (
	"context"
	"net/http"
	"time"

	"conclave/cluster"
)

// availabilityJSON is the answer of the availability endpoint that load
// balancers and monitoring poll; field names follow the commercial product.
type availabilityJSON struct {
	ApplianceID                string     `json:"ApplianceId"`
	ApplianceName              string     `json:"ApplianceName"`
	ApplianceCurrentState      string     `json:"ApplianceCurrentState"`
	IsPrimary                  bool       `json:"IsPrimary"`
	IsReplica                  bool       `json:"IsReplica"`
	IsIsolated                 bool       `json:"IsIsolated"`
	IsMaintenance              bool       `json:"IsMaintenance"`
	IsReadOnly                 bool       `json:"IsReadOnly"`
	IsPasswordRequestAvailable bool       `json:"IsPasswordRequestAvailable"`
	IsSshKeyRequestAvailable   bool       `json:"IsSshKeyRequestAvailable"`
	IsSessionRequestAvailable  bool       `json:"IsSessionRequestAvailable"`
	IsPolicyChangeAvailable    bool       `json:"IsPolicyChangeAvailable"`
	LastSuccessfulDataSync     *time.Time `json:"LastSuccessfulDataSync"`
}

// Availability is GET /service/notification/v4/Status/Availability (no sign-in).
func (h *Handlers) Availability(w http.ResponseWriter, r *http.Request) {
	state := h.Node.SelfState()
	st := h.Node.Status()
	primary := state == cluster.StateOnline
	replica := state == cluster.StateReplicaWithQuorum || state == cluster.StateReplicaNoQuorum
	requests, _ := h.Workflow.RequestsAvailable()
	out := availabilityJSON{
		ApplianceID:           h.Node.ID(),
		ApplianceName:         h.Node.Name(),
		ApplianceCurrentState: state,
		IsPrimary:             primary,
		IsReplica:             replica,
		IsIsolated:            state == cluster.StateIsolated,
		IsMaintenance:         state == cluster.StateMaintenance,
		IsReadOnly:            !primary,
		// Password requests are possible exactly when the workflow takes
		// them (workflow.Service.RequestsAvailable); this product has no SSH
		// key or session requests. Policies change on the primary only.
		IsPasswordRequestAvailable: requests,
		IsSshKeyRequestAvailable:   false,
		IsSessionRequestAvailable:  false,
		IsPolicyChangeAvailable:    h.Workflow.PolicyChangesAvailable(),
	}
	// The last time this appliance's data was the cluster's: now on the
	// primary; the last contact with the primary on a replica (or, on a
	// primary that lost its majority, when it stepped down); the moment it
	// left on an appliance standing alone after Unjoin. None while being
	// added: its data is being replaced.
	var synced time.Time
	switch {
	case primary:
		synced = time.Now()
	case state == cluster.StateMaintenance:
	case state == cluster.StateStandaloneRO:
		synced = h.Node.Mode().Since
	default:
		synced = st.LastContact
	}
	if !synced.IsZero() {
		synced = synced.UTC()
		out.LastSuccessfulDataSync = &synced
	}
	writeJSON(w, http.StatusOK, out)
}

// Healthz answers while the process serves HTTP (liveness).
func (h *Handlers) Healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Readyz answers 200 when the appliance can serve: its database answers,
// a primary is known and this member has applied what was committed.
func (h *Handlers) Readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var problems []string
	if err := h.Store.Ping(ctx); err != nil {
		problems = append(problems, "database does not answer: "+err.Error())
	}
	st := h.Node.Status()
	// An isolated member serves requests without a primary (Offline Workflow).
	if st.LeaderID == "" && !h.Node.Isolated() {
		problems = append(problems, "no primary is known")
	}
	select {
	case <-h.Started:
	default:
		problems = append(problems, "the appliance is still starting")
	}
	if len(problems) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "problems": problems, "state": h.Node.SelfState()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "state": h.Node.SelfState(), "appliedIndex": st.AppliedIndex})
}
