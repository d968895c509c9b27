package web_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"conclave/internal/testapp"
)

// A request that does not finish (here an upload that stalls after its
// headers) does not keep the appliance from stopping: Shutdown lets it run
// for a while, then closes its connection and stops raft and the database
// within the time it was given.
func TestShutdownIsNotHeldByAStalledRequest(t *testing.T) {
	app := testapp.Start(t)
	conn, err := tls.Dial("tcp", app.Addr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Expect: 100-continue makes the server say when the handler starts
	// reading the body: from then on the request is running.
	fmt.Fprintf(conn, "POST /login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
		"Content-Length: 64\r\nExpect: 100-continue\r\n\r\n", app.Addr())
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("the login handler did not start reading the body: %q, %v", line, err)
	}
	io.WriteString(conn, "username=admin") // and then nothing more

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	a := app.Appliance
	app.Appliance = nil // stopped here, not again at cleanup
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a stalled request running: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Shutdown returned only after its context ended")
	}
	// The stalled request's connection is closed (after the blank line
	// that ends the 100 Continue).
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, err := io.ReadAll(rd); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the stalled request's connection is still open after Shutdown (read %q)", rest)
	}
}
