package storage

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestLuaLeafTables: the leaf names scripts use come from keys.go, and an
// unknown leaf is an error rather than a stray key.
func TestLuaLeafTables(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		script := redis.NewScript(luaKeys + `return {K.t.seen, K.t.complete, K.t.last_announce, K.c.seeders, K.c.seen,
  K.r.left, K.r.since, K.r.stalls, K.p.peer_id, K.p.stalls, K.ev.paused, K.archived(ARGV[1], ARGV[2])}`)
		at, h := FormatTime(epoch), hash(0x43)
		got, err := script.Run(ctx, e.raw, nil, at, h.String()).StringSlice()
		if err != nil {
			t.Fatal(err)
		}
		want := []string{leafSeen, leafComplete, leafLastAnnounce, classSeeders, classSeen,
			rackLeft, rackSince, rackStalls, peerPeerID, peerStalls, EventPaused, string(archived(h, at))}
		if !slices.Equal(got, want) {
			t.Errorf("Lua leaves = %q\nwant         %q", got, want)
		}
		err = redis.NewScript(luaKeys+`return K.t.seeen`).Run(ctx, e.raw, nil).Err()
		if err == nil || !strings.Contains(err.Error(), "no key leaf named seeen") {
			t.Errorf("unknown leaf: error %v, want one naming it", err)
		}
	})
}

// TestPeriodicAnnounceWritesOnlyChanges: a known peer's periodic announce
// (same port, same rack) writes what changed and leaves the "every ...
// seen" sets alone; a peer new to the port writes them.
func TestPeriodicAnnounceWritesOnlyChanges(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		h := hash(0x41)
		k := transferKeys(h)
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.2:1", "r1", EventStarted, 100))
		// Behind the store's back, take the first peer out of every set a
		// periodic announce must not write: writing them would put it back.
		type member struct{ key, m string }
		seen := []member{
			{k.peers(classSeen), "10.0.0.1:1"}, {k.rack("r1", classSeen), "10.0.0.1:1"},
			{keyRack("r1"), "host-10.0.0.1"}, {keyRacks, "r1"}, {k.field(leafRacks), "r1"},
		}
		for _, s := range seen {
			e.raw.SRem(ctx, s.key, s.m)
		}
		e.clock.Advance(time.Second)
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", "", 90))
		for _, s := range seen {
			if e.raw.SIsMember(ctx, s.key, s.m).Val() {
				t.Errorf("a periodic announce of a known peer wrote %s into %s", s.m, s.key)
			}
		}
		if got := e.raw.Get(ctx, k.peer("10.0.0.1", peerLeft)).Val(); got != "90" {
			t.Errorf("%s = %q, want 90", k.peer("10.0.0.1", peerLeft), got)
		}
		if got := e.raw.ZScore(ctx, k.rack("r1", rackLeft), "10.0.0.1:1").Val(); got != 90 {
			t.Errorf("left of 10.0.0.1:1 in the election order = %v, want 90", got)
		}
		// Its deadline: the peer timeout (90 s) is longer than 2.5 times
		// the 1 s it waited.
		if got, want := e.raw.ZScore(ctx, k.field(leafSeen), "10.0.0.1").Val(), float64(e.clock.Now().Add(90*time.Second).UnixMilli()); got != want {
			t.Errorf("deadline of 10.0.0.1 = %v, want %v", got, want)
		}
		if got, want := e.raw.Get(ctx, k.peer("10.0.0.1", peerAnnounced)).Val(), strconv.FormatInt(e.clock.Now().UnixMilli(), 10); got != want {
			t.Errorf("latest announce of 10.0.0.1 = %q, want %q", got, want)
		}
		if got := e.raw.Get(ctx, k.peer("10.0.0.1", peerCadence)).Val(); got != "1000" {
			t.Errorf("cadence of 10.0.0.1 = %q, want 1000", got)
		}
		if got := e.raw.SMembers(ctx, k.peers(classLeech)).Val(); len(got) != 2 {
			t.Errorf("leechers = %q, want both peers still current", got)
		}
		// Another port is a new member: the seen sets are written.
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:2", "r1", "", 80))
		for _, s := range seen {
			m := strings.Replace(s.m, "10.0.0.1:1", "10.0.0.1:2", 1)
			if !e.raw.SIsMember(ctx, s.key, m).Val() {
				t.Errorf("a peer new on port 2 is not in %s", s.key)
			}
		}
	})
}

// TestAnnounceCalls counts, with MONITOR on a real redis-server, the
// commands an announce runs inside its script, per kind of announce, in a
// swarm of 21 peers over 3 racks. A periodic announce of a known leecher is
// the common case: it must stay a handful of calls, whatever the swarm's
// size (no call per candidate).
func TestAnnounceCalls(t *testing.T) {
	e := newRedis(t, nil)
	ctx := context.Background()
	h := hash(0x42)
	addr := func(i int) string { return fmt.Sprintf("10.0.%d.%d:1", i%3, i) }
	rack := func(i int) string { return fmt.Sprintf("r%d", i%3) }
	for i := range 21 {
		left := int64(100)
		if i%7 == 0 {
			left = 0
		}
		mustAnnounce(t, e.store, ann(h, addr(i), rack(i), EventStarted, left))
	}
	ch := make(chan string, 4096)
	mon := e.raw.Monitor(ctx, ch)
	mon.Start()
	defer mon.Stop()
	// MONITOR starts asynchronously: wait for a marker.
	marker := func(name string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			e.store.rdb.Echo(ctx, name)
			select {
			case l := <-ch:
				if strings.Contains(l, `"echo" "`+name+`"`) {
					return
				}
			case <-deadline:
				t.Fatalf("MONITOR never showed %s", name)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	marker("start")
	for len(ch) > 0 {
		<-ch
	}
	count := func(name string, a Announce) int {
		t.Helper()
		a.Plan = localPlan
		mustAnnounce(t, e.store, a)
		e.store.rdb.Echo(ctx, "end-"+name)
		n := 0
		for {
			select {
			case l := <-ch:
				if strings.Contains(l, "[0 lua]") {
					n++
					if testing.Verbose() {
						t.Logf("%s: %.120s", name, l[strings.Index(l, "lua]")+5:])
					}
				}
				if strings.Contains(l, `"echo" "end-`+name+`"`) {
					return n
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("MONITOR never showed the end of %s", name)
			}
		}
	}
	periodic := count("periodic leecher", ann(h, addr(10), rack(10), "", 90))
	rep := count("periodic representative", ann(h, addr(2), rack(2), "", 90))
	seeder := count("periodic seeder", ann(h, addr(7), rack(7), "", 0))
	completed := count("completed", ann(h, addr(4), rack(4), EventCompleted, 0))
	stopped := count("stopped", ann(h, addr(5), rack(5), EventStopped, 100))
	started := count("started", ann(h, "10.0.0.99:1", "r0", EventStarted, 100))
	t.Logf("redis.calls per announce: periodic leecher %d, periodic representative %d, periodic seeder %d, completed %d, stopped %d, started %d",
		periodic, rep, seeder, completed, stopped, started)
	// 8 today, plus Redis' TIME when no test clock is injected.
	if periodic > 9 {
		t.Errorf("a periodic announce of a known leecher ran %d commands, want at most 9", periodic)
	}
}
