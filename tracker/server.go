package tracker

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"racktracker/rackmap"
	"racktracker/storage"
)

// Store is what the tracker needs of its storage, in domain terms, split by
// the code that uses it. *storage.Store implements it.
//
// Every method is safe for concurrent use by any number of goroutines and
// tracker processes sharing one Redis, and honours ctx's deadline. An error
// that wraps storage.ErrUnavailable means the store could not be asked or did
// not answer (a write may then have happened or not); the tracker answers it
// generically and never retries a write blindly. Times are the store's
// (Redis' TIME, or the injected clock), so that processes whose clocks
// differ agree.
type Store interface {
	SwarmStore
	TransferStore
	MaintenanceStore
}

// SwarmStore serves the BitTorrent protocol: announce, scrape and /healthz.
type SwarmStore interface {
	// Announce records one announce and returns the swarm it leaves, with
	// the candidates of each stage of a.Plan for the asker's role. It is one
	// atomic script run (one round trip): the peer's sets, counters,
	// election and demotion change together or not at all. For an
	// inactive transfer it activates it when a.AllowUnregistered, else
	// returns storage.ErrNotRegistered and writes nothing; "stopped" for an
	// inactive transfer writes nothing and returns an empty swarm.
	Announce(ctx context.Context, a storage.Announce) (storage.Swarm, error)
	// Scrape returns the counts of the active transfers among hashes, in
	// one round trip; unknown and inactive hashes are left out. It may read
	// a replica, so it can lag the latest announces a little.
	Scrape(ctx context.Context, hashes []storage.InfoHash) ([]storage.ScrapeCounts, error)
	// Ping returns nil when the store answers.
	Ping(ctx context.Context) error
}

// TransferStore serves the admin API and the dashboard: a transfer's
// lifecycle and what is known about it. A hash that is not active gets
// storage.ErrNotFound wherever one active transfer is asked for.
type TransferStore interface {
	// Register activates h with its metainfo and keeps torrent, the
	// .torrent file, under <hash>:torrent. storage.ErrExists when h is
	// active already; nothing is changed then.
	Register(ctx context.Context, h storage.InfoHash, name string, length int64, torrent []byte) error
	// Deactivate retires the active transfer h atomically: its keys move
	// under <datetime>:<hash> (SPEC section 3), and that datetime is
	// returned. Its cost follows the transfer's size, not the database's.
	Deactivate(ctx context.Context, h storage.InfoHash) (string, error)
	// Transfer returns the state of the active transfer h with its racks,
	// read from the master so that it shows what was just written.
	Transfer(ctx context.Context, h storage.InfoHash) (storage.TransferStats, error)
	// Active lists every active transfer's state, sorted by hash, with the
	// sums over its current peers' reports: a read per peer. It may read a
	// replica.
	Active(ctx context.Context) ([]storage.TransferStats, error)
	// Index is Active without the byte sums (Uploaded and Downloaded stay
	// 0), in three round trips whatever the number of transfers: what an
	// index of them, or a pass over them, needs.
	Index(ctx context.Context) ([]storage.TransferStats, error)
	// History lists deactivated runs newest first: at most limit of them,
	// after the run whose Cursor is after ("" for the newest); next is the
	// after of the following page, "" after the last.
	// storage.ErrBadCursor for an after that names no run.
	History(ctx context.Context, limit int, after string) (runs []storage.Deactivated, next string, err error)
	// Racks returns every rack ever seen with its hosts, both sorted. It
	// may read a replica.
	Racks(ctx context.Context) (map[string][]string, error)
	// Torrent returns the .torrent kept for the active transfer h, with
	// the name stored at registration, in one round trip;
	// storage.ErrNotFound also when h was activated by an announce, without
	// a .torrent.
	Torrent(ctx context.Context, h storage.InfoHash) (torrent []byte, name string, err error)
	// Timeline returns the samples of h, oldest first: of the active
	// transfer when run is "", else of its run deactivated at run (a
	// datetime History returned). A transfer without samples has an empty
	// timeline.
	Timeline(ctx context.Context, h storage.InfoHash, run string) ([]storage.TimelineSample, error)
	RunTimeline(ctx context.Context, h storage.InfoHash, run string) ([]storage.TimelineSample, int64, error)
	// SnapshotStatus is how the embedded store's snapshots fare.
	SnapshotStatus() storage.SnapshotStatus
}

