package storage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestLuaKeysMatchGo checks that scripts build the same names as Go: the
// layout is written once in keys.go, in both languages.
func TestLuaKeysMatchGo(t *testing.T) {
	e := newEmbedded(t, nil)
	k := transferKeys(hash(0xab))
	script := redis.NewScript(luaKeys + `
local h = ARGV[1]
return {K.racks, K.transfers, K.active, K.rack('r1'), K.field(h, 'name'), K.peers(h, 'S'),
  K.rackset(h, 'r1', 'R'), K.peer(h, '::1', 'port'), K.event(h, '10.0.0.1', 'started'),
  K.deactivations, K.peerstr('10.0.0.1', '80'), K.peerstr('fd00::1', '80'),
  K.peerip('[fd00::1]:80'), K.peerip('10.0.0.1:80')}`)
	got, err := script.Run(context.Background(), e.raw, nil, string(k)).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{keyRacks, keyTransfers, keyActiveTransfers, keyRack("r1"), k.field("name"), k.peers("S"),
		k.rack("r1", "R"), k.peer("::1", "port"), k.event("10.0.0.1", "started"),
		keyDeactivations, "10.0.0.1:80", "[fd00::1]:80", "fd00::1", "10.0.0.1"}
	if !slices.Equal(got, want) {
		t.Errorf("Lua keys = %q\nwant        %q", got, want)
	}
}

var datetimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

