package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"racktracker/rackmap"
	"racktracker/storage"
	"racktracker/storage/storagetest"
	"racktracker/tracker"
)

// TestSwarmDownload is issue 3: real BitTorrent clients download a payload
// through racktracker alone, and the tracker records them.
func TestSwarmDownload(t *testing.T) {
	tr := startTracker(t, tracker.DefaultRackPolicy(), rackmap.DefaultConfig())
	p := newPayload(t, 2<<20, 256<<10, tr.AnnounceURL)
	ta := newTally()

	seeder := startPeer(t, netip.MustParseAddr("127.0.0.2"), p, peerOptions{Seed: true, Tally: ta})
	storagetest.WaitFor(t, 10*time.Second, "tracker records the seeder", func() (bool, string) {
		st, err := tr.Store.Transfer(context.Background(), storage.InfoHash(p.Hash))
		return err == nil && st.Seeders == 1, fmt.Sprintf("%+v, err %v", st, err)
	})
	leechers := []*peer{
		startPeer(t, netip.MustParseAddr("127.0.0.3"), p, peerOptions{Tally: ta}),
		startPeer(t, netip.MustParseAddr("127.0.0.4"), p, peerOptions{Tally: ta}),
	}
	waitComplete(t, leechers, 30*time.Second)
	for _, l := range leechers {
		checkContent(t, l, p.Data)
	}

	// Every byte came from a client of the swarm, by its own address: a
	// remote 127.0.0.1 would mean a dial that was not bound.
	read := readBytes(t, ta, seeder, leechers, nil)
	for _, l := range leechers {
		if read[l.IP] < p.Bytes {
			t.Errorf("%s read %d useful bytes, want at least the payload's %d", l.IP, read[l.IP], p.Bytes)
		}
	}

	// The tracker saw each client at its own address.
	st := tr.transfer(t, p.Hash)
	if st.PeersSeen != 3 {
		t.Errorf("tracker saw %d peers, want 3", st.PeersSeen)
	}
	racks, err := tr.Store.Racks(context.Background())
	if err != nil {
		t.Fatalf("Store.Racks: %v", err)
	}
	hosts := slices.Sorted(slices.Values(racks["default"]))
	if want := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}; !slices.Equal(hosts, want) {
		t.Errorf("rack default holds hosts %q, want %q (all racks: %v)", hosts, want, racks)
	}

	// anacrolix/torrent v1.59.1 sends no "completed" event and re-announces
	// a minute after its last announce at the soonest. To see the finished
	// leechers as seeders without waiting for that, each is given a second
	// URL of the same tracker (an extra query parameter the tracker
	// ignores): the client announces to a new URL at once, with left=0.
	for _, l := range leechers {
		l.Tor.AddTrackers([][]string{{p.Meta.Announce + "?e2e=reannounce"}})
	}
	storagetest.WaitFor(t, 10*time.Second, "tracker records three seeders", func() (bool, string) {
		st := tr.transfer(t, p.Hash)
		return st.Seeders == 3 && st.Leechers == 0, fmt.Sprintf("%d seeders, %d leechers", st.Seeders, st.Leechers)
	})
	st = tr.transfer(t, p.Hash)
	// The first leecher was the rack's representative (one per rack by
	// default); one that completes stays one (SPEC section 4).
	if st.Representatives != 1 || st.PeersSeen != 3 || st.Left != 0 {
		t.Errorf("at the end: %d representatives, %d peers seen, %d bytes left; want 1, 3, 0", st.Representatives, st.PeersSeen, st.Left)
	}
	// This client never sends "completed"; each leecher's announce with
	// left=0 counts as its completion, once (the origin seeder, complete from
	// its first announce, is no completion).
	if st.Completions != 2 {
		t.Errorf("at the end: %d completions, want 2 (one per leecher, without \"completed\" events)", st.Completions)
	}
	t.Logf("tracker at the end: %d seeders, %d representatives, %d completions", st.Seeders, st.Representatives, st.Completions)
}

// Sizes of TestCrossRackTraffic's swarm: racks 2..leecherRacks+1 hold the
// leechers, rack 1 the origin seeder alone.
const (
	leecherRacks = 3
	hostsPerRack = 3
)

