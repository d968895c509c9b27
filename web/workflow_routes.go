package web

import (
	"github.com/go-chi/chi/v5"

	"conclave/handlers"
)

// workflowUserRoutes are the access-request workflow's routes for every
// signed-in user; each handler checks the role an action needs (Requester,
// Approver, the request's own requester). Requests made on a replica are
// forwarded to the primary.
func workflowUserRoutes(h *handlers.Handlers, r chi.Router) {
	r.Get("/requests", h.RequestsPage)
	r.Get("/requests/new", h.RequestFormPage)
	r.Post("/requests", h.CreateRequestForm)
	r.Get("/requests/{id}", h.RequestPage)
	r.Post("/requests/{id}/approve", h.DecideRequestForm(true))
	r.Post("/requests/{id}/deny", h.DecideRequestForm(false))
	r.Post("/requests/{id}/password", h.ReleasePasswordForm)
	r.Post("/requests/{id}/checkin", h.CheckinForm)
	r.Get("/approvals", h.ApprovalsPage)
	r.Get("/assets", h.AssetsPage)
	r.Get("/policies", h.PoliciesPage)

	r.Get("/api/v1/assets", h.APIAssets)
	r.Get("/api/v1/assets/{id}", h.APIAsset)
	r.Get("/api/v1/accounts", h.APIAccounts)
	r.Get("/api/v1/accounts/{id}", h.APIAccount)
	r.Get("/api/v1/policies", h.APIPolicies)
	r.Get("/api/v1/policies/{id}", h.APIPolicy)
	r.Get("/api/v1/access-requests", h.APIRequests)
	r.Post("/api/v1/access-requests", h.APICreateRequest)
	r.Get("/api/v1/access-requests/{id}", h.APIRequest)
	r.Post("/api/v1/access-requests/{id}/approve", h.APIDecideRequest(true))
	r.Post("/api/v1/access-requests/{id}/deny", h.APIDecideRequest(false))
	r.Post("/api/v1/access-requests/{id}/checkin", h.APICheckin)
	r.Get("/api/v1/access-requests/{id}/password", h.APIPassword)
}

// workflowAdminRoutes change assets, accounts and policies: administrators
// only, on the primary only (replicas show them read-only, like the other
// configuration pages).
func workflowAdminRoutes(h *handlers.Handlers, r chi.Router) {
	r = r.With(h.RequireWritable)
	r.Post("/assets", h.CreateAssetForm)
	r.Post("/assets/{id}/delete", h.DeleteAssetForm)
	r.Post("/accounts", h.CreateAccountForm)
	r.Post("/accounts/{id}/delete", h.DeleteAccountForm)
	r.Post("/import", h.ImportForm)
	r.Post("/policies", h.CreatePolicyForm)
	r.Post("/policies/{id}/delete", h.DeletePolicyForm)

	r.Post("/api/v1/assets", h.APICreateAsset)
	r.Patch("/api/v1/assets/{id}", h.APIUpdateAsset)
	r.Delete("/api/v1/assets/{id}", h.APIDeleteAsset)
	r.Post("/api/v1/accounts", h.APICreateAccount)
	r.Patch("/api/v1/accounts/{id}", h.APIUpdateAccount)
	r.Delete("/api/v1/accounts/{id}", h.APIDeleteAccount)
	r.Post("/api/v1/import", h.APIImport)
	r.Post("/api/v1/policies", h.APISavePolicy)
	r.Put("/api/v1/policies/{id}", h.APISavePolicy)
	r.Delete("/api/v1/policies/{id}", h.APIDeletePolicy)
}
