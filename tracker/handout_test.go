package tracker

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"racktracker/storage"
)

// swarmState announces a fixed swarm over four racks (one representative
// per rack, stall after 3 announces) and returns the rig:
//
//	r1: 127.0.1.1 seeder, 127.0.1.2 representative, 127.0.1.3 and .4 leechers
//	r2: 127.0.2.1 representative, 127.0.2.2 leecher, 127.0.2.3 seeder
//	r3: 127.0.3.1 seeder
//	r4: 127.0.4.1 and .2 leechers that stalled: no seeder, no representative
func swarmState(t *testing.T, handout string) (*rig, storage.InfoHash) {
	t.Helper()
	r := newRig(t, storage.BackendEmbedded, func(c *Config, p *RackPolicy) {
		p.RepresentativesPerRack = 1
		p.Handout = handout
	})
	h := ih(0xb1)
	ann := func(ip string, left int64, event string) {
		t.Helper()
		resp := r.announce(t, newHost(t, ip), params{hash: h, port: 6881, left: left, event: event, numwant: -1, extra: "numwant=0"})
		if resp.Failure != "" {
			t.Fatalf("announce %s: %s", ip, resp.Failure)
		}
	}
	ann("127.0.1.2", 100, "started") // first of r1: representative
	ann("127.0.1.3", 100, "started")
	ann("127.0.1.4", 100, "started")
	ann("127.0.1.1", 0, "started")
	ann("127.0.2.1", 100, "started")
	ann("127.0.2.2", 100, "started")
	ann("127.0.2.3", 0, "started")
	ann("127.0.3.1", 0, "started")
	// r4: .1 is elected, stalls for 3 intervals (90 s) and is demoted; .2
	// then takes the slot and stalls for 90 s from its election too.
	ann("127.0.4.1", 100, "started")
	ann("127.0.4.2", 100, "started")
	for _, ip := range []string{"127.0.4.1", "127.0.4.2"} {
		for range 3 {
			r.clock.Advance(30 * time.Second)
			ann(ip, 100, "")
		}
	}
	if got := r.members(t, h.String()+":rack:r4:R"); len(got) != 0 {
		t.Fatalf("r4 representatives = %q, want none after both stalled", got)
	}
	return r, h
}

// classOf names what a peer is in swarmState, from the asker's rack.
func classOf(p netip.AddrPort, askerRack byte) string {
	b := p.Addr().As4()
	own := b[2] == askerRack
	kind := map[string]string{
		"127.0.1.1": "S", "127.0.1.2": "R", "127.0.1.3": "L", "127.0.1.4": "L",
		"127.0.2.1": "R", "127.0.2.2": "L", "127.0.2.3": "S", "127.0.3.1": "S",
		"127.0.4.1": "L", "127.0.4.2": "L",
	}[p.Addr().String()]
	if own {
		return "own" + kind
	}
	return "other" + kind
}

