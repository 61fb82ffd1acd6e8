package storage

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// memPipe returns the two ends of an in-memory connection whose writes never
// wait for the reader. miniredis' own Dial uses net.Pipe, which is
// unbuffered: a pipeline whose replies outgrow the bufio buffers on both
// sides deadlocks, the server blocked writing replies while the client is
// still writing commands. Reads honour deadlines, so a call's context still
// bounds it.
func memPipe() (net.Conn, net.Conn) {
	a, b := newHalf(), newHalf()
	return &memConn{r: a, w: b}, &memConn{r: b, w: a}
}

// half is one direction of a memPipe.
type half struct {
	mu     sync.Mutex
	buf    []byte
	closed bool
	ready  chan struct{} // signalled (capacity 1) when buf grows or closes
}

func newHalf() *half { return &half{ready: make(chan struct{}, 1)} }

func (h *half) signal() {
	select {
	case h.ready <- struct{}{}:
	default:
	}
}

type memConn struct {
	r, w *half

	dmu      sync.Mutex
	deadline time.Time
}

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "embedded" }

func (c *memConn) Read(p []byte) (int, error) {
	for {
		c.r.mu.Lock()
		if len(c.r.buf) > 0 {
			n := copy(p, c.r.buf)
			c.r.buf = c.r.buf[n:]
			if len(c.r.buf) == 0 {
				c.r.buf = nil // let a large reply's array go
			} else {
				c.r.signal() // more for the next read
			}
			c.r.mu.Unlock()
			return n, nil
		}
		if c.r.closed {
			c.r.mu.Unlock()
			return 0, io.EOF
		}
		c.r.mu.Unlock()

		c.dmu.Lock()
		d := c.deadline
		c.dmu.Unlock()
		if d.IsZero() {
			<-c.r.ready
			continue
		}
		wait := time.Until(d)
		if wait <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		t := time.NewTimer(wait)
		select {
		case <-c.r.ready:
			t.Stop()
		case <-t.C:
		}
	}
}

func (c *memConn) Write(p []byte) (int, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if c.w.closed {
		return 0, io.ErrClosedPipe
	}
	c.w.buf = append(c.w.buf, p...)
	c.w.signal()
	return len(p), nil
}

func (c *memConn) Close() error {
	for _, h := range []*half{c.r, c.w} {
		h.mu.Lock()
		h.closed = true
		h.signal()
		h.mu.Unlock()
	}
	return nil
}

func (c *memConn) LocalAddr() net.Addr  { return memAddr{} }
func (c *memConn) RemoteAddr() net.Addr { return memAddr{} }

func (c *memConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	c.deadline = t
	c.dmu.Unlock()
	c.r.signal() // wake a blocked read to look at the new deadline
	return nil
}

// SetWriteDeadline has nothing to bound: writes never block.
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }
