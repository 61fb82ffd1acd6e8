package tracker

// The responses below are written by hand rather than with
// github.com/anacrolix/torrent/bencode because every announce pays for its
// encoding. BenchmarkAppendAnnounce, a compact response with 50 peers, 2
// cores, medians of 10 interleaved runs (go1.26, anacrolix/torrent v1.59.1):
//
//	own, reused buffer  ~165 ns/op     0 B/op   0 allocs/op
//	own, new buffer     ~450 ns/op  1024 B/op   1 allocs/op
//	bencode.Marshal    ~1150 ns/op  1840 B/op  14 allocs/op
//
// That is about 7x (2.5x without buffer reuse) and 13 to 14 allocations
// fewer per announce. In absolute terms it saves about a microsecond, small
// beside a Redis round trip; the allocations matter more under load, being
// GC work on every announce. The shapes are fixed, so the encoder is
// short, and TestAppendAnnounceMatchesLibrary proves its output byte for
// byte equal to the library's.

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
)

// handoutPeer is one peer handed to an announcing client.
type handoutPeer struct {
	Addr   netip.AddrPort
	PeerID []byte // nil when unknown; only non-compact responses carry it
}

// announceResponse is the body of a successful announce, independent of the
// format the client asked for.
type announceResponse struct {
	Interval    int // seconds
	MinInterval int // seconds
	Complete    int // seeders
	Incomplete  int // leechers
	Peers       []handoutPeer
	TrackerID   string // "" for none
}

// appendAnnounce appends the bencoded announce response to dst.
//
// In compact form (BEP 23, BEP 7) IPv4 peers go to "peers" as 6-byte entries
// and IPv6 peers to "peers6" as 18-byte entries; "peers" is always present,
// even empty, because BEP 3 makes it part of every successful response, while
// "peers6" appears only when there is an IPv6 peer. The non-compact form
// lists both families in "peers", and drops "peer id" when the client sent
// no_peer_id or the id is unknown. IPv4-mapped IPv6 addresses count as IPv4
// so that a v4 client on a dual-stack listener can use them. A peer with an
// invalid address is skipped: it cannot be encoded in either form.
func appendAnnounce(dst []byte, r announceResponse, compact, noPeerID bool) []byte {
	// Keys are pre-encoded and appear in the bytewise order bencode demands:
	// complete, incomplete, interval, min interval, peers, peers6, tracker id.
	dst = slices.Grow(dst, 96+len(r.TrackerID)+announcePeersSize(r.Peers, compact))
	dst = append(dst, "d8:completei"...)
	dst = strconv.AppendInt(dst, int64(r.Complete), 10)
	dst = append(dst, "e10:incompletei"...)
	dst = strconv.AppendInt(dst, int64(r.Incomplete), 10)
	dst = append(dst, "e8:intervali"...)
	dst = strconv.AppendInt(dst, int64(r.Interval), 10)
	dst = append(dst, "e12:min intervali"...)
	dst = strconv.AppendInt(dst, int64(r.MinInterval), 10)
	dst = append(dst, 'e')
	if compact {
		dst = appendCompactPeers(dst, r.Peers)
	} else {
		dst = appendPeerDicts(dst, r.Peers, noPeerID)
	}
	if r.TrackerID != "" {
		dst = append(dst, "10:tracker id"...)
		dst = appendString(dst, r.TrackerID)
	}
	return append(dst, 'e')
}

// announcePeersSize bounds the bytes the peers take, so that a fresh
// response costs one allocation: 18 is an IPv6 entry, 96 a dictionary with
// a full IPv6 address and a 20-byte peer id.
func announcePeersSize(peers []handoutPeer, compact bool) int {
	if compact {
		return 18 * len(peers)
	}
	return 96 * len(peers)
}

// appendCompactPeers appends the IPv4 peers as "peers" (BEP 23) and the
// IPv6 ones, if any, as "peers6" (BEP 7).
func appendCompactPeers(dst []byte, peers []handoutPeer) []byte {
	n4, n6 := 0, 0
	for _, p := range peers {
		switch a := p.Addr.Addr().Unmap(); {
		case a.Is4():
			n4++
		case a.Is6():
			n6++
		}
	}
	dst = appendCompactFamily(dst, "5:peers", peers, n4, false)
	if n6 == 0 {
		return dst
	}
	return appendCompactFamily(dst, "6:peers6", peers, n6, true)
}

