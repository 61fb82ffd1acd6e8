package storage

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"racktracker/storage/storagetest"
)

// env is one backend under test: the store, a client that reads the same
// keys behind the store's back (as an operator's redis-cli would), and the
// clock.
type env struct {
	name  string
	store *Store
	raw   *redis.Client
	clock *storagetest.Clock
	cfg   Config
	opts  Options
}

var epoch = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// backends runs f once per backend: embedded miniredis, and a real
// redis-server the test starts on a free loopback port.
func backends(t *testing.T, f func(t *testing.T, e *env)) {
	t.Run("embedded", func(t *testing.T) { f(t, newEmbedded(t, nil)) })
	t.Run("redis", func(t *testing.T) { f(t, newRedis(t, nil)) })
}

func newEmbedded(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Embedded.SnapshotPath = filepath.Join(t.TempDir(), "tracker.snapshot")
	if edit != nil {
		edit(&cfg)
	}
	return openEnv(t, "embedded", cfg, nil)
}

func newRedis(t *testing.T, hooks []redis.Hook) *env {
	t.Helper()
	addr := startRedisServer(t)
	cfg := DefaultConfig()
	cfg.Backend = BackendRedis
	cfg.Redis.Addr = addr
	return openEnv(t, "redis", cfg, hooks)
}

func openEnv(t *testing.T, name string, cfg Config, hooks []redis.Hook) *env {
	t.Helper()
	c := storagetest.NewClock(epoch)
	// Rebuild at every snapshot after a key was deleted, so that tests
	// exercise it.
	opts := Options{Now: c.Now, Hooks: hooks, RebuildAfter: -1}
	s, err := Open(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", name, err)
	}
	e := &env{name: name, store: s, clock: c, cfg: cfg, opts: opts}
	if cfg.Backend == BackendRedis {
		e.raw = redis.NewClient(&redis.Options{Addr: cfg.Redis.Addr, Protocol: 2, DisableIdentity: true})
		t.Cleanup(func() { e.raw.Close() })
	} else {
		e.raw = s.rdb
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return e
}

// startRedisServer runs redis-server on a free loopback port for the test.
func startRedisServer(t testing.TB) string { return storagetest.RedisServer(t).Addr }

func freeAddr(t testing.TB) string { return storagetest.FreeAddr(t) }

// waitFor is storagetest.WaitFor for a condition with no state to show.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	storagetest.WaitFor(t, d, what, func() (bool, string) { return cond(), "not yet" })
}

func keyspace(t testing.TB, c *redis.Client) map[string]string {
	return storagetest.Keyspace(t, c, "*")
}

func hash(b byte) InfoHash {
	var h InfoHash
	for i := range h {
		h[i] = b
	}
	return h
}

// ann is a compact way to write an announce in tests.
func ann(h InfoHash, addr string, rack, event string, left int64) Announce {
	ap := netip.MustParseAddrPort(addr)
	return Announce{
		InfoHash: h, Addr: ap, PeerID: "-RT0001-" + strings.Repeat("x", 12), Key: "k" + rack,
		Event: event, Left: left, Uploaded: 10, Downloaded: 20, Compact: true,
		Rack: rack, Hostname: "host-" + ap.Addr().String(),
		AllowUnregistered: true, Representatives: 2, Timers: testTimers, Numwant: 50, Plan: testPlan,
	}
}

// testTimers are the timers of ann: a peer announcing at the tracker's
// interval (30 s), so that a peer seen once expires after the 90 s peer
// timeout as in the tests written before cadences were learned. Tests of
// slower clients set their own (cadence_test.go).
var testTimers = Timers{PeerTimeout: 90 * time.Second, Cadences: DefaultCadences, FirstCadence: 30 * time.Second, Stall: 90 * time.Second}

func mustAnnounce(t testing.TB, s *Store, a Announce) Swarm {
	t.Helper()
	sw, err := s.Announce(context.Background(), a)
	if err != nil {
		t.Fatalf("Announce(%s %s %q left=%d): %v", a.InfoHash, a.Addr, a.Event, a.Left, err)
	}
	return sw
}

// testClasses are the classes testPlan samples, one stage each.
var testClasses = []Class{OwnSeeders, OwnReps, OwnLeechers, OtherSeeders, OtherReps, OtherLeechingReps, AllSeeders, AllLeechers}

// testPlan samples every class in a stage of its own, whatever the role, so
// that a test reads the candidates of one class with pool.
var testPlan = func() Plan {
	var st []Stage
	for _, c := range testClasses {
		st = append(st, Stage{Classes: []Class{c}})
	}
	return Plan{Leecher: st, Escape: st, Representative: st, Seeder: st}
}()

// pool is what an announce with testPlan sampled of class c.
func pool(sw Swarm, c Class) []Peer {
	i := slices.Index(testClasses, c)
	if i >= len(sw.Stages) {
		return nil
	}
	return sw.Stages[i]
}

// localPlan mirrors the plan of the tracker's default rack-aware handout
// (tracker.Handout with 2 representatives per rack), for tests and
// benchmarks that measure what production samples.
var localPlan = func() Plan {
	own := []Stage{{Classes: []Class{OwnSeeders, OwnReps}}, {Classes: []Class{OwnLeechers}}}
	return Plan{
		Leecher:        own,
		Escape:         append([]Stage{{Classes: []Class{OtherSeeders, OtherReps}, N: 2}}, own...),
		Representative: []Stage{{Classes: []Class{OtherSeeders, OtherReps}, N: 1}, {Classes: []Class{OwnSeeders, OwnReps, OwnLeechers}}},
		Seeder:         []Stage{{Classes: []Class{OwnLeechers}}, {Classes: []Class{OtherLeechingReps}}},
	}
}()
