// Package testnet is a network with faults for tests of appliances that run
// in one process. Every appliance dials the others through its own Dialer
// from one Network (web.Config.Dialer: raft and the node API both go through
// it), and a test changes the link of any directed pair of appliances:
//
//   - Cut: new dials fail at once with a clear error, and every open
//     connection of the pair is closed.
//   - Drop: a blackhole. New dials hang until their context ends; reads and
//     writes on open connections hang until their deadline or until the
//     link is restored (what was written then arrives late, as after a
//     partition heals).
//   - Delay: every read and every write on connections of the pair waits
//     the delay first, so a request and its answer take about twice the
//     delay longer. A change applies to open connections at once.
//   - Restore: undoes Cut and Drop (the delay stays until set to zero).
//   - Freeze / Thaw: every link to and from one appliance drops everything,
//     as if its process were paused.
//
// The pair is directed: Cut("alpha", "beta") affects the connections alpha
// dials to beta, which carry alpha's requests and beta's answers. Raft and
// the node API open connections both ways, so a partition between two
// appliances is Partition(a, b), which cuts both directions.
//
// Connections are real TCP connections on loopback, wrapped; only the
// dialling side is wrapped, which is enough because every byte between
// appliances flows over a connection some appliance dialled.
//
// Appliances are known by name. A Dialer knows the name of the appliance
// that uses it; the name of the appliance being dialled comes from its
// address, registered with Register (testapp does it when an appliance
// started with testapp.WithNetwork listens). An address nobody registered
// is its own name, so a test may also use addresses directly.
package testnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"conclave/cluster"
)

// Network is the links between appliances. The zero value is not usable;
// call New.
type Network struct {
	mu    sync.Mutex
	names map[string]string // address → appliance name
	links map[pair]*link
}

type pair struct{ from, to string }

// link is the state of one directed pair. Guarded by Network.mu.
type link struct {
	from, to string
	cut      bool
	drop     bool
	delay    time.Duration
	// changed is closed (and replaced) at every change, to wake up dials
	// and connections waiting on the link.
	changed chan struct{}
	conns   map[*conn]struct{}
}

// New returns a network where every link is healthy.
func New() *Network {
	return &Network{names: map[string]string{}, links: map[pair]*link{}}
}

// LinkError is the error of a dial or a connection on a faulty link.
type LinkError struct {
	From, To string
	Fault    string // "is cut", "drops every packet"
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("testnet: the link %s → %s %s", e.From, e.To, e.Fault)
}

// Register names the appliance that listens on addr.
func (n *Network) Register(name, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.names[addr] = name
}

func (n *Network) nameOf(addr string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if name, ok := n.names[addr]; ok {
		return name
	}
	return addr
}

// linkLocked returns the link from → to, making a healthy one on first use.
func (n *Network) linkLocked(from, to string) *link {
	p := pair{from, to}
	l := n.links[p]
	if l == nil {
		l = &link{from: from, to: to, changed: make(chan struct{}), conns: map[*conn]struct{}{}}
		n.links[p] = l
	}
	return l
}

// change applies fn to the link from → to and wakes up whoever waits on it.
func (n *Network) change(from, to string, fn func(*link)) *link {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.linkLocked(from, to)
	fn(l)
	close(l.changed)
	l.changed = make(chan struct{})
	return l
}

// Cut makes new dials from → to fail at once and closes every open
// connection from → to.
func (n *Network) Cut(from, to string) {
	var open []*conn
	n.change(from, to, func(l *link) {
		l.cut = true
		for c := range l.conns {
			open = append(open, c)
		}
	})
	for _, c := range open {
		c.closeWith(&LinkError{From: from, To: to, Fault: "is cut"})
	}
}

// Drop makes the link from → to a blackhole: dials hang until their
// context ends, reads and writes until their deadline or Restore.
func (n *Network) Drop(from, to string) {
	n.change(from, to, func(l *link) { l.drop = true })
}

