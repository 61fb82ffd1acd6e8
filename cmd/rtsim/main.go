// Command rtsim is a flow-level simulation of a BitTorrent rollout across a
// data center, for sizes one machine cannot run with real clients (SPEC.md
// section 8): thousands of hosts in tens of racks, one origin seeder. The
// tracker is racktracker itself, called in process: every announce goes
// through tracker.Server's HTTP handler (query parsing, the handout policy,
// bencoding) to a storage.Store on the embedded miniredis opened with
// storage.Open, both on the simulation's clock, and the expiry pass runs on
// that clock too. Only the network and the clients are modelled. It builds
// the tracker and the store itself rather than through app.Run, whose
// listeners and background loops run on sockets and wall-clock time: the
// simulation calls the handler and the maintenance pass (Server.Maintain)
// at simulated times instead.
//
// Usage:
//
//	go run ./cmd/rtsim -racks 25 -hosts 40 -ratios 3,6
//	go run ./cmd/rtsim -racks 50 -hosts 200 -ratios 3,6 -client libtorrent
//
// -trace N prints every N simulated seconds where the bytes go: the share
// of their NICs the origin, the representatives (down; up to their own
// rack and to other racks) and the other hosts use, and the cross-rack
// inflow by sender. -redis host:port runs the store on a scratch
// redis-server instead of the embedded one.
//
// It prints, for each uplink oversubscription and handout, the payload
// copies that entered each leecher rack and the completion times (last
// host, median, the last rack's last host behind the first rack's), as a
// Markdown table. Figures are simulated seconds; the wall time it took is
// printed too.
//
// Assumptions (where it differs from real clients and networks):
//
//   - Network: every host has a NIC of -nic Mbit/s per direction; every rack
//     an uplink of hosts*nic/ratio per direction; the core does not block.
//     A transfer between two racks takes from the sender's NIC up, the
//     sender rack's uplink out, the receiver rack's uplink in and the
//     receiver's NIC down. Bandwidth is shared max-min fairly among the
//     active flows (progressive filling, flows within 5% of the current
//     bottleneck share frozen together, at most 40 rounds), recomputed every
//     -dt seconds. No latency, no TCP slow start, no protocol overhead.
//   - Pieces: the payload is cut into -piece KiB pieces. A flow moves one
//     piece from an uploader to a downloader; a downloader fetches distinct
//     pieces from each of its uploaders at once. Piece choice is rarest
//     first by the number of the downloader's neighbours that hold the
//     piece, as real clients count, ties broken at random. (An earlier
//     version counted holders in the whole swarm and broke ties alike for
//     every downloader: the hosts of a rack then all asked their
//     representative for the same pieces and had little to give each
//     other, which made the rack-aware handout look twice as slow at 1,000
//     hosts as it is.)
//     Bytes left over when a piece ends inside a step are lost (at most one
//     step per piece, the same for every handout).
//   - Choking: every host uploads to at most -slots downloaders at once; a
//     slot is refilled, as soon as its piece is done, by a random interested
//     neighbour. No tit-for-tat by default: hosts of a deployment upload to
//     anyone. With -tft a leecher chokes as aria2c does: every 10 s it
//     unchokes the 3 interested neighbours it received most from (halved
//     at every rechoke) plus one optimistic unchoke rotated every 30 s;
//     seeders still upload to anyone.
//   - Connections: each host keeps at most -conns connections. The peers an
//     announce hands out are dialled at once while both ends have room;
//     those that do not fit are forgotten. Two seeders disconnect.
//   - Clients (-client): when they announce. aria2 re-announces every
//     "min interval" it is handed and sends "completed"; anacrolix every
//     max(interval, 60 s) and never sends "completed"; libtorrent every
//     max(interval, 300 s) with "completed"; rtorrent every max(interval,
//     600 s) without it. Every leecher starts within -stagger seconds after
//     the origin seeder has announced.
//   - With -kill, each leecher rack's representatives, as the store names
//     them once 40% of a copy has entered the rack, leave: in odd racks
//     with a "stopped" announce, in even racks silently (expired later).
//
// What it does not model: disks, CPU, endgame mode, piece verification,
// request pipelining limits, uTP, peers found other than through the
// tracker (DHT and PEX are off in a data center's private torrents).
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"racktracker/internal/rollout"
	"racktracker/rackmap"
	"racktracker/storage"
	"racktracker/tracker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "rtsim: %v\n", err)
		os.Exit(1)
	}
}

