package handlers

import (
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"

	"conclave/cluster"
	"conclave/views"
)

// Typed phrases of Failover and Unlock Cluster.
const (
	PhraseFailover = "Failover"
	PhraseUnlock   = "Unlock Cluster"
	PhraseReset    = "Reset Cluster"
)

// APIReset is POST /api/v1/cluster/reset.
func (h *Handlers) APIReset(w http.ResponseWriter, r *http.Request) {
	var req struct {
		MemberIDs []string `json:"memberIds"`
		PrimaryID string   `json:"primaryId"`
		Confirm   string   `json:"confirm"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := checkPhrase(req.Confirm, PhraseReset); err != nil {
		h.writeError(w, r, err)
		return
	}
	if len(req.MemberIDs) == 0 {
		h.writeError(w, r, badRequest("memberIds", "memberIds lists the members to keep (at least this one)"))
		return
	}
	if req.PrimaryID == "" {
		h.writeError(w, r, badRequest("primaryId", "primaryId names the new primary, one of memberIds"))
		return
	}
	me, _ := principal(r)
	id, err := h.Node.ResetCluster(r.Context(), me.Username, cluster.ResetPlan{Keep: req.MemberIDs, PrimaryID: req.PrimaryID})
	h.writeOperationStarted(w, r, id, err)
}

// APIFailover is POST /api/v1/cluster/members/{id}/promote.
func (h *Handlers) APIFailover(w http.ResponseWriter, r *http.Request) {
	if !h.decodeConfirm(w, r, PhraseFailover) {
		return
	}
	me, _ := principal(r)
	id, err := h.Node.Failover(r.Context(), me.Username, chi.URLParam(r, "id"))
	h.writeOperationStarted(w, r, id, err)
}

// APIUnlock is POST /api/v1/cluster/unlock.
func (h *Handlers) APIUnlock(w http.ResponseWriter, r *http.Request) {
	if !h.decodeConfirm(w, r, PhraseUnlock) {
		return
	}
	me, _ := principal(r)
	id, err := h.Node.UnlockCluster(r.Context(), me.Username)
	if err != nil {
		h.writeOperationError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"operationId": id, "operation": "None"})
}

// FailoverPage confirms a failover to a replica.
func (h *Handlers) FailoverPage(w http.ResponseWriter, r *http.Request) {
	h.renderFailover(w, r, http.StatusOK, "")
}

func (h *Handlers) renderFailover(w http.ResponseWriter, r *http.Request, status int, formErr string) {
	id := chi.URLParam(r, "id")
	p := views.FailoverPage{Page: h.page(r, "Failover", "cluster"), MemberID: id, Phrase: PhraseFailover, FormError: formErr, Primary: h.Node.Name()}
	target, lag, err := h.Node.CheckFailover(r.Context(), id)
	p.MemberName = target.Name
	p.Lag = fmt.Sprintf("%d changes behind (has applied %d of %d)", lag.Entries, lag.Applied, lag.Target)
	if err != nil && formErr == "" {
		p.Refused = err.Error()
	}
	render(w, r, status, views.Failover(p))
}

// FailoverStart is the confirmed failover form.
func (h *Handlers) FailoverStart(w http.ResponseWriter, r *http.Request) {
	h.confirmedForm(w, r, PhraseFailover, h.renderFailover, func(actor string) (string, error) {
		id, err := h.Node.Failover(r.Context(), actor, chi.URLParam(r, "id"))
		return "/operations/" + id, err
	})
}

// UnlockPage confirms Unlock Cluster, saying who holds the lock and since when.
func (h *Handlers) UnlockPage(w http.ResponseWriter, r *http.Request) {
	h.renderUnlock(w, r, http.StatusOK, "")
}

func (h *Handlers) renderUnlock(w http.ResponseWriter, r *http.Request, status int, formErr string) {
	p := views.UnlockPage{Page: h.page(r, "Unlock Cluster", "cluster"), Phrase: PhraseUnlock, FormError: formErr}
	if p.Banner == nil {
		p.Refused = "The cluster is not locked: no operation is in progress."
	}
	render(w, r, status, views.Unlock(p))
}

// UnlockStart is the confirmed Unlock Cluster form.
func (h *Handlers) UnlockStart(w http.ResponseWriter, r *http.Request) {
	h.confirmedForm(w, r, PhraseUnlock, h.renderUnlock, func(actor string) (string, error) {
		id, err := h.Node.UnlockCluster(r.Context(), actor)
		return "/operations/" + id, err
	})
}
