package storage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Regression tests of the election and sampling rules of SPEC section 4,
// and a randomized walk that checks the store's invariants after every
// step.

// TestOtherRepsSampledAtRandom: other racks' representatives are drawn at
// random, not the first of a fixed order.
func TestOtherRepsSampledAtRandom(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		h := hash(0x10)
		for r := range 40 {
			for i := range 2 {
				mustAnnounce(t, e.store, ann(h, fmt.Sprintf("10.%d.0.%d:1", r, i+1), fmt.Sprintf("r%02d", r), EventStarted, 100))
			}
		}
		seen := map[string]bool{}
		for range 50 {
			a := ann(h, "10.99.0.1:1", "rx", "", 0)
			a.Numwant = 10 // 11 drawn: the asker may be among them
			sw := mustAnnounce(t, e.store, a)
			if n := len(pool(sw, OtherReps)); n != 11 {
				t.Fatalf("other representatives pool has %d, want 11", n)
			}
			for _, p := range pool(sw, OtherReps) {
				seen[p.Addr.String()] = true
			}
		}
		// A fixed order reaches the same 11 every time. Redis' SRANDMEMBER
		// is not uniform (it samples buckets), so ask for clearly more than
		// a fixed order, not for all 80.
		if len(seen) < 33 {
			t.Errorf("50 handouts of 11 reached %d of 80 representatives, want at least 3 times 11", len(seen))
		}
	})
}

// TestRackMoveRefills: a representative that moves rack frees its old
// rack's slot, and the slot is filled at once.
func TestRackMoveRefills(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		h := hash(0x11)
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.2:1", "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.3:1", "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r2", "", 100))
		wantReps(t, e, h, "r1", "after one moved to r2", "10.0.0.2:1", "10.0.0.3:1")
	})
}

// TestSeederNotHandedSeeders: the class a seeder is handed of other racks,
// their leeching representatives, leaves out those that completed: seeders
// have nothing to give each other.
func TestSeederNotHandedSeeders(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		h := hash(0x13)
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.1.1:1", "r2", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.2.1:1", "r3", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventCompleted, 0))
		mustAnnounce(t, e.store, ann(h, "10.0.1.1:1", "r2", EventCompleted, 0))
		sw := mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", "", 0))
		var got []string
		for _, p := range pool(sw, OtherLeechingReps) {
			got = append(got, p.Addr.String())
		}
		if want := []string{"10.0.2.1:1"}; !slices.Equal(got, want) {
			t.Errorf("seeder's other representatives = %q, want only the leeching one %q", got, want)
		}
	})
}

// TestNoStallBeforeSeeder: leechers that announce before any seeder exists
// are not demoted for it, so their rack keeps its representatives.
func TestNoStallBeforeSeeder(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		h := hash(0x21)
		peers := []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"}
		for _, p := range peers {
			mustAnnounce(t, e.store, ann(h, p, "r1", EventStarted, 100))
		}
		for range 8 {
			for _, p := range peers {
				mustAnnounce(t, e.store, ann(h, p, "r1", "", 100))
			}
		}
		mustAnnounce(t, e.store, ann(h, "10.9.0.1:1", "r0", EventStarted, 0))
		sw := mustAnnounce(t, e.store, ann(h, "10.0.0.3:1", "r1", "", 100))
		if n := e.raw.SCard(context.Background(), transferKeys(h).rack("r1", "R")).Val(); n != 2 {
			t.Errorf("r1 holds %d representatives after waiting for the origin, want 2", n)
		}
		if sw.Escape {
			t.Errorf("a leecher of a rack with representatives escapes")
		}
		// Once there is a seeder, a representative that does not progress
		// for the stall time (90 s) is demoted as before.
		for i := range 3 {
			e.clock.Advance(30 * time.Second)
			mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", "", 100))
			if still := e.raw.SIsMember(context.Background(), transferKeys(h).rack("r1", "R"), "10.0.0.1:1").Val(); still != (i < 2) {
				t.Errorf("a representative without progress for %d s with a seeder in the swarm: representative %v, want %v", 30*(i+1), still, i < 2)
			}
		}
	})
}

// TestDeactivateIdleRace: a transfer that found a peer after the idle pass
// looked is not retired.
func TestDeactivateIdleRace(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		h := hash(0x31)
		if err := e.store.Register(ctx, h, "x", 1, nil); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(2 * time.Hour)
		cutoff := time.Hour
		idle, err := e.store.Idle(ctx, cutoff)
		if err != nil || len(idle) != 1 {
			t.Fatalf("Idle = %v, %v; want the registered transfer", idle, err)
		}
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 1))
		if _, err := e.store.DeactivateIdle(ctx, h, time.Hour); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeactivateIdle after an announce = %v, want ErrNotFound (not idle)", err)
		}
		if _, err := e.store.Transfer(ctx, h); err != nil {
			t.Errorf("Transfer after an announce = %v; retired although a peer announced", err)
		}
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStopped, 1))
		e.clock.Advance(2 * time.Hour)
		if _, err := e.store.DeactivateIdle(ctx, h, time.Hour); err != nil {
			t.Errorf("DeactivateIdle of an idle transfer = %v", err)
		}
	})
}

