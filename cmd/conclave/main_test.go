package main_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is conclave, built once for all the tests of this package.
var binary struct {
	once sync.Once
	dir  string
	path string
	out  []byte
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// buildBinary builds conclave on its first call and returns its path.
func buildBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		binary.dir, binary.err = os.MkdirTemp("", "conclave-bin")
		if binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "conclave")
		binary.out, binary.err = exec.Command("go", "build", "-ldflags", "-X main.version=e2e", "-o", binary.path, ".").CombinedOutput()
	})
	if binary.err != nil {
		t.Fatalf("build: %v\n%s", binary.err, binary.out)
	}
	return binary.path
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
	stderr *bytes.Buffer
	done   chan error

	mu     sync.Mutex
	stdout []string
}

// output is what it printed so far.
func (r *running) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.stdout, "\n")
}

var urlLine = regexp.MustCompile(`Console:\s+(https://\S+)`)

// serve starts 'conclave serve' and waits for its welcome.
func serve(t *testing.T, bin, dir string, env ...string) *running {
	t.Helper()
	return start(t, bin, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--name", "e2e"}, env...)
}

// start runs conclave with args and waits until it prints its "Stop:"
// line, the last of the welcome of 'serve' and of 'demo'.
func start(t *testing.T, bin string, args []string, env ...string) *running {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, _ := cmd.StdoutPipe()
	r := &running{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = r.stderr
	if testing.Verbose() {
		cmd.Stderr = io.MultiWriter(r.stderr, os.Stderr)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	welcomed := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		ready := false
		for sc.Scan() {
			r.mu.Lock()
			r.stdout = append(r.stdout, sc.Text())
			r.mu.Unlock()
			if !ready && strings.HasPrefix(strings.TrimSpace(sc.Text()), "Stop:") {
				close(welcomed)
				ready = true
			}
		}
		r.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		// Stop it as a person would, so that it stops its PostgreSQL.
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.done:
			case <-time.After(2 * time.Minute):
				cmd.Process.Kill()
			}
		}
	})
	select {
	case <-welcomed:
	case err := <-r.done:
		t.Fatalf("conclave %s exited (%v) before it was ready:\n%s\n%s", args[0], err, r.output(), r.stderr)
	case <-time.After(3 * time.Minute):
		t.Fatalf("conclave %s did not print its welcome within 3 minutes:\n%s", args[0], r.output())
	}
	if m := urlLine.FindStringSubmatch(r.output()); m != nil {
		r.url = strings.TrimRight(m[1], "/")
	}
	return r
}

// stop sends sig and waits for a clean exit.
func (r *running) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	r.cmd.Process.Signal(sig)
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("conclave did not exit cleanly after %v: %v\n%s", sig, err, r.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatalf("conclave did not stop within a minute of %v", sig)
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
	t.Parallel()
	bin := buildBinary(t)
	dir := dataDir(t)

	first := serve(t, bin, dir)
	welcome := first.output()
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
	first.stop(t, syscall.SIGTERM)
	// The private PostgreSQL stopped with the appliance.
	if _, err := os.Stat(filepath.Join(dir, "postgres", "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("PostgreSQL is still running after the appliance stopped (postmaster.pid: %v)", err)
	}

	second := serve(t, bin, dir)
	welcome = second.output()
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
	second.stop(t, syscall.SIGTERM)
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	dir := dataDir(t)
	// The first run migrates from nothing to the newest version, the
	// second finds nothing to do.
	versions := regexp.MustCompile(`version (\d+) → (\d+)`)
	var newest string
	for i := range 2 {
		out, err := exec.Command(bin, "migrate", "--data-dir", dir).CombinedOutput()
		m := versions.FindStringSubmatch(string(out))
		if err != nil || m == nil {
			t.Fatalf("migrate run %d: %v\n%s", i+1, err, out)
		}
		switch {
		case i == 0 && (m[1] != "0" || m[2] == "0"):
			t.Fatalf("first migrate: %s, want from 0 to the newest version", m[0])
		case i == 1 && (m[1] != newest || m[2] != newest):
			t.Fatalf("second migrate: %s, want %s → %s", m[0], newest, newest)
		}
		newest = m[2]
	}
}

func TestBadFlagsSayWhatIsWrong(t *testing.T) {
	t.Parallel()
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

// freeBasePort returns a port p such that p … p+n-1 are free on 127.0.0.1
// now, below the ephemeral range that outgoing connections take.
func freeBasePort(t *testing.T, n int) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	if ports.taken == nil {
		ports.taken = map[int]bool{}
	}
	for range 100 {
		base := 20000 + rand.IntN(10000)
		free := true
		for p := base; p < base+n && free; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil || ports.taken[p] {
				free = false
				continue
			}
			ln.Close()
		}
		if free {
			for p := base; p < base+n; p++ {
				ports.taken[p] = true
			}
			return base
		}
	}
	t.Fatalf("no %d free consecutive ports found", n)
	return 0
}

