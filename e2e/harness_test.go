package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"racktracker/app"
	"racktracker/rackmap"
	"racktracker/storage"
	"racktracker/tracker"
)

// debugEnv, when set, routes the BitTorrent clients' warnings to stderr and
// adds each client's full status to the message of a stalled download.
const debugEnv = "RACKTRACKER_E2E_DEBUG"

// Every host of these tests is a loopback address 127.0.R.H: R is its rack
// (rack "rR", CIDR 127.0.R.0/24), H the host in it. Linux routes all of
// 127.0.0.0/8 to lo, so clients can bind to any of them without setup.

// hostIP is host h of rack r.
func hostIP(r, h int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, byte(r), byte(h)}) }

// rackOf is the rack number of a host address: its third byte.
func rackOf(a netip.Addr) int { return int(a.Unmap().As4()[2]) }

// rackName is the rack racks.map gives 127.0.r.0/24.
func rackName(r int) string { return fmt.Sprintf("r%d", r) }

// rackMapConfig maps racks 1..n to 127.0.R.0/24.
func rackMapConfig(n int) rackmap.Config {
	cfg := rackmap.DefaultConfig()
	for r := 1; r <= n; r++ {
		cfg.Map = append(cfg.Map, rackmap.Rack{Name: rackName(r), CIDRs: []string{fmt.Sprintf("127.0.%d.0/24", r)}})
	}
	return cfg
}

// inProcessTracker is the racktracker program, started by app.Run as main
// starts it (background loops included), over the embedded store and
// serving on 127.0.0.1.
type inProcessTracker struct {
	AnnounceURL string
	Store       *storage.Store
}

// startTracker runs the program with the given rack policy over a fresh
// embedded store and rack map, and stops all of it when the test ends. Its
// cleanup runs after that of the clients started later, so that their
// "stopped" announces still find it.
//
// The announce timings stay at their defaults on purpose: anacrolix/torrent
// v1.59.1 never re-announces sooner than a minute, whatever interval the
// tracker returns (trackerScraper.Run), so a short peer_timeout would expire
// every client in the middle of its download.
func startTracker(t *testing.T, policy tracker.RackPolicy, racks rackmap.Config) *inProcessTracker {
	t.Helper()
	cfg := app.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Racks = app.RacksConfig{Config: racks, RackPolicy: policy}
	cfg.Storage.Embedded.SnapshotPath = filepath.Join(t.TempDir(), "tracker.snapshot")
	var log *slog.Logger
	if os.Getenv(debugEnv) != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("tracker", "e2e")
	}
	tr, err := app.Start(app.Options{Config: cfg, Logger: log})
	if err != nil {
		t.Fatalf("tracker did not start: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Stop(); err != nil {
			t.Errorf("tracker: %v", err)
		}
	})
	return &inProcessTracker{AnnounceURL: "http://" + tr.Listen.String() + "/announce", Store: tr.Store}
}

// transfer reads the tracker's record of h, failing the test on an error.
func (tr *inProcessTracker) transfer(t testing.TB, h metainfo.Hash) storage.TransferStats {
	t.Helper()
	st, err := tr.Store.Transfer(context.Background(), storage.InfoHash(h))
	if err != nil {
		t.Fatalf("Store.Transfer(%s): %v", storage.InfoHash(h), err)
	}
	return st
}

// payload is a file of random bytes and its metainfo.
type payload struct {
	Dir   string // the directory holding the file: a seeder's DataDir
	Data  []byte
	Meta  *metainfo.MetaInfo
	Hash  metainfo.Hash
	Bytes int64
}

