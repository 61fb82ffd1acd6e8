// Package storagetest starts what storage tests run against: a real
// redis-server on a free loopback port, owned by the test.
package storagetest

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireRedisEnv, when set, makes tests that need a real redis-server fail
// rather than skip where the binary is missing. CI sets it.
const RequireRedisEnv = "RACKTRACKER_REQUIRE_REDIS"

// Server is a redis-server started for one test.
type Server struct {
	Addr string
	bin  string
	dir  string
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &Server{Addr: addr, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop)
	s.start(t)
	return s
}

// Restart starts the server again on the same address, after Stop: an
// outage that ends. The data is gone: the server keeps none.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t)
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	s.done = make(chan struct{})
	s.cmd = exec.Command(s.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "no")
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.Stop()
			t.Fatalf("redis-server did not answer on %s within 10s; its output:\n%s", s.Addr, s.Log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

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
