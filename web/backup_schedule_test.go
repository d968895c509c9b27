package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/store"
	"conclave/web"
)

func scheduled(every time.Duration, keep int, passphrase string) testapp.Option {
	return func(c *web.Config) { c.BackupEvery, c.BackupKeep, c.BackupPassphrase = every, keep, passphrase }
}

// waitFor polls cond for up to 30 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Scheduled backups keep the newest ones; a failed one is an event and a
// health warning.
func TestScheduledBackups(t *testing.T) {
	ctx := context.Background()
	app := testapp.Start(t, scheduled(200*time.Millisecond, 2, backupPass))
	waitFor(t, "four scheduled backups", func() bool {
		evs, _ := app.Store.Events(ctx, store.EventFilter{Type: "BackupCreated"})
		return len(evs) >= 4
	})
	files, err := app.Node.ListBackups()
	if err != nil {
		t.Fatal(err)
	}
	// A fifth may be in the making, not yet pruned.
	if len(files) < 2 || len(files) > 3 {
		t.Fatalf("%d backups kept, want 2 (the retention)", len(files))
	}
	for _, f := range files {
		if !f.Scheduled || f.Size == 0 || f.Problem != "" || f.Manifest.RaftIndex == 0 {
			t.Errorf("backup %+v", f)
		}
	}
	if level, reason := app.Node.SelfHealth(ctx); level != cluster.HealthHealthy {
		t.Errorf("health %s: %s", level, reason)
	}

	broken := testapp.Start(t, scheduled(200*time.Millisecond, 2, "too short"))
	waitFor(t, "a BackupFailed event", func() bool {
		evs, _ := broken.Store.Events(ctx, store.EventFilter{Type: "BackupFailed"})
		return len(evs) >= 1
	})
	level, reason := broken.Node.SelfHealth(ctx)
	if level != cluster.HealthWarning || !strings.Contains(reason, "scheduled backup failed") || !strings.Contains(reason, "passphrase") {
		t.Errorf("health after a failed backup: %s: %s", level, reason)
	}
	if files, _ := broken.Node.ListBackups(); len(files) != 0 {
		t.Errorf("a failed backup left %d files", len(files))
	}
}
