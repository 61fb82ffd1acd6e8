package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timers at real clients' cadences (libtorrent 300 s, rtorrent 600 s): see
// timers.go. Every test runs the production defaults (a zero Timers).

// slowHost is a simulated client that announces every cadence, give or
// take jitter, and downloads step bytes between announces.
type slowHost struct {
	addr, rack string
	cadence    time.Duration
	jitter     time.Duration
	next       time.Time
	left, step int64
	silent     bool // stopped announcing, without "stopped"
	last       time.Time
}

// swarmSim drives hosts on the env's clock in tick steps, running the
// expiry pass every pass, the way tracker.Server.Run would.
type swarmSim struct {
	t      *testing.T
	e      *env
	h      InfoHash
	hosts  []*slowHost
	timers Timers
	limit  int // representatives per rack; 0: ann's 2
	rng    *rand.Rand
	// expired counts peers the passes expired.
	expired int
}

func (s *swarmSim) announce(hst *slowHost, event string) Swarm {
	a := ann(s.h, hst.addr, hst.rack, event, hst.left)
	a.Timers = s.timers
	a.Numwant = 0
	if s.limit > 0 {
		a.Representatives = s.limit
	}
	hst.last = s.e.clock.Now()
	return mustAnnounce(s.t, s.e.store, a)
}

func (s *swarmSim) start() {
	for _, hst := range s.hosts {
		s.announce(hst, EventStarted)
		s.e.clock.Advance(time.Second)
		hst.next = s.e.clock.Now().Add(hst.cadence)
	}
}

// run advances the clock by d in steps of tick, announcing for every host
// that is due, running the expiry pass every pass, and calling check after
// every step (nil: no check).
func (s *swarmSim) run(d, tick, pass time.Duration, check func(now time.Time, announced []*slowHost)) {
	s.t.Helper()
	ctx := context.Background()
	end := s.e.clock.Now().Add(d)
	nextPass := s.e.clock.Now().Add(pass)
	for s.e.clock.Now().Before(end) {
		s.e.clock.Advance(tick)
		now := s.e.clock.Now()
		var announced []*slowHost
		for _, hst := range s.hosts {
			if hst.silent || now.Before(hst.next) {
				continue
			}
			hst.left = max(hst.left-hst.step, 1)
			s.announce(hst, EventNone)
			announced = append(announced, hst)
			j := time.Duration(0)
			if hst.jitter > 0 {
				j = time.Duration(s.rng.Int64N(int64(2*hst.jitter))) - hst.jitter
			}
			hst.next = now.Add(hst.cadence + j)
		}
		if !now.Before(nextPass) {
			exp, err := s.e.store.Expire(ctx, s.timers, 2)
			if err != nil {
				s.t.Fatal(err)
			}
			s.expired += exp.Peers
			nextPass = now.Add(pass)
		}
		if check != nil {
			check(now, announced)
		}
	}
}

func (s *swarmSim) reps(rack string) []string {
	got := s.e.raw.SMembers(context.Background(), transferKeys(s.h).rack(rack, classReps)).Val()
	slices.Sort(got)
	return got
}

func (s *swarmSim) current(addr string) bool {
	k := transferKeys(s.h)
	return s.e.raw.SIsMember(context.Background(), k.peers(classLeech), addr).Val() ||
		s.e.raw.SIsMember(context.Background(), k.peers(classSeeders), addr).Val()
}