// options are the parsed flags.
type options struct {
	racks, hosts int
	nicMbit      float64
	ratios       []float64
	payload      int64
	piece        int64
	handouts     []string
	client       string
	slots, conns int
	numwant      int
	dt           float64
	stagger      float64
	maxTime      float64
	seed         uint64
	kill         bool
	policy       tracker.RackPolicy
	announce     tracker.AnnounceConfig
	verbose      bool
	tft          bool
	trace        float64
	redis        string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("rtsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{policy: tracker.DefaultRackPolicy(), announce: tracker.DefaultConfig().Announce}
	fs.IntVar(&o.racks, "racks", 4, "leecher racks (the origin seeder has a rack of its own)")
	fs.IntVar(&o.hosts, "hosts", 6, "hosts per leecher rack")
	fs.Float64Var(&o.nicMbit, "nic", 40, "host NIC, Mbit/s per direction")
	ratios := fs.String("ratios", "3,6", "comma-separated rack uplink oversubscriptions (hosts*nic/uplink)")
	payload := fs.Int("payload", 64, "payload, MiB")
	piece := fs.Int("piece", 256, "piece size, KiB")
	handouts := fs.String("handouts", "local,random", "comma-separated racks.handout values")
	fs.StringVar(&o.client, "client", "aria2", "announce cadence of the clients: aria2, anacrolix, libtorrent, rtorrent")
	fs.IntVar(&o.slots, "slots", 8, "upload slots per host")
	fs.IntVar(&o.conns, "conns", 55, "connections per host")
	fs.IntVar(&o.numwant, "numwant", 50, "numwant every client sends")
	fs.Float64Var(&o.dt, "dt", 0.1, "simulation step, seconds")
	fs.Float64Var(&o.stagger, "stagger", 1, "leechers start spread over this many seconds")
	fs.Float64Var(&o.maxTime, "max-time", 3600, "give up after this many simulated seconds")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed (the same seed for every handout)")
	fs.BoolVar(&o.kill, "kill", false, "also run local handout with representatives leaving mid-transfer")
	fs.IntVar(&o.policy.RepresentativesPerRack, "representatives", o.policy.RepresentativesPerRack, "racks.representatives_per_rack")
	fs.IntVar(&o.policy.RepresentativeStall, "stall", o.policy.RepresentativeStall, "racks.representative_stall")
	fs.IntVar(&o.policy.EscapePeers, "escape", o.policy.EscapePeers, "racks.escape_peers")
	fs.DurationVar(&o.announce.Interval, "interval", o.announce.Interval, "announce.interval")
	fs.DurationVar(&o.announce.MinInterval, "min-interval", o.announce.MinInterval, "announce.min_interval")
	fs.DurationVar(&o.announce.PeerTimeout, "peer-timeout", o.announce.PeerTimeout, "announce.peer_timeout")
	fs.StringVar(&o.redis, "redis", "", "host:port of a scratch redis-server to use instead of the embedded store (faster at 10,000 hosts); every run writes a transfer of its own there")
	fs.BoolVar(&o.tft, "tft", false, "leechers choke tit-for-tat as aria2c does: every 10 s they unchoke the 3 interested neighbours they received most from, plus one optimistic unchoke rotated every 30 s (seeders upload to anyone)")
	fs.BoolVar(&o.verbose, "v", false, "print progress to stderr")
	fs.Float64Var(&o.trace, "trace", 0, "every this many simulated seconds, print to stderr where the bytes go (representatives' NICs, cross-rack inflow)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for s := range strings.SplitSeq(*ratios, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || f <= 0 {
			return o, fmt.Errorf("-ratios: bad ratio %q", s)
		}
		o.ratios = append(o.ratios, f)
	}
	o.handouts = strings.Split(*handouts, ",")
	o.payload = int64(*payload) << 20
	o.piece = int64(*piece) << 10
	switch {
	case o.racks < 1 || o.racks > 250:
		return o, errors.New("-racks: want 1 to 250")
	case o.hosts < 1 || o.hosts > 60000:
		return o, errors.New("-hosts: want 1 to 60000")
	case o.payload <= 0 || o.piece <= 0 || o.payload < o.piece:
		return o, errors.New("-payload and -piece: want a payload of at least one piece")
	case o.slots < 1 || o.conns < 1 || o.numwant < 1 || o.dt <= 0:
		return o, errors.New("-slots, -conns, -numwant and -dt must be positive")
	}
	if _, ok := cadences[o.client]; !ok {
		return o, fmt.Errorf("-client: unknown client %q", o.client)
	}
	return o, nil
}

// cadence is how a client announces: the least time between announces
// whatever the tracker says, whether it follows "min interval" rather than
// "interval", and whether it sends "completed".
type cadence struct {
	floor     float64
	useMin    bool
	completed bool
}

var cadences = map[string]cadence{
	"aria2":      {useMin: true, completed: true},
	"anacrolix":  {floor: 60},
	"libtorrent": {floor: 300, completed: true},
	"rtorrent":   {floor: 600},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if err := o.policy.Validate(); err != nil {
		return err
	}
	var results []result
	for _, ratio := range o.ratios {
		for _, ho := range o.handouts {
			res, err := simulate(ctx, o, ratio, ho, false, stderr)
			if err != nil {
				return err
			}
			fmt.Fprintln(stderr, res)
			results = append(results, res)
		}
		if o.kill {
			res, err := simulate(ctx, o, ratio, tracker.HandoutLocal, true, stderr)
			if err != nil {
				return err
			}
			fmt.Fprintln(stderr, res)
			results = append(results, res)
		}
	}
	fmt.Fprintf(stdout, "%d racks x %d hosts + origin, %g Mbit/s NICs, %d MiB in %d KiB pieces, %s clients, %d upload slots, %d connections, representatives_per_rack %d\n\n",
		o.racks, o.hosts, o.nicMbit, o.payload>>20, o.piece>>10, o.client, o.slots, o.conns, o.policy.RepresentativesPerRack)
	fmt.Fprint(stdout, table(results))
	return nil
}

// result is one simulated rollout.
type result struct {
	racks, hosts int
	ratio        float64
	handout      string
	kill         bool
	copies       []float64 // per leecher rack
	done         []float64 // per leecher that stayed, simulated seconds from the first start
	rackOf       []int
	unfinished   int
	announces    int
	failed       int
	wall         time.Duration
}

// times are the last completion, the median, and how long the last rack
// completed after the first, in simulated seconds; NaN without a completion.
func (r result) times() (last, median, spread float64) {
	last, median, spread, ok := rollout.Times(r.done, r.rackOf)
	if !ok {
		return math.NaN(), math.NaN(), math.NaN()
	}
	return last, median, spread
}

func (r result) meanCopies() float64 { return rollout.MeanCopies(r.copies) }

func (r result) String() string {
	last, med, spread := r.times()
	k := ""
	if r.kill {
		k = " (representatives leave)"
	}
	return fmt.Sprintf("%dx%d %g:1 handout=%s%s: copies mean %.2f max %.2f; last %.1fs median %.1fs rack spread %.1fs; %d unfinished; %d announces (%d failed); wall %s",
		r.racks, r.hosts, r.ratio, r.handout, k, r.meanCopies(), slices.Max(r.copies), last, med, spread, r.unfinished, r.announces, r.failed, r.wall.Round(time.Second))
}

func table(rs []result) string {
	var b strings.Builder
	b.WriteString("| hosts | uplinks | handout | copies per rack (mean / max) | last host | median | last rack behind first | wall |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		last, med, spread := r.times()
		ho := r.handout
		if r.kill {
			ho += ", representatives leave"
		}
		if r.unfinished > 0 {
			ho += fmt.Sprintf(" (%d unfinished)", r.unfinished)
		}
		fmt.Fprintf(&b, "| %d x %d | %g:1 | %s | %.2f / %.2f | %.1f s | %.1f s | %.1f s | %s |\n",
			r.racks, r.hosts, r.ratio, ho, r.meanCopies(), slices.Max(r.copies), last, med, spread, r.wall.Round(time.Second))
	}
	return b.String()
}

// epoch is when every simulation starts.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// clock is the simulation's time, which the store and the tracker read.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// host is one simulated BitTorrent client.
type host struct {
	rack   int
	addr   netip.Addr
	peerID [20]byte
	have   []uint64 // pieces held
	busy   []uint64 // pieces being fetched
	nhave  int
	avail  []int32 // per piece, how many of its neighbours hold it
	conns  map[int32]struct{}
	up     int // flows uploading
	served []int32
	// Tit-for-tat (-tft): bytes received from each neighbour, halved at
	// every rechoke, and the neighbours a leecher unchokes until the next.
	recv      map[int32]float64
	unchoked  map[int32]bool
	optimist  int32
	nextChoke float64

	started, stopped bool
	done             float64 // when it completed; -1 while leeching
	next             float64 // next announce
	event            string  // event of the next announce
	uploaded, downl  int64
}

// flow is one piece on its way from u to d.
type flow struct {
	u, d  int32
	piece int32
	rem   float64 // bytes
	rate  float64 // bytes per second
	until float64 // end of the unchoke: the pair goes on piece after piece until then
	links [4]int32
	nl    int8
}

// world is one simulated rollout.
type world struct {
	o       options
	rng     *mrand.Rand
	clk     *clock
	handler http.Handler
	srv     *tracker.Server
	store   *storage.Store
	hashEsc string
	hash    storage.InfoHash

	hosts   []*host
	byAddr  map[netip.Addr]int32
	npieces int
	words   int
	holders []int32 // per piece
	flows   []flow
	caps    []float64 // per link: host i up 2i, down 2i+1; rack r out 2N+2r, in 2N+2r+1
	cross   []float64 // bytes that entered each rack from another
	cad     cadence
	ann     int
	failed  int // announces answered with a failure reason
	killed  map[int]bool
}

