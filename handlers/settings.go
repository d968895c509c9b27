package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"conclave/cluster"
	"conclave/views"
)

// oidcSettings is the OIDC configuration in force: flags win over settings.
func (h *Handlers) oidcSettings(ctx context.Context) cluster.OIDCSettings {
	if h.OIDCOverride != nil {
		return *h.OIDCOverride
	}
	s, err := cluster.LoadSettings(ctx, h.Store)
	if err != nil {
		h.Log.Warn("load settings", "err", err)
	}
	return s.OIDC
}

// redirectURL is where the identity provider sends the browser back: the
// cluster URL when one is set, else the address this browser used.
func (h *Handlers) redirectURL(r *http.Request) string {
	s, _ := cluster.LoadSettings(r.Context(), h.Store)
	base := strings.TrimRight(s.ClusterURL, "/")
	if base == "" {
		base = "https://" + r.Host
	}
	return base + "/auth/oidc/callback"
}

// SettingsPage shows the settings; administrators can change them.
func (h *Handlers) SettingsPage(w http.ResponseWriter, r *http.Request) {
	s, err := cluster.LoadSettings(r.Context(), h.Store)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	h.renderSettings(w, r, http.StatusOK, s, formatRoleMapping(s.OIDC.RoleMapping), nil)
}

// renderSettings shows the settings form; mapping is the role mapping as
// text, so a refused form shows what the person typed.
func (h *Handlers) renderSettings(w http.ResponseWriter, r *http.Request, status int, s cluster.Settings, mapping string, formErr *apiError) {
	me, _ := principal(r)
	p := views.SettingsPage{
		Page:            h.page(r, "Settings", "settings"),
		CanEdit:         me.IsAdmin(),
		ClusterName:     s.ClusterName,
		ClusterURL:      s.ClusterURL,
		OIDCIssuer:      s.OIDC.Issuer,
		OIDCClientID:    s.OIDC.ClientID,
		OIDCHasSecret:   s.OIDC.HasClientSecret(),
		OIDCDisplayName: s.OIDC.DisplayName,
		OIDCRolesClaim:  s.OIDC.RolesClaim,
		OIDCRoleMapping: mapping,
		RedirectURL:     h.redirectURL(r),
		Roles:           cluster.Roles,
	}
	p.LinkOKBelowMs, p.LinkWarningBelowMs = strconv.FormatFloat(s.Links.OKBelowMs, 'f', -1, 64), strconv.FormatFloat(s.Links.WarningBelowMs, 'f', -1, 64)
	p.OfflineAutoIsolate, p.OfflineAutoResume = s.Offline.AutoIsolate, s.Offline.AutoResume
	p.OfflineIsolateAfter, p.OfflineResumeAfter = strconv.Itoa(s.Offline.IsolateAfterMinutes), strconv.Itoa(s.Offline.ResumeAfterMinutes)
	if h.OIDCOverride != nil {
		p.Flash = "Sign-in with an identity provider is configured by the appliance's command line or environment, which wins over the values below."
	}
	if formErr != nil {
		p.FormError, p.FormField = formErr.Message, formErr.Field
	}
	render(w, r, status, views.SettingsView(p))
}

func formatRoleMapping(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, m[k])
	}
	return b.String()
}

// ParseRoleMapping reads lines of "value = Role".
func ParseRoleMapping(text string) (map[string]string, error) {
	out := map[string]string{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("role mapping line %d (%q) must read 'value = Role'", i+1, line)
		}
		if !cluster.ValidRole(v) {
			return nil, fmt.Errorf("role mapping line %d: %q is not a role; use one of %s", i+1, v, strings.Join(cluster.Roles, ", "))
		}
		out[k] = v
	}
	return out, nil
}

