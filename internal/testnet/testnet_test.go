package testnet

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echo listens on loopback and echoes every line back.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn) error {
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("echo answered " + line)
	}
	return nil
}

func dial(t *testing.T, d *Dialer, addr string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCutClosesConnectionsAndRefusesDials(t *testing.T) {
	n := New()
	addr := echo(t)
	n.Register("beta", addr)
	alpha := n.Dialer("alpha")
	c := dial(t, alpha, addr)
	if err := roundTrip(c); err != nil {
		t.Fatal(err)
	}
	if got := n.Conns("alpha", "beta"); got != 1 {
		t.Fatalf("open connections alpha → beta: %d, want 1", got)
	}

	n.Cut("alpha", "beta")
	if err := roundTrip(c); !IsLinkError(err) {
		t.Fatalf("a connection through a cut link: %v, want a link error", err)
	}
	start := time.Now()
	_, err := alpha.DialContext(context.Background(), "tcp", addr)
	if !IsLinkError(err) || time.Since(start) > time.Second {
		t.Fatalf("dial through a cut link: %v after %s, want a link error at once", err, time.Since(start))
	}
	if got := n.Conns("alpha", "beta"); got != 0 {
		t.Fatalf("open connections after the cut: %d", got)
	}
	// The other direction is another link.
	n.Register("alpha", echo(t))
	if err := roundTrip(dial(t, n.Dialer("beta"), n.addrOf(t, "alpha"))); err != nil {
		t.Fatalf("beta → alpha after cutting alpha → beta: %v", err)
	}

	n.Restore("alpha", "beta")
	if err := roundTrip(dial(t, alpha, addr)); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}

func TestDelayAppliesToReadsAndWrites(t *testing.T) {
	n := New()
	addr := echo(t)
	alpha := n.Dialer("alpha")
	c := dial(t, alpha, addr) // an unregistered address is its own name
	const d = 40 * time.Millisecond
	n.Delay("alpha", addr, d) // applies to a connection already open
	start := time.Now()
	if err := roundTrip(c); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 2*d {
		t.Fatalf("a round trip with a delay of %s took %s, want at least %s", d, took, 2*d)
	}
	n.Delay("alpha", addr, 0)
	if err := roundTrip(c); err != nil {
		t.Fatal(err)
	}
}

func TestDropIsABlackhole(t *testing.T) {
	n := New()
	addr := echo(t)
	n.Register("beta", addr)
	alpha := n.Dialer("alpha")
	c := dial(t, alpha, addr)
	n.Drop("alpha", "beta")

	// A dial hangs until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := alpha.DialContext(ctx, "tcp", addr)
	if !IsLinkError(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial through a dropping link: %v, want a link error after the deadline", err)
	}
	// An open connection hangs until its deadline.
	c.SetDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = c.Write([]byte("ping\n"))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write through a dropping link: %v, want a timeout", err)
	}
	// Restored, the same connection works again.
	n.Restore("alpha", "beta")
	c.SetDeadline(time.Time{})
	if err := roundTrip(c); err != nil {
		t.Fatalf("after restore: %v", err)
	}

	// A read waiting on a dropped link returns when the link comes back,
	// with the data that arrived meanwhile.
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	n.Drop("alpha", "beta")
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 5)
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a dropping link: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(c, buf)
		done <- err
	}()
	n.Restore("alpha", "beta")
	if err := <-done; err != nil || string(buf) != "ping\n" {
		t.Fatalf("read after restore: %q %v", buf, err)
	}
}

func (n *Network) addrOf(t *testing.T, name string) string {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	for addr, nm := range n.names {
		if nm == name {
			return addr
		}
	}
	t.Fatalf("no address for %s", name)
	return ""
}
