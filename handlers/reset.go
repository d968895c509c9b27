package handlers

import (
	"net/http"
	"slices"

	"conclave/cluster"
	"conclave/views"
)

// ResetPage offers Reset Cluster on a member without consensus: which
// reachable members to keep, which of them becomes the primary, and what
// happens to each.
func (h *Handlers) ResetPage(w http.ResponseWriter, r *http.Request) {
	h.renderReset(w, r, http.StatusOK, resetForm{}, nil)
}

// resetForm is what the administrator chose; empty on the first visit.
type resetForm struct {
	posted      bool
	keep        []string
	primaryID   string
	primaryName string
}

func (h *Handlers) renderReset(w http.ResponseWriter, r *http.Request, status int, f resetForm, formErr error) {
	p := views.ResetPage{Page: h.page(r, "Reset Cluster", "cluster"), Phrase: PhraseReset, PrimaryName: f.primaryName}
	if formErr != nil {
		p.FormError = formErr.Error()
		if e, ok := formErr.(*apiError); ok {
			p.FormError, p.Field = e.Message, e.Field
		}
	}
	switch h.Node.SelfState() {
	case cluster.StateOnline, cluster.StateReplicaWithQuorum:
		p.Refused = "This cluster has consensus, so nothing needs to be reset. To remove a member use Unjoin; to change the primary use Failover."
	case cluster.StateStandaloneRO, cluster.StateMaintenance, cluster.StateLeavingCluster:
		p.Refused = "This appliance is not an ordinary member now (" + cluster.StateLabel(h.Node.SelfState()) + "): run Reset Cluster on a member of the cluster."
	}
	ms, err := h.Node.MemberStatuses(r.Context())
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	for _, m := range ms {
		row := views.ResetMember{ID: m.ID, Name: m.Name, Address: m.Address, StateLabel: cluster.StateLabel(m.State), StateTone: stateTone(m.State),
			IsSelf: m.IsSelf, Reachable: m.State != cluster.StateUnreachable}
		if !row.Reachable {
			row.Reason = m.HealthReason
		}
		if f.posted {
			row.Keep, row.IsPrimary = slices.Contains(f.keep, m.ID), m.ID == f.primaryID
		} else {
			row.Keep, row.IsPrimary = row.Reachable, m.IsSelf
		}
		p.Members = append(p.Members, row)
	}
	render(w, r, status, views.Reset(p))
}

// ResetStart is the confirmed Reset Cluster form. Besides the phrase, the
// administrator types the new primary's name, so the choice that decides
// which data survives is made twice.
func (h *Handlers) ResetStart(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	f := resetForm{posted: true, keep: r.PostForm["keep"], primaryID: r.PostFormValue("primary"), primaryName: r.PostFormValue("primaryName")}
	fail := func(status int, err error) { h.renderReset(w, r, status, f, err) }
	if len(f.keep) == 0 {
		fail(http.StatusUnprocessableEntity, badRequest("keep", "tick at least one member to keep (this appliance among them)"))
		return
	}
	if f.primaryID == "" {
		fail(http.StatusUnprocessableEntity, badRequest("primary", "choose the new primary among the members kept"))
		return
	}
	if want := h.memberName(r.Context(), f.primaryID); f.primaryName != want {
		fail(http.StatusUnprocessableEntity, badRequest("primaryName", "type the new primary's name, %s, exactly", want))
		return
	}
	if err := checkPhrase(r.PostFormValue("confirm"), PhraseReset); err != nil {
		fail(http.StatusUnprocessableEntity, err)
		return
	}
	me, _ := principal(r)
	id, err := h.Node.ResetCluster(r.Context(), me.Username, cluster.ResetPlan{Keep: f.keep, PrimaryID: f.primaryID})
	if err != nil {
		fail(http.StatusConflict, err)
		return
	}
	http.Redirect(w, r, "/operations/"+id, http.StatusSeeOther)
}
