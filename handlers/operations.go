package handlers

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"conclave/cluster"
	"conclave/views"
)

// Typed phrases: the same in the console and the API.
const (
	PhraseAddReplica = "Add Replica"
	PhraseUnjoin     = "Unjoin"
	PhraseActivate   = "Activate"
)

// decodeConfirm reads a body {"confirm": "..."} and checks the phrase; it
// answers the error itself and returns false when the request must stop.
func (h *Handlers) decodeConfirm(w http.ResponseWriter, r *http.Request, phrase string) bool {
	var req struct {
		Confirm string `json:"confirm"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return false
	}
	if err := checkPhrase(req.Confirm, phrase); err != nil {
		h.writeError(w, r, err)
		return false
	}
	return true
}

// confirmedForm handles a typed-confirmation form: the phrase must match,
// then start runs as the signed-in user and the browser goes where it says.
// A wrong phrase or a refusal shows the page again with the reason inline.
func (h *Handlers) confirmedForm(w http.ResponseWriter, r *http.Request, phrase string,
	rerender func(w http.ResponseWriter, r *http.Request, status int, msg string), start func(actor string) (string, error)) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	if err := checkPhrase(r.PostFormValue("confirm"), phrase); err != nil {
		rerender(w, r, http.StatusUnprocessableEntity, err.Error())
		return
	}
	me, _ := principal(r)
	next, err := start(me.Username)
	if err != nil {
		rerender(w, r, http.StatusConflict, err.Error())
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func checkPhrase(got, want string) error {
	if got != want {
		return &apiError{Status: http.StatusUnprocessableEntity, Field: "confirm", Message: "type the phrase \"" + want + "\" exactly to confirm"}
	}
	return nil
}

// normalizeAddress turns what a person typed ("10.0.0.5", "host:8441",
// "https://host:8441/") into host:port, with 8441 by default.
func normalizeAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return "", badRequest("address", "%q is not an address like 10.0.0.5:8441", s)
		}
		s = u.Host
	}
	s = strings.TrimRight(s, "/")
	if s == "" {
		return "", badRequest("address", "the replica's address is required, like 10.0.0.5:8441")
	}
	if !strings.Contains(s, ":") || strings.HasSuffix(s, "]") {
		s += ":8441"
	}
	if strings.ContainsAny(s, " /?#@") {
		return "", badRequest("address", "%q is not an address like 10.0.0.5:8441", s)
	}
	return s, nil
}

// APIAddReplica is POST /api/v1/cluster/members.
func (h *Handlers) APIAddReplica(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Address             string `json:"address"`
		AuthenticationToken string `json:"authenticationToken"`
		Confirm             string `json:"confirm"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := checkPhrase(req.Confirm, PhraseAddReplica); err != nil {
		h.writeError(w, r, err)
		return
	}
	addr, err := normalizeAddress(req.Address)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if req.AuthenticationToken == "" {
		h.writeError(w, r, badRequest("authenticationToken", "authenticationToken is required: a token from the replica's POST /api/v1/auth/token, for one of its administrators"))
		return
	}
	info, fp, err := h.Node.FetchInfo(r.Context(), addr)
	if err != nil {
		h.writeError(w, r, &apiError{Status: http.StatusUnprocessableEntity, Field: "address", Message: err.Error()})
		return
	}
	me, _ := principal(r)
	id, err := h.Node.AddReplica(r.Context(), me.Username, cluster.EnrollTarget{Address: addr, Fingerprint: fp, Auth: "Bearer " + req.AuthenticationToken, Info: info})
	h.writeOperationStarted(w, r, id, err)
}

// APIUnjoin is DELETE /api/v1/cluster/members/{id}.
func (h *Handlers) APIUnjoin(w http.ResponseWriter, r *http.Request) {
	if !h.decodeConfirm(w, r, PhraseUnjoin) {
		return
	}
	me, _ := principal(r)
	id, err := h.Node.Unjoin(r.Context(), me.Username, chi.URLParam(r, "id"))
	h.writeOperationStarted(w, r, id, err)
}

// APIActivate is POST /api/v1/cluster/activate.
func (h *Handlers) APIActivate(w http.ResponseWriter, r *http.Request) {
	if !h.decodeConfirm(w, r, PhraseActivate) {
		return
	}
	me, _ := principal(r)
	if err := h.Node.Activate(r.Context(), me.Username); err != nil {
		h.writeOperationError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"state": h.Node.SelfState()})
}

// AddReplicaPage is step 1 of Add Replica in the console: the address.
func (h *Handlers) AddReplicaPage(w http.ResponseWriter, r *http.Request) {
	p := views.AddReplicaPage{Page: h.page(r, "Add Replica", "cluster"), Step: "address", ReadOnly: h.Node.ReadOnlyReason()}
	render(w, r, http.StatusOK, views.AddReplica(p))
}

