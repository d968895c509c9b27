package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// conclave admin restore: a backup made on one appliance, through the API,
// is restored into another, stopped; a wrong passphrase and a running
// appliance are refused first; the restored appliance starts Online
// Read-only with the backup's accounts.
func TestAdminRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildBinary(t)
	const srcPass, dstPass, backupPass = "source-admin-password", "target-admin-password", "an e2e backup passphrase"

	src := serve(t, bin, dataDir(t), "CONCLAVE_ADMIN_PASSWORD="+srcPass)
	tok := token(t, src.url, srcPass)
	req, _ := http.NewRequest("POST", src.url+"/api/v1/backups", strings.NewReader(`{"passphrase":"`+backupPass+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var made struct{ Name string }
	json.NewDecoder(resp.Body).Decode(&made)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("back up: status %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("GET", src.url+"/api/v1/backups/"+made.Name, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), made.Name)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	os.WriteFile(file, raw, 0o600)
	src.stop(t, syscall.SIGTERM)

	dir := dataDir(t)
	dst := serve(t, bin, dir, "CONCLAVE_ADMIN_PASSWORD="+dstPass)
	restore := func(passphrase string) (string, error) {
		cmd := exec.Command(bin, "admin", "restore", "--data-dir", dir, file)
		cmd.Stdin = strings.NewReader(passphrase + "\n")
		cmd.Env = os.Environ()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := restore(backupPass); err == nil || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("restore into a running appliance: %v\n%s", err, out)
	}
	dst.stop(t, syscall.SIGTERM)
	if out, err := restore("the wrong passphrase"); err == nil || !strings.Contains(out, "passphrase is wrong") || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("restore with a wrong passphrase: %v\n%s", err, out)
	}
	if out, err := restore(backupPass); err != nil || !strings.Contains(out, "Restored "+made.Name) {
		t.Fatalf("restore: %v\n%s", err, out)
	}

	again := serve(t, bin, dir, "CONCLAVE_ADMIN_PASSWORD="+dstPass)
	tok = token(t, again.url, srcPass) // the backup's administrator
	var members []map[string]any
	getJSON(t, again.url+"/api/v1/cluster/members", tok, &members)
	if len(members) != 1 || members[0]["state"] != "StandaloneReadOnly" {
		t.Fatalf("members after restore = %v", members)
	}
	again.stop(t, syscall.SIGTERM)
}
