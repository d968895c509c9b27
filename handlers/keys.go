package handlers

import (
	"net/http"
	"time"

	"conclave/views"
)

// PhraseRotateKey confirms a rotation of the cluster's data keys.
const PhraseRotateKey = "Rotate Key"

// KeysPage shows the data keys of the cluster key ring (never their
// bytes) and the Rotate Key confirmation.
func (h *Handlers) KeysPage(w http.ResponseWriter, r *http.Request) {
	h.renderKeys(w, r, http.StatusOK, "")
}

func (h *Handlers) renderKeys(w http.ResponseWriter, r *http.Request, status int, formErr string) {
	ring, err := h.Node.KeyRingStatus(r.Context())
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	me, _ := principal(r)
	p := views.KeysPage{Page: h.page(r, "Data keys", "keys"), ActiveKeyID: ring.ActiveKeyID, ClearSecrets: ring.ClearSecrets,
		RotationID: ring.RotationID, CanRotate: me.IsAdmin() && ring.RotationID == "", Phrase: PhraseRotateKey, FormError: formErr}
	now := time.Now()
	for _, k := range ring.Keys {
		row := views.KeyRow{ID: k.ID, Active: k.Active, Missing: k.Missing, Secrets: k.Secrets, Added: "unknown"}
		if !k.AddedAt.IsZero() {
			row.Added = views.When(k.AddedAt)
			if k.Active {
				p.ActiveAge = views.Duration(now.Sub(k.AddedAt))
			}
		}
		p.Keys = append(p.Keys, row)
	}
	render(w, r, status, views.Keys(p))
}

// RotateKeyForm is the confirmed Rotate Key form.
func (h *Handlers) RotateKeyForm(w http.ResponseWriter, r *http.Request) {
	h.confirmedForm(w, r, PhraseRotateKey, func(w http.ResponseWriter, r *http.Request, status int, msg string) {
		h.renderKeys(w, r, status, msg)
	}, func(actor string) (string, error) {
		id, err := h.Node.RotateDataKeys(r.Context(), actor)
		return "/operations/" + id, err
	})
}

// APIKeys is GET /api/v1/keys: the key ring's keys, what each seals, and
// the rotation in progress.
func (h *Handlers) APIKeys(w http.ResponseWriter, r *http.Request) {
	ring, err := h.Node.KeyRingStatus(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ring)
}

// APIRotateKey is POST /api/v1/keys/rotate {confirm: "Rotate Key"}.
func (h *Handlers) APIRotateKey(w http.ResponseWriter, r *http.Request) {
	if !h.decodeConfirm(w, r, PhraseRotateKey) {
		return
	}
	me, _ := principal(r)
	id, err := h.Node.RotateDataKeys(r.Context(), me.Username)
	h.writeOperationStarted(w, r, id, err)
}