// newPayload writes size random bytes to a temp dir and builds a v1
// metainfo for them that announces to announceURL.
func newPayload(t *testing.T, size, pieceLength int64, announceURL string) *payload {
	t.Helper()
	dir := t.TempDir()
	data := make([]byte, size)
	rand.Read(data)
	path := filepath.Join(dir, "payload.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	info := metainfo.Info{PieceLength: pieceLength}
	if err := info.BuildFromFilePath(path); err != nil {
		t.Fatalf("BuildFromFilePath: %v", err)
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		t.Fatalf("bencode info: %v", err)
	}
	mi := &metainfo.MetaInfo{Announce: announceURL, InfoBytes: infoBytes}
	return &payload{Dir: dir, Data: data, Meta: mi, Hash: mi.HashInfoBytes(), Bytes: size}
}

// tally counts the payload bytes each client read usefully, by the remote
// address they came from. It is fed by the clients' ReceivedUsefulData
// callback, which anacrolix fires exactly where it adds to a connection's
// BytesReadUsefulData, so that bytes of connections that closed mid-run
// are counted too (a PeerConn's own stats go with it).
type tally struct {
	mu    sync.Mutex
	bytes map[[2]netip.Addr]int64 // {reader, remote} -> bytes
	bad   map[string]int64        // remote addresses that did not parse
}

func newTally() *tally {
	return &tally{bytes: map[[2]netip.Addr]int64{}, bad: map[string]int64{}}
}

func (ta *tally) add(reader netip.Addr, remote fmt.Stringer, n int) {
	ap, err := netip.ParseAddrPort(remote.String())
	ta.mu.Lock()
	defer ta.mu.Unlock()
	if err != nil {
		ta.bad[remote.String()] += int64(n)
		return
	}
	ta.bytes[[2]netip.Addr{reader, ap.Addr().Unmap()}] += int64(n)
}

// snapshot copies the counts.
func (ta *tally) snapshot() (map[[2]netip.Addr]int64, map[string]int64) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return maps.Clone(ta.bytes), maps.Clone(ta.bad)
}

// peer is one BitTorrent client on its own loopback address, with one
// torrent.
type peer struct {
	IP  netip.Addr
	Cl  *torrent.Client
	Tor *torrent.Torrent
}

// peerOptions are the knobs of startPeer.
type peerOptions struct {
	Seed  bool   // serve the payload from p.Dir rather than download it
	Tally *tally // where the client counts what it reads; nil: nowhere
	// Uplink bounds what the host sends to its peers, in bytes per second,
	// as a NIC does; 0: unbounded.
	Uplink float64
	// Fabric is the network of racks the host sits in: its connections to
	// hosts of other racks also cross the two racks' shared uplinks. nil: a
	// non-blocking network.
	Fabric *fabric
}

// hostClientConfig is the anacrolix configuration of a host of a
// deployment in a private swarm, storing in dir; the in-process clients and
// the lab's client processes start from it.
func hostClientConfig(dir string) *torrent.ClientConfig {
	cfg := torrent.NewDefaultClientConfig()
	cfg.DataDir = dir
	// Hosts of a deployment upload to anyone who asks, while they download
	// and after: without Seed, anacrolix uploads only to peers that pay back,
	// and a leecher that has nothing yet starves.
	cfg.Seed = true
	cfg.NoDefaultPortForwarding = true // no UPnP: nothing leaves the test's network
	cfg.NoDHT = true
	cfg.DisablePEX = true
	cfg.DisableIPv6 = true
	cfg.DisableWebtorrent = true
	cfg.DisableWebseeds = true
	// TCP only: uTP is not what the lab's tc shapes as it shapes aria2c's.
	cfg.DisableUTP = true
	// anacrolix/torrent v1.59.1 leaks part of this per-connection budget of
	// peer request data (1 MiB by default) in these swarms, and a connection
	// whose budget is gone never uploads again: downloads then stall for
	// good. A budget above the payload size can never run out.
	cfg.MaxAllocPeerRequestDataPerConn = 1 << 30
	return cfg
}

