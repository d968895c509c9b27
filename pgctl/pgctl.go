// Package pgctl runs a private PostgreSQL server from the system's binaries
// (initdb, pg_ctl) in a directory of its own. The appliance uses it when no
// database URL is given; the tests use it for a real database.
//
// The server listens on a Unix socket inside its own directory only, so two
// servers never fight over a TCP port and nothing outside the machine can
// reach it. When the process runs as root, the server runs as the "postgres"
// user, because initdb and postgres refuse to run as root.
package pgctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxSocketPath is the longest Unix socket path Linux accepts, less a margin.
const maxSocketPath = 100

// Server is a private PostgreSQL server that this process started.
type Server struct {
	dir    string
	binDir string
	cred   *syscall.Credential
	log    *slog.Logger
}

// ErrNoBinaries tells the person how to get PostgreSQL when it is missing.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found: install them with 'apt-get install postgresql', or pass --database-url")

// FindBinDir returns the directory that holds initdb and pg_ctl: the PATH
// first, then Debian's /usr/lib/postgresql/<version>/bin, newest version first.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	sort.Slice(versions, func(i, j int) bool {
		return pgMajor(versions[i]) > pgMajor(versions[j])
	})
	for _, v := range versions {
		dir := filepath.Dir(v)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNoBinaries
}

func pgMajor(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// Start initialises dir on first use and starts the server. It waits until
// the server accepts connections.
func Start(ctx context.Context, dir string, log *slog.Logger) (*Server, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("postgres directory: %w", err)
	}
	if len(filepath.Join(dir, ".s.PGSQL.5432")) > maxSocketPath {
		return nil, fmt.Errorf("postgres directory %s is too long for a Unix socket path (%d characters at most): choose a shorter --data-dir", dir, maxSocketPath-len("/.s.PGSQL.5432"))
	}
	binDir, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, binDir: binDir, log: log}
	if os.Geteuid() == 0 {
		cred, err := postgresCredential()
		if err != nil {
			return nil, err
		}
		s.cred = cred
	}
	if err := s.initOnce(ctx); err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, so PostgreSQL must run as the 'postgres' user, which does not exist: install the postgresql package or run as another user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// URL is the connection string for the server's "conclave" database.
func (s *Server) URL() string {
	return fmt.Sprintf("host=%s user=conclave dbname=conclave sslmode=disable", s.dir)
}

// URLFor is the connection string for another database on the same server.
func (s *Server) URLFor(dbname string) string {
	return fmt.Sprintf("host=%s user=conclave dbname=%s sslmode=disable", s.dir, dbname)
}

// Dir is the server's data directory.
func (s *Server) Dir() string { return s.dir }

// readyMarker is written once initdb and the configuration are complete: a
// directory without it is a first start that was interrupted, made again.
const readyMarker = "conclave-initialized"

