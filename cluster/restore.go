package cluster

// Restore: an appliance that stands alone (fresh, or Online Read-only after
// Unjoin) takes the data of a backup and becomes Online Read-only in a
// cluster of its own, with a new cluster identity and CA (the cluster the
// backup came from may still be running: the two must never trust each
// other); Activate makes it a primary. Everything is verified before any
// data is touched (every chunk's authentication, the manifest, the build),
// and the data is replaced in one transaction that commits only if every
// table matches the manifest's checksums.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/uuid"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"conclave/backup"
	"conclave/store"
)

// PhraseRestore confirms a restore, in the console and the API.
const PhraseRestore = "Restore"

// refuse makes a refusal that names the field to fix.
func refuse(field string, err error) error {
	return &store.Rejection{Field: field, Message: err.Error()}
}

// CheckBackupFile reads a whole backup, authenticating every chunk, and
// checks that this build can restore it. It changes nothing.
func CheckBackupFile(ctx context.Context, st *store.Store, path, passphrase string) (backup.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return backup.Manifest{}, fmt.Errorf("open backup: %w", err)
	}
	defer f.Close()
	// Every chunk is authenticated, and the data inside is read through
	// as a snapshot stream, while the file is read once.
	pr, pw := io.Pipe()
	scanned := make(chan error, 1)
	var info store.SnapshotInfo
	go func() {
		var err error
		info, err = store.ScanSnapshot(pr)
		pr.CloseWithError(err)
		scanned <- err
	}()
	m, err := backup.Verify(f, passphrase, pw)
	pw.CloseWithError(err)
	serr := <-scanned
	switch {
	case errors.Is(err, backup.ErrWrongPass):
		return m, refuse("passphrase", err)
	case err != nil && backupError(err):
		return m, refuse("file", err)
	case serr != nil && !backupError(serr):
		return m, refuse("file", fmt.Errorf("the backup's data is not a snapshot this build can read: %w", serr))
	case err != nil:
		return m, refuse("file", err)
	}
	if info.AppliedIndex != m.RaftIndex {
		return m, refuse("file", fmt.Errorf("the backup's data is at raft index %d, its manifest says %d", info.AppliedIndex, m.RaftIndex))
	}
	schema, err := st.SchemaVersion(ctx)
	if err != nil {
		return m, err
	}
	switch {
	case m.SchemaVersion > schema:
		return m, refuse("file", fmt.Errorf("the backup was made by a newer build (%s, database schema %d); this appliance runs %d: upgrade it first", m.Build, m.SchemaVersion, schema))
	case m.SchemaVersion < schema:
		return m, refuse("file", fmt.Errorf("the backup was made by an older build (%s, database schema %d); this appliance runs %d: restore it on an appliance of that build, then upgrade", m.Build, m.SchemaVersion, schema))
	}
	var names []string
	for _, t := range m.Tables {
		names = append(names, t.Name)
	}
	if !slices.Equal(names, store.ReplicatedTables()) {
		return m, refuse("file", fmt.Errorf("the backup holds the tables %v, not the ones this build keeps (%v)", names, store.ReplicatedTables()))
	}
	return m, nil
}

// restoreData replaces the replicated tables with the backup's, in one
// transaction, after checking the backup whole.
func restoreData(ctx context.Context, st *store.Store, path, passphrase string, m backup.Manifest) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open backup: %w", err)
	}
	defer f.Close()
	r, err := backup.Open(f, passphrase)
	if err != nil {
		return refuse("file", err)
	}
	want := map[string]store.TableChecksum{}
	for _, t := range m.Tables {
		want[t.Name] = store.TableChecksum{Rows: t.Rows, MD5: t.MD5}
	}
	if err := st.RestoreBackup(ctx, r, want); err != nil {
		return refuse("file", fmt.Errorf("nothing was changed: %w", err))
	}
	return nil
}

func restoredMode(m backup.Manifest, actor string) Mode {
	name := m.ClusterName
	if name == "" {
		name = m.ClusterID
	}
	return Mode{State: StateStandaloneRO, RestorePending: true, PrimaryID: actor,
		Reason: fmt.Sprintf("restored from a backup of %s (raft index %d, made %s by %s on %s); read-only until activated",
			name, m.RaftIndex, m.CreatedAt.UTC().Format("2006-01-02 15:04 MST"), m.CreatedBy, m.Member)}
}

// CheckRestore refuses a restore onto this appliance with a reason a person
// can act on.
func (n *Node) CheckRestore(ctx context.Context) error {
	switch st := n.Mode().State; st {
	case "", StateStandaloneRO:
	default:
		return refuse("", fmt.Errorf("this appliance is %s; restore onto an appliance that stands alone", StateLabel(st)))
	}
	if f := n.r().GetConfiguration(); f.Error() == nil && len(f.Configuration().Servers) > 1 {
		return refuse("", fmt.Errorf("this appliance is a member of a cluster of %d: restore onto a fresh appliance, or Unjoin this one first (a restore replaces all data)", len(f.Configuration().Servers)))
	}
	if !n.IsLeader() {
		return refuse("", errors.New("this appliance is not ready yet (it has no cluster of its own); try again in a few seconds"))
	}
	if lock, err := n.store.Lock(ctx); err == nil {
		return refuse("", fmt.Errorf("another operation is in progress: %s, started by %s; wait for it to end", lock.Kind, lock.Actor))
	}
	return nil
}

