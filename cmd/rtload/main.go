// Command rtload measures announce throughput and latency under load from
// many hosts (SPEC.md section 8). The tracker runs in a child process, one
// per storage backend: rtload starts its own executable again, and the child
// runs app.Run, the startup path the racktracker binary runs (background
// loops included), on the default config with only the listen address, the
// rack map and the storage section set by rtload, and a hello-world handler
// added beside the tracker's. rtload drives it from simulated hosts, each
// with its own loopback source address and one keep-alive connection, as
// real clients have. The machines it runs on are
// shared and noisy, so besides raw figures it reports ratios against
// baselines measured in the same run, by the same clients, against the
// same server: GET /rtload/hello (a hello-world handler beside the
// tracker's, the headline baseline) and GET /healthz (one storage PING).
// CPU time per request of the tracker process and of the redis-server
// rtload started comes from /proc.
//
// Usage:
//
//	go run ./cmd/rtload -duration 5s
//	go run ./cmd/rtload -hosts 200 -requests 20000 -backends embedded -json
//	go run ./cmd/rtload -burst -backends redis
//
// Flags:
//
//	-hosts N         simulated hosts (default 1000)
//	-racks R         racks the hosts are spread over, at most 255 (default 10)
//	-transfers T     transfers every host takes part in (default 4)
//	-concurrency C   concurrent workers; each owns every C-th host, so a
//	                 host never has two requests in flight (default 64)
//	-duration D      total length of each measured phase (default 10s)
//	-requests K      also stop each phase after K requests in total; 0
//	                 means no count bound (default 0)
//	-burst           instead of -duration: in each round, every (host,
//	                 transfer) pair announces started, periodic, completed,
//	                 periodic, stopped; hello and healthz send as many
//	                 requests. Defaults then to 1000 hosts, 20 racks, 10
//	                 transfers (50,000 announces a round)
//	-rounds N        rounds of -burst (default 3)
//	-snapshot-interval D  the embedded store's snapshot interval (default:
//	                 the product's default)
//	-backends LIST   comma-separated: embedded, redis, or auto (default
//	                 auto: embedded, plus redis when redis-server is on PATH
//	                 or -redis-addr is given)
//	-redis-addr A    a loopback Redis to use instead of starting
//	                 redis-server; rtload writes tracker keys into it, so
//	                 give it a scratch one (its CPU is not reported)
//	-redis-db N      database number on -redis-addr (default 0)
//	-json            print the report as JSON instead of a table
//	-cpuprofile P    write each tracker process' CPU profile, of its whole
//	                 life, to P-<backend> (for go tool pprof)
//
// Addresses: host i (from 0) is in rack r = i mod R + 1 and is the j = i div
// R-th host of its rack; it sends from 127.K.r.H with K = j div 250 and
// H = j mod 250 + 1. The rack map gives rack "r<r>" the CIDRs 127.K.r.0/24.
// The third octet is the rack, so a rack with more than 250 hosts spills into
// the next second octet rather than into another rack's /24. The tracker
// listens on 127.0.0.1, which no simulated host uses.
//
// Phases: for each backend, a hello baseline, a healthz baseline and the
// announces. Every backend's tracker runs from the start, and the phases
// take turns (of about a second, or of one burst) rather than running one
// after another, in reverse order every other round, so that a ratio's two
// sides share whatever else the machine was doing. Before the first turn,
// each host asks each tracker GET /healthz once (not measured), which opens
// its connection.
//
// Announces (without -burst): a host's first announce of a transfer is
// event=started; later ones lower left by a tenth of the size, send
// event=completed once it reaches 0, then plain updates. Every tenth host
// seeds from the start. A response other than 200, a bencoded failure
// reason or a body that is not a dictionary counts as a failure; rtload
// exits 1 when more than 1% of a phase's requests fail.
//
// The load generator shares the machine's cores with the tracker (and with
// redis-server), which is one more reason to read the ratios rather than the
// absolute rates; CPU per request is the tracker's own, whatever the load
// generator costs.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"racktracker/rackmap"
	"racktracker/storage"
	"racktracker/storage/storagetest"
)

func main() {
	if raw, ok := os.LookupEnv(serveEnv); ok {
		if err := serveChild(raw, os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "rtload tracker: %v\n", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "rtload: %v\n", err)
		os.Exit(1)
	}
}