func (s *Server) initOnce(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.dir, readyMarker)); err == nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(s.dir, "PG_VERSION")); err == nil {
		if _, err := os.Stat(filepath.Join(s.dir, "postgresql.conf")); err == nil {
			if b, _ := os.ReadFile(filepath.Join(s.dir, "postgresql.conf")); strings.Contains(string(b), "# conclave: private server") {
				// Made by an earlier build, complete: mark it.
				return os.WriteFile(filepath.Join(s.dir, readyMarker), nil, 0o644)
			}
		}
		s.log.Warn("private PostgreSQL directory is from an interrupted first start; making it again", "dir", s.dir)
		if err := os.RemoveAll(s.dir); err != nil {
			return fmt.Errorf("remove the unfinished postgres directory: %w", err)
		}
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create postgres directory: %w", err)
	}
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("give %s to the postgres user: %w", s.dir, err)
		}
	}
	s.log.Info("initialising private PostgreSQL", "dir", s.dir)
	// trust over the socket is safe: the socket lives in the 0700 data
	// directory, so only this user (and root) can reach it.
	if err := s.run(ctx, "initdb", "-D", s.dir, "-U", "conclave", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	conf := "\n# conclave: private server, Unix socket only\n" +
		"listen_addresses = ''\n" +
		"unix_socket_directories = '" + s.dir + "'\n" +
		"unix_socket_permissions = 0700\n" +
		"max_connections = 50\n" +
		"shared_buffers = 32MB\n" +
		"fsync = on\n" +
		// No WAL shipping (raft replicates): with minimal WAL, the COPY
		// into tables truncated in the same transaction (a snapshot
		// restored at Add Replica) writes no WAL, only the tables.
		"wal_level = minimal\n" +
		"max_wal_senders = 0\n" +
		"log_min_messages = warning\n"
	f, err := os.OpenFile(filepath.Join(s.dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("configure postgres: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(conf); err != nil {
		return fmt.Errorf("configure postgres: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("configure postgres: %w", err)
	}
	marker := filepath.Join(s.dir, readyMarker)
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		return fmt.Errorf("configure postgres: %w", err)
	}
	if s.cred != nil {
		os.Chown(marker, int(s.cred.Uid), int(s.cred.Gid))
	}
	return nil
}

func (s *Server) start(ctx context.Context) error {
	logFile := filepath.Join(s.dir, "server.log")
	// A server left running by a crashed appliance is reused as it is.
	if s.run(ctx, "pg_ctl", "status", "-D", s.dir) == nil {
		s.log.Warn("private PostgreSQL was already running; using it", "dir", s.dir)
		return s.ensureDatabase(ctx)
	}
	err := s.run(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", s.dir, "-l", logFile, "-s")
	if err != nil {
		tail, _ := os.ReadFile(logFile)
		return fmt.Errorf("start postgres in %s: %w\n%s", s.dir, err, lastLines(string(tail), 10))
	}
	return s.ensureDatabase(ctx)
}

func (s *Server) ensureDatabase(ctx context.Context) error {
	out, err := s.output(ctx, "psql", "-h", s.dir, "-U", "conclave", "-d", "postgres", "-qtAc",
		"select count(*) from pg_database where datname='conclave'")
	if err != nil {
		return fmt.Errorf("check database: %w", err)
	}
	if strings.TrimSpace(out) == "0" {
		if err := s.run(ctx, "psql", "-h", s.dir, "-U", "conclave", "-d", "postgres", "-qc", "create database conclave"); err != nil {
			return fmt.Errorf("create database: %w", err)
		}
	}
	return nil
}

// Stop shuts the server down, letting running statements finish quickly.
func (s *Server) Stop() error { return s.stop("fast", "stop") }

// Crash stops the server the way a power cut would, as far as its own
// memory goes: no checkpoint, and what it had not written of its log is
// lost (tests).
func (s *Server) Crash() error { return s.stop("immediate", "crash") }

func (s *Server) stop(mode, verb string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.run(ctx, "pg_ctl", "stop", "-w", "-D", s.dir, "-m", mode, "-s"); err != nil {
		return fmt.Errorf("%s postgres in %s: %w", verb, s.dir, err)
	}
	return nil
}

// CreateDatabase creates a database on this server (used by tests).
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	return s.run(ctx, "psql", "-h", s.dir, "-U", "conclave", "-d", "postgres", "-qc", "create database "+name)
}

func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, name), args...)
	if name == "psql" {
		if p, err := exec.LookPath("psql"); err == nil {
			cmd = exec.CommandContext(ctx, p, args...)
		}
	}
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGCONNECT_TIMEOUT=10")
	// Its own process group: Ctrl-C in the terminal must reach the appliance
	// only, which then stops raft before it stops the database.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if s.cred != nil {
		cmd.SysProcAttr.Credential = s.cred
	}
	return cmd
}

func (s *Server) run(ctx context.Context, name string, args ...string) error {
	_, err := s.output(ctx, name, args...)
	return err
}

func (s *Server) output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := s.command(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// pg_ctl start leaves a server behind; never wait for its pipes.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()+stdout.String()))
	}
	return stdout.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
