package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"conclave/auth"
)

// The demo waits this long for its appliances to be ready (and formed),
// and then for them to stop.
const (
	demoReadyTimeout = 3 * time.Minute
	demoStopTimeout  = 2 * time.Minute
	demoPollInterval = 250 * time.Millisecond
)

// demo is the local demo: several appliances on this machine, each a
// 'conclave serve' process with its own data directory and PostgreSQL.
type demo struct {
	out      io.Writer
	outMu    sync.Mutex // the welcome and the demo's loop both print
	dir      string     // the data directory as given, for messages
	formed   bool
	password string
	// passwordShown is the password, or where it is; passwordNote says
	// where it comes from.
	passwordShown, passwordNote string
	children                    []*child
	api                         *http.Client
}

func runDemo(args []string, out io.Writer) error {
	fset := flag.NewFlagSet("demo", flag.ContinueOnError)
	members := fset.Int("members", 3, "how many appliances to start")
	basePort := fset.Int("base-port", 8441, "HTTPS port of the first appliance; the others take the next ports")
	dataDir := fset.String("data-dir", "./var/demo", "where the appliances keep their data and logs, a directory each")
	formed := fset.Bool("formed", false, "once all are ready, add the others to the first appliance's cluster")
	fset.Usage = func() {
		fmt.Fprintf(fset.Output(), "Usage: conclave demo [flags]\n\n"+
			"Starts several appliances on this machine, each a separate 'conclave serve' with its own\n"+
			"PostgreSQL, on 127.0.0.1 and consecutive ports. The first is a cluster; the others wait to be\n"+
			"added as replicas (or are added at once with --formed). Ctrl-C stops them all.\n"+
			"The administrator password is CONCLAVE_ADMIN_PASSWORD, or one generated at the first start.\n\nFlags:\n")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fset.Arg(0))
	}
	if *members < 1 || *members > 9 {
		return fmt.Errorf("--members: %d is not between 1 and 9", *members)
	}
	if *basePort < 1024 || *basePort+*members-1 > 65535 {
		return fmt.Errorf("--base-port: %d does not leave %d ports between 1024 and 65535", *basePort, *members)
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the conclave binary: %w", err)
	}
	abs, err := filepath.Abs(*dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if err := makeDataDir(abs); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}

	d := &demo{
		out:    out,
		dir:    *dataDir,
		formed: *formed,
		// The appliances' certificates are self-signed, and the demo
		// talks to them over loopback only.
		api: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
	}
	for i := range *members {
		name := fmt.Sprintf("conclave-%d", i+1)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*basePort+i))
		d.children = append(d.children, &child{
			name:    name,
			addr:    addr,
			url:     "https://" + addr + "/",
			dataDir: filepath.Join(abs, name),
			logPath: filepath.Join(abs, name+".log"),
		})
	}
	if err := d.checkPorts(); err != nil {
		return err
	}
	d.password, d.passwordShown, d.passwordNote, err = d.adminPassword(abs)
	if err != nil {
		return err
	}
	return d.run(bin)
}

