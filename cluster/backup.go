package cluster

// Backups: an encrypted copy of the cluster's replicated state (the raft
// snapshot stream) with an authenticated manifest, kept in a directory of
// this appliance, downloaded from the console or the API, and restored onto
// an appliance that stands alone (see restore.go).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"conclave/backup"
	"conclave/store"
)

// BackupSuffix ends every backup file's name.
const BackupSuffix = ".ccbackup"

// backupName is what a backup file may be called: nothing a path could be
// made of.
var backupName = regexp.MustCompile(`^conclave-[A-Za-z0-9._-]{1,120}\` + BackupSuffix + `$`)

// BackupFile is a backup kept in the backup directory.
type BackupFile struct {
	Name      string
	Size      int64
	CreatedAt time.Time
	Scheduled bool
	Manifest  backup.Manifest // as read, unauthenticated until restored
	Problem   string          // the file could not be read
}

// Backups keeps this appliance's backups: where, how often, how many.
type Backups struct {
	Dir string
	// Every is the interval of scheduled backups (0: none); Keep is how
	// many scheduled backups are kept; Passphrase encrypts them.
	Every      time.Duration
	Keep       int
	Passphrase string

	mu         sync.Mutex // one backup at a time
	stateMu    sync.Mutex
	lastFailed string
	failedAt   time.Time
}

// ConfigureBackups sets where backups go and their schedule; it is called
// before the appliance serves requests.
func (n *Node) ConfigureBackups(b *Backups) {
	if b.Dir == "" {
		b.Dir = filepath.Join(n.cfg.DataDir, "backups")
	}
	n.backups = b
	n.AddHealthCheck(b.health)
}

// BackupSettings is the backup configuration.
func (n *Node) BackupSettings() *Backups {
	if n.backups == nil {
		n.ConfigureBackups(&Backups{})
	}
	return n.backups
}

func (b *Backups) health(context.Context) (string, string) {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if b.lastFailed == "" {
		return "", ""
	}
	return HealthWarning, fmt.Sprintf("the scheduled backup failed at %s: %s", b.failedAt.UTC().Format("2006-01-02 15:04 MST"), b.lastFailed)
}

func (b *Backups) setFailure(msg string, at time.Time) {
	b.stateMu.Lock()
	b.lastFailed, b.failedAt = msg, at
	b.stateMu.Unlock()
}

// WriteBackup writes an encrypted backup of the replicated state, as this
// appliance has applied it, to w.
func (n *Node) WriteBackup(ctx context.Context, w io.Writer, actor, passphrase string, opt backup.Options) (backup.Manifest, error) {
	snap, err := n.store.BeginSnapshot(ctx)
	if err != nil {
		return backup.Manifest{}, err
	}
	defer snap.Close(context.Background())
	sums, err := snap.Checksums(ctx)
	if err != nil {
		return backup.Manifest{}, err
	}
	schema, err := n.store.SchemaVersion(ctx)
	if err != nil {
		return backup.Manifest{}, err
	}
	m := backup.Manifest{Build: n.cfg.Version, SchemaVersion: schema, Member: n.cfg.Name, RaftIndex: snap.Index, RaftTerm: snap.Term,
		CreatedAt: time.Now().UTC(), CreatedBy: actor}
	if c, err := n.store.Cluster(ctx); err == nil {
		m.ClusterID = c.ID
	}
	if s, err := LoadSettings(ctx, n.store); err == nil {
		m.ClusterName = s.ClusterName
	}
	for _, t := range store.ReplicatedTables() {
		m.Tables = append(m.Tables, backup.TableEntry{Name: t, Rows: sums[t].Rows, MD5: sums[t].MD5})
	}
	bw, err := backup.NewWriter(w, passphrase, m, opt)
	if err != nil {
		return m, err
	}
	if err := snap.WriteTo(ctx, bw); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	if err := bw.Close(); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

// CreateBackup writes a backup into the backup directory and records it.
func (n *Node) CreateBackup(ctx context.Context, actor, passphrase string) (BackupFile, error) {
	return n.createBackup(ctx, actor, passphrase, false)
}

// createBackup makes a backup; a failure is recorded as a BackupFailed
// event (a passphrase too short for a backup by hand is only refused).
func (n *Node) createBackup(ctx context.Context, actor, passphrase string, scheduled bool) (BackupFile, error) {
	kind := "manual"
	if scheduled {
		kind = "scheduled"
	}
	if len([]rune(passphrase)) < backup.MinPassphrase && !scheduled {
		return BackupFile{}, backup.ErrShortPassphrase
	}
	bf, err := n.writeBackupFile(ctx, actor, passphrase, kind)
	if scheduled {
		// The health check says what the last scheduled backup did as
		// soon as its event is in the log, not some time after.
		if err != nil {
			n.BackupSettings().setFailure(err.Error(), time.Now())
		} else {
			n.BackupSettings().setFailure("", time.Time{})
		}
	}
	if err != nil {
		details := map[string]string{"error": err.Error(), "directory": n.BackupSettings().Dir, "kind": kind}
		if rerr := n.RecordEvent(context.WithoutCancel(ctx), actor, EventSpec{Type: "BackupFailed", Details: details}); rerr != nil {
			n.log.Warn("record backup failure", "err", rerr)
		}
		return bf, err
	}
	details := map[string]string{"file": bf.Name, "bytes": fmt.Sprint(bf.Size), "raftIndex": fmt.Sprint(bf.Manifest.RaftIndex), "kind": kind}
	if err := n.RecordEvent(ctx, actor, EventSpec{Type: "BackupCreated", Details: details}); err != nil {
		n.log.Warn("record backup event", "err", err)
	}
	return bf, nil
}

func (n *Node) writeBackupFile(ctx context.Context, actor, passphrase, kind string) (BackupFile, error) {
	b := n.BackupSettings()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := os.MkdirAll(b.Dir, 0o700); err != nil {
		return BackupFile{}, fmt.Errorf("backup directory: %w", err)
	}
	now := time.Now().UTC()
	name := fmt.Sprintf("conclave-%s-%s%s", now.Format("20060102-150405.000"), kind, BackupSuffix)
	path := filepath.Join(b.Dir, name)
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return BackupFile{}, fmt.Errorf("backup file: %w", err)
	}
	m, err := n.WriteBackup(ctx, f, actor, passphrase, backup.Options{})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return BackupFile{}, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return BackupFile{}, err
	}
	return BackupFile{Name: name, Size: fi.Size(), CreatedAt: m.CreatedAt, Scheduled: kind == "scheduled", Manifest: m}, nil
}

// ListBackups lists the backup directory, newest first.
func (n *Node) ListBackups() ([]BackupFile, error) {
	b := n.BackupSettings()
	entries, err := os.ReadDir(b.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup directory: %w", err)
	}
	var out []BackupFile
	for _, e := range entries {
		if !backupName.MatchString(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		bf := BackupFile{Name: e.Name(), Scheduled: strings.HasSuffix(e.Name(), "-scheduled"+BackupSuffix)}
		if fi, err := e.Info(); err == nil {
			bf.Size, bf.CreatedAt = fi.Size(), fi.ModTime().UTC()
		}
		if f, err := os.Open(filepath.Join(b.Dir, e.Name())); err == nil {
			m, err := backup.ReadManifest(f)
			f.Close()
			if err != nil {
				bf.Problem = err.Error()
			} else {
				bf.Manifest, bf.CreatedAt = m, m.CreatedAt
			}
		}
		out = append(out, bf)
	}
	slices.SortFunc(out, func(a, b BackupFile) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// OpenBackup opens a backup of the backup directory by name.
func (n *Node) OpenBackup(name string) (*os.File, error) {
	if !backupName.MatchString(name) {
		return nil, store.ErrNotFound
	}
	f, err := os.Open(filepath.Join(n.BackupSettings().Dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, store.ErrNotFound
	}
	return f, err
}

// RunBackupSchedule makes a backup every b.Every until the appliance stops,
// keeps the newest b.Keep scheduled backups, and records a failure as an
// event and a health warning.
func (n *Node) RunBackupSchedule() {
	b := n.BackupSettings()
	if b.Every <= 0 {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTicker(b.Every)
		defer t.Stop()
		for {
			select {
			case <-n.closing:
				return
			case <-t.C:
			}
			n.scheduledBackup()
		}
	}()
}

func (n *Node) scheduledBackup() {
	b := n.BackupSettings()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bf, err := n.createBackup(ctx, "system", b.Passphrase, true)
	if err != nil {
		n.log.Error("scheduled backup failed", "err", err)
		return
	}
	n.log.Info("scheduled backup", "file", bf.Name, "bytes", bf.Size)
	if err := n.pruneBackups(); err != nil {
		n.log.Warn("remove old backups", "err", err)
	}
}

// pruneBackups keeps the newest Keep scheduled backups.
func (n *Node) pruneBackups() error {
	b := n.BackupSettings()
	if b.Keep <= 0 {
		return nil
	}
	all, err := n.ListBackups()
	if err != nil {
		return err
	}
	kept := 0
	for _, bf := range all {
		if !bf.Scheduled {
			continue
		}
		if kept++; kept > b.Keep {
			if err := os.Remove(filepath.Join(b.Dir, bf.Name)); err != nil {
				return err
			}
		}
	}
	return nil
}