// Fixed shape of the simulated load.
const (
	hostsPerOctet  = 250               // H runs 1..250 in 127.K.r.H
	transferSize   = 1 << 30           // bytes of each simulated payload
	leftStep       = transferSize / 10 // what a leecher gets between announces
	seederEvery    = 10                // every tenth host seeds from the start
	peerPort       = 6881              // the port every simulated host announces
	requestTimeout = 10 * time.Second  // one request, so a stuck tracker cannot hang the run
	warmupLimit    = time.Minute       // for the warm-up, which ends when every host has asked once
	maxFailRate    = 0.01              // above this, the run fails
	shutdownWait   = 10 * time.Second  // HTTP drain and store close at the end of a backend
	keepReasons    = 5                 // distinct failure texts kept per phase
	bodyLimit      = 64 << 10          // bytes of a response read
)

// options are the parsed flags.
type options struct {
	hosts, racks, transfers, concurrency int
	duration                             time.Duration
	requests                             int64
	backends                             []string
	redisAddr                            string
	redisDB                              int
	json                                 bool
	burst                                bool
	rounds                               int
	snapshotInterval                     time.Duration
	cpuProfile                           string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("rtload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.hosts, "hosts", 1000, "simulated hosts, each with its own loopback address")
	fs.IntVar(&o.racks, "racks", 10, "racks the hosts are spread over (1..255)")
	fs.IntVar(&o.transfers, "transfers", 4, "transfers every host takes part in")
	fs.IntVar(&o.concurrency, "concurrency", 64, "concurrent workers")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "total length of each measured phase")
	fs.Int64Var(&o.requests, "requests", 0, "also stop each phase after this many requests in total (0: no count bound)")
	backends := fs.String("backends", "auto", "comma-separated backends: embedded, redis, or auto")
	fs.StringVar(&o.redisAddr, "redis-addr", "", "loopback address of a scratch Redis to use instead of starting redis-server")
	fs.IntVar(&o.redisDB, "redis-db", 0, "database number on -redis-addr")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.BoolVar(&o.burst, "burst", false, "every (host, transfer) pair through started, periodic, completed, periodic, stopped, per round")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of -burst")
	fs.DurationVar(&o.snapshotInterval, "snapshot-interval", 0, "embedded store's snapshot interval (0: the default)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write each tracker process' CPU profile to this path, suffixed -<backend>")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.burst {
		// The burst's shape, unless a flag says otherwise.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["hosts"] {
			o.hosts = 1000
		}
		if !set["racks"] {
			o.racks = 20
		}
		if !set["transfers"] {
			o.transfers = 10
		}
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var errs []error
	if o.hosts < 1 {
		errs = append(errs, fmt.Errorf("-hosts: must be at least 1, got %d", o.hosts))
	}
	if o.racks < 1 || o.racks > 255 {
		errs = append(errs, fmt.Errorf("-racks: must be 1..255, got %d", o.racks))
	}
	if o.racks >= 1 && o.hosts >= 1 && (o.hosts+o.racks-1)/o.racks > hostsPerOctet*256 {
		errs = append(errs, fmt.Errorf("-hosts: %d hosts over %d racks do not fit in 127.0.0.0/8", o.hosts, o.racks))
	}
	if o.transfers < 1 {
		errs = append(errs, fmt.Errorf("-transfers: must be at least 1, got %d", o.transfers))
	}
	if o.concurrency < 1 {
		errs = append(errs, fmt.Errorf("-concurrency: must be at least 1, got %d", o.concurrency))
	}
	if o.duration <= 0 {
		errs = append(errs, fmt.Errorf("-duration: must be positive, got %s", o.duration))
	}
	if o.rounds < 1 {
		errs = append(errs, fmt.Errorf("-rounds: must be at least 1, got %d", o.rounds))
	}
	if o.snapshotInterval < 0 {
		errs = append(errs, fmt.Errorf("-snapshot-interval: must not be negative, got %s", o.snapshotInterval))
	}
	if o.requests < 0 {
		errs = append(errs, fmt.Errorf("-requests: must not be negative, got %d", o.requests))
	}
	if o.redisDB < 0 {
		errs = append(errs, fmt.Errorf("-redis-db: must not be negative, got %d", o.redisDB))
	}
	if o.redisAddr != "" {
		// Traffic never leaves the machine: refuse anything but a loopback IP.
		ap, err := netip.ParseAddrPort(o.redisAddr)
		if err != nil || !ap.Addr().IsLoopback() {
			errs = append(errs, fmt.Errorf("-redis-addr: want a loopback ip:port such as 127.0.0.1:6379, got %q", o.redisAddr))
		}
	}
	for name := range strings.SplitSeq(*backends, ",") {
		name = strings.TrimSpace(name)
		switch name {
		case "auto":
			o.backends = append(o.backends, storage.BackendEmbedded)
			if o.redisAddr != "" {
				o.backends = append(o.backends, storage.BackendRedis)
			} else if _, err := exec.LookPath("redis-server"); err == nil {
				o.backends = append(o.backends, storage.BackendRedis)
			} else {
				fmt.Fprintln(stderr, "rtload: redis-server not on PATH; measuring the embedded backend only")
			}
		case storage.BackendEmbedded, storage.BackendRedis:
			o.backends = append(o.backends, name)
		default:
			errs = append(errs, fmt.Errorf("-backends: unknown backend %q (want embedded, redis or auto)", name))
		}
	}
	slices.Sort(o.backends)
	o.backends = slices.Compact(o.backends)
	return o, errors.Join(errs...)
}

