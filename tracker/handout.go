package tracker

import (
	"math/rand/v2"
	"net/netip"
	"slices"

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
	// RepLocal is how many leechers of its own rack a representative that
	// still leeches is handed per announce; 0 means as many as numwant
	// allows. With Tree, other leechers are not handed their rack's
	// leeching representatives, but for the first StartLocal of the rack
	// to send "started" (besides the representatives): the rack's payload
	// spreads from the representative through a few of its rack's hosts
	// to the others, and the representative's upload is left for other
	// racks' representatives.
	RepLocal   int
	StartLocal int
	Tree       bool
}

// newHandout is the policy of a racks section.
func newHandout(p RackPolicy) Handout {
	reps := max(p.RepresentativesPerRack, 1)
	return Handout{
		Random:       p.Handout == HandoutRandom,
		RemotePerRep: max(1, (remotePerRack+reps-1)/reps),
		EscapePeers:  p.EscapePeers,
		RepLocal:     repLocal,
		StartLocal:   repLocal,
		Tree:         true,
	}
}

// remotePerRack is about how many peers of other racks a rack's
// representatives are handed together per announce; each gets at least one.
// A client keeps its connections after the tracker stops listing a peer, so
// a representative's mesh grows by about this many per announce.
//
// Why not all of them: a representative connected to every other rack pulls
// most of the payload from outside at once, and its upload then goes to
// whoever asks first. With one representative per rack the number does not
// change the copies (only the representative fetches across racks); in the
// simulator (cmd/rtsim, 1,000 hosts, 3:1) 2 finished about 5% later than 4
// and 8 no sooner than 4. The origin seeder still dials every
// representative (a seeder is handed other racks' representatives), and
// each announce draws others at random, so no rack hangs on one remote
// peer.
const remotePerRack = 4

// repLocal is how many leechers of its own rack a representative that still
// leeches is handed per announce, and Tree keeps the rack's other leechers
// from being handed it: the rack's payload enters through the
// representative and spreads from the few hosts it feeds, instead of every
// host of the rack queueing at the representative. Measured in the
// simulator (1,000 hosts, 3:1, one representative): every leecher handed
// the representative, 59 s for the last host; the tree, 36.5 s (random
// handout: 43 s). The representative's upload is the rack's inflow and the
// mesh's supply at once, and its upload slots went to whoever is connected:
// 39 hosts of its rack against a handful of other racks' representatives.
const repLocal = 3

// exclude marks a stage whose candidates are sampled only to be left out of
// the stages after it. The store reads N <= 0 as "up to numwant".
const exclude = -1

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
	if h.Tree {
		// Its seeders, then its leechers other than the representatives
		// (which are sampled only to be left out).
		p.Leecher = []storage.Stage{
			stage(upToNumwant, storage.OwnSeeders),
			stage(exclude, storage.OwnReps),
			stage(upToNumwant, storage.OwnLeechers),
		}
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
	if h.RepLocal > 0 {
		p.Representative = append(p.Representative,
			stage(upToNumwant, storage.OwnSeeders, storage.OwnReps),
			stage(h.RepLocal, storage.OwnLeechers))
	} else {
		p.Representative = append(p.Representative,
			stage(upToNumwant, storage.OwnSeeders, storage.OwnReps, storage.OwnLeechers))
	}
	// A seeder serves its own rack's leechers, then other racks'
	// representatives (seeders have nothing to give each other).
	p.Seeder = []storage.Stage{
		stage(upToNumwant, storage.OwnLeechers),
		stage(h.SeederRemote, storage.OtherLeechingReps),
	}
	return p
}

// pick takes the handout from what the store sampled for plan p.
// started says the asker sent event=started.
func (h Handout) pick(p storage.Plan, sw storage.Swarm, self netip.Addr, numwant int, started bool) []storage.Peer {
	pk := newPicker(self, numwant)
	for i, st := range p.Stages(sw.Role, sw.Escape) {
		if i >= len(sw.Stages) {
			break
		}
		if st.N == exclude {
			// The rack's leeching representatives: left out, but for
			// about StartLocal of the leechers that start (each with the
			// chance StartLocal in the number of its rack's leechers
			// drawn next), so that a rack whose leechers start after its
			// representative's announce gets the payload at once rather
			// than at the representative's next announce, which may be
			// minutes away.
			if started && h.earlyInRack(sw.Stages, i, self) {
				pk.class(numwant, sw.Stages[i])
			} else {
				pk.skip(sw.Stages[i])
			}
			continue
		}
		n := numwant
		if st.N > 0 {
			n = min(st.N, numwant)
		}
		pk.class(n, sw.Stages[i])
	}
	return pk.out
}

// earlyInRack says whether the asker is among the first StartLocal leechers
// of its rack besides the representatives in stage i: whether the rack's
// leechers in the stage after it, less the asker and those
// representatives, are fewer than StartLocal.
func (h Handout) earlyInRack(stages [][]storage.Peer, i int, self netip.Addr) bool {
	if i+1 >= len(stages) {
		return true
	}
	n := 0
	for _, p := range stages[i+1] {
		a := p.Addr.Addr().Unmap()
		if a == self || slices.ContainsFunc(stages[i], func(r storage.Peer) bool { return r.Addr.Addr().Unmap() == a }) {
			continue
		}
		n++
	}
	return n < h.StartLocal
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

// skip leaves the peers of pool out of the classes after it.
func (p *picker) skip(pool []storage.Peer) {
	for _, c := range pool {
		p.seen[c.Addr] = true
	}
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