// RestoreBackup restores the backup at path onto this appliance: it checks
// the whole file, stops raft, replaces the data in one transaction, starts a
// new raft log and becomes Online Read-only in a cluster of its own. On a
// refusal nothing is changed.
func (n *Node) RestoreBackup(ctx context.Context, actor, path, passphrase string) (backup.Manifest, error) {
	if err := n.CheckRestore(ctx); err != nil {
		return backup.Manifest{}, err
	}
	m, err := CheckBackupFile(ctx, n.store, path, passphrase)
	if err != nil {
		return m, err
	}
	n.log.Info("restoring a backup", "cluster", m.ClusterID, "raftIndex", m.RaftIndex, "build", m.Build)
	err = n.restartRaftWith(func() error {
		if err := restoreData(ctx, n.store, path, passphrase, m); err != nil {
			return err
		}
		n.applied.Store(0)
		return n.setMode(restoredMode(m, actor))
	}, true, true)
	if err != nil {
		return m, err
	}
	return m, n.finishRestore(ctx)
}

// finishRestore gives an appliance whose data was restored a cluster of its
// own: a new cluster identity and CA, itself as the only member.
func (n *Node) finishRestore(ctx context.Context) error {
	n.standaloneMu.Lock()
	defer n.standaloneMu.Unlock()
	mode := n.Mode()
	if !mode.RestorePending {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for !n.IsLeader() {
		if time.Now().After(deadline) {
			return errors.New("the restored appliance's new one-member cluster elected no leader")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	clusterID := uuid.NewString()
	ca, err := NewCA(clusterID)
	if err != nil {
		return err
	}
	actor := mode.PrimaryID
	if actor == "" {
		actor = "system"
	}
	me := MemberData{ID: n.ID(), Name: n.cfg.Name, Address: n.cfg.Advertise, Version: n.cfg.Version, IsVoter: true}
	err = n.ProposeDataRetrying(ctx, CmdReplaceCluster, actor, ReplaceCluster{ClusterID: clusterID, Member: me, CA: ca},
		&EventSpec{Type: "BackupRestored", Details: map[string]string{"member": n.cfg.Name, "reason": mode.Reason}})
	if err != nil {
		return err
	}
	mode.RestorePending, mode.PrimaryID = false, ""
	if err := n.setMode(mode); err != nil {
		return err
	}
	return n.ensureOwnCertificate(ctx)
}

// RestoreOffline restores a backup into a stopped appliance's data
// directory and database (conclave admin restore). The appliance becomes
// Online Read-only in a cluster of its own at its next start.
func RestoreOffline(ctx context.Context, dataDir string, st *store.Store, self Identity, path, passphrase, actor string) (backup.Manifest, error) {
	mode, err := loadMode(dataDir)
	if err != nil {
		return backup.Manifest{}, err
	}
	switch mode.State {
	case "", StateStandaloneRO:
	default:
		return backup.Manifest{}, fmt.Errorf("this appliance is %s; restore onto an appliance that stands alone", StateLabel(mode.State))
	}
	members, err := st.Members(ctx)
	if err != nil {
		return backup.Manifest{}, err
	}
	for _, m := range members {
		if m.ID != self.ID {
			return backup.Manifest{}, fmt.Errorf("this appliance is a member of a cluster of %d (with %s): restore onto a fresh appliance, or Unjoin this one first", len(members), m.Name)
		}
	}
	if err := CheckStopped(dataDir); err != nil {
		return backup.Manifest{}, err
	}
	raftDir := filepath.Join(dataDir, "raft")
	m, err := CheckBackupFile(ctx, st, path, passphrase)
	if err != nil {
		return m, err
	}
	// The old raft log is set aside first: if the data cannot be replaced
	// it comes back; if it can, it must never be replayed onto it.
	aside := raftDir + ".before-restore"
	os.RemoveAll(aside)
	if err := os.Rename(raftDir, aside); err != nil && !errors.Is(err, os.ErrNotExist) {
		return m, fmt.Errorf("set the raft log aside: %w", err)
	}
	if err := restoreData(ctx, st, path, passphrase, m); err != nil {
		if rerr := os.Rename(aside, raftDir); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return m, errors.Join(err, fmt.Errorf("put the raft log back from %s: %w", aside, rerr))
		}
		return m, err
	}
	restored := restoredMode(m, actor)
	restored.Since = time.Now().UTC()
	raw, _ := json.MarshalIndent(restored, "", "  ")
	if err := writeFileAtomic(modePath(dataDir), raw, 0o600); err != nil {
		return m, fmt.Errorf("save appliance mode: %w", err)
	}
	os.RemoveAll(aside)
	return m, nil
}

// CheckStopped refuses when the appliance of dataDir runs: it holds its
// raft log locked.
func CheckStopped(dataDir string) error {
	path := filepath.Join(dataDir, "raft", "log.bolt")
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	db, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: time.Second}})
	if err != nil {
		return fmt.Errorf("the appliance is running (its raft log is locked: %v): stop it first", err)
	}
	return db.Close()
}

// backupError tells whether err is one of the backup file's own errors.
func backupError(err error) bool {
	for _, e := range []error{backup.ErrNotBackup, backup.ErrWrongPass, backup.ErrTampered, backup.ErrDamaged, backup.ErrTruncated, backup.ErrTrailing, backup.ErrUnsupported} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