// Delay makes every read and write on connections from → to wait d first;
// zero removes the delay.
func (n *Network) Delay(from, to string, d time.Duration) {
	n.change(from, to, func(l *link) { l.delay = d })
}

// Restore undoes Cut and Drop on the link from → to. Connections closed by
// a cut stay closed; the delay stays.
func (n *Network) Restore(from, to string) {
	n.change(from, to, func(l *link) { l.cut, l.drop = false, false })
}

// Partition cuts the links between a and b both ways.
func (n *Network) Partition(a, b string) {
	n.Cut(a, b)
	n.Cut(b, a)
}

// Heal restores the links between a and b both ways and removes their
// delays: the link is as good as new.
func (n *Network) Heal(a, b string) {
	for _, p := range []pair{{a, b}, {b, a}} {
		n.change(p.from, p.to, func(l *link) { l.cut, l.drop, l.delay = false, false, 0 })
	}
}

// Freeze makes the appliance name look paused (as a process stopped with
// SIGSTOP is, to the others): every link to and from it drops everything,
// open connections stay open and hang. Thaw undoes it; what was written
// meanwhile then arrives late.
func (n *Network) Freeze(name string) {
	for _, other := range n.others(name) {
		n.Drop(name, other)
		n.Drop(other, name)
	}
}

// Thaw undoes Freeze (and any Cut or Drop of the appliance's links).
func (n *Network) Thaw(name string) {
	for _, other := range n.others(name) {
		n.Restore(name, other)
		n.Restore(other, name)
	}
}

// others are the names of the registered appliances other than name.
func (n *Network) others(name string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	seen := map[string]bool{name: true}
	for _, other := range n.names {
		if !seen[other] {
			seen[other] = true
			out = append(out, other)
		}
	}
	return out
}

// Conns is the number of open connections from → to.
func (n *Network) Conns(from, to string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.linkLocked(from, to).conns)
}

// Dialer is one appliance's way out to the others: a cluster.Dialer.
type Dialer struct {
	n    *Network
	from string
	d    net.Dialer
}

var _ cluster.Dialer = (*Dialer)(nil)

// Dialer returns the dialer of the appliance named from.
func (n *Network) Dialer(from string) *Dialer {
	return &Dialer{n: n, from: from}
}

// Name is the name of the appliance that dials with d.
func (d *Dialer) Name() string { return d.from }

// Listening registers the address the appliance of d listens on, so that
// the others' dials to it go through the links to d.Name().
func (d *Dialer) Listening(addr string) { d.n.Register(d.from, addr) }

// DialContext dials address over the link from this appliance to the one
// listening there.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	n := d.n
	to := n.nameOf(address)
	for {
		n.mu.Lock()
		l := n.linkLocked(d.from, to)
		cut, drop, changed := l.cut, l.drop, l.changed
		n.mu.Unlock()
		if cut {
			return nil, &net.OpError{Op: "dial", Net: network, Err: &LinkError{From: d.from, To: to, Fault: "is cut"}}
		}
		if !drop {
			break
		}
		select {
		case <-ctx.Done():
			return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("%w: %w", &LinkError{From: d.from, To: to, Fault: "drops every packet"}, ctx.Err())}
		case <-changed:
		}
	}
	raw, err := d.d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: raw, n: n, closed: make(chan struct{}), deadlineSet: make(chan struct{})}
	n.mu.Lock()
	c.l = n.linkLocked(d.from, to)
	if c.l.cut { // cut while dialling
		n.mu.Unlock()
		raw.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Err: &LinkError{From: d.from, To: to, Fault: "is cut"}}
	}
	c.l.conns[c] = struct{}{}
	n.mu.Unlock()
	return c, nil
}

