package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Mode is a state this appliance is put in on purpose, which raft alone
// does not tell: being enrolled (Maintenance), leaving, or standing alone
// read-only after Unjoin. It is kept in the data directory so a restart
// keeps it.
type Mode struct {
	State  string    `json:"state,omitempty"` // "", Maintenance, LeavingCluster, StandaloneReadOnly, Isolated
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitempty"`
	// While being enrolled: who enrolls this appliance, and its CA.
	PrimaryID   string `json:"primaryId,omitempty"`
	ClusterID   string `json:"clusterId,omitempty"`
	ClusterName string `json:"clusterName,omitempty"`
	CA          *CA    `json:"ca,omitempty"`
	// Resuming: an isolated appliance is running Resume Online (offline.go).
	Resuming bool `json:"resuming,omitempty"`
	// RestorePending: the data of a backup was restored; the appliance
	// still has to become a cluster of its own (restore.go).
	RestorePending bool `json:"restorePending,omitempty"`
}

func modePath(dataDir string) string { return filepath.Join(dataDir, "mode.json") }

func loadMode(dataDir string) (Mode, error) {
	raw, err := os.ReadFile(modePath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return Mode{}, nil
	}
	if err != nil {
		return Mode{}, fmt.Errorf("appliance mode: %w", err)
	}
	var m Mode
	if err := json.Unmarshal(raw, &m); err != nil {
		return Mode{}, fmt.Errorf("appliance mode %s is damaged: %w", modePath(dataDir), err)
	}
	return m, nil
}

// Mode returns the appliance's mode.
func (n *Node) Mode() Mode {
	if m := n.mode.Load(); m != nil {
		return *m
	}
	return Mode{}
}

// setMode changes and keeps the appliance's mode.
func (n *Node) setMode(m Mode) error {
	if m.State != "" && m.Since.IsZero() {
		m.Since = time.Now().UTC()
	}
	raw, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFileAtomic(modePath(n.cfg.DataDir), raw, 0o600); err != nil {
		return fmt.Errorf("save appliance mode: %w", err)
	}
	n.mode.Store(&m)
	return nil
}

// ReadOnlyReason says why this appliance does not accept configuration
// changes, or "" when it does (it is the primary of a working cluster).
func (n *Node) ReadOnlyReason() string {
	switch m := n.Mode(); m.State {
	case StateMaintenance:
		return "This appliance is in Maintenance while it is being added to a cluster; it accepts no changes."
	case StateLeavingCluster:
		return "This appliance is leaving its cluster; it accepts no changes."
	case StateStandaloneRO:
		return "This appliance left its cluster and is read-only. Activate it to make it a writable primary of its own."
	case StateIsolated:
		return "This appliance is in Offline Workflow: policy and configuration are read-only until it resumes online."
	}
	if !n.IsLeader() {
		return "This appliance is a replica: configuration is read-only here. Make changes on the primary."
	}
	return ""
}