// crossRack is what one swarm run measured.
type crossRack struct {
	policy   tracker.RackPolicy
	copies   float64 // payload copies that crossed racks, per leecher rack
	cross    int64   // payload bytes read from a peer of another rack
	inRack   int64   // payload bytes read from a peer of the same rack
	perRack  map[int]int64
	complete time.Duration // from the first leecher's start to the last completion
}

func (c crossRack) String() string {
	var racks []string
	for r := 2; r < 2+leecherRacks; r++ {
		racks = append(racks, fmt.Sprintf("%s %.2f", rackName(r), float64(c.perRack[r])/float64(crossPayload)))
	}
	return fmt.Sprintf("handout=%s representatives_per_rack=%d: %.2f payload copies crossed racks per leecher rack (%s); %d bytes across racks, %d inside; all complete in %s",
		c.policy.Handout, c.policy.RepresentativesPerRack, c.copies, strings.Join(racks, ", "), c.cross, c.inRack, c.complete.Round(10*time.Millisecond))
}

// crossPayload is big enough that a copy more or less per rack shows, and
// small enough for the swarms to finish in seconds.
const crossPayload = 16 << 20

// The network of TestCrossRackTraffic is a data center's (SPEC section 1):
// every host has a NIC of hostUplink per direction, and hangs off its rack's
// top-of-rack switch, whose uplink to the core carries rackUplink per
// direction for the whole rack. Traffic between two hosts of one rack stays
// on their switch and costs only the NICs; traffic between racks also takes
// from the sender rack's uplink out and the receiver rack's uplink in, shared
// with every other connection of those racks (fabric in harness_test.go).
// The core behind the uplinks does not block.
//
// Without the rack uplinks the network would be non-blocking: a byte from
// another rack would cost no more than one from the next host, and both of
// a rack's representatives would fetch most of the payload from outside,
// which is not the network racktracker is for: its point is that the rack
// uplink is the bottleneck.
const (
	// hostUplink is every host's NIC. On an unpaced loopback the origin
	// seeder alone serves every representative a whole copy before they can
	// help each other, which no network does.
	hostUplink = 32 << 20 / linkScale
	// rackUplink is every rack's uplink, per direction: one NIC's worth for
	// the rack's three hosts, an oversubscription of 3:1. A data-center rack
	// of about 40 hosts is typically oversubscribed 2:1 to 4:1 (e.g. 40 x 25
	// Gb/s behind 4 x 100 Gb/s); in a model rack of 3 hosts that ratio is an
	// uplink of 0.75 to 1.5 NICs, and 1 NIC is the middle of it.
	rackUplink = 32 << 20 / linkScale
)

// TestCrossRackTraffic is issue 4 measured with real clients (SPEC section
// 8): one origin seeder alone in rack r1 and three racks of three leechers
// download a payload with the rack-aware handout and with the rack-unaware
// one, each time with a fresh tracker, store, clients and network. The
// payload bytes that cross racks are counted from the clients' own
// per-connection byte counts. A third run, with two representatives per
// rack rather than the default one, shows what a second representative
// costs.
//
// The hosts talk over a modelled data-center network (see hostUplink and
// rackUplink): NICs per host, and one uplink per rack shared by its hosts.
// The rack uplink is what makes the measure mean anything: on a
// non-blocking network, fetching across racks costs a client nothing, and
// how many copies cross is then up to the client alone.
func TestCrossRackTraffic(t *testing.T) {
	local := tracker.DefaultRackPolicy()
	random := tracker.DefaultRackPolicy()
	random.Handout = tracker.HandoutRandom
	twoReps := tracker.DefaultRackPolicy()
	twoReps.RepresentativesPerRack = 2
	runs := []struct {
		name   string
		policy tracker.RackPolicy
	}{
		{"local", local},
		{"random", random},
		{"local_two_representatives", twoReps},
	}
	results := map[string]crossRack{}
	for _, run := range runs {
		t.Run(run.name, func(t *testing.T) {
			res := runCrossRack(t, run.policy)
			t.Log(res)
			results[run.name] = res
		})
	}
	if len(results) != len(runs) {
		t.Fatal("a swarm run failed; nothing to compare")
	}
	l, r, two := results["local"], results["random"], results["local_two_representatives"]
	t.Logf("cross-rack payload copies per leecher rack (%d MiB payload, %d racks x %d leechers, origin seeder alone in r1; network: %d MiB/s NIC per host, %d MiB/s uplink per rack and direction shared by its %d hosts, %.1f:1 oversubscribed): local %.2f, random %.2f; local with 2 representatives per rack %.2f; completion %s, %s, %s",
		crossPayload>>20, leecherRacks, hostsPerRack, hostUplink>>20, rackUplink>>20, hostsPerRack, float64(hostsPerRack*hostUplink)/float64(rackUplink), l.copies, r.copies, two.copies,
		l.complete.Round(10*time.Millisecond), r.complete.Round(10*time.Millisecond), two.complete.Round(10*time.Millisecond))
	// The aim of SPEC section 4: about one copy into each rack, where the
	// rack-unaware handout moves more. One representative per rack (the
	// default) leaves a rack a single way in, whatever the load; two moved
	// 1.27 to 1.38 on a quiet machine, up to 1.8 with the CPU saturated, so
	// that bound guards against a gross regression only. The targets are
	// measured by the lab and the simulator (README, "Measuring locality").
	if l.copies >= 1.5 || two.copies >= 2 {
		t.Errorf("handout local: %.2f payload copies crossed racks per rack (want < 1.5), %.2f with two representatives per rack (want < 2)", l.copies, two.copies)
	}
	if r.copies <= l.copies || r.copies <= two.copies {
		t.Errorf("handout random: %.2f payload copies crossed racks per rack, want more than local's %.2f (one representative) and %.2f (two)", r.copies, l.copies, two.copies)
	}
}