func simulate(ctx context.Context, o options, ratio float64, handout string, kill bool, stderr io.Writer) (result, error) {
	start := time.Now()
	dir, err := os.MkdirTemp("", "rtsim")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	clk := &clock{t: epoch}

	cfg := tracker.DefaultConfig()
	cfg.Announce = o.announce
	cfg.Announce.NumwantMax = max(cfg.Announce.NumwantMax, o.numwant)
	if err := cfg.Validate(); err != nil {
		return result{}, err
	}
	policy := o.policy
	policy.Handout = handout
	if err := policy.Validate(); err != nil {
		return result{}, err
	}
	rcfg := rackmap.DefaultConfig()
	for r := 0; r <= o.racks; r++ {
		rcfg.Map = append(rcfg.Map, rackmap.Rack{Name: fmt.Sprintf("r%d", r), CIDRs: []string{fmt.Sprintf("10.%d.0.0/16", r)}})
	}
	m, err := rackmap.New(rcfg)
	if err != nil {
		return result{}, err
	}
	scfg := storage.DefaultConfig()
	scfg.Embedded.SnapshotPath = filepath.Join(dir, "tracker.snapshot")
	if o.redis != "" {
		scfg.Backend = storage.BackendRedis
		scfg.Redis.Addr = o.redis
	}
	store, err := storage.Open(ctx, scfg, storage.Options{Now: clk.now})
	if err != nil {
		return result{}, err
	}
	defer store.Close(context.Background())
	srv := tracker.New(cfg, policy, store, m, tracker.Options{Now: clk.now})

	w := &world{o: o, rng: mrand.New(mrand.NewPCG(o.seed, 0x5eed)), clk: clk, handler: srv.Handler(), srv: srv, store: store,
		byAddr: map[netip.Addr]int32{}, cad: cadences[o.client], killed: map[int]bool{}}
	var ih [20]byte
	rand.Read(ih[:])
	w.hash = storage.InfoHash(ih)
	w.hashEsc = url.QueryEscape(string(ih[:]))
	w.npieces = int((o.payload + o.piece - 1) / o.piece)
	w.words = (w.npieces + 63) / 64
	w.holders = make([]int32, w.npieces)

	// Hosts: the origin seeder (rack 0), then the leechers rack by rack.
	add := func(rack, j int) *host {
		h := &host{rack: rack, addr: netip.AddrFrom4([4]byte{10, byte(rack), byte(j / 250), byte(j%250 + 1)}),
			have: make([]uint64, w.words), busy: make([]uint64, w.words), avail: make([]int32, w.npieces), conns: map[int32]struct{}{}, done: -1}
		copy(h.peerID[:], fmt.Sprintf("-SM0001-%012d", len(w.hosts)))
		w.byAddr[h.addr] = int32(len(w.hosts))
		w.hosts = append(w.hosts, h)
		return h
	}
	seeder := add(0, 0)
	for p := range w.npieces {
		seeder.have[p/64] |= 1 << (p % 64)
		w.holders[p]++
	}
	seeder.nhave = w.npieces
	seeder.done = 0
	for r := 1; r <= o.racks; r++ {
		for j := range o.hosts {
			h := add(r, j)
			h.next = w.rng.Float64() * o.stagger
			h.event = "started"
		}
	}
	n := len(w.hosts)
	nic := o.nicMbit * 1e6 / 8
	up := nic * float64(o.hosts) / ratio
	w.caps = make([]float64, 2*n+2*(o.racks+1))
	for i := range n {
		w.caps[2*i], w.caps[2*i+1] = nic, nic
	}
	for r := 0; r <= o.racks; r++ {
		w.caps[2*n+2*r], w.caps[2*n+2*r+1] = up, up
	}
	w.cross = make([]float64, o.racks+1)

	// The origin seeder announces first; the leechers start after it.
	seeder.started = true
	seeder.event = "started"
	if err := w.announce(ctx, 0); err != nil {
		return result{}, err
	}

	every := max(o.announce.PeerTimeout.Seconds()/10, 1)
	nextMaint := every
	t := 0.0
	remaining := n - 1
	lastReport := time.Now()
	nextTrace := o.trace
	for remaining > 0 && t < o.maxTime {
		if err := ctx.Err(); err != nil {
			return result{}, err
		}
		clk.t = clk.t.Add(time.Duration(o.dt * float64(time.Second)))
		t += o.dt
		if t >= nextMaint {
			srv.Maintain(ctx)
			nextMaint += every
		}
		for i, h := range w.hosts {
			if !h.stopped && h.next <= t {
				h.started = true
				if err := w.announce(ctx, int32(i)); err != nil {
					return result{}, err
				}
			}
		}
		if kill {
			left, err := w.killReps(ctx)
			if err != nil {
				return result{}, err
			}
			remaining -= left
		}
		w.fill()
		w.share()
		if o.trace > 0 && t >= nextTrace {
			nextTrace += o.trace
			if err := w.traceLine(ctx, t, stderr); err != nil {
				return result{}, err
			}
		}
		remaining -= w.advance(t)
		if o.verbose && time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			fmt.Fprintf(stderr, "  t=%.1fs: %d leechers left, %d flows, %d announces\n", t, remaining, len(w.flows), w.ann)
		}
	}
	res := result{racks: o.racks, hosts: o.hosts, ratio: ratio, handout: handout, kill: kill, announces: w.ann, failed: w.failed}
	for r := 1; r <= o.racks; r++ {
		res.copies = append(res.copies, w.cross[r]/float64(o.payload))
	}
	for _, h := range w.hosts[1:] {
		if h.stopped {
			continue
		}
		if h.done < 0 {
			res.unfinished++
			continue
		}
		res.done = append(res.done, h.done)
		res.rackOf = append(res.rackOf, h.rack)
	}
	res.wall = time.Since(start)
	return res, nil
}

