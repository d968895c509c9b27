package handlers

import (
	"context"
	"net/http"

	"conclave/views"
)

// auditChain checks the audit log's hash chain for the Activity Center.
func (h *Handlers) auditChain(ctx context.Context) views.AuditChain {
	check, err := h.Node.AuditChainRecent(ctx)
	switch {
	case check.Broken != nil:
		return views.AuditChain{Checked: check.Checked, Broken: err.Error()}
	case err != nil:
		return views.AuditChain{Error: err.Error()}
	}
	return views.AuditChain{Checked: check.Checked}
}

// APIAuditChain is GET /api/v1/events/chain: whether the audit log's hash
// chain holds, and the first event that breaks it.
func (h *Handlers) APIAuditChain(w http.ResponseWriter, r *http.Request) {
	check, err := h.Node.VerifyAuditChain(r.Context())
	if err != nil && check.Broken == nil {
		h.writeError(w, r, err)
		return
	}
	out := map[string]any{"intact": check.Intact(), "checked": check.Checked}
	if e := check.Broken; e != nil {
		out["firstBroken"] = map[string]any{"id": e.ID, "type": e.Type, "actor": e.Actor, "at": e.At, "raftIndex": e.RaftIndex}
		out["reason"] = check.Reason
	}
	writeJSON(w, http.StatusOK, out)
}
