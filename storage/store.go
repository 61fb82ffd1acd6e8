package storage

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Timeouts of storage calls. An announce must fail fast when Redis is away
// (the client gets a failure reason and retries at its interval); a
// deactivation or a snapshot touches a whole transfer or the whole store and
// may take longer.
const (
	callTimeout = 2 * time.Second
	bulkTimeout = 30 * time.Second
)

// ErrUnavailable wraps every error that comes from Redis being unreachable,
// slow or failing, as opposed to a request the store refuses.
var ErrUnavailable = errors.New("storage unavailable")

// ErrNotRegistered is returned by Announce for an inactive transfer when
// unregistered transfers are not allowed.
var ErrNotRegistered = errors.New("transfer not registered")

// ErrDeactivated is returned by Announce for a transfer that was
// deactivated (seen, not active): it stays retired until registered again.
var ErrDeactivated = errors.New("transfer deactivated")

// ErrTooManyUnregistered is returned by Announce for an unknown transfer
// while Announce.MaxUnregistered transfers activated by announces are
// active.
var ErrTooManyUnregistered = errors.New("too many unregistered transfers")

// ErrBadCursor is returned by History for an after cursor that names no
// run.
var ErrBadCursor = errors.New("bad history cursor")

// ErrExists is returned by Register for a transfer that is active already.
var ErrExists = errors.New("transfer already active")

// ErrNotFound is returned for an unknown or inactive transfer.
var ErrNotFound = errors.New("transfer not found")

type errBadHash string

func (e errBadHash) Error() string {
	return fmt.Sprintf("bad info hash %q: want 40 hex digits", string(e))
}

//go:embed lua/*.lua
var luaFiles embed.FS

// loadScript is the script lua/<name>.lua after the key layout, common.lua
// and prelude (the declarations of its own arguments and reply).
func loadScript(name, prelude string) *redis.Script {
	common, err := luaFiles.ReadFile("lua/common.lua")
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	body, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	src := luaKeys + string(common) + prelude + string(body)
	addScriptSource(src)
	return redis.NewScript(src)
}

var (
	scriptAnnounce   = loadScript("announce", announcePrelude())
	scriptExpire     = loadScript("expire", "")
	scriptDeactivate = loadScript("deactivate", "")
	scriptActivate   = loadScript("activate", "")
	scriptTimeline   = loadScript("timeline", "")
	scriptPrune      = loadScript("prune", "")
)

// Options are what the store takes besides its Config.
type Options struct {
	Logger *slog.Logger
	// Now replaces the clock of every stored datetime and of expiry, for
	// tests. When nil (production) the clock is Redis' own TIME, read inside
	// the scripts, so that every tracker process on one Redis agrees.
	Now func() time.Time
	// Hooks are added to every Redis client the store makes (the embedded
	// backend makes a new one each time it rebuilds its store).
	Hooks []redis.Hook
	// RebuildAfter is how many names of deleted keys the embedded store
	// keeps at least before a snapshot rebuilds it (see rebuildDue);
	// defaultRebuildAfter when zero. Negative: any dead name is enough
	// (tests).
	RebuildAfter int
}

// Store is the tracker's state in Redis, behind the key layout of keys.go.
// Both backends share every line of it except how the client dials.
type Store struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	hook []redis.Hook

	// gate lets every call share the store while the embedded store is
	// swapped for a rebuilt one underneath, which holds it alone.
	gate gate
	rdb  *redis.Client
	ro   *redis.Client        // replicas, for reads that may lag; nil unless sentinel.replica_reads
	mini *miniredis.Miniredis // nil with an external Redis
	// batch sends announces to an external Redis in pipelines (batch.go);
	// nil with the embedded store.
	batch *batcher
	emb   embeddedState

	dirty  atomic.Bool // written since the last rebuild
	closed atomic.Bool
	// timersRendered keeps the scripts' rendering of the last Timers seen: a
	// tracker hands the same ones with every announce.
	timersRendered atomic.Pointer[renderedTimers]
}