// TestAnnounceLayout walks a scripted swarm through every event and checks
// each key it leaves against SPEC section 3, on both backends.
func TestAnnounceLayout(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		s, h := e.store, hash(0x11)
		k := transferKeys(h)
		ctx := context.Background()
		get := func(key string) string {
			t.Helper()
			v, err := e.raw.Get(ctx, key).Result()
			if err != nil {
				t.Fatalf("GET %s: %v", key, err)
			}
			return v
		}
		members := func(key string) []string {
			t.Helper()
			m := e.raw.SMembers(ctx, key).Val()
			slices.Sort(m)
			return m
		}
		wantSet := func(key string, want ...string) {
			t.Helper()
			slices.Sort(want)
			if got := members(key); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("SMEMBERS %s = %q, want %q", key, got, want)
			}
		}

		// A starts in r1: first peer of the transfer, elected at once.
		sw := mustAnnounce(t, s, ann(h, "10.0.0.1:6881", "r1", EventStarted, 100))
		if sw.Role != RoleRepresentative || sw.Incomplete != 1 || sw.Complete != 0 || sw.Elected != 1 {
			t.Errorf("first announce: %+v, want representative, 0 complete, 1 incomplete, 1 elected", sw)
		}
		t0 := FormatTime(epoch)
		if got := get(k.field("registered")); got != t0 {
			t.Errorf("registered = %q, want %q", got, t0)
		}
		wantSet(keyTransfers, h.String())
		wantSet(keyActiveTransfers, h.String())
		wantSet(keyRacks, "r1")
		wantSet(keyRack("r1"), "host-10.0.0.1")
		wantSet(k.peers("N"), "10.0.0.1:6881")
		wantSet(k.peers("L"), "10.0.0.1:6881")
		wantSet(k.peers("R"), "10.0.0.1:6881")
		wantSet(k.peers("S"))
		wantSet(k.rack("r1", "N"), "10.0.0.1:6881")
		wantSet(k.rack("r1", "R"), "10.0.0.1:6881")
		peerWant := map[string]string{
			"compact": "True", "port": "6881", "peer_id": "-RT0001-xxxxxxxxxxxx", "key": "kr1",
			"last_event": "started", "event:started": t0, "seeder": "False", "downloaded": "20",
			"left": "100", "uploaded": "10", "rack": "r1", "hostname": "host-10.0.0.1",
		}
		for f, want := range peerWant {
			if got := get(k.peer("10.0.0.1", f)); got != want {
				t.Errorf("%s = %q, want %q", k.peer("10.0.0.1", f), got, want)
			}
		}
		if got := get(k.field("first_started")); got != t0 {
			t.Errorf("first_started = %q, want %q", got, t0)
		}

		// B and C start in r1 (C finds both slots taken) and D in r2.
		e.clock.Advance(time.Second)
		mustAnnounce(t, s, ann(h, "10.0.0.2:6881", "r1", EventStarted, 100))
		sw = mustAnnounce(t, s, ann(h, "10.0.0.3:6881", "r1", EventStarted, 100))
		if sw.Role != RoleLeecher {
			t.Errorf("third peer of r1 role = %c, want L (r1 holds 2 representatives)", sw.Role)
		}
		mustAnnounce(t, s, ann(h, "[fd00::4]:6881", "r2", EventStarted, 100))
		t1 := FormatTime(epoch.Add(time.Second))
		if got := get(k.field("first_started")); got != t0 {
			t.Errorf("first_started = %q after more starts, want %q (set once)", got, t0)
		}
		if got := get(k.field("last_started")); got != t1 {
			t.Errorf("last_started = %q, want %q", got, t1)
		}
		wantSet(k.rack("r1", "R"), "10.0.0.1:6881", "10.0.0.2:6881")
		wantSet(k.rack("r2", "R"), "[fd00::4]:6881")
		wantSet(k.peers("R"), "10.0.0.1:6881", "10.0.0.2:6881", "[fd00::4]:6881")
		wantSet(keyRacks, "r1", "r2")
		if got := get(k.peer("fd00::4", "port")); got != "6881" {
			t.Errorf("IPv6 peer port = %q, want 6881", got)
		}

		// A progresses, then completes: it moves from L to S and stays a
		// representative (the rack's first in-rack seeder).
		e.clock.Advance(time.Second)
		mustAnnounce(t, s, ann(h, "10.0.0.1:6881", "r1", EventNone, 50))
		if got := get(k.peer("10.0.0.1", "last_event")); got != "started" {
			t.Errorf("last_event after a plain update = %q, want started", got)
		}
		e.clock.Advance(time.Second)
		t3 := FormatTime(epoch.Add(3 * time.Second))
		sw = mustAnnounce(t, s, ann(h, "10.0.0.1:6881", "r1", EventCompleted, 0))
		if sw.Role != RoleSeeder || sw.Complete != 1 || sw.Incomplete != 3 {
			t.Errorf("after completion: %+v, want seeder, 1 complete, 3 incomplete", sw)
		}
		wantSet(k.peers("S"), "10.0.0.1:6881")
		wantSet(k.peers("L"), "10.0.0.2:6881", "10.0.0.3:6881", "[fd00::4]:6881")
		wantSet(k.rack("r1", "S"), "10.0.0.1:6881")
		wantSet(k.rack("r1", "R"), "10.0.0.1:6881", "10.0.0.2:6881")
		for key, want := range map[string]string{
			k.field("first_completed"): t3, k.field("last_completed"): t3, k.field("completions"): "1",
			k.peer("10.0.0.1", "seeder"): "True", k.peer("10.0.0.1", "event:completed"): t3,
			k.peer("10.0.0.1", "last_event"): "completed", k.field("complete"): "1", k.field("incomplete"): "3",
		} {
			if got := get(key); got != want {
				t.Errorf("%s = %q, want %q", key, got, want)
			}
		}

		// B comes back on another port: its old member is gone everywhere,
		// and it keeps its representative slot.
		mustAnnounce(t, s, ann(h, "10.0.0.2:7000", "r1", EventNone, 90))
		wantSet(k.peers("N"), "10.0.0.1:6881", "10.0.0.2:7000", "10.0.0.3:6881", "[fd00::4]:6881")
		wantSet(k.peers("L"), "10.0.0.2:7000", "10.0.0.3:6881", "[fd00::4]:6881")
		wantSet(k.rack("r1", "N"), "10.0.0.1:6881", "10.0.0.2:7000", "10.0.0.3:6881")
		wantSet(k.rack("r1", "R"), "10.0.0.1:6881", "10.0.0.2:7000")
		if z := e.raw.ZRange(ctx, k.rack("r1", "left"), 0, -1).Val(); !slices.Equal(z, []string{"10.0.0.3:6881", "10.0.0.2:7000"}) && !slices.Equal(z, []string{"10.0.0.2:7000", "10.0.0.3:6881"}) {
			t.Errorf("r1 left = %q, want B on its new port and C", z)
		}

		// C stops: out of every current set, still in N.
		e.clock.Advance(time.Second)
		t4 := FormatTime(epoch.Add(4 * time.Second))
		sw = mustAnnounce(t, s, ann(h, "10.0.0.3:6881", "r1", EventStopped, 100))
		if sw.Role != RoleStopped {
			t.Errorf("stopped role = %c, want X", sw.Role)
		}
		wantSet(k.peers("L"), "10.0.0.2:7000", "[fd00::4]:6881")
		wantSet(k.peers("N"), "10.0.0.1:6881", "10.0.0.2:7000", "10.0.0.3:6881", "[fd00::4]:6881")
		if got := get(k.peer("10.0.0.3", "event:stopped")); got != t4 {
			t.Errorf("event:stopped = %q, want %q", got, t4)
		}
		if n := e.raw.Exists(ctx, k.peer("10.0.0.3", "event:completed")).Val(); n != 0 {
			t.Errorf("event:completed exists for a peer that never completed")
		}

		// Every datetime is fixed-width UTC; every boolean True/False.
		for key, v := range keyspace(t, e.raw) {
			if strings.Contains(key, "event:") || strings.HasSuffix(key, "_started") || strings.HasSuffix(key, "_completed") || strings.HasSuffix(key, ":registered") || strings.HasSuffix(key, ":last_announce") {
				if !datetimeRE.MatchString(v) {
					t.Errorf("%s = %q, not a datetime", key, v)
				}
			}
			if strings.HasSuffix(key, ":seeder") || strings.HasSuffix(key, ":compact") {
				if v != "True" && v != "False" {
					t.Errorf("%s = %q, want True or False", key, v)
				}
			}
			if !strings.HasPrefix(key, h.String()) && !slices.Contains([]string{keyRacks, keyTransfers, keyActiveTransfers, keyRack("r1"), keyRack("r2")}, key) {
				t.Errorf("unexpected key %q", key)
			}
		}
	})
}