// MaintenanceStore serves Run's background passes: expiry, idle
// deactivation, the rollout timeline and the gauges of /metrics. Several
// tracker processes may run them at once on one store; each pass is safe to
// repeat.
type MaintenanceStore interface {
	// Expire removes from every active transfer the peers whose deadline
	// (their own cadence, see storage.Timers) has passed, and refills the
	// representative slots they held (representatives per rack), as
	// announces would. It works in bounded batches; its cost follows the
	// active transfers and the expired peers, not the current ones.
	Expire(ctx context.Context, t storage.Timers, representatives int) (storage.Expired, error)
	// Idle lists the active transfers with no current peer whose last
	// announce (or, never announced, activation) is more than timeout ago.
	Idle(ctx context.Context, timeout time.Duration) ([]storage.InfoHash, error)
	// DeactivateIdle retires h like Deactivate, but only if it is still
	// idle as Idle(timeout) found it: the check and the retirement are one
	// step, so a peer that announced meanwhile, to any process, keeps its
	// transfer. storage.ErrNotFound when h is not active or not idle.
	DeactivateIdle(ctx context.Context, h storage.InfoHash, timeout time.Duration) (string, error)
	// AddSample records racks as the sample of the current period of the
	// active transfer h, unless a process sampled this period already,
	// and thins the timeline to at most keep samples. It also returns the
	// latest sample at least refAge old, to judge progress against.
	AddSample(ctx context.Context, h storage.InfoHash, period time.Duration, racks []storage.TimelineRack, keep int, refAge time.Duration) (storage.Sampled, error)
	// Totals sums the active transfers' counters for the gauges, without
	// reading their sets. It may read a replica.
	Totals(ctx context.Context) (storage.Totals, error)
	// Prune deletes the deactivated runs older than retention, with every
	// key of each, reading only what it deletes; it returns how many.
	Prune(ctx context.Context, retention time.Duration) (int, error)
}

// Options are what a Server takes besides its config.
type Options struct {
	Logger *slog.Logger
	// Now is the clock of expiry and idle deactivation; time.Now when nil.
	Now func() time.Time
	// Resolver names hosts by reverse DNS when racks.resolve_hostnames is on.
	Resolver *rackmap.Resolver
	// MaintenanceEvery is how often Run expires peers and retires idle
	// transfers; a tenth of the peer timeout (at least a second) when zero.
	MaintenanceEvery time.Duration
}

// Server is the tracker: the HTTP protocol, the handout policy, the admin
// API, the dashboard and the metrics, over a Store and a rack map.
type Server struct {
	cfg      Config
	policy   RackPolicy
	handout  Handout
	plan     storage.Plan // handout.plan(), made once
	timers   storage.Timers
	store    Store
	racks    atomic.Pointer[rackmap.Map]
	resolver *rackmap.Resolver
	log      *slog.Logger
	now      func() time.Time
	every    time.Duration
	proxies  []netip.Prefix
	metrics  *metrics
	warn     rateLimit
	ops      *ops
	bufs     sync.Pool
	// identityWarn limits the shared_ip and dual_stack warnings apart.
	identityWarn [2]rateLimit
	families     families
	uploads      *byteBudget
	uploadWait   time.Duration
}

// New builds a Server. The config must have passed Validate.
func New(cfg Config, policy RackPolicy, store Store, racks *rackmap.Map, opts Options) *Server {
	s := &Server{
		cfg:        cfg,
		policy:     policy,
		handout:    newHandout(policy),
		store:      store,
		resolver:   opts.Resolver,
		log:        opts.Logger,
		now:        opts.Now,
		every:      opts.MaintenanceEvery,
		metrics:    newMetrics(),
		uploads:    newByteBudget(uploadBudget),
		uploadWait: uploadWait,
	}
	s.plan = s.handout.plan()
	s.timers = cfg.Timers(policy)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.every <= 0 {
		s.every = max(cfg.Announce.PeerTimeout/10, time.Second)
	}
	for _, p := range cfg.Announce.TrustedProxies {
		if pfx, err := netip.ParsePrefix(p); err == nil {
			s.proxies = append(s.proxies, pfx.Masked())
		}
	}
	s.racks.Store(racks)
	s.ops = newOps(s.metrics.reg)
	s.metrics.reg.MustRegister(snapshotCollector{s.snapshotStatus})
	s.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	return s
}

// SetRacks swaps the rack map, for a reload; announces in flight finish with
// the map they started with.
func (s *Server) SetRacks(m *rackmap.Map) { s.racks.Store(m) }

// Header limits. A request whose header is larger than HeaderLimit gets an
// answer from the handler: a bencoded failure reason on announce and scrape
// (SPEC section 5), 431 elsewhere. The listener accepts headers up to
// MaxHeaderBytes (HTTPServer) for that: net/http itself answers a bare 431
// past its own limit, which no BitTorrent client reads as a reason; past
// MaxHeaderBytes it still does, as a bound on memory.
const (
	HeaderLimit    = 32 << 10
	MaxHeaderBytes = 1 << 20
)

// headerSize is about what net/http counts against MaxHeaderBytes: the
// request line and every header line.
func headerSize(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 + len(r.Host) + 8
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// limitHeaders enforces HeaderLimit.
func (s *Server) limitHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headerSize(r) <= HeaderLimit {
			next.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case "/announce":
			s.metrics.announce("", "bad_request")
			s.fail(w, errTooLarge)
		case "/scrape":
			s.fail(w, errTooLarge)
		default:
			http.Error(w, "request header too large", http.StatusRequestHeaderFieldsTooLarge)
		}
	})
}

// Handler serves announce, scrape, the dashboard, /metrics, /healthz and,
// unless admin.listen puts it elsewhere, /api.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /announce", s.serveAnnounce)
	mux.HandleFunc("GET /scrape", s.serveScrape)
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.Handle("GET /metrics", s.metrics.handler())
	s.dashboardRoutes(mux)
	if s.cfg.Admin.Listen == "" {
		mux.Handle("/api/", s.AdminHandler())
	}
	return s.logRequests(s.limitHeaders(mux))
}

// snapshotStatus is the store's, or nothing without a store (tests).
func (s *Server) snapshotStatus() storage.SnapshotStatus {
	if s.store == nil {
		return storage.SnapshotStatus{}
	}
	return s.store.SnapshotStatus()
}

// serveHealth answers 503 while the store does not answer; otherwise 200,
// with "ok", or "degraded: ..." while the embedded store's snapshots fail
// (see snapshotHealth).
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.store.Ping(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("storage unreachable\n"))
		s.warn.log(s.log, "health check: storage unreachable", "err", err)
		return
	}
	if msg := snapshotHealth(s.snapshotStatus()); msg != "" {
		w.Write([]byte(msg + "\n"))
		return
	}
	w.Write([]byte("ok\n"))
}

// Run expires silent peers and retires idle transfers until ctx ends; it
// also runs the operator's loops (opsloops.go) and waits for them.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	s.runOps(ctx, &wg)
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		s.maintain(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Maintain runs one pass of Run at once: what a simulation on its own clock
// (cmd/rtsim) calls instead of Run.
func (s *Server) Maintain(ctx context.Context) { s.maintain(ctx) }

// maintain is one pass of Run.
func (s *Server) maintain(ctx context.Context) {
	start := time.Now()
	// Cutoffs are the store's to compute, by its clock (Redis' TIME), so
	// that tracker processes whose clocks differ agree on who expired.
	exp, err := s.store.Expire(ctx, s.timers, s.policy.RepresentativesPerRack)
	s.metrics.storage("expire", start, err)
	if err != nil {
		if ctx.Err() == nil {
			s.warn.log(s.log, "expiry pass failed", "err", err)
		}
		return
	}
	s.metrics.expired.Add(float64(exp.Peers))
	s.metrics.elections.Add(float64(exp.Elected))
	if exp.Peers > 0 {
		s.log.Debug("expired peers", "peers", exp.Peers, "elected", exp.Elected)
	}
	idle, err := s.store.Idle(ctx, s.cfg.Transfers.IdleTimeout)
	if err != nil {
		if ctx.Err() == nil {
			s.warn.log(s.log, "idle pass failed", "err", err)
		}
		return
	}
	for _, h := range idle {
		if _, err := s.store.DeactivateIdle(ctx, h, s.cfg.Transfers.IdleTimeout); err == nil {
			s.log.Info("deactivated idle transfer", "infohash", h.String(), "idle_timeout", s.cfg.Transfers.IdleTimeout)
		}
	}
	if r := s.cfg.Transfers.HistoryRetention; r > 0 {
		start := time.Now()
		n, err := s.store.Prune(ctx, r)
		s.metrics.storage("prune", start, err)
		if n > 0 {
			s.log.Info("deleted deactivated runs past the history retention", "runs", n, "history_retention", r)
		}
		if err != nil && ctx.Err() == nil {
			s.warn.log(s.log, "history pruning failed", "err", err)
		}
	}
	s.metrics.refreshGauges(ctx, s.store)
}

// rateLimit logs at most one line per interval for a recurring failure,
// so an outage does not turn every announce into a log line.
type rateLimit struct {
	last atomic.Int64
	lost atomic.Int64
}

const warnEvery = 10 * time.Second

func (l *rateLimit) log(log *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(warnEvery) || !l.last.CompareAndSwap(last, now) {
		l.lost.Add(1)
		return
	}
	if n := l.lost.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Warn(msg, args...)
}