// ports are those handed out to tests running in parallel.
var ports struct {
	sync.Mutex
	taken map[int]bool
}

// doJSON sends a JSON request and decodes the answer, which must have
// the status wanted.
func doJSON(t *testing.T, method, url, token string, in any, want int, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, resp.StatusCode, want, msg)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
	}
}

// waitOperation polls an operation until it ends; it must succeed.
func waitOperation(t *testing.T, url, token, id string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var op struct {
			State, Error string
			Steps        []struct{ Name, State, Message string }
		}
		doJSON(t, http.MethodGet, url+"/api/v1/operations/"+id, token, nil, http.StatusOK, &op)
		switch {
		case op.State == "Succeeded":
			return
		case op.State != "Pending" && op.State != "Running":
			t.Fatalf("operation %s: %s: %s; steps %+v", id, op.State, op.Error, op.Steps)
		case time.Now().After(deadline):
			t.Fatalf("operation %s still %s after 2 minutes: %+v", id, op.State, op.Steps)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type member struct {
	ID, Name, Address, Role, State string
}

func members(t *testing.T, url, token string) map[string]member {
	t.Helper()
	var ms []member
	doJSON(t, http.MethodGet, url+"/api/v1/cluster/members", token, nil, http.StatusOK, &ms)
	out := map[string]member{}
	for _, m := range ms {
		out[m.Name] = m
	}
	return out
}

func usernames(t *testing.T, url, token string) map[string]bool {
	t.Helper()
	var users []struct{ Username string }
	doJSON(t, http.MethodGet, url+"/api/v1/users", token, nil, http.StatusOK, &users)
	names := map[string]bool{}
	for _, u := range users {
		names[u.Username] = true
	}
	return names
}

// noPostgresLeft fails when a PostgreSQL of the demo still runs.
func noPostgresLeft(t *testing.T, dir string) {
	t.Helper()
	pids, _ := filepath.Glob(filepath.Join(dir, "*", "postgres", "postmaster.pid"))
	if len(pids) > 0 {
		t.Fatalf("PostgreSQL still runs after the demo stopped: %v", pids)
	}
}

const demoPassword = "demo-password-for-tests"

// The newcomer's path through the demo, through the JSON API: three
// appliances, two added as replicas, a write read everywhere, Unjoin,
// Activate, and Ctrl-C stopping everything.
func TestDemoAddReplicaUnjoinActivate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three appliances")
	}
	t.Parallel()
	bin := buildBinary(t)
	dir := dataDir(t)
	base := freeBasePort(t, 3)
	demo := start(t, bin, []string{"demo", "--members", "3", "--base-port", strconv.Itoa(base), "--data-dir", dir}, "CONCLAVE_ADMIN_PASSWORD="+demoPassword)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", base+i) }
	url := func(i int) string { return "https://" + addr(i) }

	welcome := demo.output()
	for _, want := range []string{
		`3 appliances are ready`,
		`conclave-1 +` + url(0) + `/ +primary, a cluster of one so far \(Online\)`,
		`conclave-2 +` + url(1) + `/ +on its own, waiting to be added as a replica \(Online\)`,
		`conclave-3 +` + url(2) + `/ +on its own, waiting to be added as a replica \(Online\)`,
		`admin / the password in CONCLAVE_ADMIN_PASSWORD`,
		`self-signed`,
		`What to try first`,
		`Open ` + url(0) + `/ and sign in`,
		`Add Replica… on the cluster view and enter ` + addr(1),
	} {
		if !regexp.MustCompile(want).MatchString(welcome) {
			t.Errorf("the demo's welcome lacks %q:\n%s", want, welcome)
		}
	}
	if strings.Contains(welcome, demoPassword) {
		t.Errorf("the welcome shows the password from the environment:\n%s", welcome)
	}

	primary := url(0)
	tok := token(t, primary, demoPassword)
	for i := 1; i < 3; i++ {
		var started struct{ OperationID string }
		doJSON(t, http.MethodPost, primary+"/api/v1/cluster/members", tok, map[string]string{
			"address": addr(i), "authenticationToken": token(t, url(i), demoPassword), "confirm": "Add Replica",
		}, http.StatusAccepted, &started)
		waitOperation(t, primary, tok, started.OperationID)
	}
	ms := members(t, primary, tok)
	if len(ms) != 3 || ms["conclave-1"].Role != "Primary" || ms["conclave-2"].State != "ReplicaWithQuorum" || ms["conclave-3"].State != "ReplicaWithQuorum" {
		t.Fatalf("members after two Add Replica: %+v", ms)
	}

	// A write on the primary is read on both replicas, each asked with a
	// token of its own (the admin is the cluster's, replicated).
	doJSON(t, http.MethodPost, primary+"/api/v1/users", tok, map[string]string{
		"username": "written-on-primary", "password": "written-on-primary-pw", "role": "Helpdesk",
	}, http.StatusCreated, nil)
	for i := 1; i < 3; i++ {
		rt := token(t, url(i), demoPassword)
		deadline := time.Now().Add(30 * time.Second)
		for !usernames(t, url(i), rt)["written-on-primary"] {
			if time.Now().After(deadline) {
				t.Fatalf("conclave-%d never saw the write on the primary", i+1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Unjoin conclave-3: it keeps its data, read-only, until activated.
	var started struct{ OperationID string }
	doJSON(t, http.MethodDelete, primary+"/api/v1/cluster/members/"+ms["conclave-3"].ID, tok, map[string]string{"confirm": "Unjoin"}, http.StatusAccepted, &started)
	waitOperation(t, primary, tok, started.OperationID)
	if ms := members(t, primary, tok); len(ms) != 2 {
		t.Fatalf("members after Unjoin: %+v", ms)
	}
	gone := url(2)
	gt := token(t, gone, demoPassword)
	if gm := members(t, gone, gt); len(gm) != 1 || gm["conclave-3"].State != "StandaloneReadOnly" {
		t.Fatalf("conclave-3 after Unjoin: %+v", gm)
	}
	if !usernames(t, gone, gt)["written-on-primary"] {
		t.Fatal("conclave-3 lost its data at Unjoin")
	}
	doJSON(t, http.MethodPost, gone+"/api/v1/cluster/activate", gt, map[string]string{"confirm": "Activate"}, http.StatusOK, nil)
	if gm := members(t, gone, gt); gm["conclave-3"].State != "Online" {
		t.Fatalf("conclave-3 after Activate: %+v", gm)
	}

	// Ctrl-C stops every appliance and its PostgreSQL; the demo exits 0.
	demo.stop(t, os.Interrupt)
	noPostgresLeft(t, dir)
}

// --formed builds the cluster before the welcome.
func TestDemoFormed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three appliances")
	}
	t.Parallel()
	bin := buildBinary(t)
	dir := dataDir(t)
	base := freeBasePort(t, 3)
	demo := start(t, bin, []string{"demo", "--members", "3", "--base-port", strconv.Itoa(base), "--data-dir", dir, "--formed"}, "CONCLAVE_ADMIN_PASSWORD="+demoPassword)
	welcome := demo.output()
	for _, want := range []string{"primary of a cluster of 3 (Online)", "replica of conclave-1 (ReplicaWithQuorum)"} {
		if !strings.Contains(welcome, want) {
			t.Errorf("the demo's welcome lacks %q:\n%s", want, welcome)
		}
	}
	primary := fmt.Sprintf("https://127.0.0.1:%d", base)
	ms := members(t, primary, token(t, primary, demoPassword))
	roles := map[string]int{}
	for _, m := range ms {
		roles[m.Role+" "+m.State]++
	}
	if len(ms) != 3 || roles["Primary Online"] != 1 || roles["Replica ReplicaWithQuorum"] != 2 {
		t.Fatalf("members of the formed demo: %+v", ms)
	}
	demo.stop(t, syscall.SIGTERM)
	noPostgresLeft(t, dir)
}

// When an appliance ends on its own, the demo says which, shows the end
// of its log, stops the others and fails.
func TestDemoSaysWhichApplianceStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two appliances")
	}
	t.Parallel()
	bin := buildBinary(t)
	dir := dataDir(t)
	base := freeBasePort(t, 2)
	demo := start(t, bin, []string{"demo", "--members", "2", "--base-port", strconv.Itoa(base), "--data-dir", dir}, "CONCLAVE_ADMIN_PASSWORD="+demoPassword)
	// Someone stops conclave-2 behind the demo's back.
	if err := syscall.Kill(serveProcess(t, filepath.Join(dir, "conclave-2")), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-demo.done:
		if err == nil {
			t.Fatalf("the demo must fail when an appliance stops on its own:\n%s", demo.output())
		}
	case <-time.After(time.Minute):
		t.Fatal("the demo did not stop within a minute of losing an appliance")
	}
	out := demo.output()
	for _, want := range []string{"conclave-2 stopped unexpectedly", "The end of its log, " + filepath.Join(dir, "conclave-2.log"), `msg=stopped`, "Stopping the others"} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(demo.stderr.String(), "conclave-2 stopped unexpectedly") {
		t.Errorf("the demo's error does not name the appliance: %s", demo.stderr)
	}
	noPostgresLeft(t, dir)
}