// startPeer starts an anacrolix client bound to ip and adds p's torrent to
// it; a seeder serves p.Dir, a leecher downloads everything into a temp dir.
// It finds peers through the tracker alone, and every socket it opens
// (listener, peer dials, tracker announces) is bound to ip, so that both
// the tracker and the other clients see ip as its address. The client is
// closed when the test ends.
func startPeer(t *testing.T, ip netip.Addr, p *payload, o peerOptions) *peer {
	t.Helper()
	bound := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}}
	dir := t.TempDir()
	if o.Seed {
		dir = p.Dir
	}
	cfg := hostClientConfig(dir)
	// No built-in sockets: the built-in TCP socket dials from an unbound
	// port, to which the kernel gives the source 127.0.0.1. The client gets
	// a listener and a dialer bound to ip below instead.
	cfg.DisableTCP = true
	cfg.TrackerDialContext = bound.DialContext
	cfg.HTTPDialContext = bound.DialContext
	cfg.Slogger = slog.New(slog.DiscardHandler)
	if os.Getenv(debugEnv) != "" {
		cfg.Slogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("client", ip.String())
	}
	if o.Tally != nil {
		cfg.Callbacks.ReceivedUsefulData = append(cfg.Callbacks.ReceivedUsefulData, func(e torrent.ReceivedUsefulDataEvent) {
			o.Tally.add(ip, e.Peer.RemoteAddr, len(e.Message.Piece))
		})
	}

	ln, err := net.Listen("tcp4", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	t.Cleanup(func() { ln.Close() }) // after the client: it does not own listeners it is given
	sh := shaper{nic: newLink(o.Uplink), fab: o.Fabric}
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		t.Fatalf("client on %s: %v", ip, err)
	}
	t.Cleanup(func() {
		for _, err := range cl.Close() {
			t.Errorf("close client %s: %v", ip, err)
		}
	})
	cl.AddListener(shapedListener{ln, sh})
	cl.AddDialer(shapedDialer{bound, sh})

	// The tracker is added once the torrent is ready: a seeder's first
	// announce must already say left=0, as the next one comes a minute later.
	spec, err := torrent.TorrentSpecFromMetaInfoErr(p.Meta)
	if err != nil {
		t.Fatalf("client %s: torrent spec: %v", ip, err)
	}
	spec.Trackers = nil
	tor, _, err := cl.AddTorrentSpec(spec)
	if err != nil {
		t.Fatalf("client %s: AddTorrentSpec: %v", ip, err)
	}
	if o.Seed {
		if err := tor.VerifyDataContext(t.Context()); err != nil {
			t.Fatalf("seeder %s: VerifyDataContext: %v", ip, err)
		}
		select {
		case <-tor.Complete().On():
		case <-time.After(10 * time.Second):
			t.Fatalf("seeder %s: payload incomplete after verification (%d/%d bytes)", ip, tor.BytesCompleted(), p.Bytes)
		}
	} else {
		tor.DownloadAll()
	}
	tor.AddTrackers([][]string{{p.Meta.Announce}})
	return &peer{IP: ip, Cl: cl, Tor: tor}
}

// link is a token bucket that paces the bytes written through it: a host's
// NIC, or one direction of a top-of-rack switch's uplink. Every connection
// that crosses it shares it. A nil *link does not pace.
type link struct {
	rate  float64 // bytes per second
	burst time.Duration

	mu   sync.Mutex
	next time.Time // when the link is free again
}

func newLink(bytesPerSecond float64) *link {
	if bytesPerSecond <= 0 {
		return nil
	}
	return &link{rate: bytesPerSecond, burst: 10 * time.Millisecond}
}

// send blocks until n more bytes fit on the link.
func (u *link) send(n int) {
	if u == nil {
		return
	}
	u.mu.Lock()
	now := time.Now()
	if u.next.Before(now.Add(-u.burst)) {
		u.next = now.Add(-u.burst)
	}
	u.next = u.next.Add(time.Duration(float64(n) / u.rate * float64(time.Second)))
	at := u.next
	u.mu.Unlock()
	if d := time.Until(at); d > 0 {
		time.Sleep(d) // the link is busy: this is the transmission time, not a wait for a condition
	}
}

// fabric is the network between the racks of one swarm: every rack's hosts
// hang off its top-of-rack switch, whose uplink to the core is shared by the
// whole rack, one budget per direction. Bytes from a host of rack X to a
// host of rack Y (X != Y) leave through X's uplink ("out") and enter through
// Y's ("in"); bytes between two hosts of one rack stay on its switch and
// cross neither. The core behind the uplinks does not block. Racks are the
// third byte of 127.0.R.H; rack 0 (127.0.0.0/24, where the tracker listens)
// is outside the fabric and never paced by it. A nil *fabric is a
// non-blocking network: only the hosts' NICs pace.
type fabric struct {
	rate float64 // bytes per second, per rack and direction

	mu      sync.Mutex
	out, in map[int]*link // by rack
}

