package bench

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"conclave/internal/testpg"
)

var binaryFlag = flag.String("binary", "../bin/conclave", "the conclave binary the memory benchmark starts (make bench builds it)")

const procPassword = "bench-admin-password-0123"

// proc is a real appliance: a `conclave serve` process on a database of
// the test PostgreSQL, so that its memory is its own.
type proc struct {
	name, addr, dbURL string
	cmd               *exec.Cmd
	exited            chan struct{}
	token             string
}

func freeAddr(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProc starts an appliance and waits until it answers /readyz.
func startProc(b *testing.B, name string) *proc {
	b.Helper()
	bin, err := filepath.Abs(*binaryFlag)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		b.Fatalf("the memory benchmark needs the built binary (make build): %v", err)
	}
	dir := b.TempDir()
	p := &proc{name: name, addr: freeAddr(b), dbURL: testpg.NewDatabase(b), exited: make(chan struct{})}
	log, err := os.Create(filepath.Join(dir, "conclave.log"))
	if err != nil {
		b.Fatal(err)
	}
	p.cmd = exec.Command(bin, "serve", "--listen", p.addr, "--data-dir", filepath.Join(dir, "data"), "--database-url", p.dbURL, "--name", name, "--log-level", "warn")
	p.cmd.Env = append(os.Environ(), "CONCLAVE_ADMIN_PASSWORD="+procPassword)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { p.cmd.Wait(); log.Close(); close(p.exited) }()
	b.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	c := insecureClient(nil)
	for {
		resp, err := c.Get("https://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-p.exited:
			raw, _ := os.ReadFile(filepath.Join(dir, "conclave.log"))
			b.Fatalf("%s exited while starting: %s", name, raw)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not ready after 90 s", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.token = p.getToken(b)
	return p
}

func insecureClient(jar http.CookieJar) *http.Client {
	return &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
			MaxIdleConnsPerHost: 256,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (p *proc) getToken(b *testing.B) string {
	b.Helper()
	var out struct{ Token string }
	if status := p.json(b, "", http.MethodPost, "/api/v1/auth/token", map[string]string{"username": "admin", "password": procPassword}, &out); status != http.StatusOK {
		b.Fatalf("token from %s: status %d", p.name, status)
	}
	return out.Token
}

func (p *proc) json(b *testing.B, token, method, path string, body, out any) int {
	b.Helper()
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = strings.NewReader(string(raw))
	}
	req, _ := http.NewRequest(method, "https://"+p.addr+path, r)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := insecureClient(nil).Do(req)
	if err != nil {
		b.Fatalf("%s %s on %s: %v", method, path, p.name, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			b.Fatalf("%s %s on %s: %d %q", method, path, p.name, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode
}

// addReplica adds r to p's cluster through the JSON API.
func (p *proc) addReplica(b *testing.B, r *proc) {
	b.Helper()
	var out struct{ OperationID, Error string }
	if status := p.json(b, p.token, http.MethodPost, "/api/v1/cluster/members", map[string]string{
		"address": r.addr, "authenticationToken": r.getToken(b), "confirm": "Add Replica",
	}, &out); status != http.StatusAccepted {
		b.Fatalf("add %s: status %d: %s", r.name, status, out.Error)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var op struct{ State, Error string }
		p.json(b, p.token, http.MethodGet, "/api/v1/operations/"+out.OperationID, nil, &op)
		if op.State == "Succeeded" {
			return
		}
		if op.State == "Failed" || op.State == "ResultUnknown" || time.Now().After(deadline) {
			b.Fatalf("add %s: %s %s", r.name, op.State, op.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// session signs a browser-like client in with the form.
func (p *proc) session(b *testing.B) *http.Client {
	b.Helper()
	jar, _ := cookiejar.New(nil)
	c := insecureClient(jar)
	resp, err := c.PostForm("https://"+p.addr+"/login", url.Values{"username": {"admin"}, "password": {procPassword}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("sign in on %s: status %d", p.name, resp.StatusCode)
	}
	return c
}

// rss is the process's resident memory in bytes (VmRSS).
func (p *proc) rss(b *testing.B) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// cpu is the process's CPU time so far (user and system).
func (p *proc) cpu(b *testing.B) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name in parentheses; utime and stime are
	// the 14th and 15th fields of the line.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}
