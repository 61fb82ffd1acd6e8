package storage

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// dialRedis dials a Redis server for the store's clients. A failed dial is
// not returned as a dial error: it comes back as a connection that fails
// its first read or write with the dial's error, so the call that needed it
// fails at once with the cause, exactly as it would have.
//
// Why: go-redis' pool stops dialing once PoolSize dials in a row have
// failed, and then probes the address once a second in the background;
// until a probe succeeds every call fails with the last dial error. On a
// standalone Redis that restarts, or through Sentinel when a master dies
// and a replica is promoted, that probe delays the tracker's return by up
// to a second after Redis is back. Without it, the very next call dials
// again (asking a Sentinel for the master first) and succeeds as soon as
// the new master is there. The cost the pool's breaker saves, a dial per
// call while Redis is down, is bounded here by each call's deadline and by
// the pool's size. (Through Sentinel, go-redis asks for the master before
// it calls this dialer; when no Sentinel answers, that error still counts
// towards the pool's pause, as it should: there is no master to dial.)
func dialRedis(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return failedConn{err: err, remote: remoteAddr(network, addr)}, nil
		}
		return c, nil
	}
}

// failedConn is a connection whose dial failed: every read and write
// returns the dial's error.
type failedConn struct {
	err    error
	remote net.Addr
}

func (c failedConn) Read([]byte) (int, error)         { return 0, c.err }
func (c failedConn) Write([]byte) (int, error)        { return 0, c.err }
func (c failedConn) Close() error                     { return nil }
func (c failedConn) LocalAddr() net.Addr              { return c.remote }
func (c failedConn) RemoteAddr() net.Addr             { return c.remote }
func (c failedConn) SetDeadline(time.Time) error      { return nil }
func (c failedConn) SetReadDeadline(time.Time) error  { return nil }
func (c failedConn) SetWriteDeadline(time.Time) error { return nil }

// remoteAddr is addr as a net.Addr; go-redis compares connections' remote
// addresses with a demoted master's when Sentinel switches.
func remoteAddr(network, addr string) net.Addr {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return unresolved{network: network, addr: addr}
}

// unresolved is an address by name (a host name, a Unix socket path).
type unresolved struct{ network, addr string }

func (u unresolved) Network() string { return u.network }
func (u unresolved) String() string  { return u.addr }