// TestFabricPath checks which rack uplinks TestCrossRackTraffic's network
// puts between two hosts.
func TestFabricPath(t *testing.T) {
	f := newFabric(rackUplink)
	tcp := func(a netip.Addr) net.Addr { return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 6881)) }
	trackerIP := netip.MustParseAddr("127.0.0.1")
	if p := f.path(tcp(hostIP(2, 1)), tcp(hostIP(2, 2))); len(p) != 0 {
		t.Errorf("inside rack 2: %d rack links, want none", len(p))
	}
	if p := f.path(tcp(hostIP(2, 1)), tcp(trackerIP)); len(p) != 0 {
		t.Errorf("to the tracker: %d rack links, want none", len(p))
	}
	if p := (*fabric)(nil).path(tcp(hostIP(2, 1)), tcp(hostIP(3, 1))); len(p) != 0 {
		t.Errorf("nil fabric: %d rack links, want none", len(p))
	}
	a := f.path(tcp(hostIP(2, 1)), tcp(hostIP(3, 1)))
	b := f.path(tcp(hostIP(2, 2)), tcp(hostIP(4, 1)))
	c := f.path(tcp(hostIP(3, 2)), tcp(hostIP(2, 3)))
	if len(a) != 2 || len(b) != 2 || len(c) != 2 {
		t.Fatalf("across racks: %d, %d, %d rack links, want 2 each", len(a), len(b), len(c))
	}
	if a[0] != f.out[2] || b[0] != f.out[2] || c[0] != f.out[3] {
		t.Error("a sender's first rack link is not its rack's uplink out, shared by the rack")
	}
	if a[1] != f.in[3] || b[1] != f.in[4] || c[1] != f.in[2] {
		t.Error("a sender's second rack link is not the receiver rack's uplink in")
	}
	if f.out[2] == f.in[2] || f.out[3] == f.in[3] {
		t.Error("a rack's uplink out is also its uplink in")
	}
}

