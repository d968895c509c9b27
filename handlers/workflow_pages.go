package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"conclave/store"
	"conclave/views"
	"conclave/workflow"
)

// The access-request workflow's console pages. Every page works without
// script; every change is a POST form that redirects back (or, for a
// released password, shows it on the answer of the POST, never on a GET).

// requestRow turns a request into its view for a viewer.
func requestRow(x store.AccessRequest, me workflow.Actor, now time.Time) views.RequestRow {
	label, tone := views.RequestStateLabel(x.State)
	row := views.RequestRow{
		ID: x.ID, Account: x.AccountName + "@" + x.AssetName, Address: x.AssetAddress, Requester: x.Requester, Reason: x.Reason,
		State: x.State, StateLabel: label, Tone: tone, ApprovalRequired: x.ApprovalRequired, Approvers: strings.Join(x.Approvers, ", "),
		DurationMinutes: x.DurationMinutes, ChangeAfterCheckin: x.ChangeAfterCheckin, RequestedAt: x.RequestedAt, DecidedBy: x.DecidedBy,
		DecidedAt: x.DecidedAt, Comment: x.DecisionComment, ExpiresAt: x.ExpiresAt, Releases: x.Releases, LastReleasedAt: x.LastReleasedAt,
		EndedAt: x.EndedAt, EndedBy: x.EndedBy,
	}
	if x.ExpiresAt != nil {
		row.Left = views.TimeLeft(*x.ExpiresAt, now)
	}
	mine := x.RequesterID == me.UserID
	available := x.State == store.RequestAvailable && (x.ExpiresAt == nil || now.Before(*x.ExpiresAt))
	row.CanRelease = mine && available
	row.CanCheckin = x.State == store.RequestAvailable && (mine || workflow.CanManage(me.Role))
	row.CanDecide = workflow.MayDecide(x, me)
	return row
}

func accountRow(a store.Account) views.AccountRow {
	return views.AccountRow{ID: a.ID, AssetID: a.AssetID, Asset: a.AssetName, Address: a.AssetAddress, Platform: a.Platform, Username: a.Username,
		PasswordChangedAt: a.PasswordChangedAt, Holder: a.Holder, HeldUntil: a.HeldUntil}
}

// unavailableReason is why workflow changes are refused here now, or "".
func (h *Handlers) unavailableReason() string {
	if ok, reason := h.Workflow.RequestsAvailable(); !ok {
		return reason
	}
	return ""
}

// denyPage shows a refusal for a role.
func (h *Handlers) denyPage(w http.ResponseWriter, r *http.Request, msg string) {
	a := actorOf(r)
	h.renderMessage(w, r, http.StatusForbidden, msg+"; you are signed in as "+a.Username+" ("+a.Role+")")
}

// workflowFormError shows a refused change on the page it came from, or
// as an error page.
func (h *Handlers) workflowFormError(w http.ResponseWriter, r *http.Request, err error) {
	var un *workflow.UnavailableError
	if errors.As(err, &un) {
		h.renderMessage(w, r, http.StatusServiceUnavailable, un.Reason)
		return
	}
	h.renderError(w, r, err)
}

// workflowFormStatus is the status of a page that shows a refused form
// again: 422 for bad input (a bad import file too), 503 when this member
// cannot make changes now.
func workflowFormStatus(err error) int {
	var ie *workflow.ImportError
	if errors.As(err, &ie) {
		return http.StatusUnprocessableEntity
	}
	return formStatus(err)
}

