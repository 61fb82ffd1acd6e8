package tracker

import (
	"math/rand/v2"
	"net/netip"

	"racktracker/storage"
)

// Handout is the peer-handout policy of SPEC section 4, in one place: for
// each role of the asker, which classes of peers it is handed, in which
// order and how many of each. Its fields are the policy's levers. The store
// samples exactly the stages plan() declares for the role it computes (one
// round trip), and pick takes the answer from those samples: at most
// numwant peers, never the asker itself (any port of its IP), without
// duplicates, in order of stage and in random order inside each stage.
type Handout struct {
	// Random ignores racks: seeders first for a leecher, then leechers, the
	// way a rack-unaware tracker hands out. It is there to compare against.
	Random bool
	// RemotePerRep is how many peers of other racks (seeders or
	// representatives) a representative is handed per announce.
	RemotePerRep int
	// EscapePeers is how many peers of other racks a leecher of a starving
	// rack is handed first (racks.escape_peers).
	EscapePeers int
	// SeederRemote is how many representatives of other racks that still
	// leech a seeder is handed after its own rack's leechers; 0 means as
	// many as numwant allows.
	SeederRemote int
}

// newHandout is the policy of a racks section.
func newHandout(p RackPolicy) Handout {
	reps := max(p.RepresentativesPerRack, 1)
	return Handout{
		Random:       p.Handout == HandoutRandom,
		RemotePerRep: max(1, (remotePerRack+reps-1)/reps),
		EscapePeers:  p.EscapePeers,
	}
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

// plan is what the store samples for each role: the policy's wants.
func (h Handout) plan() storage.Plan {
	const upToNumwant = 0
	stage := func(n int, classes ...storage.Class) storage.Stage {
		return storage.Stage{Classes: classes, N: n}
	}
	if h.Random {
		all := []storage.Stage{
			stage(upToNumwant, storage.AllSeeders),
			stage(upToNumwant, storage.AllLeechers),
		}
		return storage.Plan{
			Leecher: all, Escape: all, Representative: all,
			Seeder: []storage.Stage{stage(upToNumwant, storage.AllLeechers)},
		}
	}
	var p storage.Plan
	// A leecher fetches inside its rack: its seeders and representatives,
	// then its other leechers.
	p.Leecher = []storage.Stage{
		stage(upToNumwant, storage.OwnSeeders, storage.OwnReps),
		stage(upToNumwant, storage.OwnLeechers),
	}
	// A starving rack: a few peers of other racks come first so that its
	// own peers cannot crowd them out.
	if h.EscapePeers > 0 {
		p.Escape = append(p.Escape, stage(h.EscapePeers, storage.OtherSeeders, storage.OtherReps))
	}
	p.Escape = append(p.Escape, p.Leecher...)
	// A representative fetches across racks first, then helps its own rack.
	if h.RemotePerRep > 0 {
		p.Representative = append(p.Representative, stage(h.RemotePerRep, storage.OtherSeeders, storage.OtherReps))
	}
	p.Representative = append(p.Representative,
		stage(upToNumwant, storage.OwnSeeders, storage.OwnReps, storage.OwnLeechers))
	// A seeder serves its own rack's leechers, then other racks'
	// representatives (seeders have nothing to give each other).
	p.Seeder = []storage.Stage{
		stage(upToNumwant, storage.OwnLeechers),
		stage(h.SeederRemote, storage.OtherLeechingReps),
	}
	return p
}

// pick takes the handout from what the store sampled for plan p.
func (h Handout) pick(p storage.Plan, sw storage.Swarm, self netip.Addr, numwant int) []storage.Peer {
	pk := newPicker(self, numwant)
	for i, st := range p.Stages(sw.Role, sw.Escape) {
		if i >= len(sw.Stages) {
			break
		}
		n := numwant
		if st.N > 0 {
			n = min(st.N, numwant)
		}
		pk.class(n, sw.Stages[i])
	}
	return pk.out
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
