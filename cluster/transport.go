package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// RaftALPN is the TLS application protocol that carries raft on the
// appliance's HTTPS port: one port, one TLS identity for browsers, the node
// API and raft.
const RaftALPN = "conclave-raft/1"

// Dialer opens connections to other members. Production passes a
// net.Dialer; the test harness passes one that cuts, delays or drops links.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// StreamLayer is raft's transport over TLS. Incoming raft connections are
// handed over by the HTTPS server (HandOff) after the TLS handshake chose
// RaftALPN; outgoing ones are dialled with ClientTLS.
type StreamLayer struct {
	addr      net.Addr
	dialer    Dialer
	clientTLS func() (*tls.Config, error)
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	handed map[*handedConn]bool
}

// NewStreamLayer returns a stream layer that advertises addr. The node that
// uses it sets how it dials (its Dialer and member certificate).
func NewStreamLayer(addr net.Addr) *StreamLayer {
	return &StreamLayer{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{}), handed: map[*handedConn]bool{}}
}

// HandOff gives an accepted raft connection to raft, and returns when raft
// is done with it (the HTTPS server closes the connection on return).
func (s *StreamLayer) HandOff(c *tls.Conn) {
	done := make(chan struct{})
	wrapped := &handedConn{Conn: c, done: done}
	s.mu.Lock()
	s.handed[wrapped] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.handed, wrapped)
		s.mu.Unlock()
	}()
	// Raft may not be accepting (an isolated member's raft is dormant):
	// give up after raft's own timeout rather than hold the connection.
	select {
	case s.conns <- wrapped:
	case <-s.closed:
		return
	case <-done: // closed by CloseHanded
		return
	case <-time.After(10 * time.Second):
		return
	}
	select {
	case <-done:
	case <-s.closed:
	}
}

type handedConn struct {
	net.Conn
	done chan struct{}
	once sync.Once
}

func (c *handedConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// CloseHanded closes the raft connections other members opened to this
// one, so that the HTTPS server's graceful shutdown does not wait on them.
func (s *StreamLayer) CloseHanded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.handed {
		c.Close()
	}
}

// Accept waits for the next raft connection.
func (s *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, errors.New("raft stream layer closed")
	}
}

// Close stops accepting.
func (s *StreamLayer) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

// Addr is the advertised address.
func (s *StreamLayer) Addr() net.Addr { return s.addr }

// Dial opens a raft connection to another member.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cfg, err := s.clientTLS()
	if err != nil {
		return nil, err
	}
	cfg.NextProtos = []string{RaftALPN}
	c, err := dialTLS(ctx, s.dialer, string(address), cfg)
	if err != nil {
		return nil, err
	}
	if c.ConnectionState().NegotiatedProtocol != RaftALPN {
		c.Close()
		return nil, errors.New("peer does not speak raft over TLS")
	}
	return c, nil
}

// view is the stream layer as one raft transport sees it: closing it (as
// raft does when it shuts down) does not close the layer, which outlives
// raft instances (Add Replica and Unjoin start new ones).
func (s *StreamLayer) view() raft.StreamLayer {
	return &streamView{StreamLayer: s, closed: make(chan struct{})}
}

type streamView struct {
	*StreamLayer
	closed    chan struct{}
	closeOnce sync.Once
}

func (v *streamView) Accept() (net.Conn, error) {
	select {
	case c := <-v.conns:
		return c, nil
	case <-v.closed:
		return nil, errors.New("raft transport closed")
	case <-v.StreamLayer.closed:
		return nil, errors.New("raft stream layer closed")
	}
}

func (v *streamView) Close() error {
	v.closeOnce.Do(func() { close(v.closed) })
	return nil
}

// dialTLS opens a TLS connection through dialer, the one network seam.
func dialTLS(ctx context.Context, dialer Dialer, addr string, cfg *tls.Config) (*tls.Conn, error) {
	raw, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// AdvertiseAddr turns "host:port" into a net.Addr for the stream layer.
type AdvertiseAddr string

func (a AdvertiseAddr) Network() string { return "tcp" }
func (a AdvertiseAddr) String() string  { return string(a) }