// appendCompactFamily appends key and the n peers of one address family as
// one string of address and port entries: 6 bytes each for IPv4, 18 for
// IPv6.
func appendCompactFamily(dst []byte, key string, peers []handoutPeer, n int, v6 bool) []byte {
	size := 6
	if v6 {
		size = 18
	}
	dst = append(dst, key...)
	dst = strconv.AppendInt(dst, int64(size*n), 10)
	dst = append(dst, ':')
	for _, p := range peers {
		if a := p.Addr.Addr().Unmap(); v6 && a.Is6() || !v6 && a.Is4() {
			dst, _ = a.WithZone("").AppendBinary(dst) // 4 or 16 bytes: no zone

			dst = binary.BigEndian.AppendUint16(dst, p.Addr.Port())
		}
	}
	return dst
}

func appendPeerDicts(dst []byte, peers []handoutPeer, noPeerID bool) []byte {
	dst = append(dst, "5:peersl"...)
	for _, p := range peers {
		a := p.Addr.Addr().Unmap()
		if !a.IsValid() {
			continue
		}
		// A zone names an interface of the tracker's host, meaningless to
		// the client.
		var text [64]byte
		ip := a.WithZone("").AppendTo(text[:0])
		dst = append(dst, "d2:ip"...)
		dst = strconv.AppendInt(dst, int64(len(ip)), 10)
		dst = append(dst, ':')
		dst = append(dst, ip...)
		if !noPeerID && len(p.PeerID) > 0 {
			dst = append(dst, "7:peer id"...)
			dst = strconv.AppendInt(dst, int64(len(p.PeerID)), 10)
			dst = append(dst, ':')
			dst = append(dst, p.PeerID...)
		}
		dst = append(dst, "4:porti"...)
		dst = strconv.AppendUint(dst, uint64(p.Addr.Port()), 10)
		dst = append(dst, "ee"...)
	}
	return append(dst, 'e')
}

// appendFailure appends the response every client understands as an error:
// a failure reason (BEP 3), with the interval and min interval (seconds) at
// which to try again, so that a client does not retry at once (SPEC
// section 5).
func appendFailure(dst []byte, reason string, interval, minInterval int) []byte {
	dst = append(dst, "d14:failure reason"...)
	dst = appendString(dst, reason)
	dst = append(dst, "8:intervali"...)
	dst = strconv.AppendInt(dst, int64(interval), 10)
	dst = append(dst, "e12:min intervali"...)
	dst = strconv.AppendInt(dst, int64(minInterval), 10)
	return append(dst, "ee"...)
}

// scrapeFile is the scrape statistics of one transfer.
type scrapeFile struct {
	InfoHash   [20]byte
	Complete   int // seeders
	Incomplete int // leechers
	Downloaded int // completed events ever seen
}

// appendScrape appends the BEP 48 scrape response. The raw hashes are the
// keys of "files", so they must come out sorted and unique: files is sorted
// on a copy when it is not already (the caller's slice is left alone), and a
// repeated hash keeps its first entry.
func appendScrape(dst []byte, files []scrapeFile) []byte {
	byHash := func(a, b scrapeFile) int { return bytes.Compare(a.InfoHash[:], b.InfoHash[:]) }
	if !slices.IsSortedFunc(files, byHash) {
		files = slices.Clone(files)
		slices.SortStableFunc(files, byHash)
	}
	dst = slices.Grow(dst, 16+70*len(files))
	dst = append(dst, "d5:filesd"...)
	for i, f := range files {
		if i > 0 && f.InfoHash == files[i-1].InfoHash {
			continue
		}
		dst = append(dst, "20:"...)
		dst = append(dst, f.InfoHash[:]...)
		dst = append(dst, "d8:completei"...)
		dst = strconv.AppendInt(dst, int64(f.Complete), 10)
		dst = append(dst, "e10:downloadedi"...)
		dst = strconv.AppendInt(dst, int64(f.Downloaded), 10)
		dst = append(dst, "e10:incompletei"...)
		dst = strconv.AppendInt(dst, int64(f.Incomplete), 10)
		dst = append(dst, "ee"...)
	}
	return append(dst, "ee"...)
}

// appendString appends a bencoded byte string.
func appendString(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}