func newFabric(rackUplinkBytesPerSecond float64) *fabric {
	if rackUplinkBytesPerSecond <= 0 {
		return nil
	}
	return &fabric{rate: rackUplinkBytesPerSecond, out: map[int]*link{}, in: map[int]*link{}}
}

// path is the rack uplinks that bytes written from local to remote cross,
// in order: the sender rack's uplink out, then the receiver rack's uplink
// in. It is empty inside a rack, for an address outside 127.0.R.H with
// R > 0, and on a nil fabric.
func (f *fabric) path(local, remote net.Addr) []*link {
	if f == nil {
		return nil
	}
	from, ok1 := tcpAddr(local)
	to, ok2 := tcpAddr(remote)
	if !ok1 || !ok2 || !from.Is4() || !to.Is4() {
		return nil
	}
	rf, rt := rackOf(from), rackOf(to)
	if rf == 0 || rt == 0 || rf == rt {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	get := func(m map[int]*link, r int) *link {
		if m[r] == nil {
			m[r] = newLink(f.rate)
		}
		return m[r]
	}
	return []*link{get(f.out, rf), get(f.in, rt)}
}

// tcpAddr is the IP of a connection's end.
func tcpAddr(a net.Addr) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// shaper is a host's place in the network: its NIC and its rack's switch.
type shaper struct {
	nic *link
	fab *fabric
}

// wrap paces what c writes: through the host's NIC, then through the rack
// uplinks on the way to c's remote end.
func (s shaper) wrap(c net.Conn) net.Conn {
	var path []*link
	if s.nic != nil {
		path = append(path, s.nic)
	}
	path = append(path, s.fab.path(c.LocalAddr(), c.RemoteAddr())...)
	if len(path) == 0 {
		return c
	}
	return shapedConn{c, path}
}

// shapedConn sends every chunk through each link of its path in turn, as a
// packet crosses the host's NIC, then its rack's uplink, then the remote
// rack's. Each link paces on the sender's side, which is where TCP's
// backpressure would put the wait; every host of the swarm is shaped, so
// both directions of a connection are paced.
type shapedConn struct {
	net.Conn
	path []*link
}

func (c shapedConn) Write(b []byte) (int, error) {
	var n int
	for len(b) > 0 {
		m := min(len(b), 16<<10)
		for _, l := range c.path {
			l.send(m)
		}
		k, err := c.Conn.Write(b[:m])
		n += k
		if err != nil {
			return n, err
		}
		b = b[m:]
	}
	return n, nil
}

type shapedListener struct {
	net.Listener
	sh shaper
}

func (l shapedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.sh.wrap(c), nil
}

// shapedDialer dials peers from the host's address, through its NIC and
// its rack's uplink.
type shapedDialer struct {
	d  *net.Dialer
	sh shaper
}

func (d shapedDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, err
	}
	return d.sh.wrap(c), nil
}

func (shapedDialer) DialerNetwork() string { return "tcp4" }

// waitComplete waits until every peer holds the whole payload.
func waitComplete(t *testing.T, peers []*peer, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, p := range peers {
		select {
		case <-p.Tor.Complete().On():
		case <-deadline.C:
			var b strings.Builder
			for _, q := range peers {
				st := q.Tor.Stats()
				fmt.Fprintf(&b, "\n  %s: %d/%d bytes, %d active peers", q.IP, q.Tor.BytesCompleted(), q.Tor.Length(), st.ActivePeers)
				if os.Getenv(debugEnv) != "" {
					b.WriteString("\n")
					q.Cl.WriteStatus(&b)
				}
			}
			t.Fatalf("downloads not complete within %s:%s", timeout, b.String())
		}
	}
}

// checkContent reads the whole torrent back from p's storage and compares
// it with the payload.
func checkContent(t *testing.T, p *peer, want []byte) {
	t.Helper()
	r := p.Tor.NewReader()
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: read payload: %v", p.IP, err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: payload is %d bytes, want %d", p.IP, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: payload differs from the original at byte %d", p.IP, i)
		}
	}
}

// sortedAddrs is the keys of m in order.
func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
