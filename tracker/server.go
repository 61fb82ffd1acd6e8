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

// Store is what the tracker needs of its storage, in domain terms.
// *storage.Store implements it.
type Store interface {
	Announce(ctx context.Context, a storage.Announce) (storage.Swarm, error)
	Scrape(ctx context.Context, hashes []storage.InfoHash) ([]storage.ScrapeCounts, error)
	Expire(ctx context.Context, timeout time.Duration, representatives, stall int) (storage.Expired, error)
	Idle(ctx context.Context, timeout time.Duration) ([]storage.InfoHash, error)
	Register(ctx context.Context, h storage.InfoHash, name string, length int64, torrent []byte) error
	Deactivate(ctx context.Context, h storage.InfoHash) (string, error)
	DeactivateIdle(ctx context.Context, h storage.InfoHash, timeout time.Duration) (string, error)
	Transfer(ctx context.Context, h storage.InfoHash) (storage.TransferStats, error)
	Active(ctx context.Context) ([]storage.TransferStats, error)
	History(ctx context.Context) ([]storage.Deactivated, error)
	Racks(ctx context.Context) (map[string][]string, error)
	Torrent(ctx context.Context, h storage.InfoHash) ([]byte, error)
	Totals(ctx context.Context) (storage.Totals, error)
	Ping(ctx context.Context) error
	AddSample(ctx context.Context, h storage.InfoHash, period time.Duration, racks []storage.TimelineRack, keep int, refAge time.Duration) (storage.Sampled, error)
	Timeline(ctx context.Context, h storage.InfoHash, run string) ([]storage.TimelineSample, error)
	RunTimeline(ctx context.Context, h storage.InfoHash, run string) ([]storage.TimelineSample, int64, error)
	// SnapshotStatus is how the embedded store's snapshots fare.
	SnapshotStatus() storage.SnapshotStatus
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
}

// New builds a Server. The config must have passed Validate.
func New(cfg Config, policy RackPolicy, store Store, racks *rackmap.Map, opts Options) *Server {
	s := &Server{
		cfg:      cfg,
		policy:   policy,
		handout:  newHandout(policy),
		store:    store,
		resolver: opts.Resolver,
		log:      opts.Logger,
		now:      opts.Now,
		every:    opts.MaintenanceEvery,
		metrics:  newMetrics(),
	}
	s.plan = s.handout.plan()
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
	return s.logRequests(mux)
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
	exp, err := s.store.Expire(ctx, s.cfg.Announce.PeerTimeout, s.policy.RepresentativesPerRack, s.policy.RepresentativeStall)
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