// conn is a TCP connection over a link: reads and writes pass the link's
// gate (drop, delay) first.
type conn struct {
	net.Conn
	n *Network
	l *link

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error // why the link closed it (a cut), or nil

	// Deadlines as set by the user, so that waiting at the gate ends when
	// they pass; deadlineSet is closed (and replaced) when one changes.
	dmu         sync.Mutex
	readDL      time.Time
	writeDL     time.Time
	deadlineSet chan struct{}

	// A read whose data the gate holds back keeps it here for the next
	// read: no byte is lost when a deadline ends the wait.
	rmu     sync.Mutex
	pending []byte
	readErr error
}

func (c *conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.pending) == 0 && c.readErr == nil {
		m, err := c.Conn.Read(p)
		if m == 0 {
			return 0, c.wrap("read", err)
		}
		// The data arrived; the link hands it over after its delay.
		c.pending, c.readErr = append(c.pending, p[:m]...), err
	}
	if len(c.pending) == 0 {
		err := c.readErr
		c.readErr = nil
		return 0, c.wrap("read", err)
	}
	if err := c.gate("read", true); err != nil {
		return 0, err
	}
	m := copy(p, c.pending)
	c.pending = c.pending[m:]
	return m, nil
}

func (c *conn) Write(p []byte) (int, error) {
	if err := c.gate("write", false); err != nil {
		return 0, err
	}
	m, err := c.Conn.Write(p)
	return m, c.wrap("write", err)
}

// gate waits while the link drops packets, then for the link's delay. It
// gives up when the connection closes or its deadline passes.
func (c *conn) gate(op string, read bool) error {
	for {
		c.n.mu.Lock()
		drop, delay, changed := c.l.drop, c.l.delay, c.l.changed
		c.n.mu.Unlock()
		c.dmu.Lock()
		deadline, deadlineSet := c.writeDL, c.deadlineSet
		if read {
			deadline = c.readDL
		}
		c.dmu.Unlock()
		var timeout <-chan time.Time
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return c.opError(op, os.ErrDeadlineExceeded)
			}
			t := time.NewTimer(left)
			defer t.Stop()
			timeout = t.C
		}
		var wait <-chan time.Time
		switch {
		case drop:
			// Wait for a change of the link (wait stays nil).
		case delay > 0:
			t := time.NewTimer(delay)
			defer t.Stop()
			wait = t.C
		default:
			return nil
		}
		select {
		case <-wait:
			return nil
		case <-changed: // the link changed: look again
		case <-deadlineSet: // the deadline changed: look again
		case <-timeout:
			return c.opError(op, os.ErrDeadlineExceeded)
		case <-c.closed:
			return c.opError(op, c.closedError())
		}
	}
}

func (c *conn) closedError() error {
	if c.closeErr != nil {
		return c.closeErr
	}
	return net.ErrClosed
}

func (c *conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// wrap names the cut in the error of a connection the link closed.
func (c *conn) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-c.closed:
		if c.closeErr != nil {
			return c.opError(op, c.closeErr)
		}
	default:
	}
	return err
}

// closeWith closes the connection because of the link (a cut).
func (c *conn) closeWith(reason error) {
	c.closeOnce.Do(func() {
		c.closeErr = reason
		c.forget()
	})
}

func (c *conn) Close() error {
	c.closeOnce.Do(c.forget)
	return nil
}

func (c *conn) forget() {
	close(c.closed)
	c.n.mu.Lock()
	delete(c.l.conns, c)
	c.n.mu.Unlock()
	c.Conn.Close()
}

func (c *conn) SetDeadline(t time.Time) error {
	c.setDeadlines(&t, &t)
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.setDeadlines(&t, nil)
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.setDeadlines(nil, &t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) setDeadlines(read, write *time.Time) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if read != nil {
		c.readDL = *read
	}
	if write != nil {
		c.writeDL = *write
	}
	close(c.deadlineSet)
	c.deadlineSet = make(chan struct{})
}

// IsLinkError tells whether err comes from a faulty link of a Network.
func IsLinkError(err error) bool {
	var le *LinkError
	return errors.As(err, &le)
}