// Open connects to the configured backend. With the embedded backend it
// restores the snapshot first, and fails, leaving the file untouched, when
// the snapshot cannot be read. With an external Redis it fails when Redis
// cannot be reached or is a cluster.
func Open(ctx context.Context, cfg Config, opts Options) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("storage config: %w", err)
	}
	s := &Store{cfg: cfg, log: opts.Logger, now: opts.Now, hook: opts.Hooks}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{s.log}) })
	var err error
	if cfg.Backend == BackendRedis {
		err = s.openRedis(ctx)
	} else {
		err = s.openEmbedded(opts)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrateDeactivations(ctx); err != nil {
		s.Close(ctx)
		return nil, fmt.Errorf("move the history index into %s: %w", keyDeactivations, err)
	}
	return s, nil
}

// clientOptions are shared by both backends. Writes are never resent after a
// connection error (MaxRetries -1): an announce whose reply was lost may have
// run, and running it again would count a completion twice. The handshake
// is RESP2 without CLIENT SETINFO, which miniredis and Redis before 7.2
// refuse. Deadlines come from each call's context.
func (s *Store) clientOptions() *redis.Options {
	return &redis.Options{
		Protocol:              2,
		DisableIdentity:       true,
		MaxRetries:            -1,
		DialTimeout:           callTimeout,
		DialerRetries:         1, // an outage fails the call at once; the client retries at its interval
		Dialer:                dialRedis(callTimeout),
		ReadTimeout:           -1,
		WriteTimeout:          -1,
		ContextTimeoutEnabled: true,
		PoolTimeout:           callTimeout,
	}
}

func (s *Store) newClient(o *redis.Options) *redis.Client {
	return s.hooked(redis.NewClient(o))
}

func (s *Store) hooked(c *redis.Client) *redis.Client {
	for _, h := range s.hook {
		c.AddHook(h)
	}
	return c
}

// newFailoverClient is go-redis' own Sentinel client with the options every
// client of the store has: it asks the Sentinels for the master (or, with
// replica, for a random replica, falling back to the master when there is
// none) whenever it dials, and drops its connections to a demoted master
// when a Sentinel announces +switch-master. A failover therefore costs the
// calls that were in flight and those made until the Sentinels promote a
// replica: they fail at once (connection refused or reset) or at their
// deadline, and are never resent (MaxRetries -1, also on the Sentinel
// connections). The announce script is loaded on the new master by the
// first call there (Script.Run falls back from EVALSHA to EVAL on NOSCRIPT).
func (s *Store) newFailoverClient(replica bool) *redis.Client {
	r, o := s.cfg.Redis, s.clientOptions()
	return s.hooked(redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            r.Sentinel.Master,
		SentinelAddrs:         r.Sentinel.Addrs,
		SentinelUsername:      r.Sentinel.Username,
		SentinelPassword:      r.Sentinel.Password,
		ReplicaOnly:           replica,
		Username:              r.Username,
		Password:              r.Password,
		DB:                    r.DB,
		Protocol:              o.Protocol,
		DisableIdentity:       o.DisableIdentity,
		MaxRetries:            o.MaxRetries,
		DialTimeout:           o.DialTimeout,
		DialerRetries:         o.DialerRetries,
		Dialer:                o.Dialer,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: o.ContextTimeoutEnabled,
		PoolTimeout:           o.PoolTimeout,
	}))
}

