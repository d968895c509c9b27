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
)

// Main runs the tests, then stops the server if one was started. Call it
// from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if server != nil {
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
		dir, startErr = os.MkdirTemp("", "cpg")
		if startErr != nil {
			return
		}
		if os.Geteuid() == 0 {
			// The server runs as the postgres user, which must reach its directory.
			os.Chmod(dir, 0o755)
		}
		server, startErr = pgctl.Start(context.Background(), dir+"/pg", slog.New(slog.NewTextHandler(io.Discard, nil)))
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