// TestSlowClientsStayCurrent: libtorrent (300 s) and rtorrent (600 s)
// hosts, mixed in one rack and alone in another, downloading slowly for
// four hours with the expiry pass every 9 s (peer_timeout/10): no live
// peer ever expires, and each rack keeps the representatives it elected
// first.
func TestSlowClientsStayCurrent(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		s := &swarmSim{t: t, e: e, h: hash(0xc1), rng: rand.New(rand.NewPCG(3, 4))}
		s.hosts = []*slowHost{
			{addr: "10.0.0.1:1", rack: "r0", cadence: 600 * time.Second, left: 0}, // origin seeder
		}
		for i, c := range []time.Duration{600, 300, 600, 300, 600} {
			s.hosts = append(s.hosts, &slowHost{addr: fmt.Sprintf("10.1.0.%d:1", i+1), rack: "r1",
				cadence: c * time.Second, jitter: 5 * time.Second, left: 1 << 30, step: 1 << 20})
		}
		for i := range 3 {
			s.hosts = append(s.hosts, &slowHost{addr: fmt.Sprintf("10.2.0.%d:1", i+1), rack: "r2",
				cadence: 600 * time.Second, jitter: 5 * time.Second, left: 1 << 30, step: 1 << 20})
		}
		s.start()
		want := map[string][]string{"r1": s.reps("r1"), "r2": s.reps("r2")}
		for r, reps := range want {
			if len(reps) != 2 {
				t.Fatalf("%s elected %q, want 2 representatives", r, reps)
			}
		}
		s.run(4*time.Hour, 5*time.Second, 9*time.Second, func(now time.Time, _ []*slowHost) {
			for r, reps := range want {
				if got := s.reps(r); !slices.Equal(got, reps) {
					t.Fatalf("at %s: %s representatives %q, want %q kept", now.Sub(epoch), r, got, reps)
				}
			}
		})
		if s.expired != 0 {
			t.Errorf("%d live peers expired in four hours", s.expired)
		}
		for _, hst := range s.hosts {
			if !s.current(hst.addr) {
				t.Errorf("%s (every %s) is not current", hst.addr, hst.cadence)
			}
		}
		// The cadences learned are the clients' own, within the jitter.
		for _, hst := range s.hosts[1:] {
			got, _ := e.raw.Get(context.Background(), transferKeys(s.h).peer(peerIP(hst.addr), peerCadence)).Int64()
			if d := time.Duration(got) * time.Millisecond; d < hst.cadence-hst.jitter || d > hst.cadence+hst.jitter+5*time.Second {
				t.Errorf("%s announces every %s, learned cadence %s", hst.addr, hst.cadence, d)
			}
		}
	})
}

// TestSilentPeerExpires: a peer that goes silent expires at the first
// pass after its deadline, the longer of the peer timeout and 2.5 of its
// cadence, and not before; a peer seen only once is given 2.5 of the first
// cadence (600 s).
func TestSilentPeerExpires(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cadence time.Duration // 0: announces once only
		after   time.Duration // silence after which it expires
	}{
		{"rtorrent", 600 * time.Second, 1500 * time.Second},
		{"libtorrent", 300 * time.Second, 750 * time.Second},
		{"interval", 30 * time.Second, 90 * time.Second}, // the peer timeout
		{"seen once", 0, 1500 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backends(t, func(t *testing.T, e *env) {
				s := &swarmSim{t: t, e: e, h: hash(0xc2), rng: rand.New(rand.NewPCG(5, 6))}
				hst := &slowHost{addr: "10.1.0.1:1", rack: "r1", cadence: tc.cadence, left: 100, step: 1}
				s.hosts = []*slowHost{hst}
				if tc.cadence == 0 {
					s.announce(hst, EventStarted)
				} else {
					s.start()
					s.run(4*tc.cadence, time.Second, 9*time.Second, nil)
				}
				hst.silent = true
				last := hst.last
				s.run(tc.after+30*time.Second, time.Second, 9*time.Second, func(now time.Time, _ []*slowHost) {
					silence := now.Sub(last)
					if live := s.current(hst.addr); live != (silence < tc.after) && (silence < tc.after || silence >= tc.after+9*time.Second) {
						t.Fatalf("silent %s: current %v, want expiry after %s (at the first pass after it)", silence, live, tc.after)
					}
				})
				if s.expired != 1 {
					t.Errorf("%d expired, want 1", s.expired)
				}
			})
		})
	}
}

