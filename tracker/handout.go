package tracker

import (
	"math/rand/v2"
	"net/netip"

	"racktracker/storage"
)

// handout is the peer-handout policy: from the candidate pools an announce
// sampled, it picks at most numwant peers for the asker, never the asker
// itself (any port of its IP), without duplicates, in order of class and
// in random order inside each class.
type handout interface {
	pick(sw storage.Swarm, self netip.Addr, numwant int) []storage.Peer
}

func newHandout(p RackPolicy) handout {
	if p.Handout == HandoutRandom {
		return randomHandout{}
	}
	reps := max(p.RepresentativesPerRack, 1)
	return localHandout{escape: p.EscapePeers, remote: max(1, (remotePerRack+reps-1)/reps)}
}

// remotePerRack is about how many peers of other racks a rack's
// representatives are handed together per announce; each gets at least one.
//
// Why not all of them: a representative connected to every other rack pulls
// most of the payload from outside, even the pieces its rack's other
// representative already holds, since outside is as fast as inside to the
// client. Measured with real clients (e2e TestCrossRackTraffic, 2
// representatives per rack): 1.6 copies entered each rack when handed all,
// 1.3 when handed one each, and the swarm finished sooner than with the
// random handout. A single representative needs two to keep that pace. The
// origin seeder still dials every representative (a seeder is handed other
// racks' representatives), and each announce draws others at random, so no
// rack hangs on one remote peer.
const remotePerRack = 2

// localHandout is SPEC section 4's rack-aware handout.
type localHandout struct {
	escape int // peers of other racks for a leecher of a starving rack
	remote int // peers of other racks for a representative
}

func (h localHandout) pick(sw storage.Swarm, self netip.Addr, numwant int) []storage.Peer {
	p := newPicker(self, numwant)
	other := [][]storage.Peer{sw.Pools[storage.OtherSeeders], sw.Pools[storage.OtherReps]}
	own := [][]storage.Peer{sw.Pools[storage.OwnSeeders], sw.Pools[storage.OwnReps]}
	switch sw.Role {
	case storage.RoleRepresentative:
		// Fetches across racks first, then helps its own rack.
		p.class(min(h.remote, numwant), other...)
		p.class(numwant, append(own, sw.Pools[storage.OwnLeechers])...)
	case storage.RoleSeeder:
		p.class(numwant, sw.Pools[storage.OwnLeechers])
		p.class(numwant, sw.Pools[storage.OtherReps])
	default:
		if sw.Escape {
			// A starving rack: a few peers of other racks come first so
			// that its own peers cannot crowd them out.
			p.class(min(h.escape, numwant), other...)
		}
		p.class(numwant, own...)
		p.class(numwant, sw.Pools[storage.OwnLeechers])
	}
	return p.out
}

// randomHandout ignores racks: seeders for a leecher first, then leechers,
// the way a rack-unaware tracker hands out. It is there to compare against.
type randomHandout struct{}

func (randomHandout) pick(sw storage.Swarm, self netip.Addr, numwant int) []storage.Peer {
	p := newPicker(self, numwant)
	if sw.Role != storage.RoleSeeder {
		p.class(numwant, sw.Pools[storage.AllSeeders])
	}
	p.class(numwant, sw.Pools[storage.AllLeechers])
	return p.out
}

// picker collects a handout class by class.
type picker struct {
	self netip.Addr
	want int
	out  []storage.Peer
	seen map[netip.AddrPort]bool
}

func newPicker(self netip.Addr, numwant int) *picker {
	return &picker{self: self, want: numwant, out: make([]storage.Peer, 0, numwant), seen: make(map[netip.AddrPort]bool, numwant)}
}

// class adds up to n peers (and never beyond numwant in all) drawn at random
// from the union of pools.
func (p *picker) class(n int, pools ...[]storage.Peer) {
	var cands []storage.Peer
	for _, pool := range pools {
		for _, c := range pool {
			if c.Addr.Addr().Unmap() == p.self || p.seen[c.Addr] {
				continue
			}
			cands = append(cands, c)
		}
	}
	rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	added := 0
	for _, c := range cands {
		if added >= n || len(p.out) >= p.want {
			return
		}
		if p.seen[c.Addr] {
			continue // in two pools of the class
		}
		p.seen[c.Addr] = true
		p.out = append(p.out, c)
		added++
	}
}
