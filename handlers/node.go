package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"conclave/auth"
	"conclave/cluster"
	"conclave/store"
)

// The node API (/node/v1) is how appliances talk to each other. Most of it
// needs a verified member certificate (mutual TLS); the enrollment calls
// are made before the replica has one and are authorised by a grant or an
// administrator's token of the replica instead.

// RequirePeer lets through requests made with a verified certificate of a
// current member.
func (h *Handlers) RequirePeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
			writeJSON(w, http.StatusForbidden, apiError{Message: "the node API needs a cluster member's certificate"})
			return
		}
		if _, ok := cluster.PeerMemberID(r.TLS.PeerCertificates[0]); !ok {
			writeJSON(w, http.StatusForbidden, apiError{Message: "the certificate names no member"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// NodeInfo is GET /node/v1/info: who this appliance is (no sign-in).
func (h *Handlers) NodeInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.Node.Info(r.Context()))
}

// NodeStatus is GET /node/v1/status.
func (h *Handlers) NodeStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.Node.OwnStatus(r.Context()))
}

// NodePropose is POST /node/v1/propose: a member forwards a write.
func (h *Handlers) NodePropose(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
	if err != nil {
		h.writeError(w, r, badRequest("", "unreadable proposal: %v", err))
		return
	}
	index, err := h.Node.ProposeForPeer(r.Context(), data)
	var rej *store.Rejection
	switch {
	case errors.As(err, &rej):
		writeJSON(w, http.StatusOK, cluster.ProposeAnswer{Index: index, Rejection: rej})
	case errors.Is(err, cluster.ErrNotLeader):
		writeJSON(w, http.StatusServiceUnavailable, apiError{Message: "not the primary"})
	case err != nil:
		h.writeError(w, r, err)
	default:
		writeJSON(w, http.StatusOK, cluster.ProposeAnswer{Index: index})
	}
}

