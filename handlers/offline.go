package handlers

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"conclave/cluster"
	"conclave/store"
	"conclave/views"
)

// Typed phrases of Offline Workflow Mode.
const (
	PhraseIsolate     = "Enable Offline Workflow"
	PhraseReintegrate = "Resume Online"
)

// APIIsolate is POST /api/v1/cluster/isolate.
func (h *Handlers) APIIsolate(w http.ResponseWriter, r *http.Request) {
	if !h.decodeConfirm(w, r, PhraseIsolate) {
		return
	}
	me, _ := principal(r)
	id, err := h.Node.Isolate(r.Context(), me.Username, "enabled by "+me.Username)
	h.writeOperationStarted(w, r, id, err)
}

// APIReintegrate is POST /api/v1/cluster/reintegrate.
func (h *Handlers) APIReintegrate(w http.ResponseWriter, r *http.Request) {
	if !h.decodeConfirm(w, r, PhraseReintegrate) {
		return
	}
	me, _ := principal(r)
	id, err := h.Node.Reintegrate(r.Context(), me.Username)
	h.writeOperationStarted(w, r, id, err)
}

// IsolatePage confirms Enable Offline Workflow.
func (h *Handlers) IsolatePage(w http.ResponseWriter, r *http.Request) {
	h.renderIsolate(w, r, http.StatusOK, "")
}

func (h *Handlers) renderIsolate(w http.ResponseWriter, r *http.Request, status int, formErr string) {
	name := h.Node.Name()
	p := views.OfflinePage{Page: h.page(r, PhraseIsolate, "cluster"), Action: PhraseIsolate, Phrase: PhraseIsolate, Danger: true, FormError: formErr,
		Lead: name + " has lost contact with the majority of its cluster, so no change can be recorded. " +
			"Offline Workflow lets people go on requesting passwords here, on the policy and accounts " + name + " has now.",
		Consequences: []string{
			"Password requests, approvals, releases and check-ins work on " + name + " only, recorded in its own database and audit log.",
			"Assets, accounts, policies, users and settings are read-only here. The other members do not see what happens here until Resume Online.",
			"A password the policy changes after check-in is not changed (the event AccessRequestPasswordResetByPassed records it): someone who used it offline still knows it, and so may someone on the other side.",
			"At Resume Online the offline audit log is merged into the cluster's, requests still open are dropped (their requesters see why), and " + name + " becomes a replica again.",
			"No member can be added or removed while " + name + " is offline.",
		}}
	if err := h.Node.CheckIsolate(); err != nil {
		p.Refused = err.Error()
	}
	render(w, r, status, views.OfflineConfirm(p))
}

// IsolateStart is the confirmed Enable Offline Workflow form.
func (h *Handlers) IsolateStart(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	if err := checkPhrase(r.PostFormValue("confirm"), PhraseIsolate); err != nil {
		h.renderIsolate(w, r, http.StatusUnprocessableEntity, err.(*apiError).Message)
		return
	}
	me, _ := principal(r)
	id, err := h.Node.Isolate(r.Context(), me.Username, "enabled by "+me.Username)
	if err != nil {
		h.renderIsolate(w, r, http.StatusConflict, err.Error())
		return
	}
	http.Redirect(w, r, "/operations/"+id, http.StatusSeeOther)
}

// ReintegratePage confirms Resume Online.
func (h *Handlers) ReintegratePage(w http.ResponseWriter, r *http.Request) {
	h.renderReintegrate(w, r, http.StatusOK, "")
}

func (h *Handlers) renderReintegrate(w http.ResponseWriter, r *http.Request, status int, formErr string) {
	name := h.Node.Name()
	p := views.OfflinePage{Page: h.page(r, PhraseReintegrate, "cluster"), Action: PhraseReintegrate, Phrase: PhraseReintegrate, FormError: formErr,
		Lead: name + " is in Offline Workflow. Resume Online brings it back into its cluster once it reaches a majority of the members again.",
		Consequences: []string{
			"Every audit event recorded on " + name + " while offline is merged into the cluster's audit log, once, with its original time.",
			"Requests made offline that are still waiting for approval or checked out are dropped; their requesters must request again.",
			name + "'s own copy of the access requests is replaced by the cluster's, and it catches up as a replica.",
		}}
	if m := h.Node.Mode(); m.State != cluster.StateIsolated {
		p.Refused = name + " is not in Offline Workflow: there is nothing to resume."
	} else if _, err := h.Node.CheckReintegrate(r.Context()); err != nil && formErr == "" {
		p.FormError = err.Error()
	}
	render(w, r, status, views.OfflineConfirm(p))
}

// ReintegrateStart is the confirmed Resume Online form.
func (h *Handlers) ReintegrateStart(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	if err := checkPhrase(r.PostFormValue("confirm"), PhraseReintegrate); err != nil {
		h.renderReintegrate(w, r, http.StatusUnprocessableEntity, err.(*apiError).Message)
		return
	}
	me, _ := principal(r)
	id, err := h.Node.Reintegrate(r.Context(), me.Username)
	if err != nil {
		h.renderReintegrate(w, r, http.StatusConflict, err.Error())
		return
	}
	http.Redirect(w, r, "/operations/"+id, http.StatusSeeOther)
}

// parseOfflineSettings reads the Offline Workflow fieldset of the settings
// form; a form without it keeps the settings as they are.
func parseOfflineSettings(f url.Values, old cluster.OfflineSettings) (cluster.OfflineSettings, *apiError) {
	if f.Get("offlineFields") == "" {
		return old, nil
	}
	o := cluster.OfflineSettings{AutoIsolate: f.Get("offlineAutoIsolate") == "on", AutoResume: f.Get("offlineAutoResume") == "on"}
	for _, field := range []struct {
		name string
		into *int
	}{{"offlineIsolateAfterMinutes", &o.IsolateAfterMinutes}, {"offlineResumeAfterMinutes", &o.ResumeAfterMinutes}} {
		v, err := strconv.Atoi(strings.TrimSpace(f.Get(field.name)))
		if err != nil {
			return o, badRequest(field.name, "give a whole number of minutes, at least %d", int(cluster.MinOfflineThreshold.Minutes()))
		}
		*field.into = v
	}
	if err := o.Validate(); err != nil {
		var rej *store.Rejection
		if errors.As(err, &rej) {
			field := map[string]string{"isolateAfterMinutes": "offlineIsolateAfterMinutes", "resumeAfterMinutes": "offlineResumeAfterMinutes"}[rej.Field]
			return o, badRequest(field, "%s", rej.Message)
		}
		return o, badRequest("", "%v", err)
	}
	return o, nil
}

// offlineSummary is the cluster view's headline on an isolated member.
func offlineSummary(name string) string {
	return name + " is in Offline Workflow: it takes password requests on its own, and the cluster's changes reach it only after Resume Online."
}

// droppedRequests are a user's requests dropped at Resume Online in the
// last week, from the audit log.
func (h *Handlers) droppedRequests(ctx context.Context, username string) []views.DroppedRequest {
	evs, err := h.Store.Events(ctx, store.EventFilter{Type: "AccessRequestDropped", Since: time.Now().Add(-7 * 24 * time.Hour), Limit: 200})
	if err != nil {
		h.Log.Warn("dropped requests", "err", err)
		return nil
	}
	var out []views.DroppedRequest
	for _, e := range evs {
		if strings.EqualFold(e.Details["requester"], username) {
			out = append(out, views.DroppedRequest{Account: e.Details["account"], Member: h.memberName(ctx, e.MemberID), At: e.At})
		}
	}
	return out
}