// TestExpiry expires silent peers by data (no TTL), replaces a silent
// representative, and leaves live peers alone.
func TestExpiry(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		s, h := e.store, hash(0x22)
		k := transferKeys(h)
		ctx := context.Background()
		mustAnnounce(t, s, ann(h, "10.0.0.1:1", "r1", EventStarted, 100)) // representative
		mustAnnounce(t, s, ann(h, "10.0.0.2:1", "r1", EventStarted, 100)) // representative
		mustAnnounce(t, s, ann(h, "10.0.0.3:1", "r1", EventStarted, 100))
		// Before 10.0.0.1 is overdue (1.5 times the first cadence, 45 s):
		// an announce of its rack after that would give its slot away
		// itself (TestOverdueRepresentativeReplaced).
		e.clock.Advance(40 * time.Second)
		mustAnnounce(t, s, ann(h, "10.0.0.2:1", "r1", EventNone, 80))
		mustAnnounce(t, s, ann(h, "10.0.0.3:1", "r1", EventNone, 90))
		e.clock.Advance(50 * time.Second) // 10.0.0.1's deadline: the 90 s peer timeout

		got, err := s.Expire(ctx, testTimers, 2)
		if err != nil {
			t.Fatal(err)
		}
		if got.Peers != 1 || got.Elected != 1 {
			t.Errorf("Expire = %+v, want 1 peer expired and 1 representative elected", got)
		}
		if m := e.raw.SMembers(ctx, k.rack("r1", "R")).Val(); len(m) != 2 || slices.Contains(m, "10.0.0.1:1") {
			t.Errorf("r1 representatives = %q, want 10.0.0.2:1 and 10.0.0.3:1", m)
		}
		if e.raw.SIsMember(ctx, k.peers("L"), "10.0.0.1:1").Val() || !e.raw.SIsMember(ctx, k.peers("N"), "10.0.0.1:1").Val() {
			t.Errorf("expired peer: want out of L, still in N")
		}
		if n := e.raw.ZCard(ctx, k.field("seen")).Val(); n != 2 {
			t.Errorf("seen holds %d peers, want 2", n)
		}
		if v := e.raw.Get(ctx, k.field("incomplete")).Val(); v != "2" {
			t.Errorf("incomplete = %q, want 2", v)
		}
		// A second pass finds nothing more: cost follows what expires.
		if got, _ := s.Expire(ctx, testTimers, 2); got.Peers != 0 {
			t.Errorf("second Expire = %+v, want nothing", got)
		}
	})
}