// AddReplicaLookup is step 2: the primary reaches the replica and shows
// what it found, with the way to the replica's sign-in.
func (h *Handlers) AddReplicaLookup(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	p := views.AddReplicaPage{Page: h.page(r, "Add Replica", "cluster"), Step: "address", Address: r.PostFormValue("address")}
	addr, err := normalizeAddress(r.PostFormValue("address"))
	if err != nil {
		p.FormError = err.Error()
		render(w, r, http.StatusUnprocessableEntity, views.AddReplica(p))
		return
	}
	info, fp, err := h.Node.FetchInfo(r.Context(), addr)
	if err != nil {
		p.FormError = err.Error() + ". Check the address and that the appliance is running."
		render(w, r, http.StatusUnprocessableEntity, views.AddReplica(p))
		return
	}
	target := cluster.EnrollTarget{Address: addr, Fingerprint: fp, Info: info}
	if err := h.Node.CheckEnrollTarget(r.Context(), target); err != nil {
		p.FormError = err.Error()
		render(w, r, http.StatusUnprocessableEntity, views.AddReplica(p))
		return
	}
	p.Step = "found"
	p.Replica = replicaView(addr, fp, info)
	p.AuthorizeURL = h.authorizeURL(r, addr, fp, info)
	render(w, r, http.StatusOK, views.AddReplica(p))
}

func replicaView(addr, fp string, info cluster.ApplianceInfo) views.ReplicaFacts {
	return views.ReplicaFacts{Address: addr, Fingerprint: fp, Name: info.Name, Version: info.Version, State: cluster.StateLabel(info.State), ID: info.ID, ClusterName: info.ClusterName}
}

// authorizeURL is the replica's page where one of its administrators
// approves the enrollment; it sends the browser back with a grant.
func (h *Handlers) authorizeURL(r *http.Request, addr, fp string, info cluster.ApplianceInfo) string {
	c, _ := h.Store.Cluster(r.Context())
	s, _ := cluster.LoadSettings(r.Context(), h.Store)
	back := "https://" + r.Host + "/cluster/add-replica/confirm?" + url.Values{"address": {addr}, "fp": {fp}}.Encode()
	q := url.Values{"cluster": {c.ID}, "clusterName": {s.ClusterName}, "primary": {h.Node.Name()}, "return": {back}}
	return "https://" + addr + "/enroll/authorize?" + q.Encode()
}

// AddReplicaConfirmPage is step 3: back from the replica with a grant, the
// consequences and the typed phrase.
func (h *Handlers) AddReplicaConfirmPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	h.renderAddReplicaConfirm(w, r, http.StatusOK, q.Get("address"), q.Get("fp"), q.Get("grant"), "")
}

func (h *Handlers) renderAddReplicaConfirm(w http.ResponseWriter, r *http.Request, status int, address, fp, grant, formErr string) {
	p := views.AddReplicaPage{Page: h.page(r, "Add Replica", "cluster"), Step: "confirm", Grant: grant, Phrase: PhraseAddReplica, FormError: formErr}
	addr, err := normalizeAddress(address)
	if err != nil || grant == "" {
		p.Step, p.FormError = "address", "The approval from the replica is missing; start again."
		render(w, r, http.StatusBadRequest, views.AddReplica(p))
		return
	}
	info, gotFP, err := h.Node.FetchInfo(r.Context(), addr)
	if err == nil && fp != "" && gotFP != fp {
		err = errStr("the appliance at " + addr + " now shows another certificate (" + gotFP + ") than when you chose it; start again")
	}
	if err != nil {
		p.Step, p.FormError = "address", err.Error()
		render(w, r, http.StatusUnprocessableEntity, views.AddReplica(p))
		return
	}
	p.Replica = replicaView(addr, gotFP, info)
	p.Steps = cluster.AddReplicaSteps
	render(w, r, status, views.AddReplica(p))
}

type errStr string

func (e errStr) Error() string { return string(e) }

// AddReplicaStart is the confirmed form: it starts the operation.
func (h *Handlers) AddReplicaStart(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	f := r.PostForm
	if err := checkPhrase(f.Get("confirm"), PhraseAddReplica); err != nil {
		h.renderAddReplicaConfirm(w, r, http.StatusUnprocessableEntity, f.Get("address"), f.Get("fp"), f.Get("grant"), err.Error())
		return
	}
	addr, err := normalizeAddress(f.Get("address"))
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	info, fp, err := h.Node.FetchInfo(r.Context(), addr)
	if err == nil && fp != f.Get("fp") {
		err = errStr("the appliance's certificate changed since you chose it; start again")
	}
	if err != nil {
		h.renderAddReplicaConfirm(w, r, http.StatusUnprocessableEntity, f.Get("address"), f.Get("fp"), f.Get("grant"), err.Error())
		return
	}
	me, _ := principal(r)
	id, err := h.Node.AddReplica(r.Context(), me.Username, cluster.EnrollTarget{Address: addr, Fingerprint: fp, Auth: "Grant " + f.Get("grant"), Info: info})
	if err != nil {
		h.renderAddReplicaConfirm(w, r, http.StatusConflict, f.Get("address"), f.Get("fp"), f.Get("grant"), err.Error())
		return
	}
	http.Redirect(w, r, "/operations/"+id, http.StatusSeeOther)
}