// RequestsPage is GET /requests: the user's requests and a search for
// accounts to request.
func (h *Handlers) RequestsPage(w http.ResponseWriter, r *http.Request) {
	me := actorOf(r)
	ctx := r.Context()
	mine, err := h.Store.Requests(ctx, store.RequestFilter{RequesterID: me.UserID, Limit: 200})
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	now := time.Now()
	p := views.RequestsPage{Page: h.page(r, "My requests", "requests"), Unavailable: h.unavailableReason(), CanRequest: workflow.CanRequest(me.Role)}
	p.Dropped = h.droppedRequests(ctx, me.Username)
	for _, x := range mine {
		row := requestRow(x, me, now)
		if x.State == store.RequestPending || x.State == store.RequestAvailable {
			p.Open = append(p.Open, row)
		} else {
			p.Past = append(p.Past, row)
		}
	}
	if q := strings.TrimSpace(r.URL.Query().Get("search")); q != "" && p.CanRequest {
		p.Search, p.Searched = q, true
		accts, err := h.Store.Accounts(ctx, store.AccountFilter{Search: q, Limit: 50})
		if err != nil {
			h.renderError(w, r, err)
			return
		}
		for _, a := range accts {
			if ok, err := h.mayRequest(r, me, a.ID); err != nil {
				h.renderError(w, r, err)
				return
			} else if ok {
				p.Accounts = append(p.Accounts, accountRow(a))
			}
		}
	}
	render(w, r, http.StatusOK, views.Requests(p))
}

// mayRequest tells whether a policy lets the user request the account.
func (h *Handlers) mayRequest(r *http.Request, me workflow.Actor, accountID string) (bool, error) {
	_, ok, err := h.requestTerms(r, me, accountID)
	return ok, err
}

// requestTerms are the terms a request of the account would get, in words.
func (h *Handlers) requestTerms(r *http.Request, me workflow.Actor, accountID string) ([]string, bool, error) {
	ps, err := h.Store.PoliciesForAccount(r.Context(), accountID)
	if err != nil {
		return nil, false, err
	}
	for _, p := range ps {
		if !workflow.MayRequestUnder(p, me) {
			continue
		}
		terms := []string{fmt.Sprintf("Policy “%s”: yours for %d minutes from approval, then checked in for you.", p.Name, p.DurationMinutes)}
		if p.ApprovalRequired {
			terms = append(terms, "Needs approval by "+strings.Join(p.Approvers, ", ")+".")
		} else {
			terms = append(terms, "No approval needed: the password is yours as soon as you ask.")
		}
		if p.ChangeAfterCheckin {
			terms = append(terms, "The password changes after check-in.")
		}
		return terms, true, nil
	}
	return nil, false, nil
}

// RequestFormPage is GET /requests/new?account=ID.
func (h *Handlers) RequestFormPage(w http.ResponseWriter, r *http.Request) {
	h.renderRequestForm(w, r, http.StatusOK, r.URL.Query().Get("account"), "", "")
}

func (h *Handlers) renderRequestForm(w http.ResponseWriter, r *http.Request, status int, accountID, reason, formErr string) {
	me := actorOf(r)
	if !workflow.CanRequest(me.Role) {
		h.denyPage(w, r, msgRequesters)
		return
	}
	a, err := h.Store.AccountByID(r.Context(), accountID)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	terms, ok, err := h.requestTerms(r, me, a.ID)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	if !ok && formErr == "" {
		formErr = "no access policy lets you request this account; ask an administrator"
	}
	render(w, r, status, views.RequestForm(views.RequestFormPage{Page: h.page(r, "New request", "requests"), Unavailable: h.unavailableReason(),
		Account: accountRow(a), Terms: terms, Reason: reason, FormError: formErr}))
}

// CreateRequestForm is POST /requests.
func (h *Handlers) CreateRequestForm(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	me := actorOf(r)
	if !workflow.CanRequest(me.Role) {
		h.denyPage(w, r, msgRequesters)
		return
	}
	accountID, reason := r.PostFormValue("accountId"), r.PostFormValue("reason")
	ctx, cancel := timeout(r)
	defer cancel()
	id, err := h.Workflow.Request(ctx, me, accountID, reason)
	var rej *store.Rejection
	switch {
	case errors.As(err, &rej) && rej.Field != "id":
		h.renderRequestForm(w, r, http.StatusUnprocessableEntity, accountID, reason, rej.Message)
		return
	case err != nil:
		h.workflowFormError(w, r, err)
		return
	}
	http.Redirect(w, r, "/requests/"+id, http.StatusSeeOther)
}