// TestOverdueRepresentativeReplaced: a representative that goes silent is
// replaced at the first announce of its rack after it is overdue (1.5 of
// its cadence), long before it expires; it stays current until then, and
// its rack never goes without two live representatives for longer than
// the gap to that announce. The rack mixes 600 s and 300 s clients.
func TestOverdueRepresentativeReplaced(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		s := &swarmSim{t: t, e: e, h: hash(0xc3), rng: rand.New(rand.NewPCG(7, 8))}
		a := &slowHost{addr: "10.1.0.1:1", rack: "r1", cadence: 600 * time.Second, left: 1000, step: 1}
		b := &slowHost{addr: "10.1.0.2:1", rack: "r1", cadence: 300 * time.Second, left: 1000, step: 1}
		c := &slowHost{addr: "10.1.0.3:1", rack: "r1", cadence: 600 * time.Second, left: 1000, step: 1}
		d := &slowHost{addr: "10.1.0.4:1", rack: "r1", cadence: 300 * time.Second, left: 1000, step: 1}
		s.hosts = []*slowHost{a, b, c, d}
		s.start()
		if got := s.reps("r1"); !slices.Equal(got, []string{a.addr, b.addr}) {
			t.Fatalf("representatives %q, want the first two", got)
		}
		s.run(time.Hour, 5*time.Second, 9*time.Second, nil)
		a.silent = true
		overdueAt := a.last.Add(900 * time.Second)
		var replacedAt time.Time
		s.run(time.Hour, 5*time.Second, 9*time.Second, func(now time.Time, announced []*slowHost) {
			reps := s.reps("r1")
			isRep := slices.Contains(reps, a.addr)
			switch {
			case !now.After(overdueAt) && !isRep:
				t.Fatalf("%s after its last announce, before it is overdue: representatives %q, want it kept", now.Sub(a.last), reps)
			case now.After(overdueAt) && replacedAt.IsZero() && len(announced) > 0:
				// The rack's first announce after it is overdue replaces it.
				if isRep || len(reps) != 2 {
					t.Fatalf("first announce of the rack %s after the representative is overdue: representatives %q, want it replaced", now.Sub(overdueAt), reps)
				}
				replacedAt = now
			case now.After(overdueAt) && replacedAt.IsZero() && now.Sub(overdueAt) > 300*time.Second:
				t.Fatalf("no announce of the rack in 300 s")
			}
			if !replacedAt.IsZero() && isRep {
				t.Fatalf("the silent representative came back into the role")
			}
			if silence := now.Sub(a.last); silence < 1500*time.Second && !s.current(a.addr) {
				t.Fatalf("silent %s, overdue but not due to expire: not current", silence)
			}
		})
		if replacedAt.IsZero() {
			t.Fatal("never replaced")
		}
		if s.expired != 1 {
			t.Errorf("%d expired, want the silent one", s.expired)
		}
		// It announces again: current, not elected (the slot is taken),
		// and not overdue for the next free slot.
		a.silent = false
		a.next = e.clock.Now()
		s.run(time.Second, time.Second, 9*time.Second, nil)
		if !s.current(a.addr) || slices.Contains(s.reps("r1"), a.addr) {
			t.Errorf("back after expiry: current %v, representatives %q", s.current(a.addr), s.reps("r1"))
		}
	})
}

