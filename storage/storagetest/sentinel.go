package storagetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Failover timing of the Sentinels a test starts: a master is down after
// DownAfter without an answer, and a failover that stalls is retried after
// failoverTimeout. Low, so that a failover costs a test a few seconds.
const (
	DownAfter       = time.Second
	failoverTimeout = 5 * time.Second
)

// Replicated is a master, its replicas and the Sentinels that watch them,
// each a process of its own on a free loopback port, stopped when the test
// ends. Every node runs as the README's Sentinel example says, without
// persistence.
type Replicated struct {
	Name      string // the master's name in the Sentinels' configuration
	Master    *Server
	Replicas  []*Server
	Sentinels []*Server
}

// nodeArgs are what every data node runs with, master or replica, since
// any of them may be promoted: refuse writes without a replica in sync
// (bounds what a failover loses), refuse stale reads on a replica cut from
// its master, and sync replicas without waiting for more to join.
var nodeArgs = []string{
	"--min-replicas-to-write", "1", "--min-replicas-max-lag", "10",
	"--replica-serve-stale-data", "no",
	"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
}

// StartReplicated starts one master, replicas replicas of it, and sentinels
// Sentinels with a majority quorum, and returns when the master has every
// replica and every Sentinel knows every replica and every other Sentinel.
// It skips the test when redis-server or redis-sentinel is missing, unless
// RequireRedisEnv is set.
func StartReplicated(t testing.TB, replicas, sentinels int) *Replicated {
	t.Helper()
	server, sentinel := lookPath(t, "redis-server"), lookPath(t, "redis-sentinel")
	g := &Replicated{Name: "racktracker"}
	g.Master = startServer(t, &Server{Addr: FreeAddr(t), bin: server, dir: t.TempDir(), args: nodeArgs})
	host, port := splitHostPort(t, g.Master.Addr)
	for range replicas {
		args := append(append([]string{}, nodeArgs...), "--replicaof", host, port)
		g.Replicas = append(g.Replicas, startServer(t, &Server{Addr: FreeAddr(t), bin: server, dir: t.TempDir(), args: args}))
	}
	ctx := context.Background()
	master := g.Client(t, g.Master)
	var replicaClients []*redis.Client
	for _, r := range g.Replicas {
		replicaClients = append(replicaClients, g.Client(t, r))
	}
	waitUntil(t, 20*time.Second, "replicas in sync with the master", func() error {
		info, err := master.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if n := infoField(info, "connected_slaves"); n != strconv.Itoa(replicas) {
			return fmt.Errorf("connected_slaves %s", n)
		}
		for i, r := range replicaClients {
			info, err := r.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if st := infoField(info, "master_link_status"); st != "up" {
				return fmt.Errorf("replica %s link %s", g.Replicas[i].Addr, st)
			}
		}
		return nil
	})
	quorum := sentinels/2 + 1
	for range sentinels {
		s := &Server{Addr: FreeAddr(t), bin: sentinel, dir: t.TempDir()}
		_, sport := splitHostPort(t, s.Addr)
		s.conf = filepath.Join(s.dir, "sentinel.conf")
		conf := strings.Join([]string{
			"port " + sport,
			"bind 127.0.0.1",
			"protected-mode no",
			"daemonize no",
			`logfile ""`,
			"dir " + s.dir,
			fmt.Sprintf("sentinel monitor %s %s %s %d", g.Name, host, port, quorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", g.Name, DownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", g.Name, failoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", g.Name),
		}, "\n") + "\n"
		if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		g.Sentinels = append(g.Sentinels, startServer(t, s))
	}
	var sentinelClients []*redis.SentinelClient
	for _, s := range g.Sentinels {
		c := g.sentinel(s)
		defer c.Close()
		sentinelClients = append(sentinelClients, c)
	}
	waitUntil(t, 30*time.Second, "Sentinels that know every replica and each other", func() error {
		for i, c := range sentinelClients {
			s := g.Sentinels[i]
			m, err := c.Master(ctx, g.Name).Result()
			if err != nil {
				return err
			}
			if m["num-other-sentinels"] != strconv.Itoa(sentinels-1) {
				return fmt.Errorf("sentinel %s sees %s other sentinels", s.Addr, m["num-other-sentinels"])
			}
			// A replica just discovered is "disconnected" until the
			// Sentinel has talked to it; clients skip such replicas.
			rs, err := c.Replicas(ctx, g.Name).Result()
			if err != nil {
				return err
			}
			up := 0
			for _, r := range rs {
				if r["flags"] == "slave" && r["master-link-status"] == "ok" {
					up++
				}
			}
			if up != replicas {
				return fmt.Errorf("sentinel %s sees %d of %d replicas up: %v", s.Addr, up, replicas, rs)
			}
		}
		return nil
	})
	return g
}

// SentinelAddrs are the Sentinels' addresses, for storage.redis.sentinel.addrs.
func (g *Replicated) SentinelAddrs() []string {
	var out []string
	for _, s := range g.Sentinels {
		out = append(out, s.Addr)
	}
	return out
}

// MasterAddr asks Sentinel s which node is the master.
func (g *Replicated) MasterAddr(ctx context.Context, s *Server) (string, error) {
	c := g.sentinel(s)
	defer c.Close()
	v, err := c.GetMasterAddrByName(ctx, g.Name).Result()
	if err != nil {
		return "", err
	}
	return v[0] + ":" + v[1], nil
}

// Node returns the data node (master or replica) listening on addr, or nil.
func (g *Replicated) Node(addr string) *Server {
	for _, s := range append([]*Server{g.Master}, g.Replicas...) {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// Client returns a plain client of node s, closed when the test ends.
func (g *Replicated) Client(t testing.TB, s *Server) *redis.Client {
	c := g.client(s)
	t.Cleanup(func() { c.Close() })
	return c
}

func (g *Replicated) client(s *Server) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
}

func (g *Replicated) sentinel(s *Server) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: s.Addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
}

// lookPath finds a binary, or skips (fails under RequireRedisEnv) the test.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv(RequireRedisEnv) != "" {
			t.Fatalf("%s not found and %s is set: %v", name, RequireRedisEnv, err)
		}
		t.Skip(name + " not installed (set " + RequireRedisEnv + "=1 to make this a failure)")
	}
	return bin
}

func startServer(t testing.TB, s *Server) *Server {
	t.Helper()
	t.Cleanup(s.Stop)
	s.startT(t)
	return s
}

func splitHostPort(t testing.TB, addr string) (string, string) {
	t.Helper()
	host, port, ok := strings.Cut(addr, ":")
	if !ok {
		t.Fatalf("address %q has no port", addr)
	}
	return host, port
}

// infoField reads one field of an INFO answer.
func infoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// waitUntil polls cond until it returns nil, failing the test with its last
// error after d.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", d, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CommandCalls reads how many times the server behind c ran cmd (lower
// case), from INFO commandstats: which node served a read, say.
func CommandCalls(t testing.TB, c *redis.Client, cmd string) int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	v, _, _ := strings.Cut(infoField(info, "cmdstat_"+cmd), ",")
	n, _ := strconv.Atoi(strings.TrimPrefix(v, "calls="))
	return n
}