// TestHandoutClasses asks as each class of peer and checks what it gets
// against SPEC section 4, class by class, in order.
func TestHandoutClasses(t *testing.T) {
	r, h := swarmState(t, HandoutLocal)
	for _, tc := range []struct {
		name    string
		asker   string
		left    int64
		numwant int
		// stages lists, in order, the classes each part of the answer may
		// hold; every peer of a stage's classes that exists must be handed
		// out before the next stage starts (when numwant allows).
		stages [][]string
		// max, when set, is how many peers of other racks the first stage
		// holds (escape_peers, or a representative's share).
		max int
	}{
		{
			// One representative per rack: it gets up to remotePerRack (4)
			// peers of other racks; there are 3.
			name: "representative leecher", asker: "127.0.1.2", left: 90, numwant: 50,
			stages: [][]string{{"otherS", "otherR"}, {"ownS", "ownR"}, {"ownL"}}, max: 3,
		},
		{
			// Its rack's seeders, then its other leechers, but not its
			// leeching representative (the tree: TestHandoutTree).
			name: "other leecher", asker: "127.0.1.3", left: 100, numwant: 50,
			stages: [][]string{{"ownS"}, {"ownL"}},
		},
		{
			name: "seeder", asker: "127.0.1.1", left: 0, numwant: 50,
			// r1's representative is a leecher too: one of "its rack's leechers".
			stages: [][]string{{"ownL", "ownR"}, {"otherR"}},
		},
		{
			name: "leecher of a rack with seeders but no free representative", asker: "127.0.2.2", left: 100, numwant: 50,
			stages: [][]string{{"ownS"}, {"ownL"}},
		},
		{
			name: "leecher of a starving rack", asker: "127.0.4.2", left: 100, numwant: 50,
			stages: [][]string{{"otherS", "otherR"}, {"ownS"}, {"ownL"}}, max: 2,
		},
		{
			name: "numwant bounds the answer", asker: "127.0.1.2", left: 90, numwant: 2,
			stages: [][]string{{"otherS", "otherR"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := r.announce(t, newHost(t, tc.asker), params{hash: h, port: 6881, left: tc.left, numwant: tc.numwant})
			got := resp.peers(t)
			self := netip.MustParseAddr(tc.asker)
			rack := self.As4()[2]
			if len(got) > tc.numwant {
				t.Errorf("%d peers, numwant %d", len(got), tc.numwant)
			}
			seen := map[netip.AddrPort]bool{}
			for _, p := range got {
				if p.Addr() == self {
					t.Errorf("handed the asker itself: %v", got)
				}
				if seen[p] {
					t.Errorf("duplicate %v in %v", p, got)
				}
				seen[p] = true
			}
			// Walk the answer stage by stage.
			i := 0
			for s, classes := range tc.stages {
				n := 0
				for i < len(got) && slices.Contains(classes, classOf(got[i], rack)) {
					i++
					n++
				}
				if s == 0 && tc.max > 0 && n != tc.max {
					t.Errorf("stage %v: %d peers of other racks, want %d", classes, n, tc.max)
				}
			}
			if i != len(got) {
				var names []string
				for _, p := range got {
					names = append(names, p.Addr().String()+"="+classOf(p, rack))
				}
				t.Errorf("answer %v does not follow the classes %v", names, tc.stages)
			}
		})
	}
}

// TestHandoutTree: inside a rack the payload spreads as a tree. A leeching
// representative is handed at most repLocal of its rack's leechers per
// announce, and the rack's other leechers are not handed it (so that its
// upload is not queued for by the whole rack), but for the first repLocal
// to start; once it completes, it is one of its rack's seeders and every
// leecher of the rack gets it.
func TestHandoutTree(t *testing.T) {
	r := newRig(t, storage.BackendEmbedded, nil)
	h := ih(0xb2)
	ann := func(ip string, left int64, event string, numwant int) []netip.AddrPort {
		t.Helper()
		resp := r.announce(t, newHost(t, ip), params{hash: h, port: 6881, left: left, event: event, numwant: numwant})
		if resp.Failure != "" {
			t.Fatalf("announce %s: %s", ip, resp.Failure)
		}
		return resp.peers(t)
	}
	rep := netip.MustParseAddr("127.0.1.1")
	ann("127.0.9.1", 0, "started", 50) // the origin seeder, another rack
	ann(rep.String(), 100, "started", 50)
	hasRep := func(got []netip.AddrPort) bool {
		return slices.ContainsFunc(got, func(p netip.AddrPort) bool { return p.Addr() == rep })
	}
	// The first repLocal (3) to start after the representative get it, so
	// that the rack need not wait for the representative's next announce.
	for i := 2; i <= 9; i++ {
		got := ann(fmt.Sprintf("127.0.1.%d", i), 100, "started", 50)
		if want := i-2 < repLocal; hasRep(got) != want {
			t.Errorf("starting leecher 127.0.1.%d got %v: representative handed %v, want %v", i, got, hasRep(got), want)
		}
	}
	got := ann(rep.String(), 90, "", 50)
	local := 0
	for _, p := range got {
		if p.Addr().As4()[2] == 1 {
			local++
		}
	}
	if local != repLocal || len(got) != repLocal+1 {
		t.Errorf("representative got %v: %d of its rack, want %d, and the origin", got, local, repLocal)
	}
	for i := 2; i <= 9; i++ {
		got := ann(fmt.Sprintf("127.0.1.%d", i), 100, "", 50)
		if hasRep(got) {
			t.Errorf("leecher 127.0.1.%d got the leeching representative: %v", i, got)
		}
		if len(got) != 7 {
			t.Errorf("leecher 127.0.1.%d got %v, want its 7 other leechers", i, got)
		}
	}
	ann(rep.String(), 0, "completed", 50)
	got = ann("127.0.1.2", 100, "", 50)
	if len(got) == 0 || got[0].Addr() != rep {
		t.Errorf("leecher got %v, want its completed representative first", got)
	}
}

// TestHandoutRandom: the rack-unaware handout mixes racks freely but still
// never hands out the asker or a duplicate, seeders first.
func TestHandoutRandom(t *testing.T) {
	r, h := swarmState(t, HandoutRandom)
	resp := r.announce(t, newHost(t, "127.0.1.3"), params{hash: h, port: 6881, left: 100, numwant: 50})
	got := resp.peers(t)
	if len(got) != 9 {
		t.Errorf("random handout gave %d peers, want all 9 others: %v", len(got), got)
	}
	racks := map[byte]bool{}
	seeders := true
	for _, p := range got {
		racks[p.Addr().As4()[2]] = true
		c := classOf(p, 1)
		isSeeder := c == "ownS" || c == "otherS"
		if isSeeder && !seeders {
			t.Errorf("seeder %v after a leecher in %v", p, got)
		}
		seeders = seeders && isSeeder
	}
	if len(racks) != 4 {
		t.Errorf("random handout covered racks %v, want all 4", racks)
	}
}