// RequestPage is GET /requests/{id}.
func (h *Handlers) RequestPage(w http.ResponseWriter, r *http.Request) {
	x, err := h.visibleRequest(r)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	me := actorOf(r)
	p := views.RequestPage{Page: h.page(r, "Request for "+x.AccountName+"@"+x.AssetName, "requests"), Unavailable: h.unavailableReason(),
		Request: requestRow(x, me, time.Now()), IsMine: x.RequesterID == me.UserID}
	if !p.IsMine {
		p.Page.Nav = "approvals"
	}
	if x.State == store.RequestPending {
		p.Page.Refresh = 5 // without script: look again for the decision
	}
	switch r.URL.Query().Get("done") {
	case "approved":
		p.Flash = "Approved: " + x.Requester + " can now see the password."
	case "denied":
		p.Flash = "Denied."
	case "checkedin":
		p.Flash = "Checked in. Thank you."
	}
	render(w, r, http.StatusOK, views.RequestView(p))
}

// DecideRequestForm is POST /requests/{id}/approve and /deny.
func (h *Handlers) DecideRequestForm(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := parseForm(w, r); err != nil {
			h.renderError(w, r, err)
			return
		}
		me := actorOf(r)
		if !workflow.CanApprove(me.Role) {
			h.denyPage(w, r, msgApprovers)
			return
		}
		ctx, cancel := timeout(r)
		defer cancel()
		id := chi.URLParam(r, "id")
		if err := h.Workflow.Decide(ctx, me, id, approve, r.PostFormValue("comment")); err != nil {
			h.workflowFormError(w, r, err)
			return
		}
		done := "denied"
		if approve {
			done = "approved"
		}
		http.Redirect(w, r, "/requests/"+id+"?done="+done, http.StatusSeeOther)
	}
}