// NodeChecksums is GET /node/v1/checksums?atLeast=N[&method=record-hash&postgres=M].
func (h *Handlers) NodeChecksums(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	atLeast, _ := strconv.ParseUint(q.Get("atLeast"), 10, 64)
	major, _ := strconv.Atoi(q.Get("postgres"))
	ans, err := h.Node.ChecksumsAt(r.Context(), atLeast, q.Get("method"), major)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// NodeLeave is POST /node/v1/leave: the primary is removing this member.
func (h *Handlers) NodeLeave(w http.ResponseWriter, r *http.Request) {
	if err := h.Node.Leaving(r.Context()); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// NodeStandalone is POST /node/v1/standalone: after its removal.
func (h *Handlers) NodeStandalone(w http.ResponseWriter, r *http.Request) {
	go func() {
		if err := h.Node.BecomeStandalone(context.Background()); err != nil {
			h.Log.Error("stand alone after removal", "err", err)
		}
	}()
	w.WriteHeader(http.StatusAccepted)
}

// NodeStartOperation is POST /node/v1/operations/{kind}: a replica asks the
// primary to run an operation.
func (h *Handlers) NodeStartOperation(w http.ResponseWriter, r *http.Request) {
	var req cluster.OperationRequest
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	var id string
	var err error
	switch chi.URLParam(r, "kind") {
	case "unjoin":
		id, err = h.Node.Unjoin(r.Context(), req.Actor, req.MemberID)
	case "failover":
		id, err = h.Node.Failover(r.Context(), req.Actor, req.MemberID)
	case "rotate-keys":
		id, err = h.Node.RotateDataKeys(r.Context(), req.Actor)
	default:
		writeJSON(w, http.StatusNotFound, apiError{Message: "no such operation"})
		return
	}
	if err != nil {
		h.writeOperationError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"operationId": id})
}

// enrollActor authorises an enrollment call on the replica: a grant from
// its sign-in page, or a token of one of its administrators.
func (h *Handlers) enrollActor(r *http.Request, clusterID string) (string, error) {
	authz := r.Header.Get("Authorization")
	if g, ok := strings.CutPrefix(authz, "Grant "); ok {
		return h.Node.CheckGrant(strings.TrimSpace(g), clusterID)
	}
	if t, ok := strings.CutPrefix(authz, "Bearer "); ok {
		p, err := h.Auth.Bearer(r.Context(), strings.TrimSpace(t))
		if err != nil {
			return "", err
		}
		if !p.IsAdmin() {
			return "", errors.New("the token's user is not an ApplianceAdministrator of this appliance")
		}
		return p.Username, nil
	}
	return "", errors.New("send 'Authorization: Grant <grant>' or 'Bearer <token of an administrator of this appliance>'")
}

func (h *Handlers) refuseEnroll(w http.ResponseWriter, err error) {
	status := http.StatusUnauthorized
	if errors.Is(err, auth.ErrDisabled) {
		status = http.StatusForbidden
	}
	writeJSON(w, status, apiError{Message: err.Error()})
}

// EnrollPrepare is POST /node/v1/enroll/prepare on the replica.
func (h *Handlers) EnrollPrepare(w http.ResponseWriter, r *http.Request) {
	var req cluster.PrepareRequest
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	actor, err := h.enrollActor(r, req.ClusterID)
	if err != nil {
		h.refuseEnroll(w, err)
		return
	}
	if g, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Grant "); ok && !req.CheckOnly {
		if err := h.Node.UseGrant(strings.TrimSpace(g), req.ClusterID); err != nil {
			h.refuseEnroll(w, err)
			return
		}
	}
	ans, err := h.Node.PrepareEnrollment(r.Context(), req, actor)
	if err != nil {
		writeJSON(w, http.StatusConflict, apiError{Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// enrollingActor authorises the calls after prepare, for the cluster that
// prepared.
func (h *Handlers) enrollingActor(w http.ResponseWriter, r *http.Request) bool {
	m := h.Node.Mode()
	if m.State != cluster.StateMaintenance {
		writeJSON(w, http.StatusConflict, apiError{Message: "this appliance is not being added to a cluster"})
		return false
	}
	if _, err := h.enrollActor(r, m.ClusterID); err != nil {
		h.refuseEnroll(w, err)
		return false
	}
	return true
}

// EnrollCredentials is POST /node/v1/enroll/credentials on the replica.
func (h *Handlers) EnrollCredentials(w http.ResponseWriter, r *http.Request) {
	if !h.enrollingActor(w, r) {
		return
	}
	var req struct {
		Certificate []byte `json:"certificate"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.Node.InstallCredentials(r.Context(), req.Certificate); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Message: err.Error(), Field: "certificate"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// EnrollSnapshot is POST /node/v1/enroll/snapshot on the replica: the
// primary's data, streamed.
func (h *Handlers) EnrollSnapshot(w http.ResponseWriter, r *http.Request) {
	if !h.enrollingActor(w, r) {
		return
	}
	// A large snapshot takes longer than the server's request timeouts; the
	// primary's watchdog bounds the transfer instead.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	index, err := h.Node.RestoreFromPrimary(r.Context(), r.Body)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"index": index})
}

// EnrollAbort is POST /node/v1/enroll/abort on the replica.
func (h *Handlers) EnrollAbort(w http.ResponseWriter, r *http.Request) {
	if !h.enrollingActor(w, r) {
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req)
	if err := h.Node.AbortEnrollment(req.Reason); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// EnrollComplete is POST /node/v1/enroll/complete (member certificate).
func (h *Handlers) EnrollComplete(w http.ResponseWriter, r *http.Request) {
	if err := h.Node.CompleteEnrollment(r.Context()); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// writeOperationStarted answers the start of an operation: 202 with its
// ID and where to follow it, or why it was refused.
func (h *Handlers) writeOperationStarted(w http.ResponseWriter, r *http.Request, id string, err error) {
	if err != nil {
		h.writeOperationError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/operations/"+id)
	writeJSON(w, http.StatusAccepted, map[string]string{"operationId": id})
}

// writeOperationError answers a refused operation: a reason a person can
// act on is a 409, anything else goes through writeError.
func (h *Handlers) writeOperationError(w http.ResponseWriter, r *http.Request, err error) {
	var rej *store.Rejection
	var ae *apiError
	if errors.As(err, &rej) || errors.As(err, &ae) || errors.Is(err, cluster.ErrNotLeader) {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusConflict, apiError{Message: err.Error()})
}

// NodeResetFollow is POST /node/v1/reset/follow: drop raft state and data
// and wait for the reset cluster's primary.
func (h *Handlers) NodeResetFollow(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PrimaryID string `json:"primaryId"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.Node.FollowReset(r.Context(), req.PrimaryID); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// NodeResetLead is POST /node/v1/reset/lead: recover raft with the kept
// members as the configuration.
func (h *Handlers) NodeResetLead(w http.ResponseWriter, r *http.Request) {
	var servers []cluster.ResetServer
	if err := decodeJSON(w, r, &servers); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.Node.LeadResetWith(r.Context(), servers); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