func validURL(field, s string, required bool) *apiError {
	if s == "" {
		if required {
			return badRequest(field, "%s is required", field)
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return badRequest(field, "%q is not a URL like https://host.example.com", s)
	}
	loopback := u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1" || u.Hostname() == "::1"
	if u.Scheme != "https" && !(u.Scheme == "http" && loopback) {
		return badRequest(field, "%s must start with https:// (plain http is allowed for localhost only)", field)
	}
	return nil
}

// SaveSettings is the settings form.
func (h *Handlers) SaveSettings(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	old, err := cluster.LoadSettings(r.Context(), h.Store)
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	f := r.PostForm
	s := cluster.Settings{
		ClusterName: strings.TrimSpace(f.Get("clusterName")),
		ClusterURL:  strings.TrimRight(strings.TrimSpace(f.Get("clusterUrl")), "/"),
		OIDC: cluster.OIDCSettings{
			Issuer:       strings.TrimSpace(f.Get("oidcIssuer")),
			ClientID:     strings.TrimSpace(f.Get("oidcClientId")),
			ClientSecret: f.Get("oidcClientSecret"),
			DisplayName:  strings.TrimSpace(f.Get("oidcDisplayName")),
			RolesClaim:   strings.TrimSpace(f.Get("oidcRolesClaim")),
		},
	}
	// The client secret is sealed with the cluster's data keys before it
	// is proposed; left empty, the one stored stays.
	if s.OIDC.ClientSecret == "" {
		s.OIDC.SealedClientSecret, s.OIDC.LegacyClientSecret = old.OIDC.SealedClientSecret, old.OIDC.LegacyClientSecret
	} else {
		keys, err := h.Node.DataKeys(r.Context())
		if err == nil {
			s.OIDC.SealedClientSecret, err = cluster.SealClientSecret(keys, s.OIDC.ClientSecret)
		}
		if err != nil {
			h.renderError(w, r, fmt.Errorf("seal the client secret: %w", err))
			return
		}
		s.OIDC.ClientSecret = ""
	}
	links, linksErr := parseLinkThresholds(f, old.Links)
	s.Links = links
	offline, offlineErr := parseOfflineSettings(f, old.Offline)
	s.Offline = offline
	mapping, mapErr := ParseRoleMapping(f.Get("oidcRoleMapping"))
	s.OIDC.RoleMapping = mapping
	var ferr *apiError
	switch {
	case s.ClusterName == "" || len(s.ClusterName) > 80:
		ferr = badRequest("clusterName", "the cluster name is required, at most 80 characters")
	case validURL("clusterUrl", s.ClusterURL, false) != nil:
		ferr = validURL("clusterUrl", s.ClusterURL, false)
	case validURL("oidcIssuer", s.OIDC.Issuer, false) != nil:
		ferr = validURL("oidcIssuer", s.OIDC.Issuer, false)
	case s.OIDC.Issuer != "" && s.OIDC.ClientID == "":
		ferr = badRequest("oidcClientId", "the client ID is required when an issuer is set")
	case s.OIDC.RolesClaim == "":
		ferr = badRequest("oidcRolesClaim", "name the claim that carries groups or roles (usually groups)")
	case mapErr != nil:
		ferr = badRequest("oidcRoleMapping", "%v", mapErr)
	case linksErr != nil:
		ferr = linksErr
	case offlineErr != nil:
		ferr = offlineErr
	}
	if ferr != nil {
		h.renderSettings(w, r, http.StatusUnprocessableEntity, s, f.Get("oidcRoleMapping"), ferr)
		return
	}
	changed := changedSettings(old, s)
	if len(changed) == 0 {
		http.Redirect(w, r, "/settings?done=saved", http.StatusSeeOther)
		return
	}
	me, _ := principal(r)
	err = h.Node.ProposeData(r.Context(), cluster.CmdPutSettings, me.Username, cluster.PutSettings{Values: cluster.SettingsValues(s)},
		&cluster.EventSpec{Type: "SettingsChanged", Details: map[string]string{"changed": strings.Join(changed, ", ")}})
	if err != nil {
		h.renderError(w, r, err)
		return
	}
	http.Redirect(w, r, "/settings?done=saved", http.StatusSeeOther)
}

// changedSettings names what differs, never showing a secret's value.
func changedSettings(a, b cluster.Settings) []string {
	var out []string
	if a.ClusterName != b.ClusterName {
		out = append(out, "cluster name")
	}
	if a.ClusterURL != b.ClusterURL {
		out = append(out, "cluster URL")
	}
	if a.OIDC.Issuer != b.OIDC.Issuer || a.OIDC.ClientID != b.OIDC.ClientID || a.OIDC.DisplayName != b.OIDC.DisplayName || a.OIDC.RolesClaim != b.OIDC.RolesClaim {
		out = append(out, "identity provider")
	}
	if a.OIDC.SealedClientSecret != b.OIDC.SealedClientSecret || a.OIDC.LegacyClientSecret != b.OIDC.LegacyClientSecret {
		out = append(out, "identity provider client secret")
	}
	if a.Links != b.Links {
		out = append(out, "link latency thresholds")
	}
	if a.Offline != b.Offline {
		out = append(out, "automatic Offline Workflow")
	}
	ma, _ := json.Marshal(a.OIDC.RoleMapping)
	mb, _ := json.Marshal(b.OIDC.RoleMapping)
	if string(ma) != string(mb) {
		out = append(out, "role mapping")
	}
	return out
}