// Report is the whole result, as -json prints it.
type Report struct {
	Hosts       int     `json:"hosts"`
	Racks       int     `json:"racks"`
	Transfers   int     `json:"transfers"`
	Concurrency int     `json:"concurrency"`
	Duration    string  `json:"duration,omitempty"`
	Requests    int64   `json:"requests,omitempty"`
	Burst       bool    `json:"burst,omitempty"`
	Rounds      int     `json:"rounds"`
	GOMAXPROCS  int     `json:"gomaxprocs"`
	Backends    []Bench `json:"backends"`
	// RedisPerEmbeddedAnnounce is the redis backend's announce throughput
	// over the embedded one's, when both ran.
	RedisPerEmbeddedAnnounce *float64 `json:"redis_per_embedded_announce_throughput,omitempty"`
}

// Bench is one backend's phases and their ratios.
type Bench struct {
	Backend  string `json:"backend"`
	Hello    Phase  `json:"hello"`
	Healthz  Phase  `json:"healthz"`
	Announce Phase  `json:"announce"`
	// AnnouncePerHello is announce requests/s over hello-world requests/s:
	// the headline figure.
	AnnouncePerHello float64 `json:"announce_per_hello_throughput"`
	// ThroughputRatio is announce requests/s over healthz requests/s.
	ThroughputRatio float64 `json:"announce_per_healthz_throughput"`
	// P50Ratio is announce p50 latency over healthz p50 latency.
	P50Ratio float64 `json:"announce_per_healthz_p50"`
	// P99Ratio is announce p99 latency over healthz p99 latency.
	P99Ratio float64 `json:"announce_per_healthz_p99"`
}