// adminPassword returns the administrator password of the demo's
// appliances, how to show it, and where it comes from. The first start
// takes CONCLAVE_ADMIN_PASSWORD or generates one, and keeps it in
// <dir>/admin-password: the appliances use it on their first start only,
// so every later start must use and show the same.
func (d *demo) adminPassword(dir string) (password, shown, note string, err error) {
	path := filepath.Join(dir, "admin-password")
	kept := filepath.Join(d.dir, "admin-password")
	fromEnv := os.Getenv("CONCLAVE_ADMIN_PASSWORD")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		password = strings.TrimSpace(string(b))
		switch {
		case password == "":
			return "", "", "", fmt.Errorf("%s is empty: start over with 'rm -rf %s'", kept, d.dir)
		case fromEnv == password:
			return password, "the password in CONCLAVE_ADMIN_PASSWORD", "(the same on every appliance)", nil
		case fromEnv != "":
			return password, password, fmt.Sprintf("(from the first start, kept in %s; CONCLAVE_ADMIN_PASSWORD is not used, the appliances exist already)", kept), nil
		}
		return password, password, fmt.Sprintf("(the same on every appliance; kept in %s)", kept), nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", "", "", fmt.Errorf("read the demo's password: %w", err)
	}

	if fromEnv != "" {
		if err := auth.ValidatePassword(fromEnv); err != nil {
			return "", "", "", fmt.Errorf("CONCLAVE_ADMIN_PASSWORD: %w", err)
		}
		password, shown, note = fromEnv, "the password in CONCLAVE_ADMIN_PASSWORD", "(the same on every appliance)"
	} else {
		if _, err := os.Stat(d.children[0].dataDir); err == nil {
			return "", "", "", fmt.Errorf("%s has appliances but no admin-password file: set CONCLAVE_ADMIN_PASSWORD to their administrator password, or start over with 'rm -rf %s'", d.dir, d.dir)
		}
		password = rand.Text()
		shown, note = password, fmt.Sprintf("(generated now, the same on every appliance; kept in %s)", kept)
	}
	if err := os.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
		return "", "", "", fmt.Errorf("keep the demo's password: %w", err)
	}
	return password, shown, note, nil
}

