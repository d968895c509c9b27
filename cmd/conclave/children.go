package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// child is one appliance of the demo: a 'conclave serve' process.
type child struct {
	name    string
	addr    string // 127.0.0.1:port, also the address other members use
	url     string // https://127.0.0.1:port/
	dataDir string
	logPath string // its stdout and stderr
	cmd     *exec.Cmd
	// welcomed is closed when the appliance has printed its welcome: it
	// has started completely (on the first start, its admin exists).
	welcomed chan struct{}
	ended    chan struct{} // closed when the process has ended
	exited   bool          // set by the demo's loop when it hears of the end
}

// childExit reports the end of a child's process.
type childExit struct {
	c   *child
	err error
}

// start runs 'conclave serve' for the child, its output appended to its
// log file. It runs in a process group of its own, so the terminal's
// Ctrl-C reaches the demo only, which forwards it once. When the process
// ends, it is reported on exits.
func (c *child) start(bin string, env []string, exits chan<- childExit) error {
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s: open its log: %w", c.name, err)
	}
	fmt.Fprintf(logFile, "\n--- %s: conclave demo starts %s on %s ---\n", time.Now().Format(time.RFC3339), c.name, c.addr)
	c.welcomed = make(chan struct{})
	c.ended = make(chan struct{})
	c.cmd = exec.Command(bin, "serve", "--listen", c.addr, "--data-dir", c.dataDir, "--name", c.name)
	c.cmd.Env = env
	c.cmd.Stderr = logFile
	c.cmd.SysProcAttr = childProcAttr()
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return fmt.Errorf("%s: %w", c.name, err)
	}
	if err := c.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("%s: start %s: %w", c.name, bin, err)
	}
	go func() {
		defer logFile.Close()
		sc := bufio.NewScanner(stdout)
		welcomed := false
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			// The last line of the welcome (see printWelcome).
			if !welcomed && strings.HasPrefix(strings.TrimSpace(sc.Text()), "Stop:") {
				close(c.welcomed)
				welcomed = true
			}
		}
		io.Copy(logFile, stdout) // a line too long for the scanner
		err := c.cmd.Wait()
		close(c.ended)
		exits <- childExit{c: c, err: err}
	}()
	return nil
}

// stopOnceStarted sends sig to the appliance once it has started, or at
// once when hurry is closed: stopped in the middle of its first start, it
// would leave its new database half made. The signal goes to its process
// only; the appliance stops its PostgreSQL (in a process group of its
// own) after raft.
func (c *child) stopOnceStarted(sig os.Signal, hurry <-chan struct{}) {
	select {
	case <-c.welcomed:
	case <-hurry:
	case <-c.ended:
		return
	}
	c.cmd.Process.Signal(sig)
}

// logTail returns the last n lines of the child's log, indented.
func (c *child) logTail(n int) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return "    (cannot read the log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// childEnv is the demo's environment for the children: the administrator
// password, and nothing that would make them share a database or an
// address.
func childEnv(password string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "CONCLAVE_ADMIN_PASSWORD", "CONCLAVE_DATABASE_URL", "CONCLAVE_ADVERTISE", "CONCLAVE_LISTEN", "CONCLAVE_DATA_DIR", "CONCLAVE_NAME":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "CONCLAVE_ADMIN_PASSWORD="+password)
}