// announceResp is the part of an announce response rtsim reads.
type announceResp struct {
	Failure     string `bencode:"failure reason"`
	Interval    int    `bencode:"interval"`
	MinInterval int    `bencode:"min interval"`
	Peers       string `bencode:"peers"`
}

// announce sends host i's announce through the tracker's handler, connects
// it to the peers it is handed and schedules its next announce.
func (w *world) announce(ctx context.Context, i int32) error {
	h := w.hosts[i]
	left := int64(w.npieces-h.nhave) * w.o.piece
	left = min(left, w.o.payload)
	q := fmt.Sprintf("info_hash=%s&peer_id=%s&port=6881&uploaded=%d&downloaded=%d&left=%d&compact=1&numwant=%d",
		w.hashEsc, url.QueryEscape(string(h.peerID[:])), h.uploaded, h.downl, left, w.o.numwant)
	if h.event != "" {
		q += "&event=" + h.event
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/announce?"+q, nil)
	req.RemoteAddr = netip.AddrPortFrom(h.addr, 6881).String()
	rec := httptest.NewRecorder()
	w.handler.ServeHTTP(rec, req)
	w.ann++
	var resp announceResp
	if err := bencode.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		return fmt.Errorf("announce of %s: %w (%q)", h.addr, err, rec.Body.String())
	}
	if resp.Failure != "" {
		// As a client does: try again at the interval the failure carries
		// (a loaded machine can make the store miss its deadline).
		w.failed++
		h.next = w.now() + max(float64(resp.MinInterval), 1)
		return nil
	}
	stopping := h.event == "stopped"
	h.event = ""
	now := w.now()
	wait := float64(resp.Interval)
	if w.cad.useMin && resp.MinInterval > 0 {
		wait = float64(resp.MinInterval)
	}
	h.next = now + max(wait, w.cad.floor, 1)
	if stopping {
		return nil
	}
	for p := 0; p+6 <= len(resp.Peers); p += 6 {
		a := netip.AddrFrom4([4]byte([]byte(resp.Peers[p : p+4])))
		j, ok := w.byAddr[a]
		if !ok || j == i {
			continue
		}
		w.connect(i, j)
	}
	return nil
}

// connect joins i and j when both have room and either still leeches.
func (w *world) connect(i, j int32) {
	a, b := w.hosts[i], w.hosts[j]
	if b.stopped || !b.started {
		return // the dial fails: nobody listens there
	}
	if _, ok := a.conns[j]; ok {
		return
	}
	if len(a.conns) >= w.o.conns || len(b.conns) >= w.o.conns {
		return
	}
	if a.done >= 0 && b.done >= 0 {
		return
	}
	a.conns[j] = struct{}{}
	b.conns[i] = struct{}{}
	w.see(a, b, 1)
	w.see(b, a, 1)
}

// see adds (d = 1) or removes (d = -1) the pieces b holds to a's count of
// what its neighbours hold.
func (w *world) see(a, b *host, d int32) {
	for wi, word := range b.have {
		for word != 0 {
			a.avail[wi*64+bits.TrailingZeros64(word)] += d
			word &= word - 1
		}
	}
}

// pick is the rarest piece u holds that d lacks and is not fetching, or -1:
// rarest among d's neighbours, as real clients count, ties broken at
// random.
func (w *world) pick(u, d *host) int {
	best, bestN := -1, int32(math.MaxInt32)
	off := w.rng.IntN(w.words)
	rot := w.rng.IntN(64)
	for k := range w.words {
		wi := (off + k) % w.words
		c := bits.RotateLeft64(u.have[wi]&^d.have[wi]&^d.busy[wi], -rot)
		for c != 0 {
			b := (bits.TrailingZeros64(c) + rot) % 64
			c &= c - 1
			p := wi*64 + b
			if n := d.avail[p]; n < bestN {
				best, bestN = p, n
			}
		}
	}
	return best
}