// ReleasePasswordForm is POST /requests/{id}/password: the release is
// recorded, then the password is shown on this answer (never on a GET, so
// it is in no history or cache).
func (h *Handlers) ReleasePasswordForm(w http.ResponseWriter, r *http.Request) {
	if err := h.mayActOn(r, msgRequesters); err != nil {
		h.renderError(w, r, err)
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	me := actorOf(r)
	rel, err := h.Workflow.Release(ctx, me, chi.URLParam(r, "id"))
	if err != nil {
		h.workflowFormError(w, r, err)
		return
	}
	render(w, r, http.StatusOK, views.PasswordView(views.PasswordPage{Page: h.page(r, "Password", "requests"),
		Request: requestRow(rel.Request, me, time.Now()), Password: rel.Password}))
}

// CheckinForm is POST /requests/{id}/checkin.
func (h *Handlers) CheckinForm(w http.ResponseWriter, r *http.Request) {
	if err := h.mayActOn(r, msgCheckin); err != nil {
		h.renderError(w, r, err)
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	id := chi.URLParam(r, "id")
	if err := h.Workflow.Checkin(ctx, actorOf(r), id); err != nil {
		h.workflowFormError(w, r, err)
		return
	}
	http.Redirect(w, r, "/requests/"+id+"?done=checkedin", http.StatusSeeOther)
}

// ApprovalsPage is GET /approvals.
func (h *Handlers) ApprovalsPage(w http.ResponseWriter, r *http.Request) {
	me := actorOf(r)
	if !workflow.CanApprove(me.Role) {
		h.denyPage(w, r, msgApprovers)
		return
	}
	ctx := r.Context()
	pending, err := h.Store.Requests(ctx, store.RequestFilter{States: []string{store.RequestPending}, ApproverOf: workflow.ApproverNames(me), Limit: 500})
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	recent, err := h.Store.Requests(ctx, store.RequestFilter{States: []string{store.RequestAvailable, store.RequestDenied, store.RequestCheckedIn, store.RequestExpired},
		ApproverOf: workflow.ApproverNames(me), Limit: 20})
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	now := time.Now()
	p := views.ApprovalsPage{Page: h.page(r, "Approvals", "approvals"), Unavailable: h.unavailableReason()}
	// Oldest first: the one waiting longest is decided first.
	for i := len(pending) - 1; i >= 0; i-- {
		p.Pending = append(p.Pending, requestRow(pending[i], me, now))
	}
	for _, x := range recent {
		p.Recent = append(p.Recent, requestRow(x, me, now))
	}
	render(w, r, http.StatusOK, views.Approvals(p))
}

// readOnlyReason is why assets, accounts and policies cannot be changed
// here, or "".
func (h *Handlers) workflowReadOnly(me workflow.Actor) string {
	if !workflow.CanManage(me.Role) {
		return "You can see them; only an ApplianceAdministrator can change them."
	}
	if reason := h.Node.ReadOnlyReason(); reason != "" {
		return reason
	}
	return ""
}

// AssetsPage is GET /assets.
func (h *Handlers) AssetsPage(w http.ResponseWriter, r *http.Request) {
	h.renderAssets(w, r, http.StatusOK, "", nil)
}

const assetsPageRows = 200

func (h *Handlers) renderAssets(w http.ResponseWriter, r *http.Request, status int, form string, formErr error) {
	me := actorOf(r)
	ctx := r.Context()
	search := strings.TrimSpace(r.URL.Query().Get("search"))
	accts, err := h.Store.Accounts(ctx, store.AccountFilter{Search: search, Limit: assetsPageRows})
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	assets, err := h.Store.Assets(ctx, search, assetsPageRows)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	total, err := h.Store.CountAccounts(ctx)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	p := views.AssetsPage{Page: h.page(r, "Assets & accounts", "assets"), ReadOnly: h.workflowReadOnly(me), Search: search, Total: total, Shown: len(accts),
		ImportColumns: strings.Join(workflow.ImportColumns, ","), CanRequest: workflow.CanRequest(me.Role), Form: form}
	if search != "" {
		p.Total = len(accts)
	}
	p.CanEdit = p.ReadOnly == ""
	for _, a := range accts {
		p.Accounts = append(p.Accounts, accountRow(a))
	}
	for _, a := range assets {
		p.Assets = append(p.Assets, views.AssetRow{ID: a.ID, Name: a.Name, Address: a.Address, Platform: a.Platform, Accounts: a.Accounts})
	}
	if formErr != nil {
		var rej *store.Rejection
		var ie *workflow.ImportError
		switch {
		case errors.As(formErr, &ie):
			p.FormError = ie.Error()
			for _, pr := range ie.Problems {
				p.ImportProblems = append(p.ImportProblems, views.ImportProblem{Line: pr.Line, Field: pr.Field, Message: pr.Message})
			}
		case errors.As(formErr, &rej):
			p.FormError, p.FormField = rej.Message, rej.Field
		default:
			_, ae := h.errorStatus(r, formErr)
			p.FormError = ae.Message
		}
	}
	switch r.URL.Query().Get("done") {
	case "asset":
		p.Flash = "The asset was added."
	case "account":
		p.Flash = "The account was added."
	case "deleted":
		p.Flash = "Deleted."
	case "imported":
		p.Flash = fmt.Sprintf("Imported %s accounts (%s new assets).", r.URL.Query().Get("accounts"), r.URL.Query().Get("assets"))
	}
	render(w, r, status, views.Assets(p))
}

// CreateAssetForm is POST /assets.
func (h *Handlers) CreateAssetForm(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	_, err := h.Workflow.CreateAsset(ctx, actorOf(r), workflow.AssetInput{Name: r.PostFormValue("name"), Address: r.PostFormValue("address"), Platform: r.PostFormValue("platform")})
	if err != nil {
		h.renderAssets(w, r, workflowFormStatus(err), "asset", err)
		return
	}
	http.Redirect(w, r, "/assets?done=asset", http.StatusSeeOther)
}

// CreateAccountForm is POST /accounts: the asset is named by its name.
func (h *Handlers) CreateAccountForm(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	ctx, cancel := timeout(r)
	defer cancel()
	asset, err := h.Store.AssetByName(ctx, strings.TrimSpace(r.PostFormValue("asset")))
	if errors.Is(err, store.ErrNotFound) {
		h.renderAssets(w, r, http.StatusUnprocessableEntity, "account", store.Reject("asset", "there is no asset named %q; add it first", r.PostFormValue("asset")))
		return
	} else if err != nil {
		h.renderError(w, r, err)
		return
	}
	if _, err := h.Workflow.CreateAccount(ctx, actorOf(r), asset.ID, r.PostFormValue("username"), r.PostFormValue("password")); err != nil {
		h.renderAssets(w, r, workflowFormStatus(err), "account", err)
		return
	}
	http.Redirect(w, r, "/assets?done=account&search="+asset.Name, http.StatusSeeOther)
}

// deleteForm handles the Delete button of a workflow object, then goes
// back to its page.
func (h *Handlers) deleteForm(del func(context.Context, workflow.Actor, string) error, back string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := timeout(r)
		defer cancel()
		if err := del(ctx, actorOf(r), chi.URLParam(r, "id")); err != nil {
			h.workflowFormError(w, r, err)
			return
		}
		http.Redirect(w, r, back, http.StatusSeeOther)
	}
}

// DeleteAssetForm is POST /assets/{id}/delete.
func (h *Handlers) DeleteAssetForm(w http.ResponseWriter, r *http.Request) {
	h.deleteForm(h.Workflow.DeleteAsset, "/assets?done=deleted")(w, r)
}

// DeleteAccountForm is POST /accounts/{id}/delete.
func (h *Handlers) DeleteAccountForm(w http.ResponseWriter, r *http.Request) {
	h.deleteForm(h.Workflow.DeleteAccount, "/assets?done=deleted")(w, r)
}

// DeletePolicyForm is POST /policies/{id}/delete.
func (h *Handlers) DeletePolicyForm(w http.ResponseWriter, r *http.Request) {
	h.deleteForm(h.Workflow.DeletePolicy, "/policies?done=deleted")(w, r)
}

// ImportForm is POST /import: a CSV file uploaded from the page.
func (h *Handlers) ImportForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, workflow.MaxImportBytes+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		h.renderAssets(w, r, http.StatusBadRequest, "import", store.Reject("file", "choose a CSV file to import"))
		return
	}
	for {
		part, err := mr.NextPart()
		if err != nil {
			var big *http.MaxBytesError
			if errors.As(err, &big) {
				h.renderAssets(w, r, http.StatusRequestEntityTooLarge, "import", store.Reject("file", "the file is larger than %d MiB; split it", workflow.MaxImportBytes>>20))
				return
			}
			h.renderAssets(w, r, http.StatusBadRequest, "import", store.Reject("file", "choose a CSV file to import"))
			return
		}
		if part.FormName() != "file" {
			continue
		}
		res, err := h.importCSV(r, part)
		if err != nil {
			var big *http.MaxBytesError
			if errors.As(err, &big) {
				err = store.Reject("file", "the file is larger than %d MiB; split it", workflow.MaxImportBytes>>20)
			}
			h.renderAssets(w, r, workflowFormStatus(err), "import", err)
			return
		}
		http.Redirect(w, r, "/assets?done=imported&accounts="+strconv.Itoa(res.Accounts)+"&assets="+strconv.Itoa(res.Assets), http.StatusSeeOther)
		return
	}
}