// TestAtomicAnnounce flips a peer between seeder and leecher while a reader
// checks, in one MULTI, that it is never in S and L at once.
func TestAtomicAnnounce(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		s, h := e.store, hash(0x33)
		k := transferKeys(h)
		ctx := context.Background()
		mustAnnounce(t, s, ann(h, "10.0.0.1:1", "r1", EventStarted, 10))
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				if _, err := s.Announce(ctx, ann(h, "10.0.0.1:1", "r1", EventNone, int64(i%2))); err != nil {
					t.Errorf("announce: %v", err)
					return
				}
			}
		}()
		defer func() { stop.Store(true); wg.Wait() }()
		for range 300 {
			var inS, inL *redis.BoolCmd
			_, err := e.raw.TxPipelined(ctx, func(p redis.Pipeliner) error {
				inS = p.SIsMember(ctx, k.peers("S"), "10.0.0.1:1")
				inL = p.SIsMember(ctx, k.peers("L"), "10.0.0.1:1")
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if inS.Val() == inL.Val() {
				t.Fatalf("peer in S: %v, in L: %v; want exactly one", inS.Val(), inL.Val())
			}
		}
	})
}

// TestDeactivate renames every key of the transfer, leaves no key that
// starts with the hash, records the run in deactivations, refuses the
// hash's announces, and lets a registration start it afresh.
func TestDeactivate(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		s, h, other := e.store, hash(0x44), hash(0x45)
		ctx := context.Background()
		if err := s.Register(ctx, h, "payload.img", 1<<20, []byte("d4:infod4:name3:abcee")); err != nil {
			t.Fatal(err)
		}
		if err := s.Register(ctx, h, "payload.img", 1<<20, nil); !errors.Is(err, ErrExists) {
			t.Errorf("Register twice = %v, want ErrExists", err)
		}
		mustAnnounce(t, s, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
		mustAnnounce(t, s, ann(h, "10.0.0.1:2", "r1", EventNone, 50)) // port change
		mustAnnounce(t, s, ann(h, "10.0.0.2:1", "r2", EventStarted, 100))
		mustAnnounce(t, s, ann(h, "10.0.0.2:1", "r2", EventNone, 90))
		mustAnnounce(t, s, ann(h, "10.0.0.2:1", "r2", EventNone, 90)) // a stall
		mustAnnounce(t, s, ann(h, "10.0.0.3:1", "r1", EventCompleted, 0))
		mustAnnounce(t, s, ann(h, "10.0.0.3:1", "r1", EventPaused, 0))
		mustAnnounce(t, s, ann(h, "[fd00::9]:1", "r2", EventStarted, 100))
		mustAnnounce(t, s, ann(h, "[fd00::9]:1", "r2", EventStopped, 100))
		mustAnnounce(t, s, ann(other, "10.0.0.1:1", "r1", EventStarted, 100))

		before := keyspace(t, e.raw)
		e.clock.Advance(time.Minute)
		at, err := s.Deactivate(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if want := FormatTime(e.clock.Now()); at != want {
			t.Errorf("Deactivate at = %q, want %q", at, want)
		}
		after := keyspace(t, e.raw)
		prefix := at + ":"
		for key, v := range before {
			if !strings.HasPrefix(key, h.String()) {
				if key == keyActiveTransfers {
					continue
				}
				if after[key] != v {
					t.Errorf("%s changed: %q -> %q", key, v, after[key])
				}
				continue
			}
			if _, ok := after[key]; ok {
				t.Errorf("%s left behind", key)
			}
			if got, ok := after[prefix+key]; !ok || got != v {
				t.Errorf("%s%s = %q (exists %v), want %q", prefix, key, got, ok, v)
			}
		}
		if got := after[prefix+h.String()+":deregistered"]; got != at {
			t.Errorf("deregistered = %q, want %q", got, at)
		}
		var left []string
		for key := range after {
			if strings.HasPrefix(key, h.String()) {
				left = append(left, key)
			}
		}
		if len(left) != 0 {
			t.Errorf("keys left under the hash = %q, want none", left)
		}
		wantIndex := fmt.Sprintf("zset[%s:%s=%v]", at, h, float64(e.clock.Now().UnixMilli()))
		if after[keyDeactivations] != wantIndex {
			t.Errorf("deactivations = %s, want %s", after[keyDeactivations], wantIndex)
		}
		if after[keyActiveTransfers] != "set["+other.String()+"]" {
			t.Errorf("active_transfers = %s, want only the other transfer", after[keyActiveTransfers])
		}
		if !strings.Contains(after[keyTransfers], h.String()) {
			t.Errorf("transfers = %s, want it to keep %s", after[keyTransfers], h)
		}
		if _, err := s.Deactivate(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Errorf("second Deactivate = %v, want ErrNotFound", err)
		}

		// Its announces are refused and write nothing, until it is
		// registered again.
		for _, ev := range []string{EventStarted, EventNone, EventStopped} {
			if _, err := s.Announce(ctx, ann(h, "10.0.0.5:1", "r1", ev, 100)); !errors.Is(err, ErrDeactivated) {
				t.Errorf("Announce %q of a deactivated transfer = %v, want ErrDeactivated", ev, err)
			}
		}
		if again := keyspace(t, e.raw); !maps.Equal(again, after) {
			t.Errorf("a refused announce changed the keyspace")
		}

		// Registration starts it afresh.
		e.clock.Advance(time.Minute)
		if err := s.Register(ctx, h, "payload.img", 1<<20, []byte("d4:infod4:name3:abcee")); err != nil {
			t.Fatal(err)
		}
		sw := mustAnnounce(t, s, ann(h, "10.0.0.5:1", "r1", EventStarted, 100))
		if sw.Complete != 0 || sw.Incomplete != 1 {
			t.Errorf("fresh transfer counts %d/%d, want 0/1", sw.Complete, sw.Incomplete)
		}
		k := transferKeys(h)
		if m := e.raw.SMembers(ctx, k.peers("N")).Val(); !slices.Equal(m, []string{"10.0.0.5:1"}) {
			t.Errorf("fresh peers:N = %q, want only the new peer", m)
		}
		if v := e.raw.Exists(ctx, k.field("deregistered"), k.field("completions")).Val(); v != 0 {
			t.Errorf("fresh transfer has %d old keys", v)
		}
		hist, _, err := s.History(ctx, 10, "")
		if err != nil || len(hist) != 1 || hist[0].At != at || hist[0].Stats.Name != "payload.img" || hist[0].Stats.Completions != 1 || hist[0].Stats.PeersSeen != 4 {
			t.Errorf("History = %+v, %v; want one run at %s named payload.img, 1 completion, 4 peers", hist, err, at)
		}
	})
}

