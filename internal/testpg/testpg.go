// Package testpg gives tests a real PostgreSQL: one private server per test
// binary (started from the system's binaries with pgctl) and a fresh
// database per test.
package testpg

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"conclave/pgctl"
)

var (
	once     sync.Once
	server   *pgctl.Server
	dir      string
	startErr error
	counter  atomic.Int64
	// shared: the server was started by the parent process (a fuzzing
	// coordinator), which stops it; this process only uses it.
	shared bool
)

// sharedDirEnv passes the server's directory to the processes the test
// binary starts: go test -fuzz runs its inputs in worker processes, which
// it kills at the end, so a server of their own would outlive them.
const sharedDirEnv = "CONCLAVE_TESTPG_SHARED_DIR"

// Main runs the tests, then stops the server if one was started. Call it
// from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if server != nil && !shared {
		if err := server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// Server returns the shared server, starting it on first use.
func Server(t testing.TB) *pgctl.Server {
	t.Helper()
	once.Do(func() {
		if d := os.Getenv(sharedDirEnv); d != "" {
			// pgctl.Start uses the parent's running server as it is.
			dir, shared = filepath.Dir(d), true
			server, startErr = pgctl.Start(context.Background(), d, slog.New(slog.NewTextHandler(io.Discard, nil)))
			return
		}
		dir, startErr = os.MkdirTemp("", "cpg")
		if startErr != nil {
			return
		}
		if os.Geteuid() == 0 {
			// The server runs as the postgres user, which must reach its directory.
			os.Chmod(dir, 0o755)
		}
		server, startErr = pgctl.Start(context.Background(), dir+"/pg", slog.New(slog.NewTextHandler(io.Discard, nil)))
		if startErr == nil {
			os.Setenv(sharedDirEnv, dir+"/pg")
		}
	})
	if startErr != nil {
		t.Fatalf("start PostgreSQL for tests: %v", startErr)
	}
	return server
}

// NewDatabase creates an empty database for this test and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	srv := Server(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), counter.Add(1))
	if err := srv.CreateDatabase(context.Background(), name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	return srv.URLFor(name)
}