// PoliciesPage is GET /policies.
func (h *Handlers) PoliciesPage(w http.ResponseWriter, r *http.Request) {
	h.renderPolicies(w, r, http.StatusOK, views.PoliciesPage{DurationMinutes: 60, ApprovalRequired: true, Requesters: "Requester", Approvers: "Approver"}, nil)
}

func (h *Handlers) renderPolicies(w http.ResponseWriter, r *http.Request, status int, p views.PoliciesPage, formErr error) {
	me := actorOf(r)
	ctx := r.Context()
	ps, err := h.Store.Policies(ctx)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	p.Page = h.page(r, "Policies", "policies")
	p.ReadOnly = h.workflowReadOnly(me)
	p.CanEdit = p.ReadOnly == ""
	p.Policies = nil
	for _, x := range ps {
		row := views.PolicyRow{ID: x.ID, Name: x.Name, Requesters: strings.Join(x.Requesters, ", "), Approvers: strings.Join(x.Approvers, ", "),
			ApprovalRequired: x.ApprovalRequired, DurationMinutes: x.DurationMinutes, ChangeAfterCheckin: x.ChangeAfterCheckin}
		ids, err := h.Store.PolicyAccountIDs(ctx, x.ID, 6)
		if err != nil {
			h.renderError(w, r, err)
			return
		}
		accts, err := h.Store.Accounts(ctx, store.AccountFilter{IDs: ids})
		if err != nil {
			h.renderError(w, r, err)
			return
		}
		for _, a := range accts {
			row.Accounts = append(row.Accounts, a.Username+"@"+a.AssetName)
		}
		row.More = x.AccountCount - len(accts)
		p.Policies = append(p.Policies, row)
	}
	if formErr != nil {
		var rej *store.Rejection
		if errors.As(formErr, &rej) {
			p.FormError, p.FormField = rej.Message, rej.Field
		} else {
			_, ae := h.errorStatus(r, formErr)
			p.FormError = ae.Message
		}
	}
	switch r.URL.Query().Get("done") {
	case "saved":
		p.Flash = "The policy was saved."
	case "deleted":
		p.Flash = "The policy was deleted; requests made under it keep its terms."
	}
	render(w, r, status, views.Policies(p))
}