// runCrossRack runs one swarm with a fresh tracker, store and clients.
func runCrossRack(t *testing.T, policy tracker.RackPolicy) crossRack {
	tr := startTracker(t, policy, rackMapConfig(1+leecherRacks))
	p := newPayload(t, crossPayload, 256<<10, tr.AnnounceURL)
	ta := newTally()
	fab := newFabric(rackUplink)

	seeder := startPeer(t, hostIP(1, 1), p, peerOptions{Seed: true, Tally: ta, Uplink: hostUplink, Fabric: fab})
	storagetest.WaitFor(t, 10*time.Second, "tracker records the seeder", func() (bool, string) {
		st, err := tr.Store.Transfer(context.Background(), storage.InfoHash(p.Hash))
		return err == nil && st.Seeders == 1, fmt.Sprintf("%+v, err %v", st, err)
	})
	start := time.Now()
	var leechers []*peer
	for h := 1; h <= hostsPerRack; h++ {
		for r := 2; r < 2+leecherRacks; r++ {
			leechers = append(leechers, startPeer(t, hostIP(r, h), p, peerOptions{Tally: ta, Uplink: hostUplink, Fabric: fab}))
		}
	}
	waitComplete(t, leechers, 60*time.Second)
	res := crossRack{policy: policy, complete: time.Since(start), perRack: map[int]int64{}}
	for _, l := range leechers {
		checkContent(t, l, p.Data)
	}

	read := readBytes(t, ta, seeder, leechers, func(reader, remote netip.Addr, n int64) {
		if rackOf(reader) == rackOf(remote) {
			res.inRack += n
		} else {
			res.cross += n
			res.perRack[rackOf(reader)] += n
		}
	})
	for _, l := range leechers {
		// The callback and the client's own aggregate count the same bytes.
		stats := l.Tor.Stats()
		if agg := stats.ConnStats.BytesReadUsefulData.Int64(); agg != read[l.IP] {
			t.Errorf("%s: callbacks counted %d useful bytes, the client's stats %d", l.IP, read[l.IP], agg)
		}
		if read[l.IP] < p.Bytes {
			t.Errorf("%s read %d useful bytes, want at least the payload's %d", l.IP, read[l.IP], p.Bytes)
		}
	}
	res.copies = float64(res.cross) / float64(p.Bytes*leecherRacks)

	st := tr.transfer(t, p.Hash)
	var reps []string
	for _, r := range st.Racks {
		reps = append(reps, fmt.Sprintf("%s %v", r.Rack, r.Representatives))
	}
	t.Logf("tracker: %d peers seen, %d seeders, %d leechers; representatives: %s", st.PeersSeen, st.Seeders, st.Leechers, strings.Join(reps, "; "))
	if st.PeersSeen != 1+leecherRacks*hostsPerRack {
		t.Errorf("tracker saw %d peers, want %d", st.PeersSeen, 1+leecherRacks*hostsPerRack)
	}
	if testing.Verbose() {
		matrix, _ := ta.snapshot()
		logMatrix(t, matrix)
	}
	return res
}

// logMatrix logs who read how much from whom, in MiB.
func logMatrix(t *testing.T, bytes map[[2]netip.Addr]int64) {
	byReader := map[netip.Addr]map[netip.Addr]int64{}
	for k, n := range bytes {
		if byReader[k[0]] == nil {
			byReader[k[0]] = map[netip.Addr]int64{}
		}
		byReader[k[0]][k[1]] += n
	}
	var b strings.Builder
	for _, reader := range sortedAddrs(byReader) {
		fmt.Fprintf(&b, "\n  %s <-", reader)
		for _, remote := range sortedAddrs(byReader[reader]) {
			fmt.Fprintf(&b, " %s:%.1f", remote, float64(byReader[reader][remote])/(1<<20))
		}
	}
	t.Logf("MiB read, by reader and remote:%s", b.String())
}

// readBytes sums the useful bytes each client read, from the tally, and
// checks that every byte came from a client of the swarm by its own
// address (a remote 127.0.0.1 would mean a dial that was not bound). each,
// when set, sees every (reader, remote, bytes) of a known remote.
func readBytes(t *testing.T, ta *tally, seeder *peer, leechers []*peer, each func(reader, remote netip.Addr, n int64)) map[netip.Addr]int64 {
	t.Helper()
	known := map[netip.Addr]bool{seeder.IP: true}
	for _, l := range leechers {
		known[l.IP] = true
	}
	bytes, bad := ta.snapshot()
	if len(bad) > 0 {
		t.Errorf("bytes from unparsable remote addresses: %v", bad)
	}
	read := map[netip.Addr]int64{}
	for k, n := range bytes {
		reader, remote := k[0], k[1]
		if !known[remote] {
			t.Errorf("%s read %d bytes from %s, which is no client of the swarm", reader, n, remote)
			continue
		}
		read[reader] += n
		if each != nil {
			each(reader, remote, n)
		}
	}
	return read
}