// TestPortChangeAfterRackChange: a new port replaces the old member in
// every set, in every rack the host was seen in.
func TestPortChangeAfterRackChange(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		h := hash(0x32)
		k := transferKeys(h)
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r2", "", 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:2", "r2", "", 100))
		for _, key := range []string{k.peers("N"), k.rack("r1", "N"), k.rack("r2", "N")} {
			if e.raw.SIsMember(context.Background(), key, "10.0.0.1:1").Val() {
				t.Errorf("%s still holds the old port's member", key)
			}
		}
	})
}

// TestRefillFirstToAnnounce: among leechers of equal progress a freed slot
// goes to the first that announced, not to the lowest address.
func TestRefillFirstToAnnounce(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		h := hash(0x33)
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.2:1", "r1", EventStarted, 100))
		e.clock.Advance(time.Second)
		mustAnnounce(t, e.store, ann(h, "10.0.0.9:1", "r1", EventStarted, 100)) // third
		e.clock.Advance(time.Second)
		mustAnnounce(t, e.store, ann(h, "10.0.0.10:1", "r1", EventStarted, 100)) // fourth, sorts first as text
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStopped, 100))
		wantReps(t, e, h, "r1", "after one stopped (the first waiting)", "10.0.0.2:1", "10.0.0.9:1")
	})
}

// TestRefillFirstAmongMany: first to announce wins even when more leechers
// tie than the election looks at in one window.
func TestRefillFirstAmongMany(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		h := hash(0x35)
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.2:1", "r1", EventStarted, 100))
		e.clock.Advance(time.Second)
		mustAnnounce(t, e.store, ann(h, "10.9.9.9:1", "r1", EventStarted, 100)) // third: sorts last as text
		for i := 3; i <= 79; i++ {
			// Milliseconds: seconds would leave the first overdue.
			e.clock.Advance(time.Millisecond)
			mustAnnounce(t, e.store, ann(h, fmt.Sprintf("10.0.0.%d:1", i), "r1", EventStarted, 100))
		}
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStopped, 100))
		if !e.raw.SIsMember(context.Background(), transferKeys(h).rack("r1", "R"), "10.9.9.9:1").Val() {
			t.Errorf("r1 representatives = %q, want the first waiting, 10.9.9.9:1", e.raw.SMembers(context.Background(), transferKeys(h).rack("r1", "R")).Val())
		}
	})
}

// TestPausedNotElected: a paused peer (BEP 21) downloads nothing, so it
// gives up a representative slot and is not elected until it progresses.
func TestPausedNotElected(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		h := hash(0x34)
		rk := transferKeys(h).rack("r1", "R")
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventStarted, 10)) // representative
		mustAnnounce(t, e.store, ann(h, "10.0.0.2:1", "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, "10.0.0.3:1", "r1", EventStarted, 100))
		sw := mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", EventPaused, 10))
		if sw.Role != RoleLeecher || sw.Demoted != 1 {
			t.Errorf("paused representative: role %c, demoted %d; want L, 1", sw.Role, sw.Demoted)
		}
		wantReps(t, e, h, "r1", "after one paused", "10.0.0.2:1", "10.0.0.3:1")
		// Resumed and progressing, it is eligible again when a slot frees.
		mustAnnounce(t, e.store, ann(h, "10.0.0.1:1", "r1", "", 5))
		mustAnnounce(t, e.store, ann(h, "10.0.0.3:1", "r1", EventStopped, 100))
		if !e.raw.SIsMember(context.Background(), rk, "10.0.0.1:1").Val() {
			t.Errorf("resumed peer not elected into the freed slot")
		}
	})
}

// wantReps checks the representatives of rack, in any order.
func wantReps(t *testing.T, e *env, h InfoHash, rack, when string, want ...string) {
	t.Helper()
	got := e.raw.SMembers(context.Background(), transferKeys(h).rack(rack, "R")).Val()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s representatives %s = %q, want %q", rack, when, got, want)
	}
}

