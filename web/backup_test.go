package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/backup"
	"conclave/cluster"
	"conclave/internal/testapp"
	"conclave/store"
)

const backupPass = "the backup passphrase of the tests"

// tableSums are every replicated table's row count and checksum on app.
func tableSums(t *testing.T, app *testapp.App) map[string]store.TableChecksum {
	t.Helper()
	ctx := context.Background()
	snap, err := app.Store.BeginSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sums, err := snap.Checksums(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// makeBackup backs app up through the API and downloads the file.
func makeBackup(t *testing.T, app *testapp.App, token string) (apiBackupFile, []byte) {
	t.Helper()
	var made apiBackupFile
	if status := app.JSON(t, token, http.MethodPost, "/api/v1/backups", map[string]string{"passphrase": backupPass}, &made); status != http.StatusCreated {
		t.Fatalf("back up: status %d", status)
	}
	req, _ := http.NewRequest(http.MethodGet, app.URL+"/api/v1/backups/"+made.Name, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := app.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	file, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || int64(len(file)) != made.Size {
		t.Fatalf("download: status %d, %d bytes of %d", resp.StatusCode, len(file), made.Size)
	}
	return made, file
}

type apiBackupFile struct {
	Name     string
	Size     int64
	Manifest backup.Manifest
}

// uploadRestore sends a restore through the API and returns the status and
// the error body.
func uploadRestore(t *testing.T, app *testapp.App, token string, file []byte, passphrase, confirm string) (int, string, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("passphrase", passphrase)
	mw.WriteField("confirm", confirm)
	fw, _ := mw.CreateFormFile("file", "backup.ccbackup")
	fw.Write(file)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, app.URL+"/api/v1/backups/restore", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := app.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Error, Field string }
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &e)
	return resp.StatusCode, e.Error, e.Field
}

// TestBackupRestoreOntoFreshAppliance backs up a cluster of three with data,
// checks that damaged, truncated, foreign and newer backups and a wrong
// passphrase are refused without changing anything, then restores onto a
// fresh appliance and compares every replicated table.
func TestBackupRestoreOntoFreshAppliance(t *testing.T) {
	alpha := testapp.Start(t, named("alpha"))
	beta := testapp.Start(t, named("beta"))
	gamma := testapp.Start(t, named("gamma"))
	addReplica(t, alpha, beta)
	addReplica(t, alpha, gamma)
	token := alpha.AdminToken(t)
	alpha.CreateUser(t, "operator", "operator-password-1", cluster.RoleAdministrator)
	alpha.CreateUser(t, "watcher", "watcher-password-1", cluster.RoleHelpdesk)
	if status := alpha.JSON(t, token, http.MethodPatch, "/api/v1/users/"+alpha.CreateUser(t, "leaver", "leaver-password-1", cluster.RoleHelpdesk),
		map[string]any{"disabled": true}, nil); status != http.StatusOK {
		t.Fatalf("disable user: %d", status)
	}
	// The confirmations of Unjoin and Failover offer a backup first, and
	// come back to themselves.
	browser := alpha.Client()
	alpha.Login(t, browser, "admin", testapp.AdminPassword)
	betaID := members(t, alpha, token)["beta"].ID
	for _, page := range []string{"/cluster/members/" + betaID + "/unjoin", "/cluster/members/" + betaID + "/failover"} {
		resp, body := secSend(t, alpha, browser, secRequest{method: "GET", path: page})
		if want := `href="/backups?return=` + url.QueryEscape(page) + `"`; resp.StatusCode != http.StatusOK || !strings.Contains(body, want) || !strings.Contains(body, "Back up first") {
			t.Errorf("%s: status %d, no %s", page, resp.StatusCode, want)
		}
	}

	// A replica makes the backup: any member's applied state is consistent.
	betaToken := beta.AdminToken(t)
	made, file := makeBackup(t, beta, betaToken)
	if made.Manifest.RaftIndex == 0 || len(made.Manifest.Tables) != len(store.ReplicatedTables()) {
		t.Fatalf("manifest %+v", made.Manifest)
	}
	source := tableSums(t, beta) // after the backup: its event is here too

	// A member of a cluster of three refuses a restore.
	if status, msg, _ := uploadRestore(t, alpha, token, file, backupPass, cluster.PhraseRestore); status != http.StatusConflict || !strings.Contains(msg, "member of a cluster of 3") {
		t.Fatalf("restore onto a member: %d %q", status, msg)
	}

	delta := testapp.Start(t, named("delta"))
	deltaToken := delta.AdminToken(t)
	before := tableSums(t, delta)
	beforeState := secApplianceState(delta)
	unchanged := func(what string) {
		t.Helper()
		if after := tableSums(t, delta); !equalSums(after, before) {
			t.Fatalf("%s changed the data:\nbefore %v\nafter  %v", what, before, after)
		}
		if s := secApplianceState(delta); s != beforeState {
			t.Fatalf("%s changed the appliance's state: %s -> %s", what, beforeState, s)
		}
	}
	flipped := append([]byte{}, file...)
	flipped[len(flipped)/2] ^= 0x20
	newer := newerBackup(t, beta)
	notSnapshot := encryptedGarbage(t, made.Manifest)
	refusals := []struct {
		name, pass, confirm string
		file                []byte
		status              int
		field, says         string
	}{
		{"one byte changed", backupPass, cluster.PhraseRestore, flipped, http.StatusUnprocessableEntity, "file", "damaged"},
		{"truncated", backupPass, cluster.PhraseRestore, file[:len(file)-100], http.StatusUnprocessableEntity, "file", "truncated"},
		{"wrong passphrase", "not the right passphrase", cluster.PhraseRestore, file, http.StatusUnprocessableEntity, "passphrase", "passphrase is wrong"},
		{"foreign file", backupPass, cluster.PhraseRestore, []byte("%PDF-1.7 not a backup at all"), http.StatusUnprocessableEntity, "file", "not a Conclave backup"},
		{"newer build", backupPass, cluster.PhraseRestore, newer, http.StatusUnprocessableEntity, "file", "newer build"},
		{"encrypted, but not a snapshot", backupPass, cluster.PhraseRestore, notSnapshot, http.StatusUnprocessableEntity, "file", "not a snapshot"},
		{"no confirmation", backupPass, "restore", file, http.StatusUnprocessableEntity, "confirm", "Restore"},
	}
	for _, c := range refusals {
		status, msg, field := uploadRestore(t, delta, deltaToken, c.file, c.pass, c.confirm)
		if status != c.status || field != c.field || !strings.Contains(msg, c.says) {
			t.Errorf("%s: status %d field %q %q; want %d %q %q", c.name, status, field, msg, c.status, c.field, c.says)
		}
		unchanged(c.name)
	}
	if incoming, _ := os.ReadDir(filepath.Join(delta.Node.BackupSettings().Dir, "incoming")); len(incoming) != 0 {
		t.Errorf("uploads left behind: %v", incoming)
	}

	status, msg, _ := uploadRestore(t, delta, deltaToken, file, backupPass, cluster.PhraseRestore)
	if status != http.StatusOK {
		t.Fatalf("restore: %d %s", status, msg)
	}
	if st := delta.Node.SelfState(); st != cluster.StateStandaloneRO {
		t.Fatalf("after restore delta is %s", st)
	}
	after := tableSums(t, delta)
	// The restore gives delta a cluster of its own (new identity, CA and
	// member list) and records itself; every other table is the backup's.
	for _, table := range store.ReplicatedTables() {
		switch table {
		case "cluster", "members", "cluster_keys", "events":
			continue
		}
		want := made.Manifest.Tables[indexOf(made.Manifest.Tables, table)]
		if after[table] != (store.TableChecksum{Rows: want.Rows, MD5: want.MD5}) {
			t.Errorf("table %s: restored %+v, backup %+v", table, after[table], want)
		}
		if table != "events" && after[table] != source[table] {
			t.Errorf("table %s: restored %+v, source cluster %+v", table, after[table], source[table])
		}
	}
	ctx := context.Background()
	srcEvents, _ := beta.Store.Events(ctx, store.EventFilter{Limit: 1000})
	gotEvents, _ := delta.Store.Events(ctx, store.EventFilter{Limit: 1000})
	have := map[string]bool{}
	for _, e := range gotEvents {
		have[e.ID] = true
	}
	for _, e := range srcEvents {
		if e.RaftIndex <= made.Manifest.RaftIndex && !have[e.ID] {
			t.Errorf("event %s %s of the source is missing after the restore", e.ID, e.Type)
		}
	}
	if evs, _ := delta.Store.Events(ctx, store.EventFilter{Type: "BackupRestored"}); len(evs) != 1 || evs[0].Actor != "admin" {
		t.Errorf("BackupRestored events: %+v", evs)
	}
	ms, _ := delta.Store.Members(ctx)
	if len(ms) != 1 || ms[0].ID != delta.Node.ID() {
		t.Errorf("members after restore: %+v", ms)
	}
	if c, _ := delta.Store.Cluster(ctx); c.ID == made.Manifest.ClusterID {
		t.Errorf("the restored appliance kept the source's cluster identity %s", c.ID)
	}

	// The backup's accounts sign in; delta's own old admin token is gone.
	if status := delta.JSON(t, deltaToken, http.MethodGet, "/api/v1/users", nil, nil); status != http.StatusUnauthorized {
		t.Errorf("delta's token from before the restore: %d", status)
	}
	opToken := delta.Token(t, "operator", "operator-password-1")
	if status := delta.JSON(t, opToken, http.MethodPost, "/api/v1/cluster/activate", map[string]string{"confirm": "Activate"}, nil); status != http.StatusOK {
		t.Fatalf("activate: %d", status)
	}
	deadline := time.Now().Add(30 * time.Second)
	for delta.Node.SelfState() != cluster.StateOnline {
		if time.Now().After(deadline) {
			t.Fatalf("delta is %s after Activate", delta.Node.SelfState())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status := delta.JSON(t, opToken, http.MethodPost, "/api/v1/users", map[string]string{"username": "after-restore", "password": "after-restore-pass-1", "role": cluster.RoleHelpdesk}, nil); status != http.StatusCreated {
		t.Fatalf("write after activate: %d", status)
	}
	// The data survives a restart (the new raft log does not replay the old one).
	delta = delta.Restart(t)
	if st := delta.Node.SelfState(); st != cluster.StateOnline {
		t.Fatalf("after restart delta is %s", st)
	}
	if _, err := delta.Store.UserByUsername(ctx, "operator"); err != nil {
		t.Fatalf("operator after restart: %v", err)
	}
}

func indexOf(ts []backup.TableEntry, name string) int {
	for i, t := range ts {
		if t.Name == name {
			return i
		}
	}
	return -1
}

func equalSums(a, b map[string]store.TableChecksum) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// newerBackup is a correct backup of app whose manifest says a newer build
// made it (a database schema this build does not have yet).
func newerBackup(t *testing.T, app *testapp.App) []byte {
	t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	snap, err := app.Store.BeginSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sums, _ := snap.Checksums(ctx)
	schema, _ := app.Store.SchemaVersion(ctx)
	m := backup.Manifest{Build: "from-the-future", SchemaVersion: schema + 1, RaftIndex: snap.Index, CreatedAt: time.Now()}
	for _, table := range store.ReplicatedTables() {
		m.Tables = append(m.Tables, backup.TableEntry{Name: table, Rows: sums[table].Rows, MD5: sums[table].MD5})
	}
	w, err := backup.NewWriter(&buf, backupPass, m, backup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.WriteTo(ctx, w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

// TestRestoreOffline is what 'conclave admin restore' does: refused while
// the appliance runs; once stopped, the data is replaced, and at its next
// start the appliance is Online Read-only in a cluster of its own.
func TestRestoreOffline(t *testing.T) {
	ctx := context.Background()
	source := testapp.Start(t, named("source"))
	token := source.AdminToken(t)
	source.CreateUser(t, "keeper", "keeper-password-1", cluster.RoleAdministrator)
	made, file := makeBackup(t, source, token)
	path := filepath.Join(t.TempDir(), made.Name)
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}

	target := testapp.Start(t, named("target"))
	st, err := store.Open(ctx, target.Cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dir := target.Cfg.DataDir
	id, _, _ := cluster.LoadIdentity(dir)
	if _, err := cluster.RestoreOffline(ctx, dir, st, id, path, backupPass, "test"); err == nil || !strings.Contains(err.Error(), "running") {
		t.Fatalf("restore into a running appliance: %v", err)
	}
	target.Stop(t)
	before := map[string]store.TableChecksum{}
	if snap, err := st.BeginSnapshot(ctx); err == nil {
		before, _ = snap.Checksums(ctx)
		snap.Close(ctx)
	}
	bad := append([]byte{}, file...)
	bad = bad[:len(bad)-1]
	os.WriteFile(path+".bad", bad, 0o600)
	if _, err := cluster.RestoreOffline(ctx, dir, st, id, path+".bad", backupPass, "test"); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated backup: %v", err)
	}
	snap, _ := st.BeginSnapshot(ctx)
	after, _ := snap.Checksums(ctx)
	snap.Close(ctx)
	if !equalSums(before, after) {
		t.Fatal("a refused offline restore changed the data")
	}
	if _, err := os.Stat(filepath.Join(dir, "raft", "log.bolt")); err != nil {
		t.Fatalf("a refused offline restore lost the raft log: %v", err)
	}

	if _, err := cluster.RestoreOffline(ctx, dir, st, id, path, backupPass, "test"); err != nil {
		t.Fatalf("restore: %v", err)
	}
	target = target.Restart(t)
	waitFor(t, "the restored appliance to stand alone", func() bool {
		return target.Node.SelfState() == cluster.StateStandaloneRO && !target.Node.Mode().RestorePending
	})
	if _, err := target.Store.UserByUsername(ctx, "keeper"); err != nil {
		t.Fatalf("the backup's user: %v", err)
	}
	if c, _ := target.Store.Cluster(ctx); c.ID == made.Manifest.ClusterID {
		t.Error("the restored appliance kept the source's cluster identity")
	}
	ms, _ := target.Store.Members(ctx)
	if len(ms) != 1 || ms[0].ID != target.Node.ID() {
		t.Errorf("members: %+v", ms)
	}
}

// encryptedGarbage is a backup that opens with the passphrase and has a
// right manifest, but whose data is not a snapshot stream.
func encryptedGarbage(t *testing.T, m backup.Manifest) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := backup.NewWriter(&buf, backupPass, m, backup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.Repeat([]byte("not a snapshot "), 10000))
	w.Close()
	return buf.Bytes()
}