// TestStallIsElapsedTime: a representative that makes no progress while
// its rack has no seeder is demoted once the stall time (90 s) has passed
// since the announce that last reported its left: at 600 s and 300 s at its
// first announce without progress, not after 3 of them; at 30 s at its
// third, as when stalls counted announces.
func TestStallIsElapsedTime(t *testing.T) {
	for _, tc := range []struct {
		cadence time.Duration
		demoted int // at this announce without progress
	}{
		{600 * time.Second, 1},
		{300 * time.Second, 1},
		{60 * time.Second, 2},
		{30 * time.Second, 3},
	} {
		t.Run(tc.cadence.String(), func(t *testing.T) {
			backends(t, func(t *testing.T, e *env) {
				s := &swarmSim{t: t, e: e, h: hash(0xc4)}
				seed := &slowHost{addr: "10.0.0.1:1", rack: "r0", left: 0}
				rep := &slowHost{addr: "10.1.0.1:1", rack: "r1", left: 1000}
				other := &slowHost{addr: "10.1.0.2:1", rack: "r1", left: 1000}
				s.announce(seed, EventStarted)
				s.announce(rep, EventStarted)
				s.announce(other, EventStarted)
				for i := 1; i <= 4; i++ {
					e.clock.Advance(tc.cadence)
					// The seeder and the other leecher keep announcing, and
					// progressing, so that neither is overdue nor stalled.
					s.announce(seed, EventNone)
					other.left--
					s.announce(other, EventNone)
					sw := s.announce(rep, EventNone) // no progress
					if got, want := sw.Role == RoleRepresentative, i < tc.demoted; got != want {
						t.Fatalf("announce %d without progress, %s after the last progress: representative %v, want %v",
							i, time.Duration(i)*tc.cadence, got, want)
					}
				}
			})
		})
	}
}

// TestLegacyExpiryScore: a peer written by a version that scored the
// expiry index by last announce (and kept no latest announce) is not
// expired by the first pass of this one: its score is read as that plus
// the peer timeout.
func TestLegacyExpiryScore(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		h := hash(0xc5)
		k := transferKeys(h)
		mustAnnounce(t, e.store, ann(h, "10.1.0.1:1", "r1", EventStarted, 100))
		e.raw.Del(ctx, k.peer("10.1.0.1", peerAnnounced))
		e.raw.ZAdd(ctx, k.field(leafSeen), redis.Z{Score: float64(e.clock.Now().UnixMilli()), Member: "10.1.0.1"})
		e.clock.Advance(60 * time.Second)
		if exp, err := e.store.Expire(ctx, testTimers, 2); err != nil || exp.Peers != 0 {
			t.Fatalf("Expire 60 s after a legacy announce = %+v, %v; want nothing expired", exp, err)
		}
		if got, want := e.raw.ZScore(ctx, k.field(leafSeen), "10.1.0.1").Val(), float64(e.clock.Now().Add(30*time.Second).UnixMilli()); got != want {
			t.Errorf("legacy score rewritten to %v, want %v (last announce + 90 s)", got, want)
		}
		e.clock.Advance(30 * time.Second)
		if exp, err := e.store.Expire(ctx, testTimers, 2); err != nil || exp.Peers != 1 {
			t.Fatalf("Expire 90 s after a legacy announce = %+v, %v; want it expired", exp, err)
		}
	})
}

// TestRackEscapeIsElapsedTime: a rack whose leechers show no progress lets
// them escape once the stall time has passed since the first announce that
// showed none, whatever the number of its leechers: at 600 s, at the next
// announce after it (counting announces, 3 per leecher, took half an
// hour). Until then a leecher of a rack with a representative does not.
func TestRackEscapeIsElapsedTime(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		s := &swarmSim{t: t, e: e, h: hash(0xc6), limit: 1}
		seed := &slowHost{addr: "10.0.0.1:1", rack: "r0", left: 0}
		a := &slowHost{addr: "10.1.0.1:1", rack: "r1", left: 1000}
		b := &slowHost{addr: "10.1.0.2:1", rack: "r1", left: 1000}
		s.announce(seed, EventStarted)
		s.announce(a, EventStarted) // the representative
		s.announce(b, EventStarted)
		e.clock.Advance(600 * time.Second)
		s.announce(seed, EventNone)
		// No progress in 600 s: a loses the role to b; the rack's stall
		// starts now.
		if sw := s.announce(a, EventNone); sw.Role != RoleLeecher || sw.Escape {
			t.Fatalf("first announce without progress: role %c, escape %v; want a leecher, no escape", sw.Role, sw.Escape)
		}
		if sw := s.announce(b, EventNone); sw.Role != RoleRepresentative {
			t.Fatalf("b: role %c, want the representative", sw.Role)
		}
		e.clock.Advance(60 * time.Second)
		if sw := s.announce(a, EventNone); sw.Escape {
			t.Fatalf("60 s into the rack's stall: escape")
		}
		e.clock.Advance(540 * time.Second)
		s.announce(seed, EventNone)
		if sw := s.announce(a, EventNone); sw.Role != RoleLeecher || !sw.Escape {
			t.Fatalf("600 s into the rack's stall: role %c, escape %v; want a leecher that escapes", sw.Role, sw.Escape)
		}
		// Progress anywhere in the rack ends it.
		b.left--
		s.announce(b, EventNone)
		if sw := s.announce(a, EventNone); sw.Escape {
			t.Fatalf("after the rack progressed: escape")
		}
	})
}

