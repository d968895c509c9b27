package main_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBinary builds conclave once for these tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "conclave")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version=e2e", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// dataDir makes a data directory the postgres user can reach when the
// tests run as root (t.TempDir's parents are private).
func dataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "conclave-e2e")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "d")
}

type running struct {
	cmd    *exec.Cmd
	url    string
	stdout []string
	done   chan error
}

var urlLine = regexp.MustCompile(`Console:\s+(https://\S+)`)

// serve starts 'conclave serve' and waits for its welcome.
func serve(t *testing.T, bin, dir string, env ...string) *running {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--name", "e2e")
	cmd.Env = append(os.Environ(), env...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &running{cmd: cmd, done: make(chan error, 1)}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		r.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("conclave serve exited before it was ready: %v", r.stdout)
			}
			r.stdout = append(r.stdout, line)
			if m := urlLine.FindStringSubmatch(line); m != nil {
				r.url = strings.TrimRight(m[1], "/")
			}
			if strings.HasPrefix(strings.TrimSpace(line), "Stop:") {
				go func() {
					for range lines {
					}
				}()
				return r
			}
		case <-timeout:
			t.Fatal("conclave serve did not print its welcome within 2 minutes")
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("conclave serve did not exit cleanly: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("conclave serve did not stop within a minute of SIGTERM")
	}
}

func client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

func token(t *testing.T, url, password string) string {
	t.Helper()
	resp, err := client().Post(url+"/api/v1/auth/token", "application/json", strings.NewReader(`{"username":"admin","password":"`+password+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 || out.Token == "" {
		t.Fatalf("token: status %d", resp.StatusCode)
	}
	return out.Token
}

func getJSON(t *testing.T, url, token string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	json.NewDecoder(resp.Body).Decode(out)
}

// The newcomer's path: first start with a private PostgreSQL, a generated
// password printed once, SIGTERM, and a second start on the same data.
func TestServeWithPrivatePostgresRestartsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := dataDir(t)

	first := serve(t, bin, dir)
	welcome := strings.Join(first.stdout, "\n")
	m := regexp.MustCompile(`Sign in:\s+admin / (\S+)`).FindStringSubmatch(welcome)
	if m == nil {
		t.Fatalf("the first start must print the generated admin password:\n%s", welcome)
	}
	password := m[1]
	if !strings.Contains(welcome, "Certificate: SHA-256 ") {
		t.Fatalf("the welcome must print the certificate fingerprint:\n%s", welcome)
	}
	tok := token(t, first.url, password)
	var members []map[string]any
	getJSON(t, first.url+"/api/v1/cluster/members", tok, &members)
	if len(members) != 1 || members[0]["state"] != "Online" || members[0]["version"] != "e2e" {
		t.Fatalf("members = %v", members)
	}
	clusterID := ""
	var events []map[string]any
	getJSON(t, first.url+"/api/v1/events?type=ClusterCreated", tok, &events)
	if len(events) != 1 {
		t.Fatalf("ClusterCreated events = %v", events)
	}
	clusterID = events[0]["id"].(string)
	first.stop(t)
	// The private PostgreSQL stopped with the appliance.
	if _, err := os.Stat(filepath.Join(dir, "postgres", "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("PostgreSQL is still running after the appliance stopped (postmaster.pid: %v)", err)
	}

	second := serve(t, bin, dir)
	welcome = strings.Join(second.stdout, "\n")
	if strings.Contains(welcome, password) {
		t.Fatal("the password must be printed on the first start only")
	}
	tok = token(t, second.url, password)
	getJSON(t, second.url+"/api/v1/events?type=ClusterCreated", tok, &events)
	if len(events) != 1 || events[0]["id"] != clusterID {
		t.Fatalf("after restart, ClusterCreated events = %v; the cluster must not be bootstrapped again", events)
	}
	var users []map[string]any
	getJSON(t, second.url+"/api/v1/users", tok, &users)
	if len(users) != 1 || users[0]["username"] != "admin" {
		t.Fatalf("users after restart = %v", users)
	}
	second.stop(t)
}

func TestMigrateCommand(t *testing.T) {
	bin := buildBinary(t)
	dir := dataDir(t)
	for i, want := range []string{"version 0 → 1", "version 1 → 1"} {
		out, err := exec.Command(bin, "migrate", "--data-dir", dir).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("migrate run %d: %v\n%s\nwant %q", i+1, err, out, want)
		}
	}
}

func TestBadFlagsSayWhatIsWrong(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "serve", "--oidc-issuer", "https://idp.example.com").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--oidc-issuer needs --oidc-client-id") {
		t.Fatalf("serve with an issuer and no client: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "frobnicate").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "conclave e2e" {
		t.Fatalf("version: %v %q", err, out)
	}
}