// TestUnregistered refuses an unknown transfer without writing anything.
func TestUnregistered(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		a := ann(hash(0x55), "10.0.0.1:1", "r1", EventStarted, 100)
		a.AllowUnregistered = false
		if _, err := e.store.Announce(context.Background(), a); !errors.Is(err, ErrNotRegistered) {
			t.Fatalf("Announce = %v, want ErrNotRegistered", err)
		}
		stop := ann(hash(0x56), "10.0.0.1:1", "r1", EventStopped, 100)
		if sw := mustAnnounce(t, e.store, stop); sw.Role != RoleStopped {
			t.Errorf("stop of an unknown transfer: role %c, want X", sw.Role)
		}
		if ks := keyspace(t, e.raw); len(ks) != 0 {
			t.Errorf("keys written: %v", slices.Collect(maps.Keys(ks)))
		}
	})
}

// TestScrape counts seeders, leechers and completed events, one round trip.
func TestScrape(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		h := hash(0x66)
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.2:1", "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.2:1", "r1", EventCompleted, 0))
		got, err := e.store.Scrape(context.Background(), []InfoHash{h, hash(0x67)})
		if err != nil {
			t.Fatal(err)
		}
		want := []ScrapeCounts{{InfoHash: h, Complete: 1, Incomplete: 1, Downloaded: 1}}
		if !slices.Equal(got, want) {
			t.Errorf("Scrape = %+v, want %+v", got, want)
		}
	})
}

// countHook counts what go-redis sends: one process call or one pipeline is
// one round trip.
type countHook struct{ calls atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.calls.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.calls.Add(1)
		return next(ctx, cmds)
	}
}

