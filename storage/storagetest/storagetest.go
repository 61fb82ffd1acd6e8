// Package storagetest holds what racktracker's tests run against and read
// with: a real redis-server on a free loopback port owned by the test, an
// injectable clock, a dump of a keyspace as redis-cli shows it, a poll with
// a deadline, and a log buffer that goroutines may write while a test reads.
// The load tool (cmd/rtload) runs the tracker against the same parts, and
// uses the two that need no testing.TB: StartRedis and Buffer.
package storagetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RequireRedisEnv, when set, makes tests that need a real redis-server fail
// rather than skip where the binary is missing. CI sets it.
const RequireRedisEnv = "RACKTRACKER_REQUIRE_REDIS"

// Server is a redis-server started for one test.
type Server struct {
	Addr string
	bin  string
	dir  string
	args []string // after the defaults: a replica's replicaof, say
	conf string   // a Sentinel's config file, instead of the defaults
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  []string
}

// RedisServer starts redis-server on a free 127.0.0.1 port, without
// persistence, and stops it when the test ends. It skips the test when the
// binary is missing, unless RequireRedisEnv is set.
func RedisServer(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireRedisEnv) != "" {
			t.Fatalf("redis-server not found and %s is set: %v", RequireRedisEnv, err)
		}
		t.Skip("redis-server not installed (set " + RequireRedisEnv + "=1 to make this a failure)")
	}
	s := &Server{Addr: FreeAddr(t), bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop)
	s.startT(t)
	return s
}

// StartRedis is RedisServer for a program rather than a test (the load
// tool): it runs redis-server from PATH on a free 127.0.0.1 port, without
// persistence, with dir as its working directory, and returns once the
// server accepts connections. The caller stops it with Stop.
func StartRedis(dir string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s := &Server{Addr: addr, bin: bin, dir: dir}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Restart starts the server again on the same address, after Stop: an
// outage that ends. The data is gone: the server keeps none.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.startT(t)
}

func (s *Server) startT(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// startWait is how long a server may take to accept connections.
const startWait = 10 * time.Second

// start runs the server and waits until it accepts connections; a server
// that does not within startWait is stopped.
func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	s.done = make(chan struct{})
	args := []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "no"}
	if s.conf != "" {
		args = []string{s.conf} // a Sentinel: everything is in its file, which it rewrites
	}
	s.cmd = exec.Command(s.bin, append(args, s.args...)...)
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", filepath.Base(s.bin), err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.mu.Lock()
			if len(s.log) < 100 {
				s.log = append(s.log, sc.Text())
			}
			s.mu.Unlock()
		}
	}()
	deadline := time.Now().Add(startWait)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.done:
			s.Stop()
			return fmt.Errorf("%s on %s exited; its output:\n%s", filepath.Base(s.bin), s.Addr, s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("%s did not answer on %s within %s; its output:\n%s", filepath.Base(s.bin), s.Addr, startWait, s.Log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Pid is the server's process id, to read its CPU time from /proc.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop kills the server and waits for it; a second call does nothing.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd.Wait()
}

// Log is what the server printed, for failure messages.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.log, "\n")
}

// Clock is an injectable clock that only moves when told.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time; pass it as a Now option.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// WaitFor polls cond until it holds, failing the test with what and cond's
// last state once timeout has passed: tests wait for a condition, never for
// a fixed time.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last state: %s", what, timeout, state)
		}
		<-tick.C
	}
}

// Buffer is a bytes.Buffer that is safe to write from several goroutines
// (a logger's, a server's) while the test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreeAddr returns a 127.0.0.1 address with a port free at the time of the
// call, for a listener the code under test opens itself.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Keyspace reads the keys matching pattern with their values as text, as an
// operator's redis-cli would: strings as they are, sets as sorted member
// lists, zsets as sorted member=score lists. KEYS is fine on a test store.
func Keyspace(t testing.TB, c *redis.Client, pattern string) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, pattern).Result()
	if err != nil {
		t.Fatalf("KEYS %s: %v", pattern, err)
	}
	out := map[string]string{}
	for _, k := range keys {
		switch typ := c.Type(ctx, k).Val(); typ {
		case "string":
			out[k] = c.Get(ctx, k).Val()
		case "set":
			m := c.SMembers(ctx, k).Val()
			sort.Strings(m)
			out[k] = fmt.Sprint("set", m)
		case "zset":
			var m []string
			for _, z := range c.ZRangeWithScores(ctx, k, 0, -1).Val() {
				m = append(m, fmt.Sprintf("%v=%v", z.Member, z.Score))
			}
			sort.Strings(m)
			out[k] = fmt.Sprint("zset", m)
		default:
			out[k] = typ
		}
	}
	return out
}