// Phase is one measured stretch of requests.
type Phase struct {
	Requests  int64   `json:"requests"`
	Failures  int64   `json:"failures"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	P50ms     float64 `json:"p50_ms"`
	P90ms     float64 `json:"p90_ms"`
	P99ms     float64 `json:"p99_ms"`
	Maxms     float64 `json:"max_ms"`
	// TrackerCPUus and RedisCPUus are the CPU time (user and system, from
	// /proc) the tracker process and the redis-server rtload started used
	// per request of the phase, in microseconds.
	TrackerCPUus float64 `json:"tracker_cpu_us_per_request"`
	RedisCPUus   float64 `json:"redis_cpu_us_per_request,omitempty"`
	// Reasons counts up to a few distinct failure texts.
	Reasons map[string]int64 `json:"failure_reasons,omitempty"`
}

// failRate is the share of requests that failed.
func (p Phase) failRate() float64 {
	if p.Requests == 0 {
		return 0
	}
	return float64(p.Failures) / float64(p.Requests)
}

// sliceLen is how long one turn of a phase lasts before the next phase
// takes over. Phases take turns rather than running one after another, so
// that a baseline and what it is compared with share the same noise from
// the rest of the machine.
const sliceLen = time.Second

// run is the whole program: it starts a tracker per backend, measures them
// in turns, prints the report, and fails when a phase failed too often.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	hosts := newHosts(o.hosts, o.racks, o.transfers)
	defer hosts.close()
	tmp, err := os.MkdirTemp("", "rtload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var targets []*target
	defer func() {
		for _, t := range slices.Backward(targets) {
			err = errors.Join(err, t.stop())
		}
	}()
	for _, backend := range o.backends {
		t, serr := startTarget(ctx, o, backend, hosts, tmp)
		if serr != nil {
			return fmt.Errorf("%s backend: %w", backend, serr)
		}
		targets = append(targets, t)
	}

	rounds := o.rounds
	if o.burst {
		fmt.Fprintf(stderr, "rtload: %s: hello, healthz and a burst of %d announces, in %d rounds\n",
			strings.Join(o.backends, " and "), burstSteps*o.hosts*o.transfers, rounds)
	} else {
		rounds = max(1, int((o.duration+sliceLen-1)/sliceLen))
		fmt.Fprintf(stderr, "rtload: %s: hello, healthz and announce, %s each, in %d turns\n",
			strings.Join(o.backends, " and "), o.duration, rounds)
	}
	if err := measure(ctx, o, targets, rounds); err != nil {
		return err
	}

	rep := Report{
		Hosts: o.hosts, Racks: o.racks, Transfers: o.transfers, Concurrency: o.concurrency,
		Requests: o.requests, Burst: o.burst, Rounds: rounds, GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	if !o.burst {
		rep.Duration = o.duration.String()
	}
	var emb, red *Bench
	for _, t := range targets {
		b := Bench{Backend: t.backend, Hello: t.phases[helloPhase].phase(), Healthz: t.phases[healthzPhase].phase(), Announce: t.phases[announcePhase].phase()}
		b.AnnouncePerHello = ratio(b.Announce.PerSecond, b.Hello.PerSecond)
		b.ThroughputRatio = ratio(b.Announce.PerSecond, b.Healthz.PerSecond)
		b.P50Ratio = ratio(b.Announce.P50ms, b.Healthz.P50ms)
		b.P99Ratio = ratio(b.Announce.P99ms, b.Healthz.P99ms)
		rep.Backends = append(rep.Backends, b)
	}
	for i := range rep.Backends {
		switch rep.Backends[i].Backend {
		case storage.BackendEmbedded:
			emb = &rep.Backends[i]
		case storage.BackendRedis:
			red = &rep.Backends[i]
		}
	}
	if emb != nil && red != nil {
		r := ratio(red.Announce.PerSecond, emb.Announce.PerSecond)
		rep.RedisPerEmbeddedAnnounce = &r
	}

	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := printTable(stdout, rep); err != nil {
		return err
	}
	var errs []error
	for _, b := range rep.Backends {
		for name, p := range map[string]Phase{"hello": b.Hello, "healthz": b.Healthz, "announce": b.Announce} {
			if p.failRate() > maxFailRate {
				errs = append(errs, fmt.Errorf("%s %s: %d of %d requests failed (%.1f%%, limit %.0f%%)",
					b.Backend, name, p.Failures, p.Requests, 100*p.failRate(), 100*maxFailRate))
			}
		}
	}
	return errors.Join(errs...)
}

// measure runs every phase of every target in rounds. Each round gives
// every phase one turn; odd rounds go in reverse order, so that no phase
// always follows the same one. A turn lasts o.duration/rounds (and at most
// an even share of o.requests); with -burst, an announce turn takes every
// (host, transfer) pair through its whole lifecycle, and the other phases
// send as many requests.
func measure(ctx context.Context, o options, targets []*target, rounds int) error {
	type turn struct {
		t    *target
		kind int
	}
	var order []turn
	for _, t := range targets {
		order = append(order, turn{t, helloPhase}, turn{t, healthzPhase}, turn{t, announcePhase})
	}
	per := o.duration / time.Duration(rounds)
	for r := range rounds {
		for i := range order {
			tn := order[i]
			if r%2 == 1 {
				tn = order[len(order)-1-i]
			}
			acc := &tn.t.phases[tn.kind]
			limit := int64(0)
			deadline := per
			if o.burst {
				limit = int64(burstSteps * o.hosts * o.transfers)
				deadline = 0
			} else if o.requests > 0 {
				// An even share of what is left, so that a count bound
				// still spreads over every round.
				left := o.requests - int64(len(acc.lat))
				limit = (left + int64(rounds-r) - 1) / int64(rounds-r)
				if limit <= 0 {
					continue
				}
			}
			l := &load{hosts: tn.t.hosts, target: tn.t, kind: tn.kind, workers: o.concurrency, limit: limit, deadline: deadline, burst: o.burst}
			cpu0, rcpu0 := cpuTime(tn.t.tr.pid), tn.t.redisCPU()
			res := l.run(ctx)
			res.cpu, res.redisCPU = cpuTime(tn.t.tr.pid)-cpu0, tn.t.redisCPU()-rcpu0
			acc.add(res)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// rackConfig maps 127.K.r.0/24 to rack "r<r>" for every K the hosts use.
func rackConfig(nhosts, nracks int) rackmap.Config {
	cfg := rackmap.DefaultConfig()
	perRack := (nhosts + nracks - 1) / nracks
	octets := (perRack + hostsPerOctet - 1) / hostsPerOctet
	for r := 1; r <= nracks; r++ {
		rack := rackmap.Rack{Name: "r" + strconv.Itoa(r)}
		for k := range octets {
			rack.CIDRs = append(rack.CIDRs, fmt.Sprintf("127.%d.%d.0/24", k, r))
		}
		cfg.Map = append(cfg.Map, rack)
	}
	return cfg
}

// hostAddr is the source address of host i; see the package comment.
func hostAddr(i, nracks int) netip.Addr {
	r := i%nracks + 1
	j := i / nracks
	return netip.AddrFrom4([4]byte{127, byte(j / hostsPerOctet), byte(r), byte(j%hostsPerOctet + 1)})
}

// hosts are the simulated hosts: their HTTP clients and identities. What
// they announced to a tracker is kept by its target.
type hosts struct {
	list      []*host
	infoHash  []string // per transfer, percent-escaped
	transfers int
}

type host struct {
	client *http.Client
	tr     *http.Transport
	peerID string // percent-escaped
	seed   bool   // seeds from the start
}

func newHosts(n, nracks, transfers int) *hosts {
	hs := &hosts{transfers: transfers}
	for t := range transfers {
		sum := sha1.Sum([]byte("rtload transfer " + strconv.Itoa(t)))
		hs.infoHash = append(hs.infoHash, escape(sum[:]))
	}
	for i := range n {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: hostAddr(i, nracks).AsSlice()}, Timeout: requestTimeout}
		// One connection per tracker (connections are kept per host:port),
		// reused for every request, as a real client's.
		tr := &http.Transport{
			Proxy:               nil, // loopback only, whatever the environment says
			DialContext:         d.DialContext,
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		}
		hs.list = append(hs.list, &host{
			client: &http.Client{Transport: tr, Timeout: requestTimeout},
			tr:     tr,
			peerID: escape(fmt.Appendf(nil, "-RL0001-%012d", i)),
			seed:   i%seederEvery == 0,
		})
	}
	return hs
}

func (hs *hosts) close() {
	for _, h := range hs.list {
		h.tr.CloseIdleConnections()
	}
}

// progress is one host's state in one transfer on one tracker.
type progress struct {
	started bool
	left    int64
}

// announceURL is h's next announce to base for transfer t, and advances st.
func (hs *hosts) announceURL(base string, h *host, st *progress, t int) string {
	event := ""
	switch {
	case !st.started:
		st.started, event = true, "started"
	case st.left > 0:
		st.left = max(0, st.left-leftStep)
		if st.left == 0 {
			event = "completed"
		}
	}
	downloaded := int64(0)
	if !h.seed {
		downloaded = transferSize - st.left
	}
	return hs.url(base, h, t, event, downloaded, st.left)
}

// burstSteps are the announces of one (host, transfer) pair in a burst,
// in order: event and left.
var burstSteps = len(burstPlan)

var burstPlan = []struct {
	event string
	left  int64
}{
	{"started", transferSize},
	{"", transferSize / 2},
	{"completed", 0},
	{"", 0},
	{"stopped", 0},
}

// burstURL is step of a burst for h in transfer t.
func (hs *hosts) burstURL(base string, h *host, t, step int) string {
	st := burstPlan[step]
	return hs.url(base, h, t, st.event, transferSize-st.left, st.left)
}

func (hs *hosts) url(base string, h *host, t int, event string, downloaded, left int64) string {
	b := make([]byte, 0, 256)
	b = append(b, base...)
	b = append(b, "/announce?info_hash="...)
	b = append(b, hs.infoHash[t]...)
	b = append(b, "&peer_id="...)
	b = append(b, h.peerID...)
	b = append(b, "&port="...)
	b = strconv.AppendInt(b, peerPort, 10)
	b = append(b, "&uploaded=0&downloaded="...)
	b = strconv.AppendInt(b, downloaded, 10)
	b = append(b, "&left="...)
	b = strconv.AppendInt(b, left, 10)
	b = append(b, "&compact=1&numwant=50"...)
	if event != "" {
		b = append(b, "&event="...)
		b = append(b, event...)
	}
	return string(b)
}

// escape percent-encodes every byte outside BEP 3's unreserved set.
func escape(raw []byte) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for _, c := range raw {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// Phases of a target, as indexes of target.phases and target.cursor.
const (
	helloPhase = iota
	healthzPhase
	announcePhase
	numPhases
	warmupPhase // not measured: one healthz per host, to open its connection
)

// target is one backend under test: its tracker, the redis-server started
// for it if any, and what the hosts have told it and seen of it so far.
type target struct {
	backend string
	hosts   *hosts
	tr      *trackerRun
	redis   *storagetest.Server    // nil unless this tool started it
	state   [][]progress           // [host][transfer]
	cursor  [numPhases][]int       // per phase and worker: where the worker's next turn starts
	phases  [numPhases]accumulator // per phase
}

// redisCPU is the CPU time of the redis-server this tool started, 0 for
// any other.
func (t *target) redisCPU() time.Duration {
	if t.redis == nil {
		return 0
	}
	return cpuTime(t.redis.Pid())
}

// startTarget starts backend's storage (and redis-server when needed) and a
// tracker over it, and opens every host's connection to it.
func startTarget(ctx context.Context, o options, backend string, hosts *hosts, tmp string) (_ *target, err error) {
	t := &target{backend: backend, hosts: hosts}
	cfg := serveConfig{Backend: backend, Hosts: o.hosts, Racks: o.racks}
	if o.cpuProfile != "" {
		if cfg.CPUProfile, err = filepath.Abs(o.cpuProfile + "-" + backend); err != nil {
			return nil, err
		}
	}
	switch backend {
	case storage.BackendEmbedded:
		cfg.SnapshotPath = filepath.Join(tmp, "tracker.snapshot")
		cfg.SnapshotInterval = o.snapshotInterval
	case storage.BackendRedis:
		cfg.RedisDB = o.redisDB
		cfg.RedisAddr = o.redisAddr
		if cfg.RedisAddr == "" {
			if t.redis, err = storagetest.StartRedis(tmp); err != nil {
				if errors.Is(err, exec.ErrNotFound) {
					err = errors.New("redis-server not on PATH; install it, pass -redis-addr, or use -backends embedded")
				}
				return nil, err
			}
			cfg.RedisAddr = t.redis.Addr
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.stop())
		}
	}()
	if t.tr, err = startTracker(ctx, cfg); err != nil {
		return nil, err
	}
	t.state = make([][]progress, len(hosts.list))
	for i, h := range hosts.list {
		t.state[i] = make([]progress, hosts.transfers)
		for j := range t.state[i] {
			if !h.seed {
				t.state[i][j].left = transferSize
			}
		}
	}
	for k := range t.cursor {
		t.cursor[k] = make([]int, o.concurrency)
	}

	warm := load{hosts: hosts, target: t, kind: warmupPhase, workers: o.concurrency, deadline: warmupLimit}
	if r := warm.run(ctx); r.failures > 0 {
		return nil, fmt.Errorf("warm-up: %d of %d healthz requests failed: %v", r.failures, len(r.lat), slices.Collect(maps.Keys(r.reasons)))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

// stop stops the tracker, then the redis-server under it.
func (t *target) stop() error {
	var errs []error
	if t.tr != nil {
		errs = append(errs, t.tr.stop())
	}
	if t.redis != nil {
		t.redis.Stop() // nothing in it is worth keeping
	}
	return errors.Join(errs...)
}

// accumulator gathers a phase over its turns.
type accumulator struct {
	result
	elapsed time.Duration
}

func (a *accumulator) add(r result) {
	a.lat = append(a.lat, r.lat...)
	a.failures += r.failures
	a.elapsed += r.elapsed
	a.cpu += r.cpu
	a.redisCPU += r.redisCPU
	a.addReasons(r.reasons)
}

// phase sums the accumulator up.
func (a *accumulator) phase() Phase {
	slices.Sort(a.lat)
	p := Phase{
		Requests: int64(len(a.lat)),
		Failures: a.failures,
		Seconds:  a.elapsed.Seconds(),
		Reasons:  a.reasons,
		P50ms:    ms(percentile(a.lat, 0.50)),
		P90ms:    ms(percentile(a.lat, 0.90)),
		P99ms:    ms(percentile(a.lat, 0.99)),
	}
	if a.elapsed > 0 {
		p.PerSecond = float64(p.Requests) / a.elapsed.Seconds()
	}
	if len(a.lat) > 0 {
		p.Maxms = ms(a.lat[len(a.lat)-1])
		p.TrackerCPUus = float64(a.cpu.Microseconds()) / float64(len(a.lat))
		p.RedisCPUus = float64(a.redisCPU.Microseconds()) / float64(len(a.lat))
	}
	return p
}

// load is one turn of one phase against one target: workers send requests
// until the deadline passes or limit requests have been sent (0: no
// limit), whichever comes first. In the warm-up, every host sends one.
type load struct {
	hosts    *hosts
	target   *target
	kind     int
	workers  int
	limit    int64
	deadline time.Duration // 0: none
	burst    bool          // announces step through burstPlan
}

// result is what a turn, or one worker in it, saw.
type result struct {
	lat           []time.Duration
	failures      int64
	reasons       map[string]int64
	elapsed       time.Duration
	cpu, redisCPU time.Duration // of the tracker and redis-server processes
}

// addReason counts n failures for reason, keeping only the first few
// distinct reasons.
func (r *result) addReason(reason string, n int64) {
	if r.reasons == nil {
		r.reasons = map[string]int64{}
	}
	if _, ok := r.reasons[reason]; ok || len(r.reasons) < keepReasons {
		r.reasons[reason] += n
	}
}

func (r *result) addReasons(reasons map[string]int64) {
	for reason, n := range reasons {
		r.addReason(reason, n)
	}
}

func (l *load) run(ctx context.Context) result {
	workers := min(l.workers, len(l.hosts.list))
	var sent atomic.Int64
	results := make([]result, workers)
	start := time.Now()
	end := time.Time{}
	if l.deadline > 0 {
		end = start.Add(l.deadline)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { results[w] = l.worker(ctx, w, workers, end, &sent) })
	}
	wg.Wait()
	total := result{elapsed: time.Since(start)}
	for _, r := range results {
		total.lat = append(total.lat, r.lat...)
		total.failures += r.failures
		total.addReasons(r.reasons)
	}
	return total
}

// worker w of n drives hosts w, w+n, w+2n, ..., so that no host ever has two
// requests in flight. It goes through its (transfer, host) pairs host by
// host, so consecutive requests come from different hosts, and resumes
// where its previous turn stopped, so every pair gets its share.
func (l *load) worker(ctx context.Context, w, n int, end time.Time, sent *atomic.Int64) result {
	var mine []int
	for i := w; i < len(l.hosts.list); i += n {
		mine = append(mine, i)
	}
	pairs := len(mine)
	if l.kind == announcePhase {
		pairs *= l.hosts.transfers
	}
	if l.burst && l.kind == announcePhase {
		return l.burstWorker(ctx, mine, sent)
	}
	var cursor *int
	if l.kind == warmupPhase {
		cursor = new(int)
	} else {
		cursor = &l.target.cursor[l.kind][w]
	}
	base := l.target.tr.base
	var res result
	for sentHere := 0; ; sentHere++ {
		if l.kind == warmupPhase && sentHere == pairs {
			return res
		}
		if ctx.Err() != nil || !end.IsZero() && time.Now().After(end) {
			return res
		}
		if l.limit > 0 && sent.Add(1) > l.limit {
			return res
		}
		p := *cursor % pairs
		*cursor = p + 1
		i, t := mine[p%len(mine)], p/len(mine)
		h := l.hosts.list[i]
		url := base + "/healthz"
		if l.kind == helloPhase {
			url = base + helloPath
		}
		if l.kind == announcePhase {
			url = l.hosts.announceURL(base, h, &l.target.state[i][t], t)
		}
		t0 := time.Now()
		reason := l.do(ctx, h.client, url)
		res.lat = append(res.lat, time.Since(t0))
		if reason != "" {
			res.failures++
			res.addReason(reason, 1)
		}
	}
}

// burstWorker takes each of its (host, transfer) pairs through burstPlan,
// step by step: every pair announces started before any announces its
// next step, so the swarms grow, complete and empty as a deploy's would.
func (l *load) burstWorker(ctx context.Context, mine []int, sent *atomic.Int64) result {
	base := l.target.tr.base
	var res result
	for step := range burstSteps {
		for p := range len(mine) * l.hosts.transfers {
			if ctx.Err() != nil {
				return res
			}
			if l.limit > 0 && sent.Add(1) > l.limit {
				return res
			}
			i, t := mine[p%len(mine)], p/len(mine)
			h := l.hosts.list[i]
			t0 := time.Now()
			reason := l.do(ctx, h.client, l.hosts.burstURL(base, h, t, step))
			res.lat = append(res.lat, time.Since(t0))
			if reason != "" {
				res.failures++
				res.addReason(reason, 1)
			}
		}
	}
	return res
}

// do sends one request and returns why it failed, or "" when it did not.
func (l *load) do(ctx context.Context, c *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := c.Do(req)
	if err != nil {
		return trimAddrs(err.Error())
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
	resp.Body.Close()
	switch {
	case err != nil:
		return "read body: " + trimAddrs(err.Error())
	case resp.StatusCode != http.StatusOK:
		return fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	case l.kind == helloPhase:
		if string(body) != helloBody {
			return fmt.Sprintf("hello body %q", body)
		}
	case l.kind != announcePhase:
		if string(body) != "ok\n" {
			return fmt.Sprintf("healthz body %q", body)
		}
	default:
		if reason, ok := failureReason(body); ok {
			return "failure reason: " + reason
		}
		if len(body) == 0 || body[0] != 'd' {
			return fmt.Sprintf("announce body is not a dictionary: %.40q", body)
		}
	}
	return ""
}

// trimAddrs drops the per-host source address from a network error, so that
// one cause counts as one reason rather than one per host.
func trimAddrs(s string) string {
	if i := strings.Index(s, "->"); i >= 0 {
		if j := strings.LastIndex(s[:i], " "); j >= 0 {
			return s[:j+1] + "*" + s[i:]
		}
	}
	return s
}

// failureReason reads a bencoded "failure reason" at the top level of a
// response. Bencoded keys are sorted and no other key of an announce
// response sorts before it, so a failure starts with it; only such a body is
// decoded, which keeps the load generator's cost per answer as small as a
// prefix check.
func failureReason(body []byte) (string, bool) {
	if !bytes.HasPrefix(body, []byte("d14:failure reason")) {
		return "", false
	}
	var r struct {
		Failure string `bencode:"failure reason"`
	}
	if err := bencode.Unmarshal(body, &r); err != nil {
		return "malformed", true
	}
	return r.Failure, true
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func printTable(w io.Writer, rep Report) error {
	bound := rep.Duration + " per phase"
	if rep.Requests > 0 {
		bound += fmt.Sprintf(" or %d requests", rep.Requests)
	}
	if rep.Burst {
		bound = fmt.Sprintf("burst (started, periodic, completed, periodic, stopped) x %d rounds", rep.Rounds)
	}
	fmt.Fprintf(w, "rtload: %d hosts in %d racks, %d transfers, %d workers, %s, GOMAXPROCS %d\n\n",
		rep.Hosts, rep.Racks, rep.Transfers, rep.Concurrency, bound, rep.GOMAXPROCS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backend \tphase   \trequests\tfailed\treq/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\ttracker CPU µs/req\tredis CPU µs/req\t")
	for _, b := range rep.Backends {
		for _, ph := range []struct {
			name string
			p    Phase
		}{{"hello", b.Hello}, {"healthz", b.Healthz}, {"announce", b.Announce}} {
			p := ph.p
			fmt.Fprintf(tw, "%-8s\t%-8s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.1f\t%.0f\t%.0f\t\n",
				b.Backend, ph.name, p.Requests, p.Failures, p.PerSecond, p.P50ms, p.P90ms, p.P99ms, p.Maxms, p.TrackerCPUus, p.RedisCPUus)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nratios (same run, same clients)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, b := range rep.Backends {
		fmt.Fprintf(tw, "  %s\tannounce/hello throughput\t%.3f\n", b.Backend, b.AnnouncePerHello)
		fmt.Fprintf(tw, "  %s\tannounce/healthz throughput\t%.3f\n", b.Backend, b.ThroughputRatio)
		fmt.Fprintf(tw, "  %s\tannounce/healthz p50\t%.3f\n", b.Backend, b.P50Ratio)
		fmt.Fprintf(tw, "  %s\tannounce/healthz p99\t%.3f\n", b.Backend, b.P99Ratio)
	}
	if rep.RedisPerEmbeddedAnnounce != nil {
		fmt.Fprintf(tw, "  redis/embedded\tannounce throughput\t%.3f\n", *rep.RedisPerEmbeddedAnnounce)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, b := range rep.Backends {
		for _, ph := range []struct {
			name string
			p    Phase
		}{{"hello", b.Hello}, {"healthz", b.Healthz}, {"announce", b.Announce}} {
			reasons := slices.SortedFunc(maps.Keys(ph.p.Reasons), func(a, c string) int {
				return cmp.Or(cmp.Compare(ph.p.Reasons[c], ph.p.Reasons[a]), strings.Compare(a, c))
			})
			for _, r := range reasons {
				fmt.Fprintf(w, "failures %s %s: %d × %s\n", b.Backend, ph.name, ph.p.Reasons[r], r)
			}
		}
	}
	return nil
}