// TestOneRoundTrip: an announce is one round trip once the script is loaded.
func TestOneRoundTrip(t *testing.T) {
	hook := &countHook{}
	for _, e := range []*env{
		openEnv(t, "embedded", func() Config {
			c := DefaultConfig()
			c.Embedded.SnapshotPath = t.TempDir() + "/s"
			return c
		}(), []redis.Hook{hook}),
		newRedis(t, []redis.Hook{hook}),
	} {
		h := hash(0x77)
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100)) // loads the script
		for i, a := range []Announce{
			ann(h, "10.0.0.2:1", "r1", EventStarted, 100),
			ann(h, "10.0.0.2:1", "r1", EventNone, 50),
			ann(h, "10.0.0.2:1", "r1", EventCompleted, 0),
			ann(h, "10.0.0.2:1", "r1", EventStopped, 0),
		} {
			before := hook.calls.Load()
			mustAnnounce(t, e.store, a)
			if n := hook.calls.Load() - before; n != 1 {
				t.Errorf("%s: announce %d took %d round trips, want 1", e.name, i, n)
			}
		}
	}
}

// TestCheckServer refuses a cluster and a Redis too old for the scripts.
func TestCheckServer(t *testing.T) {
	for _, tc := range []struct {
		info, want string
	}{
		{"# Server\r\nredis_version:7.0.15\r\n# Cluster\r\ncluster_enabled:0\r\n", ""},
		{"# Server\r\nredis_version:7.2.4\r\n# Cluster\r\ncluster_enabled:1\r\n", "CROSSSLOT"},
		{"# Server\r\nredis_version:6.0.9\r\n", "6.2 or newer"},
	} {
		err := checkServer(tc.info)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("checkServer(%q) = %v, want %q", tc.info, err, tc.want)
		}
	}
}

// TestIndex: the index read from counters and per-rack sets shows what the
// per-transfer read shows, but for the per-peer byte sums it leaves out.
func TestIndex(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		a, b := hash(0x41), hash(0x42)
		if err := e.store.Register(ctx, a, "build.tar", 1000, nil); err != nil {
			t.Fatal(err)
		}
		for _, x := range []Announce{
			ann(a, "10.0.1.1:1", "r1", EventStarted, 0),
			ann(a, "10.0.1.2:1", "r1", EventStarted, 700),
			ann(a, "10.0.2.1:1", "r2", EventStarted, 900),
			ann(a, "10.0.2.2:1", "r2", EventStarted, 300),
			ann(a, "10.0.2.3:1", "r2", EventStarted, 500),
			ann(a, "10.0.2.3:1", "r2", EventStopped, 500),
			ann(b, "10.0.3.1:1", "r3", EventStarted, 50),
		} {
			mustAnnounce(t, e.store, x)
		}
		active, err := e.store.Active(ctx)
		if err != nil {
			t.Fatal(err)
		}
		index, err := e.store.Index(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(active) != 2 {
			t.Fatalf("Active = %d transfers, want 2", len(active))
		}
		for i := range active {
			active[i].Uploaded, active[i].Downloaded = 0, 0
		}
		if !reflect.DeepEqual(index, active) {
			t.Errorf("Index =\n%+v\nwant Active without byte sums\n%+v", index, active)
		}
		if got := index[0]; got.Seeders != 1 || got.Leechers != 3 || got.Left != 1900 || len(got.Racks) != 2 {
			t.Errorf("Index[0] = %+v, want 1 seeder, 3 leechers, 1900 left, 2 racks", got)
		}
	})
}

// TestIndexRoundTrips: the index costs three round trips, however many
// transfers and peers there are.
func TestIndexRoundTrips(t *testing.T) {
	hook := &countHook{}
	e := newRedis(t, []redis.Hook{hook})
	for i := range 20 {
		h := hash(byte(0x50 + i))
		for j := range 5 {
			mustAnnounce(t, e.store, ann(h, fmt.Sprintf("10.0.%d.%d:1", j, i+1), fmt.Sprintf("r%d", j), EventStarted, 100))
		}
	}
	if _, err := e.store.Index(t.Context()); err != nil { // warms the connection pool
		t.Fatal(err)
	}
	before := hook.calls.Load()
	index, err := e.store.Index(t.Context())
	if err != nil || len(index) != 20 {
		t.Fatalf("Index = %d transfers, %v; want 20", len(index), err)
	}
	if n := hook.calls.Load() - before; n != 3 {
		t.Errorf("Index of 20 transfers of 5 racks took %d round trips, want 3", n)
	}
	before = hook.calls.Load()
	if _, err := e.store.Active(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("Active, with the byte sums, took %d round trips", hook.calls.Load()-before)
}
