package handlers

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"conclave/store"
	"conclave/views"
)

// parseEventFilter reads type, member, actor, since, until and limit from
// the query. Times are RFC 3339, or the browser's datetime-local in UTC.
func parseEventFilter(q url.Values) (store.EventFilter, error) {
	f := store.EventFilter{Type: q.Get("type"), MemberID: q.Get("member"), Actor: strings.TrimSpace(q.Get("actor"))}
	var err error
	if f.Since, err = parseTime(q.Get("since")); err != nil {
		return f, badRequest("since", "since: %v", err)
	}
	if f.Until, err = parseTime(q.Get("until")); err != nil {
		return f, badRequest("until", "until: %v", err)
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return f, badRequest("limit", "limit must be a whole number from 1 to 1000")
		}
		f.Limit = n
	}
	return f, nil
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time; use RFC 3339 like 2026-01-02T15:04:05Z", s)
}

// ActivityPage is the Activity Center.
func (h *Handlers) ActivityPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	f, err := parseEventFilter(q)
	p := views.ActivityPage{Page: h.page(r, "Activity", "activity"), Limit: 200}
	p.Filter = views.ActivityFilter{Type: f.Type, Member: f.MemberID, Actor: f.Actor, Since: q.Get("since"), Until: q.Get("until")}
	if err != nil {
		p.FlashError = err.Error()
		f = store.EventFilter{}
	}
	f.Limit = p.Limit
	p.Chain = h.auditChain(ctx)
	events, err := h.Store.Events(ctx, f)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	if p.Types, err = h.Store.EventTypes(ctx); err != nil {
		h.renderError(w, r, err)
		return
	}
	names := map[string]string{}
	if ms, err := h.Store.Members(ctx); err == nil {
		for _, m := range ms {
			names[m.ID] = m.Name
			p.Members = append(p.Members, views.Option{Value: m.ID, Label: m.Name})
		}
	}
	for _, e := range events {
		member := names[e.MemberID]
		if member == "" {
			member = e.MemberID
		}
		row := views.EventRow{At: e.At, Type: e.Type, Summary: eventSummary(e), Actor: e.Actor, Member: member, OperationID: e.OperationID, Tone: eventTone(e.Type)}
		keys := make([]string, 0, len(e.Details))
		for k := range e.Details {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row.Details = append(row.Details, views.KV{Key: k, Value: e.Details[k]})
		}
		p.Events = append(p.Events, row)
	}
	render(w, r, http.StatusOK, views.Activity(p))
}

// eventSummary says what an event means in a sentence.
func eventSummary(e store.Event) string {
	d := e.Details
	switch e.Type {
	case "ClusterCreated":
		return "The cluster was created on " + d["member"] + "."
	case "UserLoggedIn":
		return fmt.Sprintf("%s signed in (%s) from %s.", e.Actor, d["method"], d["address"])
	case "UserLoggedOut":
		return e.Actor + " signed out."
	case "UserLoginFailed":
		return fmt.Sprintf("A sign-in as %q from %s failed: %s.", d["username"], d["address"], d["reason"])
	case "UserCreated":
		return fmt.Sprintf("User %s was created with role %s.", d["username"], d["role"])
	case "UserRoleChanged":
		return fmt.Sprintf("%s's role is now %s.", d["username"], d["role"])
	case "UserPasswordReset":
		return fmt.Sprintf("%s's password was reset.", d["username"])
	case "UserDisabled":
		return fmt.Sprintf("%s was disabled.", d["username"])
	case "UserEnabled":
		return fmt.Sprintf("%s was enabled.", d["username"])
	case "ApiTokenIssued":
		return "An API token was issued to " + e.Actor + "."
	case "ApiTokenRevoked":
		return "An API token of " + e.Actor + " was revoked."
	case "SettingsChanged":
		return "Settings changed: " + d["changed"] + "."
	case "ClusterLocked":
		return "The cluster was locked for " + d["kind"] + "."
	case "ClusterUnlocked":
		return "The cluster was unlocked (" + d["result"] + ")."
	case "ClusterLinkDown":
		return fmt.Sprintf("The link %s → %s is down: %s.", d["from"], d["to"], d["reason"])
	case "ClusterLinkRestored":
		return fmt.Sprintf("The link %s → %s answers again (round trip %s ms).", d["from"], d["to"], d["roundTripMs"])
	case "ClusterLinkTested":
		return fmt.Sprintf("%s tested the link %s ↔ %s.", e.Actor, d["from"], d["to"])
	case "OperationResultUnknown":
		return "A " + d["kind"] + " operation was left unfinished by a primary that stopped."
	}
	if s := backupEventSummary(e); s != "" {
		return s
	}
	return workflowEventSummary(e)
}

func eventTone(t string) string {
	switch {
	case strings.Contains(t, "Failed"), strings.Contains(t, "Lost"), strings.Contains(t, "Unknown"), strings.HasSuffix(t, "Down"):
		return "bad"
	case strings.Contains(t, "Locked"), strings.Contains(t, "Disabled"):
		return "warn"
	}
	return "info"
}

type eventJSON struct {
	ID          string            `json:"id"`
	Type        string            `json:"type"`
	MemberID    string            `json:"memberId"`
	Actor       string            `json:"actor"`
	At          time.Time         `json:"at"`
	OperationID string            `json:"operationId"`
	Details     map[string]string `json:"details"`
}

// APIEvents is GET /api/v1/events.
func (h *Handlers) APIEvents(w http.ResponseWriter, r *http.Request) {
	f, err := parseEventFilter(r.URL.Query())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	events, err := h.Store.Events(r.Context(), f)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]eventJSON, 0, len(events))
	for _, e := range events {
		if e.Details == nil {
			e.Details = map[string]string{}
		}
		out = append(out, eventJSON{ID: e.ID, Type: e.Type, MemberID: e.MemberID, Actor: e.Actor, At: e.At, OperationID: e.OperationID, Details: e.Details})
	}
	writeJSON(w, http.StatusOK, out)
}
