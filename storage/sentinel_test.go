package storage

import (
	"context"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"racktracker/storage/storagetest"
)

// TestSentinelConfig: sentinel needs both master and addrs, each addr a
// host:port; a written addr beside it is refused, addr's default is not.
func TestSentinelConfig(t *testing.T) {
	tests := []struct {
		name string
		yaml string // the storage section
		want []string
	}{
		{"sentinel", "backend: redis\nredis:\n  sentinel: {master: m, addrs: [\"h1:26379\", \"h2:26379\"]}\n", nil},
		{"standalone", "backend: redis\nredis:\n  addr: \"h:6379\"\n", nil},
		{"replica reads", "backend: redis\nredis:\n  sentinel: {master: m, addrs: [\"h:26379\"], replica_reads: true}\n", nil},
		{"addr beside sentinel", "backend: redis\nredis:\n  addr: \"h:6379\"\n  sentinel: {master: m, addrs: [\"h:26379\"]}\n",
			[]string{"redis.addr: set together with sentinel"}},
		{"default addr written beside sentinel", "redis:\n  addr: \"127.0.0.1:6379\"\n  sentinel: {master: m, addrs: [\"h:26379\"]}\n",
			[]string{"redis.addr: set together with sentinel"}},
		{"null addr beside sentinel", "redis:\n  addr:\n  sentinel: {master: m, addrs: [\"h:26379\"]}\n", nil},
		{"master only", "redis:\n  sentinel: {master: m}\n", []string{"redis.sentinel.addrs: must list"}},
		{"addrs only", "redis:\n  sentinel: {addrs: [\"h:26379\"]}\n", []string{"redis.sentinel.master: must name"}},
		{"addr without port", "redis:\n  sentinel: {master: m, addrs: [\"h:26379\", \"h2\"]}\n", []string{"redis.sentinel.addrs[1]: want host:port"}},
		{"replica reads without sentinel", "redis:\n  sentinel: {replica_reads: true}\n", []string{"redis.sentinel.replica_reads: needs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if err := yaml.Unmarshal([]byte(tt.yaml), &cfg); err != nil {
				t.Fatalf("yaml.Unmarshal: %v", err)
			}
			err := cfg.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Validate() = %v, want %d problems starting %q", err, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("Validate() problem %d = %q, want it to start %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestSentinelReplicaReads: with sentinel.replica_reads a scrape reads a
// replica while announces write the master; with the replica gone, reads
// fall back to the master.
func TestSentinelReplicaReads(t *testing.T) {
	g := storagetest.StartReplicated(t, 1, 1)
	cfg := DefaultConfig()
	cfg.Backend = BackendRedis
	cfg.Redis.Sentinel = SentinelConfig{Master: g.Name, Addrs: g.SentinelAddrs(), ReplicaReads: true}
	e := openEnv(t, "sentinel", cfg, nil)
	ctx := context.Background()
	master, replica := g.Client(t, g.Master), g.Client(t, g.Replicas[0])

	h := hash(0x5e)
	mustAnnounce(t, e.store, ann(h, "10.0.0.1:1000", "r1", "started", 0))
	if n := master.Exists(ctx, transferKeys(h).peers(classSeeders)).Val(); n != 1 {
		t.Fatalf("announce left no seeders set on the master")
	}
	before := storagetest.CommandCalls(t, replica, "mget")
	var counts []ScrapeCounts
	waitFor(t, 10*time.Second, "the replica to serve the announce", func() bool {
		var err error
		counts, err = e.store.Scrape(ctx, []InfoHash{h})
		return err == nil && len(counts) == 1 && counts[0].Complete == 1
	})
	if after := storagetest.CommandCalls(t, replica, "mget"); after <= before {
		t.Errorf("replica ran MGET %d times before the scrape, %d after; want the scrape read there", before, after)
	}
	if n := storagetest.CommandCalls(t, replica, "evalsha") + storagetest.CommandCalls(t, replica, "eval"); n != 0 {
		t.Errorf("replica ran the announce script %d times, want announces on the master only", n)
	}

	g.Replicas[0].Stop()
	counts, err := e.store.Scrape(ctx, []InfoHash{h})
	if err != nil || len(counts) != 1 || counts[0].Complete != 1 {
		t.Errorf("Scrape with the replica gone = %v, %v; want the master's counts", counts, err)
	}
}