// EnrollAuthorizePage is on the replica: one of its administrators approves
// that a primary enrolls this appliance.
func (h *Handlers) EnrollAuthorizePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := views.EnrollAuthorizePage{Page: h.page(r, "Approve Add Replica", "cluster"), ClusterID: q.Get("cluster"), ClusterName: q.Get("clusterName"),
		PrimaryName: q.Get("primary"), Return: q.Get("return"), Info: h.applianceFacts(r)}
	if err := validReturn(p.Return); err != nil {
		p.FormError = err.Error()
		render(w, r, http.StatusBadRequest, views.EnrollAuthorize(p))
		return
	}
	if !h.Node.Info(r.Context()).Standalone {
		p.FormError = "This appliance is a member of a cluster with other members; unjoin it there before adding it to another."
	}
	render(w, r, http.StatusOK, views.EnrollAuthorize(p))
}

func (h *Handlers) applianceFacts(r *http.Request) views.ReplicaFacts {
	info := h.Node.Info(r.Context())
	return views.ReplicaFacts{Address: info.Address, Name: info.Name, Version: info.Version, State: cluster.StateLabel(info.State), ID: info.ID, ClusterName: info.ClusterName}
}

func validReturn(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "/cluster/add-replica/confirm" {
		return errStr("the link back to the primary is missing or not a primary's Add Replica page; start Add Replica again on the primary")
	}
	return nil
}

// EnrollAuthorize issues the grant and sends the browser back to the primary.
func (h *Handlers) EnrollAuthorize(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	ret := r.PostFormValue("return")
	if err := validReturn(ret); err != nil {
		h.renderMessage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if !h.Node.Info(r.Context()).Standalone {
		h.renderMessage(w, r, http.StatusConflict, "This appliance is a member of a cluster with other members; unjoin it there first.")
		return
	}
	me, _ := principal(r)
	grant := h.Node.IssueGrant(r.PostFormValue("cluster"), me.Username)
	h.Node.RecordEvent(r.Context(), me.Username, cluster.EventSpec{Type: "ClusterReplicaEnrollmentApproved",
		Details: map[string]string{"cluster": r.PostFormValue("clusterName"), "primary": r.PostFormValue("primary")}})
	u, _ := url.Parse(ret)
	q := u.Query()
	q.Set("grant", grant)
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// UnjoinPage confirms an Unjoin.
func (h *Handlers) UnjoinPage(w http.ResponseWriter, r *http.Request) {
	h.renderUnjoin(w, r, http.StatusOK, "")
}

func (h *Handlers) renderUnjoin(w http.ResponseWriter, r *http.Request, status int, formErr string) {
	id := chi.URLParam(r, "id")
	p := views.UnjoinPage{Page: h.page(r, "Unjoin", "cluster"), MemberID: id, Phrase: PhraseUnjoin, FormError: formErr, Steps: cluster.UnjoinSteps}
	target, err := h.Node.CheckUnjoin(r.Context(), id)
	p.MemberName, p.Address = target.Name, target.Address
	if err != nil && formErr == "" {
		p.Refused = err.Error()
	}
	render(w, r, status, views.Unjoin(p))
}

// UnjoinStart is the confirmed Unjoin form.
func (h *Handlers) UnjoinStart(w http.ResponseWriter, r *http.Request) {
	h.confirmedForm(w, r, PhraseUnjoin, h.renderUnjoin, func(actor string) (string, error) {
		id, err := h.Node.Unjoin(r.Context(), actor, chi.URLParam(r, "id"))
		return "/operations/" + id, err
	})
}

// ActivatePage confirms Activate.
func (h *Handlers) ActivatePage(w http.ResponseWriter, r *http.Request) {
	h.renderActivate(w, r, http.StatusOK, "")
}

func (h *Handlers) renderActivate(w http.ResponseWriter, r *http.Request, status int, formErr string) {
	p := views.ActivatePage{Page: h.page(r, "Activate", "cluster"), Phrase: PhraseActivate, FormError: formErr, Name: h.Node.Name()}
	if h.Node.Mode().State != cluster.StateStandaloneRO {
		p.Refused = "Only an appliance that is Online Read-only (after Unjoin) can be activated; this one is " + cluster.StateLabel(h.Node.SelfState()) + "."
	}
	render(w, r, status, views.Activate(p))
}

// ActivateStart is the confirmed Activate form.
func (h *Handlers) ActivateStart(w http.ResponseWriter, r *http.Request) {
	h.confirmedForm(w, r, PhraseActivate, h.renderActivate, func(actor string) (string, error) {
		return "/?done=activated", h.Node.Activate(r.Context(), actor)
	})
}
