package storage

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// redis62 is a stand-in for Redis 6.2 that speaks just enough RESP for
// Open: it answers INFO with one section, and refuses several sections in
// one call with the syntax error Redis before 7 gives.
func redis62(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); serve62(c) })
		}
	})
	return ln.Addr().String()
}

func serve62(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		var reply string
		switch cmd := strings.ToUpper(args[0]); {
		case cmd == "INFO" && len(args) == 2 && args[1] == "server":
			reply = bulk("# Server\r\nredis_version:6.2.14\r\n")
		case cmd == "INFO" && len(args) == 2 && args[1] == "cluster":
			reply = bulk("# Cluster\r\ncluster_enabled:0\r\n")
		case cmd == "INFO":
			reply = "-ERR syntax error\r\n"
		case cmd == "PING":
			reply = "+PONG\r\n"
		case cmd == "SMEMBERS":
			reply = "*0\r\n"
		default:
			reply = "-ERR unknown command '" + args[0] + "'\r\n"
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("bad array %q", line)
	}
	args := make([]string, n)
	for i := range args {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}

// TestOpenRedis62: Open asks INFO one section per call, which Redis 6.2
// (the oldest README promises) answers.
func TestOpenRedis62(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Backend = BackendRedis
	cfg.Redis.Addr = redis62(t)
	s, err := Open(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatalf("Open against Redis 6.2: %v", err)
	}
	s.Close(context.Background())
}

// TestRedisURLNotEchoed: a Redis address in URL form is refused without
// printing its password.
func TestRedisURLNotEchoed(t *testing.T) {
	for _, addr := range []string{"redis://:hunter2@db.dc1:6379/0", "redis://admin:hunter2@db.dc1", "rediss://hunter2@db:6380", ":hunter2@db:6379"} {
		cfg := DefaultConfig()
		cfg.Backend = BackendRedis
		cfg.Redis.Addr = addr
		err := cfg.Validate()
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "storage.redis.password") {
			t.Errorf("Validate(addr %q) = %v; want an error that names storage.redis.password and hides the secret", addr, err)
		}
		if _, err := Open(context.Background(), cfg, Options{}); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(addr %q) = %v; want an error that hides the secret", addr, err)
		}
	}
}