// fill gives every free upload slot a flow to a random interested neighbour.
func (w *world) fill() {
	n := len(w.hosts)
	order := w.rng.Perm(n)
	cands := make([]int32, 0, w.o.conns)
	for _, ui := range order {
		u := w.hosts[ui]
		if u.stopped || u.up >= w.o.slots || u.nhave == 0 || len(u.conns) == 0 {
			continue
		}
		cands = cands[:0]
		for j := range u.conns {
			cands = append(cands, j)
		}
		slices.Sort(cands) // map order is random per process; the seed must decide
		w.rng.Shuffle(len(cands), func(a, b int) { cands[a], cands[b] = cands[b], cands[a] })
		tft := w.o.tft && u.done < 0
		if tft {
			w.rechoke(u, cands)
		}
		for _, di := range cands {
			if u.up >= w.o.slots {
				break
			}
			if tft && !u.unchoked[di] {
				continue
			}
			d := w.hosts[di]
			if d.done >= 0 || d.stopped || slices.Contains(u.served, di) {
				continue
			}
			p := w.pick(u, d)
			if p < 0 {
				continue
			}
			f := flow{u: int32(ui), d: di, piece: int32(p), rem: w.pieceBytes(p), until: w.now() + rechoke}
			f.links[0], f.links[1] = int32(2*ui), int32(2*int(di)+1)
			f.nl = 2
			if u.rack != d.rack {
				f.links[2], f.links[3] = int32(2*n+2*u.rack), int32(2*n+2*d.rack+1)
				f.nl = 4
			}
			d.busy[p/64] |= 1 << (p % 64)
			u.up++
			u.served = append(u.served, di)
			w.flows = append(w.flows, f)
		}
	}
}

// rechoke recomputes, every 10 s, which neighbours a leecher u unchokes
// under -tft: the 3 interested ones it received most from, plus one
// optimistic unchoke chosen at random every 30 s.
func (w *world) rechoke(u *host, cands []int32) {
	now := w.now()
	if u.unchoked != nil && now < u.nextChoke {
		return
	}
	rotate := u.unchoked == nil || math.Mod(u.nextChoke, 30) < rechoke
	u.nextChoke = now + rechoke
	interested := cands[:0:0]
	for _, j := range cands {
		d := w.hosts[j]
		if d.done < 0 && !d.stopped && w.pick(u, d) >= 0 {
			interested = append(interested, j)
		}
	}
	slices.SortStableFunc(interested, func(a, b int32) int {
		ra, rb := u.recv[a], u.recv[b]
		switch {
		case ra > rb:
			return -1
		case ra < rb:
			return 1
		}
		return 0
	})
	u.unchoked = map[int32]bool{}
	for _, j := range interested[:min(3, len(interested))] {
		u.unchoked[j] = true
	}
	if rotate || u.unchoked[u.optimist] {
		u.optimist = -1
		var rest []int32
		for _, j := range interested {
			if !u.unchoked[j] {
				rest = append(rest, j)
			}
		}
		if len(rest) > 0 {
			u.optimist = rest[w.rng.IntN(len(rest))]
		}
	}
	if u.optimist >= 0 {
		u.unchoked[u.optimist] = true
	}
	for j := range u.recv {
		u.recv[j] /= 2
	}
}

// rechoke is how long, in seconds, an uploader keeps serving a downloader
// piece after piece before the slot goes to a random neighbour again, as
// real clients rechoke every 10 seconds.
const rechoke = 10

func (w *world) pieceBytes(p int) float64 {
	return float64(min(w.o.piece, w.o.payload-int64(p)*w.o.piece))
}

func (w *world) now() float64 { return w.clk.t.Sub(epoch).Seconds() }

// share sets every flow's rate: max-min fair over the links, by
// progressive filling.
func (w *world) share() {
	rem := slices.Clone(w.caps)
	cnt := make([]int32, len(w.caps))
	for i := range w.flows {
		f := &w.flows[i]
		f.rate = -1
		for _, l := range f.links[:f.nl] {
			cnt[l]++
		}
	}
	left := len(w.flows)
	for round := 0; left > 0; round++ {
		minShare := math.Inf(1)
		for l, c := range cnt {
			if c > 0 {
				minShare = min(minShare, rem[l]/float64(c))
			}
		}
		limit := minShare * 1.05
		if round >= 40 {
			limit = math.Inf(1) // the rest at their current share: still feasible
		}
		var frozen []int
		for i := range w.flows {
			f := &w.flows[i]
			if f.rate >= 0 {
				continue
			}
			s := math.Inf(1)
			for _, l := range f.links[:f.nl] {
				s = min(s, rem[l]/float64(cnt[l]))
			}
			if s <= limit {
				f.rate = s
				frozen = append(frozen, i)
			}
		}
		for _, i := range frozen {
			f := &w.flows[i]
			for _, l := range f.links[:f.nl] {
				rem[l] = max(rem[l]-f.rate, 0)
				cnt[l]--
			}
		}
		left -= len(frozen)
	}
}