// checkInvariants checks what every announce, expiry and deactivation must
// leave true; it reports and returns false on the first broken step.
func checkInvariants(t *testing.T, c *redis.Client, h InfoHash, limit int, step string) bool {
	t.Helper()
	ctx := context.Background()
	k := transferKeys(h)
	ok := true
	bad := func(f string, a ...any) { ok = false; t.Errorf(step+": "+f, a...) }
	S := c.SMembers(ctx, k.peers("S")).Val()
	L := c.SMembers(ctx, k.peers("L")).Val()
	R := c.SMembers(ctx, k.peers("R")).Val()
	N := c.SMembers(ctx, k.peers("N")).Val()
	cs, _ := c.Get(ctx, k.field("complete")).Int()
	ci, _ := c.Get(ctx, k.field("incomplete")).Int()
	if cs != len(S) || ci != len(L) {
		bad("counters complete=%d incomplete=%d, sets S=%d L=%d", cs, ci, len(S), len(L))
	}
	in := func(xs []string, x string) bool {
		for _, y := range xs {
			if y == x {
				return true
			}
		}
		return false
	}
	ips := map[string]string{}
	for _, p := range append(append([]string{}, S...), L...) {
		if in(S, p) && in(L, p) {
			bad("%s in S and L", p)
		}
		ip := peerIP(p)
		if o, dup := ips[ip]; dup && o != p {
			bad("ip %s current twice: %s %s", ip, o, p)
		}
		ips[ip] = p
		if !in(N, p) {
			bad("%s current but not in N", p)
		}
		port := c.Get(ctx, k.peer(ip, "port")).Val()
		if !strings.HasSuffix(p, ":"+port) {
			bad("%s current but port key %s", p, port)
		}
	}
	seen := c.ZRange(ctx, k.field("seen"), 0, -1).Val()
	if len(seen) != len(ips) {
		bad("seen %v vs current %v", seen, ips)
	}
	racks := c.SMembers(ctx, k.field("racks")).Val()
	var allR, allS, allL []string
	for _, r := range racks {
		rr := c.SMembers(ctx, k.rack(r, "R")).Val()
		rs := c.SMembers(ctx, k.rack(r, "S")).Val()
		rl := c.ZRange(ctx, k.rack(r, "left"), 0, -1).Val()
		if len(rr) > limit {
			bad("rack %s has %d reps %v", r, len(rr), rr)
		}
		for _, p := range rr {
			if !in(S, p) && !in(L, p) {
				bad("rep %s of %s not current", p, r)
			}
			if c.Get(ctx, k.peer(peerIP(p), "rack")).Val() != r {
				bad("rep %s of %s has another rack", p, r)
			}
		}
		for _, p := range append(append([]string{}, rs...), rl...) {
			if c.Get(ctx, k.peer(peerIP(p), "rack")).Val() != r {
				bad("member %s of %s has rack %s", p, r, c.Get(ctx, k.peer(peerIP(p), "rack")).Val())
			}
		}
		allR, allS, allL = append(allR, rr...), append(allS, rs...), append(allL, rl...)
	}
	if len(allR) != len(R) || len(allS) != len(S) || len(allL) != len(L) {
		bad("rack sets R=%d S=%d L=%d vs global R=%d S=%d L=%d", len(allR), len(allS), len(allL), len(R), len(S), len(L))
	}
	return ok
}