func (s *Store) openRedis(ctx context.Context) error {
	r := s.cfg.Redis
	where := "redis at " + RedactAddr(r.Addr)
	if r.Sentinel.Enabled() {
		where = fmt.Sprintf("redis master %q through sentinels %s", r.Sentinel.Master, strings.Join(r.Sentinel.Addrs, ","))
		s.rdb = s.newFailoverClient(false)
		if r.Sentinel.ReplicaReads {
			s.ro = s.newFailoverClient(true)
		}
	} else {
		o := s.clientOptions()
		o.Addr = r.Addr
		o.Username = r.Username
		o.Password = r.Password
		o.DB = r.DB
		s.rdb = s.newClient(o)
	}
	closeAll := func() {
		s.rdb.Close()
		if s.ro != nil {
			s.ro.Close()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	// One section per call: INFO with several sections is a syntax error
	// before Redis 7.
	var info string
	for _, section := range []string{"server", "cluster"} {
		v, err := s.rdb.Info(ctx, section).Result()
		if err != nil {
			closeAll()
			return fmt.Errorf("%s: %w", where, err)
		}
		info += v + "\n"
	}
	if err := checkServer(info); err != nil {
		closeAll()
		return fmt.Errorf("%s: %w", where, err)
	}
	s.batch = newBatcher(s.rdb)
	return nil
}

// checkServer refuses servers that cannot hold the layout: a cluster (one
// transfer's keys span hash slots, so its scripts and RENAMEs would fail
// with CROSSSLOT) and versions without ZRANDMEMBER.
func checkServer(info string) error {
	var version string
	for line := range strings.SplitSeq(info, "\n") {
		line = strings.TrimSpace(line)
		if line == "cluster_enabled:1" {
			return errors.New("is a Redis Cluster; racktracker needs a standalone Redis, because one transfer's keys span hash slots and its atomic scripts and RENAMEs would fail with CROSSSLOT")
		}
		if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
			version = v
		}
	}
	major, rest, _ := strings.Cut(version, ".")
	minor, _, _ := strings.Cut(rest, ".")
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 == nil && err2 == nil && (ma < 6 || ma == 6 && mi < 2) {
		return fmt.Errorf("is version %s; racktracker needs Redis 6.2 or newer", version)
	}
	return nil
}

// Close closes the client; with the embedded backend it first writes a
// final snapshot, then stops the in-process store.
// A second Close does nothing.
func (s *Store) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	var err error
	if s.mini != nil {
		err = s.snapshot(ctx, false)
		s.closeEmbedded()
	}
	if s.batch != nil {
		s.batch.close()
	}
	s.gate.lock()
	defer s.gate.unlock()
	for _, c := range []*redis.Client{s.rdb, s.ro} {
		if c == nil {
			continue
		}
		if cerr := c.Close(); cerr != nil && err == nil && !errors.Is(cerr, redis.ErrClosed) {
			err = cerr
		}
	}
	if s.mini != nil {
		s.mini.Close()
	}
	return err
}

// clockArg is the clock argument of every script: empty, so that the script
// reads Redis' TIME, unless a test injected a clock (unix microseconds).
func (s *Store) clockArg() string {
	if s.now == nil {
		return ""
	}
	return strconv.FormatInt(s.now().UnixMicro(), 10)
}

// clockNow is the store's time outside a script: Redis' TIME, or the
// injected clock.
func (s *Store) clockNow(ctx context.Context, c *redis.Client) (time.Time, error) {
	if s.now != nil {
		return s.now(), nil
	}
	return c.Time(ctx).Result()
}

// Ping reports whether the store answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.do(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		return c.Ping(ctx).Err()
	})
}

// do runs one storage call under the shared gate with a deadline, and wraps
// what Redis failed at in ErrUnavailable.
func (s *Store) do(ctx context.Context, timeout time.Duration, f func(context.Context, *redis.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A call that cannot have the gate by its deadline (a rebuild holds it)
	// fails as any other the store could not answer in time.
	if err := s.gate.rlock(ctx); err != nil {
		return unavailable(err)
	}
	defer s.gate.runlock()
	if err := f(ctx, s.rdb); err != nil {
		return unavailable(err)
	}
	return nil
}

// read runs a call that may see data a little behind the master's: on a
// replica when sentinel.replica_reads is set, else as do. A read the replica
// fails (it is down, resyncing, or refuses stale data) is made again on the
// master: reads change nothing, so running one twice is harmless, and the
// dashboard stays up while replicas come and go.
func (s *Store) read(ctx context.Context, timeout time.Duration, f func(context.Context, *redis.Client) error) error {
	if s.ro == nil {
		return s.do(ctx, timeout, f)
	}
	err := func() error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return f(ctx, s.ro)
	}()
	if err == nil || ctx.Err() != nil || errors.Is(err, ErrNotFound) {
		return unavailable(err)
	}
	s.log.DebugContext(ctx, "replica read failed; reading from the master", "err", err)
	return s.do(ctx, timeout, f)
}

func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// dialer connects go-redis to an in-process miniredis over a memPipe: no
// port. m must be started (startEmbedded sees to it).
func dialer(m *miniredis.Miniredis) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) {
		srv := m.Server()
		if srv == nil {
			return nil, errors.New("embedded store is closed")
		}
		client, server := memPipe()
		srv.ServeConn(server)
		return client, nil
	}
}

// go-redis logs through a process-wide logger; the first store routes it
// into slog at debug level, since every failure it reports also comes back
// as an error that the tracker logs (rate-limited) where it has context.
var redisLogOnce sync.Once

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
