package bench

import (
	"context"
	"net"
	"sync/atomic"
)

// CountingDialer is a cluster.Dialer that counts every byte read and
// written on the connections it dialled. Every byte between appliances
// flows over a connection one of them dialled, so the sum over the
// members' dialers is what crossed the network.
type CountingDialer struct {
	d     net.Dialer
	bytes atomic.Int64
}

// DialContext dials address and counts the connection's bytes.
func (c *CountingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	conn, err := c.d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: conn, n: &c.bytes}, nil
}

// Bytes is the count so far, both directions.
func (c *CountingDialer) Bytes() int64 { return c.bytes.Load() }

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Read(p []byte) (int, error) {
	m, err := c.Conn.Read(p)
	c.n.Add(int64(m))
	return m, err
}

func (c *countedConn) Write(p []byte) (int, error) {
	m, err := c.Conn.Write(p)
	c.n.Add(int64(m))
	return m, err
}