// TestRandomizedInvariants walks random hosts (IPv4 and IPv6) through port
// and rack changes, every event, seeders turning leechers, expiry passes and
// deactivations, and checks the invariants after every step.
func TestRandomizedInvariants(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(1, 2))
		h := hash(0x77)
		ips := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "fd00::1", "fd00::2", "10.0.0.5"}
		racks := []string{"r1", "r2"}
		events := []string{"", "", "", "started", "completed", "stopped", "paused"}
		left := map[string]int64{}
		for i := range 3000 {
			ip := ips[rng.IntN(len(ips))]
			if _, ok := left[ip]; !ok {
				left[ip] = 1000
			}
			switch rng.IntN(4) {
			case 0:
				left[ip] = max(0, left[ip]-int64(rng.IntN(400)))
			case 1:
				if rng.IntN(5) == 0 {
					left[ip] = 1000
				}
			}
			port := uint16(1 + rng.IntN(2))
			rack := racks[rng.IntN(len(racks))]
			if rng.IntN(5) != 0 {
				// mostly a stable rack per ip
				rack = racks[int(ip[len(ip)-1])%len(racks)]
			}
			ev := events[rng.IntN(len(events))]
			a := ann(h, netip.AddrPortFrom(netip.MustParseAddr(ip), port).String(), rack, ev, left[ip])
			mustAnnounce(t, e.store, a)
			step := fmt.Sprintf("step %d %s:%d %s %q left=%d", i, ip, port, rack, ev, left[ip])
			if rng.IntN(10) == 0 {
				e.clock.Advance(time.Duration(rng.IntN(60)) * time.Second)
			}
			if rng.IntN(20) == 0 {
				if _, err := e.store.Expire(ctx, testTimers, 2); err != nil {
					t.Fatal(err)
				}
				step += " +expire"
			}
			if !checkInvariants(t, e.raw, h, 2, step) {
				return
			}
			if rng.IntN(300) == 0 {
				if _, err := e.store.Deactivate(ctx, h); err != nil {
					t.Fatal(err)
				}
				if keys := e.raw.Keys(ctx, h.String()+"*").Val(); len(keys) != 0 {
					t.Fatalf("%s: after deactivate keys %v", step, keys)
				}
				e.clock.Advance(time.Second)
				if err := e.store.Register(ctx, h, "x", 1, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// TestSampleFillsNumwant: the script draws a later stage only as much as
// may still be missing, and what it returns still fills numwant whenever
// the plan's classes hold that many peers. The tracker's pick is played
// here: stage by stage, up to the stage's n, without the asker or a peer
// taken before; the expected size comes from the sets themselves.
func TestSampleFillsNumwant(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		h := hash(0x2b)
		k := transferKeys(h)
		racks := map[string][2]int{"r1": {4, 20}, "r2": {0, 5}, "r3": {2, 1}, "r4": {12, 14}} // seeders, leechers
		var askers []Announce
		for r, n := range racks {
			for i := range n[0] + n[1] {
				left := int64(100)
				if i < n[0] {
					left = 0
				}
				a := ann(h, fmt.Sprintf("10.%s.0.%d:1", r[1:], i+1), r, EventStarted, left)
				a.Timers.Stall = 24 * time.Hour // nobody stalls: every asker keeps its role
				a.Plan = localPlan
				mustAnnounce(t, e.store, a)
				a.Event = EventNone
				askers = append(askers, a)
			}
		}
		members := func(key string) map[string]bool {
			out := map[string]bool{}
			for _, m := range e.raw.SMembers(ctx, key).Val() {
				out[m] = true
			}
			return out
		}
		for _, plan := range []Plan{localPlan, testPlan} {
			for _, a := range askers {
				for _, numwant := range []int{1, 2, 3, 5, 8, 13, 50} {
					a.Numwant = numwant
					a.Plan = plan
					sw := mustAnnounce(t, e.store, a)
					self := peerString(a.Addr)
					own := map[Class]map[string]bool{
						OwnSeeders: members(k.rack(a.Rack, classSeeders)),
						OwnReps:    members(k.rack(a.Rack, classReps)),
						OwnLeechers: func() map[string]bool {
							out := map[string]bool{}
							for _, m := range e.raw.ZRange(ctx, k.rack(a.Rack, rackLeft), 0, -1).Val() {
								out[m] = true
							}
							return out
						}(),
					}
					seeders, reps := members(k.peers(classSeeders)), members(k.peers(classReps))
					class := map[Class]map[string]bool{
						OtherSeeders: {}, OtherReps: {}, OtherLeechingReps: {},
						AllSeeders: seeders, AllLeechers: members(k.peers(classLeech)),
					}
					for m := range seeders {
						if !own[OwnSeeders][m] {
							class[OtherSeeders][m] = true
						}
					}
					for m := range reps {
						if !own[OwnReps][m] {
							class[OtherReps][m] = true
							if !seeders[m] {
								class[OtherLeechingReps][m] = true
							}
						}
					}
					maps.Copy(class, own)
					stages := plan.Stages(sw.Role, sw.Escape)
					if len(sw.Stages) != len(stages) {
						t.Fatalf("%s numwant %d: %d stages, want %d", self, numwant, len(sw.Stages), len(stages))
					}
					taken, got := map[string]bool{self: true}, 0
					for i, st := range stages {
						n := numwant
						if st.N > 0 {
							n = min(st.N, numwant)
						}
						avail := map[string]bool{}
						for _, c := range st.Classes {
							for m := range class[c] {
								if !taken[m] {
									avail[m] = true
								}
							}
						}
						want := min(n, numwant-got, len(avail))
						added := 0
						for _, p := range sw.Stages[i] {
							if m := peerString(p.Addr); added < want && !taken[m] {
								taken[m] = true
								added++
							}
						}
						got += added
						if added != want {
							t.Errorf("%s (%c) numwant %d, stage %d: %d new peers, the sets hold %d", self, sw.Role, numwant, i, added, want)
						}
					}
				}
			}
		}
	})
}

// TestClassOverlaps: the overlap table the script sizes its draws by is
// symmetric and names every class with itself.
func TestClassOverlaps(t *testing.T) {
	for c := range classNames {
		if !strings.ContainsRune(classOverlaps[c], rune(c)) {
			t.Errorf("%s does not overlap itself", classNames[c])
		}
		for d := range classNames {
			if strings.ContainsRune(classOverlaps[c], rune(d)) != strings.ContainsRune(classOverlaps[d], rune(c)) {
				t.Errorf("%s and %s: overlap is not symmetric", classNames[c], classNames[d])
			}
		}
	}
}