// makeDataDir makes the demo's data directory. As root, each private
// PostgreSQL runs as the postgres user, which must be able to pass through
// this directory and every one above it (not list them).
func makeDataDir(dir string) error {
	if os.Geteuid() != 0 {
		return os.MkdirAll(dir, 0o700)
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil && fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is private (mode %v): PostgreSQL runs as the postgres user and could not reach %s; choose a directory below /tmp or the repository", d, fi.Mode().Perm(), dir)
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	return os.Chmod(dir, 0o711)
}

// checkPorts tells early, and in plain words, that a port is taken.
func (d *demo) checkPorts() error {
	for _, c := range d.children {
		ln, err := net.Listen("tcp", c.addr)
		if err != nil {
			return fmt.Errorf("%s is in use (another demo or appliance running?): stop it, or choose other ports with --base-port", c.addr)
		}
		ln.Close()
	}
	return nil
}

func (d *demo) printf(format string, args ...any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintf(d.out, format, args...)
}

// run starts the appliances and watches them until a signal, or until
// one of them ends on its own; either way it stops them all.
func (d *demo) run(bin string) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	exits := make(chan childExit, len(d.children))

	first := ""
	if _, err := os.Stat(d.children[0].dataDir); errors.Is(err, fs.ErrNotExist) {
		first = " (a first start makes their databases: some seconds)"
	}
	d.printf("Starting %d appliances, each with its own PostgreSQL, in %s%s …\n", len(d.children), d.dir, first)
	env := childEnv(d.password)
	for _, c := range d.children {
		if err := c.start(bin, env, exits); err != nil {
			return errors.Join(err, d.stop(syscall.SIGTERM, sigs, exits))
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- d.prepare(ctx) }()
	for {
		select {
		case sig := <-sigs:
			cancel()
			d.printf("\nStopping the appliances (each stops raft, then its PostgreSQL) …\n")
			forward := os.Signal(syscall.SIGTERM)
			if sig == os.Interrupt {
				forward = os.Interrupt
			}
			if err := d.stop(forward, sigs, exits); err != nil {
				return err
			}
			d.printf("Stopped. 'make run' (or the same command) starts them again with their data.\n")
			return nil
		case e := <-exits:
			e.c.exited = true
			cancel()
			d.printf("\n%s stopped unexpectedly (%s). The end of its log, %s:\n%s\n\nStopping the others …\n",
				e.c.name, exitText(e.err), d.logShown(e.c), e.c.logTail(20))
			err := fmt.Errorf("%s stopped unexpectedly: %s (its log: %s)", e.c.name, exitText(e.err), d.logShown(e.c))
			return errors.Join(err, d.stop(syscall.SIGTERM, sigs, exits))
		case err := <-ready:
			ready = nil
			if err != nil {
				cancel()
				d.printf("\nStopping the appliances …\n")
				return errors.Join(err, d.stop(syscall.SIGTERM, sigs, exits))
			}
		}
	}
}

// stop sends sig to every running appliance, those still starting once
// they have started (or at once on a second signal), and waits for them.
func (d *demo) stop(sig os.Signal, sigs <-chan os.Signal, exits <-chan childExit) error {
	hurry := make(chan struct{})
	running, starting := 0, 0
	for _, c := range d.children {
		if c.cmd == nil || c.exited {
			continue
		}
		running++
		select {
		case <-c.welcomed:
		default:
			starting++
		}
		go c.stopOnceStarted(sig, hurry)
	}
	if starting > 0 {
		d.printf("%d still starting: each stops once started (Ctrl-C again to stop them at once) …\n", starting)
	}
	var errs []error
	deadline := time.After(demoStopTimeout)
	for running > 0 {
		select {
		case e := <-exits:
			e.c.exited = true
			running--
			if e.err != nil {
				d.printf("%s did not stop cleanly (%s). The end of its log, %s:\n%s\n", e.c.name, exitText(e.err), d.logShown(e.c), e.c.logTail(10))
				errs = append(errs, fmt.Errorf("%s did not stop cleanly: %s", e.c.name, exitText(e.err)))
			}
		case <-sigs:
			select {
			case <-hurry:
				d.printf("Still stopping: waiting for the appliances to stop their databases (at most %s) …\n", demoStopTimeout)
			default:
				close(hurry)
				d.printf("Stopping them all at once …\n")
			}
		case <-deadline:
			deadline = nil
			for _, c := range d.children {
				if c.cmd != nil && !c.exited {
					c.cmd.Process.Kill()
					errs = append(errs, fmt.Errorf("%s did not stop within %s and was killed; its PostgreSQL may still run (pg_ctl stop -D %s)", c.name, demoStopTimeout, filepath.Join(c.dataDir, "postgres")))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (d *demo) logShown(c *child) string { return filepath.Join(d.dir, c.name+".log") }

// prepare waits until every appliance is ready, forms the cluster when
// asked, and prints the welcome.
func (d *demo) prepare(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, demoReadyTimeout)
	defer cancel()
	errs := make(chan error, len(d.children))
	for _, c := range d.children {
		go func() { errs <- d.waitReady(ctx, c) }()
	}
	for range d.children {
		if err := <-errs; err != nil {
			return err
		}
	}
	if d.formed {
		if err := d.form(ctx); err != nil {
			return fmt.Errorf("%w (start without --formed to keep the appliances as they are, or start over with 'rm -rf %s')", err, d.dir)
		}
	}
	text, err := d.welcome(ctx)
	if err != nil {
		return err
	}
	d.printf("%s", text)
	return nil
}

// waitReady polls the appliance's /readyz until it answers 200, then
// waits for its welcome: /readyz answers as soon as raft is ready, a
// moment before a first start has created the administrator.
func (d *demo) waitReady(ctx context.Context, c *child) error {
	tick := time.NewTicker(demoPollInterval)
	defer tick.Stop()
	last := "no answer yet"
	for {
		ok, answer := d.readyz(ctx, c)
		if ok {
			break
		}
		last = answer
		select {
		case <-ctx.Done():
			return d.notReady(ctx, c, "last answer from "+c.url+"readyz: "+last)
		case <-tick.C:
		}
	}
	select {
	case <-c.welcomed:
		return nil
	case <-ctx.Done():
		return d.notReady(ctx, c, "it answers /readyz but has not finished starting")
	}
}

func (d *demo) readyz(ctx context.Context, c *child) (ok bool, answer string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"readyz", nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := d.api.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode == http.StatusOK, resp.Status + " " + strings.TrimSpace(string(body))
}

func (d *demo) notReady(ctx context.Context, c *child, why string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s is not ready after %s (%s); see its log %s", c.name, demoReadyTimeout, why, d.logShown(c))
	}
	return ctx.Err()
}

// apiMember is a member in GET /api/v1/cluster/members.
type apiMember struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address"`
	Role    string `json:"role"`
	State   string `json:"state"`
}

// form adds the other appliances to the first one's cluster, one Add
// Replica at a time, through the JSON API. Those already members are left
// as they are (a restart of a formed demo).
func (d *demo) form(ctx context.Context) error {
	first := d.children[0]
	tok, err := d.token(ctx, first)
	if err != nil {
		return err
	}
	var ms []apiMember
	if err := d.call(ctx, http.MethodGet, first.url+"api/v1/cluster/members", tok, nil, &ms); err != nil {
		return fmt.Errorf("%s: list the members: %w", first.name, err)
	}
	for _, c := range d.children[1:] {
		if findMember(ms, c.name) != nil {
			continue
		}
		d.printf("Adding %s to %s's cluster (Add Replica) …\n", c.name, first.name)
		replicaTok, err := d.token(ctx, c)
		if err != nil {
			return err
		}
		var started struct {
			OperationID string `json:"operationId"`
		}
		body := map[string]string{"address": c.addr, "authenticationToken": replicaTok, "confirm": "Add Replica"}
		if err := d.call(ctx, http.MethodPost, first.url+"api/v1/cluster/members", tok, body, &started); err != nil {
			return fmt.Errorf("add %s as a replica of %s: %w", c.name, first.name, err)
		}
		if err := d.waitOperation(ctx, first, tok, started.OperationID); err != nil {
			return fmt.Errorf("add %s as a replica of %s: %w", c.name, first.name, err)
		}
	}
	return nil
}

// waitOperation polls an operation until it ends and says why it failed.
func (d *demo) waitOperation(ctx context.Context, c *child, tok, id string) error {
	tick := time.NewTicker(demoPollInterval)
	defer tick.Stop()
	for {
		var op struct {
			State string `json:"state"`
			Error string `json:"error"`
			Steps []struct {
				Name    string `json:"name"`
				State   string `json:"state"`
				Message string `json:"message"`
			} `json:"steps"`
		}
		if err := d.call(ctx, http.MethodGet, c.url+"api/v1/operations/"+id, tok, nil, &op); err != nil {
			return err
		}
		switch op.State {
		case "Succeeded":
			return nil
		case "Pending", "Running":
		default:
			for _, s := range op.Steps {
				if s.State == "Failed" {
					return fmt.Errorf("operation %s: %s at step %q: %s", id, op.State, s.Name, s.Message)
				}
			}
			return fmt.Errorf("operation %s: %s: %s", id, op.State, op.Error)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("operation %s: %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}

// welcome is what the demo prints once every appliance is ready: each
// one's address and role as it sees itself, the login, and what to try.
func (d *demo) welcome(ctx context.Context) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nConclave demo: %d appliances are ready, each a separate process with its own PostgreSQL.\n\n", len(d.children))
	var waiting []*child
	replicas := 0
	primary, primarySize := d.children[0], 0
	for i, c := range d.children {
		tok, err := d.token(ctx, c)
		if err != nil {
			return "", err
		}
		var ms []apiMember
		if err := d.call(ctx, http.MethodGet, c.url+"api/v1/cluster/members", tok, nil, &ms); err != nil {
			return "", fmt.Errorf("%s: list the members: %w", c.name, err)
		}
		self := findMember(ms, c.name)
		if self == nil {
			return "", fmt.Errorf("%s does not list itself among its members: %v", c.name, ms)
		}
		role := self.State
		switch {
		case self.State == "StandaloneReadOnly":
			role = "read-only on its own, after Unjoin: try Activate"
		case self.Role == "Primary" && len(ms) == 1 && i == 0:
			role = "primary, a cluster of one so far"
		case self.Role == "Primary" && len(ms) == 1:
			role = "on its own, waiting to be added as a replica"
			waiting = append(waiting, c)
		case self.Role == "Primary":
			role = fmt.Sprintf("primary of a cluster of %d", len(ms))
			if len(ms) > primarySize {
				primary, primarySize = c, len(ms)
			}
		case self.Role == "Replica":
			replicas++
			role = "replica"
			for _, m := range ms {
				if m.Role == "Primary" {
					role = "replica of " + m.Name
				}
			}
		}
		fmt.Fprintf(&b, "  %-11s %-24s %s (%s)\n", c.name, c.url, role, self.State)
	}
	fmt.Fprintf(&b, "\n  Sign in:      admin / %s\n", d.passwordShown)
	fmt.Fprintf(&b, "                %s\n", d.passwordNote)
	if len(waiting) > 0 {
		fmt.Fprintf(&b, "                Until they are one cluster, signing in to one appliance signs you out of\n")
		fmt.Fprintf(&b, "                the others: browsers share cookies between the ports of one host.\n")
	}
	fmt.Fprintf(&b, "  Certificates: self-signed, one per appliance: your browser warns once for each;\n")
	fmt.Fprintf(&b, "                each log shows its certificate's SHA-256 fingerprint to compare.\n")
	fmt.Fprintf(&b, "  Data, logs:   %s (conclave-N/ and conclave-N.log); start over with: rm -rf %s\n", d.dir, d.dir)

	fmt.Fprintf(&b, "\nWhat to try first:\n")
	if len(waiting) > 0 {
		next := waiting[0]
		fmt.Fprintf(&b, "  1. Open %s and sign in.\n", primary.url)
		fmt.Fprintf(&b, "  2. Click Add Replica… on the cluster view and enter %s.\n", next.addr)
		fmt.Fprintf(&b, "     Approve on %s with the same login; back on %s, sign in again,\n", next.name, primary.name)
		fmt.Fprintf(&b, "     then type \"Add Replica\" to confirm.\n")
		if len(waiting) > 1 {
			fmt.Fprintf(&b, "  3. Follow the progress, then add %s the same way.\n", waiting[1].addr)
		} else {
			fmt.Fprintf(&b, "  3. Follow the progress.\n")
		}
		fmt.Fprintf(&b, "  4. Then Unjoin… a replica, and Activate… the appliance it leaves on its own.\n")
	} else {
		fmt.Fprintf(&b, "  1. Open %s and sign in: the cluster view shows the members.\n", primary.url)
		if replicas > 0 {
			fmt.Fprintf(&b, "  2. Unjoin… a replica, then Activate… it on its own console: it becomes a primary.\n")
		}
	}
	fmt.Fprintf(&b, "\nStop: Ctrl-C stops every appliance and its PostgreSQL; the data stays for the next start.\n")
	return b.String(), nil
}

func findMember(ms []apiMember, name string) *apiMember {
	for i := range ms {
		if ms[i].Name == name {
			return &ms[i]
		}
	}
	return nil
}

// token signs in to an appliance's API as admin.
func (d *demo) token(ctx context.Context, c *child) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	body := map[string]string{"username": "admin", "password": d.password}
	if err := d.call(ctx, http.MethodPost, c.url+"api/v1/auth/token", "", body, &out); err != nil {
		return "", fmt.Errorf("sign in to %s as admin: %w", c.name, err)
	}
	return out.Token, nil
}

// call sends a JSON request to an appliance's API and decodes its answer;
// an error answer becomes an error with the appliance's message.
func (d *demo) call(ctx context.Context, method, url, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := d.api.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, e.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", method, url, err)
	}
	return nil
}