// advance moves every flow's bytes for one step and returns how many
// leechers completed.
func (w *world) advance(t float64) int {
	completed := 0
	kept := w.flows[:0]
	for _, f := range w.flows {
		u, d := w.hosts[f.u], w.hosts[f.d]
		budget := f.rate * w.o.dt // bytes this flow may move in the step
		var finished bool
		for {
			moved := min(budget, f.rem)
			f.rem -= moved
			budget -= moved
			u.uploaded += int64(moved)
			d.downl += int64(moved)
			if w.o.tft {
				if d.recv == nil {
					d.recv = map[int32]float64{}
				}
				d.recv[f.u] += moved
			}
			if u.rack != d.rack {
				w.cross[d.rack] += moved
			}
			if f.rem > 0.5 {
				break
			}
			p := int(f.piece)
			d.busy[p/64] &^= 1 << (p % 64)
			if d.have[p/64]&(1<<(p%64)) == 0 {
				d.have[p/64] |= 1 << (p % 64)
				d.nhave++
				w.holders[p]++
				for j := range d.conns {
					w.hosts[j].avail[p]++
				}
			}
			// The pair goes on with the next piece, in the same step with
			// what is left of it, until its unchoke ends.
			next := -1
			if t < f.until && d.nhave < w.npieces {
				next = w.pick(u, d)
			}
			if next < 0 {
				finished = true
				break
			}
			f.piece = int32(next)
			f.rem = w.pieceBytes(next)
			d.busy[next/64] |= 1 << (next % 64)
		}
		if !finished {
			kept = append(kept, f)
			continue
		}
		u.up--
		u.served = slices.DeleteFunc(u.served, func(x int32) bool { return x == f.d })
		if d.nhave == w.npieces && d.done < 0 {
			d.done = t
			completed++
			if w.cad.completed {
				d.event = "completed"
				d.next = t
			}
			for j := range d.conns {
				if w.hosts[j].done >= 0 {
					w.disconnect(f.d, j)
				}
			}
		}
	}
	w.flows = kept
	return completed
}

func (w *world) disconnect(i, j int32) {
	a, b := w.hosts[i], w.hosts[j]
	if _, ok := a.conns[j]; !ok {
		return
	}
	delete(a.conns, j)
	delete(b.conns, i)
	w.see(a, b, -1)
	w.see(b, a, -1)
}

// leave takes host i out of the swarm: its connections and flows end.
func (w *world) leave(i int32) {
	h := w.hosts[i]
	h.stopped = true
	for j := range h.conns {
		w.disconnect(i, j)
	}
	kept := w.flows[:0]
	for _, f := range w.flows {
		if f.u != i && f.d != i {
			kept = append(kept, f)
			continue
		}
		u, d := w.hosts[f.u], w.hosts[f.d]
		u.up--
		u.served = slices.DeleteFunc(u.served, func(x int32) bool { return x == f.d })
		d.busy[f.piece/64] &^= 1 << (f.piece % 64)
	}
	w.flows = kept
}

// killReps makes each leecher rack's representatives leave once 40% of a
// copy has entered the rack: with "stopped" in odd racks, silently in even
// ones. It returns how many leechers left.
func (w *world) killReps(ctx context.Context) (int, error) {
	gone := 0
	var st storage.TransferStats
	read := false
	for r := 1; r <= w.o.racks; r++ {
		if w.killed[r] || w.cross[r] < 0.4*float64(w.o.payload) {
			continue
		}
		if !read {
			var err error
			if st, err = w.store.Transfer(ctx, w.hash); err != nil {
				return gone, err
			}
			read = true
		}
		w.killed[r] = true
		for _, rs := range st.Racks {
			if rs.Rack != fmt.Sprintf("r%d", r) {
				continue
			}
			for _, p := range rs.Representatives {
				ap, err := netip.ParseAddrPort(p)
				if err != nil {
					continue
				}
				i, ok := w.byAddr[ap.Addr()]
				if !ok || w.hosts[i].done >= 0 || w.hosts[i].stopped {
					continue
				}
				if r%2 == 1 {
					w.hosts[i].event = "stopped"
					if err := w.announce(ctx, i); err != nil {
						return gone, err
					}
				}
				w.leave(i)
				gone++
			}
		}
	}
	return gone, nil
}

