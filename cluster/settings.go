package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	"conclave/store"
)

// Settings are the cluster-wide settings, replicated through raft.
type Settings struct {
	ClusterName string `json:"clusterName"`
	ClusterURL  string `json:"clusterUrl"`
	OIDC        OIDCSettings
	// Links colour link latency in the console (see links.go).
	Links LinkThresholds
	// Offline: the automatic Offline Workflow modes (offline.go).
	Offline OfflineSettings
}

// OIDCSettings configure sign-in through an OpenID Connect provider.
type OIDCSettings struct {
	Issuer   string `json:"issuer"`
	ClientID string `json:"clientId"`
	// ClientSecret is the client secret in clear: set from the command
	// line, or opened from SealedClientSecret where the OIDC client needs
	// it (Node.OpenClientSecret). Never stored.
	ClientSecret string `json:"-"`
	// SealedClientSecret is the client secret sealed with the cluster's
	// data keys, as the settings store it (cluster/keys.go).
	SealedClientSecret string `json:"clientSecretSealed,omitempty"`
	// LegacyClientSecret is a client secret an older release stored in
	// clear; the primary seals it at its next election.
	LegacyClientSecret string            `json:"clientSecret,omitempty"`
	DisplayName        string            `json:"displayName"`
	RolesClaim         string            `json:"rolesClaim"`
	RoleMapping        map[string]string `json:"roleMapping"` // claim value -> role
}

// HasClientSecret tells whether a client secret is set, in whatever form.
func (o OIDCSettings) HasClientSecret() bool {
	return o.ClientSecret != "" || o.SealedClientSecret != "" || o.LegacyClientSecret != ""
}

// Enabled tells whether OIDC sign-in is configured.
func (o OIDCSettings) Enabled() bool { return o.Issuer != "" && o.ClientID != "" }

// Setting keys as stored.
const (
	KeyClusterName  = "clusterName"
	KeyClusterURL   = "clusterUrl"
	KeyOIDC         = "oidc"
	KeyLinks        = "linkThresholds"
	KeyOffline      = "offlineWorkflow"
	DefaultRolesKey = "groups"
)

// LoadSettings reads the settings, with defaults for what is not set.
func LoadSettings(ctx context.Context, st *store.Store) (Settings, error) {
	raw, err := st.Settings(ctx)
	if err != nil {
		return Settings{}, err
	}
	s := Settings{ClusterName: "Conclave", Links: DefaultLinkThresholds(), Offline: DefaultOfflineSettings()}
	if v, ok := raw[KeyClusterName]; ok {
		json.Unmarshal(v, &s.ClusterName)
	}
	if v, ok := raw[KeyClusterURL]; ok {
		json.Unmarshal(v, &s.ClusterURL)
	}
	if v, ok := raw[KeyOIDC]; ok {
		if err := json.Unmarshal(v, &s.OIDC); err != nil {
			return s, fmt.Errorf("oidc settings: %w", err)
		}
	}
	if v, ok := raw[KeyLinks]; ok {
		if err := json.Unmarshal(v, &s.Links); err != nil || s.Links.Validate() != nil {
			s.Links = DefaultLinkThresholds()
		}
	}
	if v, ok := raw[KeyOffline]; ok {
		if err := json.Unmarshal(v, &s.Offline); err != nil || s.Offline.Validate() != nil {
			s.Offline = DefaultOfflineSettings()
		}
	}
	if s.OIDC.RolesClaim == "" {
		s.OIDC.RolesClaim = DefaultRolesKey
	}
	return s, nil
}

// SettingsValues turns settings into the values of a CmdPutSettings.
func SettingsValues(s Settings) map[string]json.RawMessage {
	name, _ := json.Marshal(s.ClusterName)
	url, _ := json.Marshal(s.ClusterURL)
	oidc, _ := json.Marshal(s.OIDC)
	links, _ := json.Marshal(s.Links)
	offline, _ := json.Marshal(s.Offline)
	return map[string]json.RawMessage{KeyClusterName: name, KeyClusterURL: url, KeyOIDC: oidc, KeyLinks: links, KeyOffline: offline}
}
