package handlers

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"conclave/store"
	"conclave/workflow"
)

// The access-request workflow's JSON API: assets, accounts, the CSV
// import, policies and access requests. Passwords go in (create, import)
// and come out only through GET /api/v1/access-requests/{id}/password,
// which is audited.

// actorOf is the signed-in user as the workflow knows them.
func actorOf(r *http.Request) workflow.Actor {
	p, _ := principal(r)
	return workflow.Actor{UserID: p.UserID, Username: p.Username, Role: p.Role}
}

// writeWorkflowError answers a workflow error: a member that cannot make
// changes now is 503 with the reason; an import with bad rows is 422 with
// every bad line.
func (h *Handlers) writeWorkflowError(w http.ResponseWriter, r *http.Request, err error) {
	var un *workflow.UnavailableError
	var ie *workflow.ImportError
	switch {
	case errors.As(err, &un):
		writeJSON(w, http.StatusServiceUnavailable, apiError{Message: un.Reason})
	case errors.As(err, &ie):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": ie.Error(), "field": "csv", "problems": ie.Problems})
	default:
		h.writeError(w, r, err)
	}
}

// forbidden answers a workflow action the user's role does not allow.
func forbidden(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusForbidden, apiError{Message: msg})
}

const (
	msgRequesters = "only a Requester or an ApplianceAdministrator may request accounts"
	msgApprovers  = "only an Approver or an ApplianceAdministrator may approve or deny requests"
	msgCheckin    = "only the requester who holds the account, or an ApplianceAdministrator, may check it in"
)

// --- assets

type assetJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Address   string    `json:"address"`
	Platform  string    `json:"platform"`
	Accounts  int       `json:"accounts"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func toAssetJSON(a store.Asset) assetJSON {
	return assetJSON{ID: a.ID, Name: a.Name, Address: a.Address, Platform: a.Platform, Accounts: a.Accounts, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
}

type assetBody struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	Platform string `json:"platform"`
}

// APIAssets is GET /api/v1/assets?search=&limit=.
func (h *Handlers) APIAssets(w http.ResponseWriter, r *http.Request) {
	limit, err := queryLimit(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	assets, err := h.Store.Assets(r.Context(), r.URL.Query().Get("search"), limit)
	writeList(h, w, r, assets, err, toAssetJSON)
}

// writeList answers a list read from the store, each item in its JSON form.
func writeList[T, J any](h *Handlers, w http.ResponseWriter, r *http.Request, items []T, err error, toJSON func(T) J) {
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]J, 0, len(items))
	for _, x := range items {
		out = append(out, toJSON(x))
	}
	writeJSON(w, http.StatusOK, out)
}

// APIAsset is GET /api/v1/assets/{id}.
func (h *Handlers) APIAsset(w http.ResponseWriter, r *http.Request) {
	a, err := h.Store.AssetByID(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toAssetJSON(a))
}

// APICreateAsset is POST /api/v1/assets.
func (h *Handlers) APICreateAsset(w http.ResponseWriter, r *http.Request) {
	var req assetBody
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	id, err := h.Workflow.CreateAsset(ctx, actorOf(r), workflow.AssetInput{Name: req.Name, Address: req.Address, Platform: req.Platform})
	if err != nil {
		h.writeWorkflowError(w, r, err)
		return
	}
	a, err := h.Store.AssetByID(ctx, id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/assets/"+id)
	writeJSON(w, http.StatusCreated, toAssetJSON(a))
}

// APIUpdateAsset is PATCH /api/v1/assets/{id}: any of name, address, platform.
func (h *Handlers) APIUpdateAsset(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name     *string `json:"name"`
		Address  *string `json:"address"`
		Platform *string `json:"platform"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	id := chi.URLParam(r, "id")
	a, err := h.Store.AssetByID(ctx, id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	in := workflow.AssetInput{Name: a.Name, Address: a.Address, Platform: a.Platform}
	for _, f := range []struct {
		v   *string
		dst *string
	}{{req.Name, &in.Name}, {req.Address, &in.Address}, {req.Platform, &in.Platform}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	if err := h.Workflow.UpdateAsset(ctx, actorOf(r), id, in); err != nil {
		h.writeWorkflowError(w, r, err)
		return
	}
	h.APIAsset(w, r)
}

// apiDelete answers DELETE of a workflow object: 204 once it is gone.
func (h *Handlers) apiDelete(del func(context.Context, workflow.Actor, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := timeout(r)
		defer cancel()
		if err := del(ctx, actorOf(r), chi.URLParam(r, "id")); err != nil {
			h.writeWorkflowError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// APIDeleteAsset is DELETE /api/v1/assets/{id} (an asset without accounts).
func (h *Handlers) APIDeleteAsset(w http.ResponseWriter, r *http.Request) {
	h.apiDelete(h.Workflow.DeleteAsset)(w, r)
}

// APIDeleteAccount is DELETE /api/v1/accounts/{id}.
func (h *Handlers) APIDeleteAccount(w http.ResponseWriter, r *http.Request) {
	h.apiDelete(h.Workflow.DeleteAccount)(w, r)
}

// APIDeletePolicy is DELETE /api/v1/policies/{id}.
func (h *Handlers) APIDeletePolicy(w http.ResponseWriter, r *http.Request) {
	h.apiDelete(h.Workflow.DeletePolicy)(w, r)
}

// --- accounts

type accountJSON struct {
	ID                string     `json:"id"`
	AssetID           string     `json:"assetId"`
	Asset             string     `json:"asset"`
	Address           string     `json:"address"`
	Platform          string     `json:"platform"`
	Username          string     `json:"username"`
	CreatedAt         time.Time  `json:"createdAt"`
	PasswordChangedAt time.Time  `json:"passwordChangedAt"`
	CheckedOutBy      string     `json:"checkedOutBy,omitempty"`
	CheckedOutUntil   *time.Time `json:"checkedOutUntil,omitempty"`
}

func toAccountJSON(a store.Account) accountJSON {
	return accountJSON{ID: a.ID, AssetID: a.AssetID, Asset: a.AssetName, Address: a.AssetAddress, Platform: a.Platform, Username: a.Username,
		CreatedAt: a.CreatedAt, PasswordChangedAt: a.PasswordChangedAt, CheckedOutBy: a.Holder, CheckedOutUntil: a.HeldUntil}
}

// APIAccounts is GET /api/v1/accounts?assetId=&search=&limit=&offset=.
func (h *Handlers) APIAccounts(w http.ResponseWriter, r *http.Request) {
	limit, err := queryLimit(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	offset := 0
	if v := r.URL.Query().Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			h.writeError(w, r, badRequest("offset", "offset must be a whole number of 0 or more"))
			return
		}
	}
	q := r.URL.Query()
	accounts, err := h.Store.Accounts(r.Context(), store.AccountFilter{AssetID: q.Get("assetId"), Search: q.Get("search"), Limit: limit, Offset: offset})
	writeList(h, w, r, accounts, err, toAccountJSON)
}

// APIAccount is GET /api/v1/accounts/{id} (never the password).
func (h *Handlers) APIAccount(w http.ResponseWriter, r *http.Request) {
	a, err := h.Store.AccountByID(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toAccountJSON(a))
}

// APICreateAccount is POST /api/v1/accounts {assetId, username, password}.
func (h *Handlers) APICreateAccount(w http.ResponseWriter, r *http.Request) {
	var req struct {
		AssetID  string `json:"assetId"`
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	id, err := h.Workflow.CreateAccount(ctx, actorOf(r), req.AssetID, req.Username, req.Password)
	if err != nil {
		h.writeWorkflowError(w, r, err)
		return
	}
	a, err := h.Store.AccountByID(ctx, id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/accounts/"+id)
	writeJSON(w, http.StatusCreated, toAccountJSON(a))
}

// APIUpdateAccount is PATCH /api/v1/accounts/{id}: any of username, password.
func (h *Handlers) APIUpdateAccount(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if req.Username == nil && req.Password == nil {
		h.writeError(w, r, badRequest("", "nothing to change: send username, password or both"))
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	if err := h.Workflow.UpdateAccount(ctx, actorOf(r), chi.URLParam(r, "id"), req.Username, req.Password); err != nil {
		h.writeWorkflowError(w, r, err)
		return
	}
	h.APIAccount(w, r)
}

// APIImport is POST /api/v1/import with a text/csv body:
// asset,address,platform,username,password. All rows or none.
func (h *Handlers) APIImport(w http.ResponseWriter, r *http.Request) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "text/csv" {
		h.writeError(w, r, &apiError{Status: http.StatusUnsupportedMediaType, Message: "send the file as Content-Type: text/csv, with the columns " + strings.Join(workflow.ImportColumns, ",")})
		return
	}
	body := http.MaxBytesReader(w, r.Body, workflow.MaxImportBytes)
	res, err := h.importCSV(r, body)
	if err != nil {
		var big *http.MaxBytesError
		if errors.As(err, &big) {
			h.writeError(w, r, &apiError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("the file is larger than %d MiB; split it", workflow.MaxImportBytes>>20)})
			return
		}
		h.writeWorkflowError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// --- policies

type policyJSON struct {
	ID                 string    `json:"id"`
	Name               string    `json:"name"`
	AccountIDs         []string  `json:"accountIds"`
	Requesters         []string  `json:"requesters"`
	Approvers          []string  `json:"approvers"`
	ApprovalRequired   bool      `json:"approvalRequired"`
	DurationMinutes    int       `json:"durationMinutes"`
	ChangeAfterCheckin bool      `json:"changeAfterCheckin"`
	CreatedAt          time.Time `json:"createdAt"`
	UpdatedAt          time.Time `json:"updatedAt"`
}

func toPolicyJSON(p store.Policy) policyJSON {
	return policyJSON{ID: p.ID, Name: p.Name, AccountIDs: nonNil(p.AccountIDs), Requesters: nonNil(p.Requesters), Approvers: nonNil(p.Approvers),
		ApprovalRequired: p.ApprovalRequired, DurationMinutes: p.DurationMinutes, ChangeAfterCheckin: p.ChangeAfterCheckin, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

type policyBody struct {
	Name               string   `json:"name"`
	AccountIDs         []string `json:"accountIds"`
	Requesters         []string `json:"requesters"`
	Approvers          []string `json:"approvers"`
	ApprovalRequired   bool     `json:"approvalRequired"`
	DurationMinutes    int      `json:"durationMinutes"`
	ChangeAfterCheckin bool     `json:"changeAfterCheckin"`
}

func (b policyBody) input() workflow.PolicyInput {
	return workflow.PolicyInput{Name: b.Name, AccountIDs: b.AccountIDs, Requesters: b.Requesters, Approvers: b.Approvers,
		ApprovalRequired: b.ApprovalRequired, DurationMinutes: b.DurationMinutes, ChangeAfterCheckin: b.ChangeAfterCheckin}
}

// APIPolicies is GET /api/v1/policies.
func (h *Handlers) APIPolicies(w http.ResponseWriter, r *http.Request) {
	ps, err := h.Store.Policies(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]policyJSON, 0, len(ps))
	for _, p := range ps {
		if p.AccountIDs, err = h.Store.PolicyAccountIDs(r.Context(), p.ID, 0); err != nil {
			h.writeError(w, r, err)
			return
		}
		out = append(out, toPolicyJSON(p))
	}
	writeJSON(w, http.StatusOK, out)
}

// APIPolicy is GET /api/v1/policies/{id}.
func (h *Handlers) APIPolicy(w http.ResponseWriter, r *http.Request) {
	h.writePolicy(w, r, http.StatusOK, chi.URLParam(r, "id"))
}

func (h *Handlers) writePolicy(w http.ResponseWriter, r *http.Request, status int, id string) {
	p, err := h.Store.PolicyByID(r.Context(), id)
	if err == nil {
		p.AccountIDs, err = h.Store.PolicyAccountIDs(r.Context(), id, 0)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, status, toPolicyJSON(p))
}

// APISavePolicy is POST /api/v1/policies (create) and PUT
// /api/v1/policies/{id} (replace).
func (h *Handlers) APISavePolicy(w http.ResponseWriter, r *http.Request) {
	var req policyBody
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	id := chi.URLParam(r, "id")
	newID, err := h.Workflow.SavePolicy(ctx, actorOf(r), id, req.input())
	if err != nil {
		h.writeWorkflowError(w, r, err)
		return
	}
	if id == "" {
		w.Header().Set("Location", "/api/v1/policies/"+newID)
		h.writePolicy(w, r, http.StatusCreated, newID)
		return
	}
	h.writePolicy(w, r, http.StatusOK, newID)
}

// --- access requests

type requestJSON struct {
	ID                 string     `json:"id"`
	AccountID          string     `json:"accountId"`
	Account            string     `json:"account"`
	Asset              string     `json:"asset"`
	Address            string     `json:"address"`
	PolicyID           string     `json:"policyId"`
	Requester          string     `json:"requester"`
	Reason             string     `json:"reason"`
	State              string     `json:"state"`
	ApprovalRequired   bool       `json:"approvalRequired"`
	Approvers          []string   `json:"approvers"`
	DurationMinutes    int        `json:"durationMinutes"`
	ChangeAfterCheckin bool       `json:"changeAfterCheckin"`
	RequestedAt        time.Time  `json:"requestedAt"`
	DecidedBy          string     `json:"decidedBy,omitempty"`
	DecidedAt          *time.Time `json:"decidedAt,omitempty"`
	Comment            string     `json:"comment,omitempty"`
	AvailableAt        *time.Time `json:"availableAt,omitempty"`
	ExpiresAt          *time.Time `json:"expiresAt,omitempty"`
	Releases           int        `json:"releases"`
	LastReleasedAt     *time.Time `json:"lastReleasedAt,omitempty"`
	EndedAt            *time.Time `json:"endedAt,omitempty"`
	EndedBy            string     `json:"endedBy,omitempty"`
	PasswordChanged    bool       `json:"passwordChanged"`
}

func toRequestJSON(r store.AccessRequest) requestJSON {
	return requestJSON{ID: r.ID, AccountID: r.AccountID, Account: r.AccountName, Asset: r.AssetName, Address: r.AssetAddress, PolicyID: r.PolicyID,
		Requester: r.Requester, Reason: r.Reason, State: r.State, ApprovalRequired: r.ApprovalRequired, Approvers: nonNil(r.Approvers),
		DurationMinutes: r.DurationMinutes, ChangeAfterCheckin: r.ChangeAfterCheckin, RequestedAt: r.RequestedAt, DecidedBy: r.DecidedBy,
		DecidedAt: r.DecidedAt, Comment: r.DecisionComment, AvailableAt: r.AvailableAt, ExpiresAt: r.ExpiresAt, Releases: r.Releases,
		LastReleasedAt: r.LastReleasedAt, EndedAt: r.EndedAt, EndedBy: r.EndedBy, PasswordChanged: r.PasswordChanged}
}

// requestScope reads which requests a list shows: mine (the default),
// approvals (waiting for this user's decision) or all (not for Requesters).
func requestScope(r *http.Request, a workflow.Actor) (store.RequestFilter, error) {
	q := r.URL.Query()
	f := store.RequestFilter{}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return f, badRequest("limit", "limit must be a whole number from 1 to 10000")
		}
		f.Limit = n
	}
	if v := q.Get("state"); v != "" {
		switch v {
		case store.RequestPending, store.RequestAvailable, store.RequestDenied, store.RequestCheckedIn, store.RequestExpired:
			f.States = []string{v}
		default:
			return f, badRequest("state", "state must be one of Pending, Available, Denied, CheckedIn, Expired")
		}
	}
	switch q.Get("scope") {
	case "", "mine":
		f.RequesterID = a.UserID
	case "approvals":
		if !workflow.CanApprove(a.Role) {
			return f, &apiError{Status: http.StatusForbidden, Message: msgApprovers}
		}
		f.States = []string{store.RequestPending}
		f.ApproverOf = workflow.ApproverNames(a)
	case "all":
		if !workflow.CanSeeAll(a.Role) {
			return f, &apiError{Status: http.StatusForbidden, Message: "a Requester sees their own requests only; an Approver, Helpdesk or ApplianceAdministrator sees all"}
		}
	default:
		return f, badRequest("scope", "scope must be mine, approvals or all")
	}
	return f, nil
}

// APIRequests is GET /api/v1/access-requests?scope=mine|approvals|all&state=&limit=.
func (h *Handlers) APIRequests(w http.ResponseWriter, r *http.Request) {
	f, err := requestScope(r, actorOf(r))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	rs, err := h.Store.Requests(r.Context(), f)
	writeList(h, w, r, rs, err, toRequestJSON)
}

// visibleRequest reads a request the user may see: their own, or any for
// the roles that see all.
func (h *Handlers) visibleRequest(r *http.Request) (store.AccessRequest, error) {
	x, err := h.Store.RequestByID(r.Context(), chi.URLParam(r, "id"))
	if errors.Is(err, store.ErrNotFound) && h.Node.CatchUp(r.Context()) == nil {
		// Made a moment ago through another member: this one may be behind.
		x, err = h.Store.RequestByID(r.Context(), chi.URLParam(r, "id"))
	}
	if err != nil {
		return x, err
	}
	a := actorOf(r)
	if x.RequesterID != a.UserID && !workflow.CanSeeAll(a.Role) {
		return x, store.ErrNotFound // another Requester's request does not exist for them
	}
	return x, nil
}

// mayActOn checks that the user may act on the request of the URL as its
// requester (showing the password, checking in): a role that requests
// (else 403 with msg), and a request they can see.
func (h *Handlers) mayActOn(r *http.Request, msg string) error {
	if a := actorOf(r); !workflow.CanRequest(a.Role) {
		return &apiError{Status: http.StatusForbidden, Message: msg + "; you are " + a.Username + " (" + a.Role + ")"}
	}
	_, err := h.visibleRequest(r)
	return err
}

// APIRequest is GET /api/v1/access-requests/{id}.
func (h *Handlers) APIRequest(w http.ResponseWriter, r *http.Request) {
	x, err := h.visibleRequest(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toRequestJSON(x))
}

// APICreateRequest is POST /api/v1/access-requests {accountId, reason}.
func (h *Handlers) APICreateRequest(w http.ResponseWriter, r *http.Request) {
	a := actorOf(r)
	if !workflow.CanRequest(a.Role) {
		forbidden(w, msgRequesters+"; you are "+a.Username+" ("+a.Role+")")
		return
	}
	var req struct {
		AccountID string `json:"accountId"`
		Reason    string `json:"reason"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	id, err := h.Workflow.Request(ctx, a, req.AccountID, req.Reason)
	if err != nil {
		h.writeWorkflowError(w, r, err)
		return
	}
	x, err := h.Store.RequestByID(ctx, id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/access-requests/"+id)
	writeJSON(w, http.StatusCreated, toRequestJSON(x))
}

// APIDecideRequest is POST /api/v1/access-requests/{id}/approve and /deny,
// with an optional {comment}.
func (h *Handlers) APIDecideRequest(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := actorOf(r)
		if !workflow.CanApprove(a.Role) {
			forbidden(w, msgApprovers+"; you are "+a.Username+" ("+a.Role+")")
			return
		}
		var req struct {
			Comment string `json:"comment"`
		}
		if r.ContentLength != 0 {
			if err := decodeJSON(w, r, &req); err != nil {
				h.writeError(w, r, err)
				return
			}
		}
		ctx, cancel := timeout(r)
		defer cancel()
		if err := h.Workflow.Decide(ctx, a, chi.URLParam(r, "id"), approve, req.Comment); err != nil {
			h.writeWorkflowError(w, r, err)
			return
		}
		h.APIRequest(w, r)
	}
}

// APICheckin is POST /api/v1/access-requests/{id}/checkin.
func (h *Handlers) APICheckin(w http.ResponseWriter, r *http.Request) {
	if err := h.mayActOn(r, msgCheckin); err != nil {
		h.writeError(w, r, err)
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	if err := h.Workflow.Checkin(ctx, actorOf(r), chi.URLParam(r, "id")); err != nil {
		h.writeWorkflowError(w, r, err)
		return
	}
	h.APIRequest(w, r)
}

// APIPassword is GET /api/v1/access-requests/{id}/password: the password,
// to the requester, while the request is Available. Each call is a release,
// recorded in the audit log before the password is sent.
func (h *Handlers) APIPassword(w http.ResponseWriter, r *http.Request) {
	if err := h.mayActOn(r, msgRequesters); err != nil {
		h.writeError(w, r, err)
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	rel, err := h.Workflow.Release(ctx, actorOf(r), chi.URLParam(r, "id"))
	if err != nil {
		h.writeWorkflowError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"requestId": rel.Request.ID, "accountId": rel.Request.AccountID, "account": rel.Request.AccountName, "asset": rel.Request.AssetName,
		"address": rel.Request.AssetAddress, "password": rel.Password, "expiresAt": rel.Request.ExpiresAt, "releases": rel.Request.Releases,
	})
}

// queryLimit reads ?limit= (1 to 10000; default 1000).
func queryLimit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 1000, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10000 {
		return 0, badRequest("limit", "limit must be a whole number from 1 to 10000")
	}
	return n, nil
}