// traceLine prints where the bytes go at simulated time t: the current
// rates of the origin, the representatives (down, up to their own rack, up
// to other racks) and the other hosts, and the cross-rack inflow.
func (w *world) traceLine(ctx context.Context, t float64, out io.Writer) error {
	st, err := w.store.Transfer(ctx, w.hash)
	if err != nil {
		return err
	}
	isRep := map[int32]bool{}
	for _, rs := range st.Racks {
		for _, p := range rs.Representatives {
			if ap, err := netip.ParseAddrPort(p); err == nil {
				if i, ok := w.byAddr[ap.Addr()]; ok {
					isRep[i] = true
				}
			}
		}
	}
	var origin, repDown, repUpLocal, repUpRemote, otherUpLocal, otherUpRemote, cross float64
	var crossFromOrigin, crossFromReps, crossFromSeeders, crossIntoNonReps float64
	for _, f := range w.flows {
		u, d := w.hosts[f.u], w.hosts[f.d]
		remote := u.rack != d.rack
		if remote {
			cross += f.rate
			switch {
			case f.u == 0:
				crossFromOrigin += f.rate
			case isRep[f.u]:
				crossFromReps += f.rate
			case u.done >= 0:
				crossFromSeeders += f.rate
			}
			if !isRep[f.d] {
				crossIntoNonReps += f.rate
			}
		}
		if isRep[f.d] {
			repDown += f.rate
		}
		switch {
		case f.u == 0:
			origin += f.rate
		case isRep[f.u] && remote:
			repUpRemote += f.rate
		case isRep[f.u]:
			repUpLocal += f.rate
		case remote:
			otherUpRemote += f.rate
		default:
			otherUpLocal += f.rate
		}
	}
	nic := w.o.nicMbit * 1e6 / 8
	nr := float64(max(len(isRep), 1))
	var repConnsRemote, repConnsLocal, repHave, repSeed float64
	for i := range isRep {
		h := w.hosts[i]
		for j := range h.conns {
			if w.hosts[j].rack != h.rack {
				repConnsRemote++
			} else {
				repConnsLocal++
			}
		}
		repHave += float64(h.nhave) / float64(w.npieces)
		if h.done >= 0 {
			repSeed++
		}
	}
	// Rep pairs across racks: connected, the uploader has a piece the
	// downloader lacks (interesting), and with a flow.
	var pairs, interesting, flowing int
	active := map[[2]int32]bool{}
	for _, f := range w.flows {
		active[[2]int32{f.u, f.d}] = true
	}
	for i := range isRep {
		h := w.hosts[i]
		for j := range h.conns {
			if !isRep[j] || w.hosts[j].rack == h.rack {
				continue
			}
			pairs++
			u := w.hosts[j]
			for k := range w.words {
				if u.have[k]&^h.have[k] != 0 {
					interesting++
					break
				}
			}
			if active[[2]int32{j, i}] {
				flowing++
			}
		}
	}
	var nrHave, nrMin float64 = 0, 1
	var nrN int
	for i, h := range w.hosts[1:] {
		if isRep[int32(i+1)] {
			continue
		}
		f := float64(h.nhave) / float64(w.npieces)
		nrHave += f
		nrMin = min(nrMin, f)
		nrN++
	}
	// The slowest representative: its connections and what flows in.
	var slowRep int32 = -1
	for i := range isRep {
		if slowRep < 0 || w.hosts[i].nhave < w.hosts[slowRep].nhave {
			slowRep = i
		}
	}
	if slowRep >= 0 {
		h := w.hosts[slowRep]
		var remote, in, inRemote int
		for j := range h.conns {
			if w.hosts[j].rack != h.rack {
				remote++
			}
		}
		for _, f := range w.flows {
			if f.d == slowRep {
				in++
				if w.hosts[f.u].rack != h.rack {
					inRemote++
				}
			}
		}
		fmt.Fprintf(out, "  slowest representative %s: have %.2f, %d connections (%d remote), %d flows in (%d remote)\n",
			h.addr, float64(h.nhave)/float64(w.npieces), len(h.conns), remote, in, inRemote)
	}
	// The slowest leecher: its connections and what flows into it.
	slow := int32(-1)
	for i, h := range w.hosts[1:] {
		if h.done < 0 && !h.stopped && (slow < 0 || h.nhave < w.hosts[slow].nhave) {
			slow = int32(i + 1)
		}
	}
	if slow >= 0 {
		h := w.hosts[slow]
		var seeders, inflows int
		for j := range h.conns {
			if w.hosts[j].done >= 0 {
				seeders++
			}
		}
		for _, f := range w.flows {
			if f.d == slow {
				inflows++
			}
		}
		fmt.Fprintf(out, "  slowest leecher %s (rack %d, rep %v): have %.2f, %d connections (%d seeders), %d flows in, next announce at %.0f\n",
			h.addr, h.rack, isRep[slow], float64(h.nhave)/float64(w.npieces), len(h.conns), seeders, inflows, h.next)
	}
	fmt.Fprintf(out, "  non-reps have mean %.2f min %.2f\n", nrHave/float64(max(nrN, 1)), nrMin)
	fmt.Fprintf(out, "  rep<-rep pairs %d, interesting %d, flowing %d; flows %d\n", pairs, interesting, flowing, len(w.flows))
	done := 0
	for _, h := range w.hosts[1:] {
		if h.done >= 0 {
			done++
		}
	}
	fmt.Fprintf(out, "t=%5.1f done=%d reps=%d (seeding %.0f, have %.2f, conns remote %.1f local %.1f) | NIC share: origin up %.2f; rep down %.2f, rep up local %.2f remote %.2f; others up local %.2f remote %.2f | cross %.1f NICs (origin %.1f reps %.1f seeders %.1f; into non-reps %.1f)\n",
		t, done, len(isRep), repSeed, repHave/nr, repConnsRemote/nr, repConnsLocal/nr, origin/nic, repDown/nr/nic, repUpLocal/nr/nic, repUpRemote/nr/nic,
		otherUpLocal/float64(len(w.hosts)-1-len(isRep))/nic, otherUpRemote/float64(len(w.hosts)-1-len(isRep))/nic,
		cross/nic, crossFromOrigin/nic, crossFromReps/nic, crossFromSeeders/nic, crossIntoNonReps/nic)
	return nil
}