// CreatePolicyForm is POST /policies.
func (h *Handlers) CreatePolicyForm(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	f := views.PoliciesPage{Name: r.PostFormValue("name"), Accounts: r.PostFormValue("accounts"), Requesters: r.PostFormValue("requesters"),
		Approvers: r.PostFormValue("approvers"), ApprovalRequired: r.PostFormValue("approvalRequired") == "true",
		ChangeAfterCheckin: r.PostFormValue("changeAfterCheckin") == "true"}
	d, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("durationMinutes")))
	if err != nil {
		h.renderPolicies(w, r, http.StatusUnprocessableEntity, f, store.Reject("durationMinutes", "the duration must be a whole number of minutes"))
		return
	}
	f.DurationMinutes = d
	ctx, cancel := timeout(r)
	defer cancel()
	ids, err := h.resolveAccounts(r, f.Accounts)
	if err != nil {
		h.renderPolicies(w, r, workflowFormStatus(err), f, err)
		return
	}
	_, err = h.Workflow.SavePolicy(ctx, actorOf(r), "", workflow.PolicyInput{Name: f.Name, AccountIDs: ids, Requesters: splitList(f.Requesters),
		Approvers: splitList(f.Approvers), ApprovalRequired: f.ApprovalRequired, DurationMinutes: d, ChangeAfterCheckin: f.ChangeAfterCheckin})
	if err != nil {
		h.renderPolicies(w, r, workflowFormStatus(err), f, err)
		return
	}
	http.Redirect(w, r, "/policies?done=saved", http.StatusSeeOther)
}

// resolveAccounts reads lines of "user@asset" or an asset's name.
func (h *Handlers) resolveAccounts(r *http.Request, text string) ([]string, error) {
	var ids []string
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		user, assetName, isAccount := strings.Cut(line, "@")
		if !isAccount {
			assetName = line
		}
		asset, err := h.Store.AssetByName(r.Context(), strings.TrimSpace(assetName))
		if errors.Is(err, store.ErrNotFound) {
			return nil, store.Reject("accounts", "line %d: there is no asset named %q", i+1, strings.TrimSpace(assetName))
		} else if err != nil {
			return nil, err
		}
		accts, err := h.Store.Accounts(r.Context(), store.AccountFilter{AssetID: asset.ID})
		if err != nil {
			return nil, err
		}
		found := false
		for _, a := range accts {
			if !isAccount || strings.EqualFold(a.Username, strings.TrimSpace(user)) {
				ids, found = append(ids, a.ID), true
			}
		}
		if !found {
			return nil, store.Reject("accounts", "line %d: %q has no such account", i+1, line)
		}
	}
	return ids, nil
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == ';' })
}
