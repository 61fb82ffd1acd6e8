package tracker

import (
	"net/netip"
	"sync"

	"racktracker/storage"
)

// Peers are keyed by IP (SPEC section 3): one client per host and transfer.
// Two ways a deployment breaks that assumption are reported, as a warning
// (rate-limited) and a counter, since either makes the swarm see fewer
// peers than there are:
//   - shared_ip: another client (another peer_id) was current on the same
//     IP, as behind NAT or with several containers on one address; they
//     replace each other's entry at every announce. The store sees it, so
//     it is exact across tracker processes. A client restarted within the
//     peer timeout under a new peer_id is reported once too.
//   - dual_stack: one client (one peer_id) announces over IPv4 and IPv6,
//     and counts as two hosts. Only this process's own announces are
//     compared, in a bounded memory.

// identityEntries bounds the memory of dual-stack detection.
const identityEntries = 1 << 16

type identityKey struct {
	hash   storage.InfoHash
	peerID string
}

// families remembers the address family each client last announced from.
type families struct {
	mu   sync.Mutex
	last map[identityKey]bool // true: IPv6
}

// changed records that the client k announced from a, and reports whether
// its last announce came from the other family.
func (f *families) changed(k identityKey, a netip.Addr) bool {
	v6 := !a.Unmap().Is4()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == nil || len(f.last) >= identityEntries {
		f.last = make(map[identityKey]bool) // forget all: a bound, not an LRU
	}
	was, ok := f.last[k]
	f.last[k] = v6
	return ok && was != v6
}

// identity reports an announce that breaks one client per IP.
func (s *Server) identity(a storage.Announce, sharedIP bool) {
	if sharedIP {
		s.metrics.identity.WithLabelValues("shared_ip").Inc()
		s.identityWarn[0].log(s.log, "two clients announce from one IP; peers are keyed by IP, so they replace each other (NAT or containers?)",
			"infohash", a.InfoHash.String(), "peer", a.Addr.String())
	}
	if a.Event == storage.EventStopped {
		return
	}
	if s.families.changed(identityKey{a.InfoHash, a.PeerID}, a.Addr.Addr()) {
		s.metrics.identity.WithLabelValues("dual_stack").Inc()
		s.identityWarn[1].log(s.log, "one client announces over both IPv4 and IPv6; it counts as two hosts",
			"infohash", a.InfoHash.String(), "peer", a.Addr.String())
	}
}