// TestOverdueFloor: at a fast cadence (10 s, the lab's clients) a silent
// representative is overdue after the overdue floor (20 s: twice the
// default min interval), not after peer_timeout (90 s), so that a rack
// whose only representative died gets another at its next announce; and
// a host whose cadence was once measured at a second is not overdue a
// second or two later.
func TestOverdueFloor(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		s := &swarmSim{t: t, e: e, h: hash(0xc7), rng: rand.New(rand.NewPCG(9, 10)), limit: 1}
		a := &slowHost{addr: "10.1.0.1:1", rack: "r1", cadence: 10 * time.Second, left: 1000, step: 1}
		b := &slowHost{addr: "10.1.0.2:1", rack: "r1", cadence: 10 * time.Second, left: 1000, step: 1}
		c := &slowHost{addr: "10.1.0.3:1", rack: "r1", cadence: 10 * time.Second, left: 1000, step: 1}
		s.hosts = []*slowHost{a, b, c}
		s.start()
		s.run(time.Minute, time.Second, 9*time.Second, nil) // cadences learned
		if got := s.reps("r1"); !slices.Equal(got, []string{a.addr}) {
			t.Fatalf("representatives %q, want the first", got)
		}
		a.silent = true
		overdueAt := a.last.Add(DefaultOverdueFloor)
		var replacedAt time.Time
		s.run(time.Minute, time.Second, 9*time.Second, func(now time.Time, announced []*slowHost) {
			isRep := slices.Contains(s.reps("r1"), a.addr)
			switch {
			case !now.After(overdueAt) && !isRep:
				t.Fatalf("%s after its last announce: replaced before the overdue floor", now.Sub(a.last))
			case now.After(overdueAt) && replacedAt.IsZero() && len(announced) > 0:
				if isRep {
					t.Fatalf("first announce of the rack %s after the floor: still the representative", now.Sub(overdueAt))
				}
				replacedAt = now
			}
		})
		if replacedAt.IsZero() || replacedAt.Sub(a.last) > DefaultOverdueFloor+10*time.Second {
			t.Fatalf("replaced %s after its last announce, want at the rack's first announce after %s", replacedAt.Sub(a.last), DefaultOverdueFloor)
		}

		// A cadence measured once at a second: the floor keeps the role
		// while its rack announces every second.
		d := &slowHost{addr: "10.2.0.1:1", rack: "r2", cadence: time.Second, left: 1000, step: 1}
		f := &slowHost{addr: "10.2.0.2:1", rack: "r2", cadence: time.Second, left: 1000, step: 1}
		s.hosts = []*slowHost{d, f}
		s.start()
		s.run(time.Second, time.Second, time.Hour, nil) // d's second announce, a second later
		d.silent = true
		s.run(15*time.Second, time.Second, time.Hour, func(now time.Time, announced []*slowHost) {
			if len(announced) == 0 {
				t.Fatal("the rack did not announce")
			}
			if !slices.Contains(s.reps("r2"), d.addr) {
				t.Fatalf("%s after an announce a second apart: lost the role", now.Sub(d.last))
			}
		})
	})
}