// serveProcess finds the 'conclave serve' running on a data directory.
func serveProcess(t *testing.T, dataDir string) int {
	t.Helper()
	want := "\x00--data-dir\x00" + dataDir + "\x00"
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc to find the appliance's process: %v", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(cmdline), "\x00serve\x00") && strings.Contains(string(cmdline), want) {
			return pid
		}
	}
	t.Fatalf("no 'conclave serve --data-dir %s' runs", dataDir)
	return 0
}

// The primary's process is paused (SIGSTOP), as a hung machine would be:
// the two others elect a new primary and take writes; when the process
// goes on (SIGCONT) it finds itself a replica, catches up, and has every
// write made meanwhile.
func TestDemoPausedPrimaryRejoinsAsReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three appliances")
	}
	t.Parallel()
	bin := buildBinary(t)
	dir := dataDir(t)
	base := freeBasePort(t, 3)
	demo := start(t, bin, []string{"demo", "--members", "3", "--base-port", strconv.Itoa(base), "--data-dir", dir, "--formed"}, "CONCLAVE_ADMIN_PASSWORD="+demoPassword)
	url := func(i int) string { return fmt.Sprintf("https://127.0.0.1:%d", base+i) }
	tok := token(t, url(0), demoPassword)
	doJSON(t, http.MethodPost, url(0)+"/api/v1/users", tok, map[string]string{"username": "before-pause", "password": "before-pause-password", "role": "Helpdesk"}, http.StatusCreated, nil)

	pid := serveProcess(t, filepath.Join(dir, "conclave-1"))
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	continued := false
	resume := func() {
		if !continued {
			continued = true
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(resume) // never leave a stopped process behind

	// One of the two others becomes the primary and takes writes.
	newPrimary := ""
	deadline := time.Now().Add(time.Minute)
	for newPrimary == "" {
		for _, i := range []int{1, 2} {
			if m := members(t, url(i), tok)[fmt.Sprintf("conclave-%d", i+1)]; m.Role == "Primary" && m.State == "Online" {
				newPrimary = url(i)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no new primary within a minute of pausing the primary")
		}
		time.Sleep(50 * time.Millisecond)
	}
	doJSON(t, http.MethodPost, newPrimary+"/api/v1/users", tok, map[string]string{"username": "during-pause", "password": "during-pause-password", "role": "Helpdesk"}, http.StatusCreated, nil)

	resume()
	deadline = time.Now().Add(time.Minute)
	for {
		me := members(t, url(0), tok)["conclave-1"]
		if me.Role == "Replica" && me.State == "ReplicaWithQuorum" && usernames(t, url(0), tok)["during-pause"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after it went on, the old primary is %s %s and has the write made meanwhile: %v", me.Role, me.State, usernames(t, url(0), tok)["during-pause"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !usernames(t, newPrimary, tok)["before-pause"] {
		t.Fatal("the write committed before the pause is missing on the new primary")
	}
	demo.stop(t, syscall.SIGTERM)
	noPostgresLeft(t, dir)
}
