package storage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
	"github.com/redis/go-redis/v9"
)

// defaultRebuildAfter is how many names of deleted keys the embedded store
// keeps, at least, before a snapshot rebuilds it (see rebuildDue): about a
// megabyte of bookkeeping, against the fraction of a second a rebuild of a
// large store costs.
const defaultRebuildAfter = 10_000

// defaultRebuildEvery is how often a snapshot rebuilds the store after
// writes when miniredis' bookkeeping cannot be measured (see minidb.go).
const defaultRebuildEvery = 10

// embeddedState is what only the embedded backend has.
type embeddedState struct {
	// snapMu makes snapshots one at a time, so that the file on disk is
	// always the latest copy; the store is swapped only under it (and the
	// gate), so a snapshot reads s.mini without the gate.
	snapMu       sync.Mutex
	sinceRebuild int // snapshots since the last rebuild, under snapMu
	rebuildAfter int

	// scripts runs the store's scripts on the current instance (see
	// minilua.go); nil when miniredis' own EVALSHA does.
	scripts *miniScripts

	ln     net.Listener // embedded.listen, when set
	lnDone chan struct{}

	mu      sync.Mutex
	status  SnapshotStatus
	skipped int // keys the last snapshot could not hold, to warn once per change
}

// SnapshotStatus is how the embedded store's snapshots fare, for /healthz
// and /metrics. With an external Redis only Embedded (false) is set.
type SnapshotStatus struct {
	Embedded bool
	Path     string
	// LastSuccess is the point in time the snapshot file holds: when the
	// last good snapshot copied the store, or when the store was restored
	// at start (the file then held everything).
	LastSuccess time.Time
	// LastError is why the latest snapshot failed, "" when it succeeded;
	// FailingSince is when the current run of failures began.
	LastError    string
	FailingSince time.Time
	Failures     uint64 // failed snapshots since start
	Rebuilds     uint64 // times the store was rebuilt since start
	// Keys and DeadKeyNames are measured by the latest snapshot: the live
	// keys, and the names of deleted keys miniredis still keeps a version
	// for (-1 when that cannot be measured). Rebuilds let those go.
	Keys         int
	DeadKeyNames int
}

// Degraded reports whether the latest snapshot failed: the tracker works,
// but a restart would lose what was written since LastSuccess.
func (st SnapshotStatus) Degraded() bool { return st.LastError != "" }

// SnapshotStatus reports how the embedded store's snapshots fare.
func (s *Store) SnapshotStatus() SnapshotStatus {
	if s.cfg.Backend != BackendEmbedded {
		return SnapshotStatus{}
	}
	s.emb.mu.Lock()
	defer s.emb.mu.Unlock()
	return s.emb.status
}

// openEmbedded restores the snapshot into a fresh miniredis, checks that
// snapshots can be written, and serves the store on embedded.listen when
// set.
func (s *Store) openEmbedded(opts Options) error {
	path := s.cfg.Embedded.SnapshotPath
	s.emb.rebuildAfter = opts.RebuildAfter
	if s.emb.rebuildAfter == 0 {
		s.emb.rebuildAfter = defaultRebuildAfter
	}
	recs, found, err := readSnapshot(path)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w; the file is left as it is: move it aside to start with an empty store", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("snapshot directory: %w", err)
	}
	removeStaleTemps(path)
	if err := checkWritable(path); err != nil {
		return fmt.Errorf("snapshot directory %s is not writable: %w; every snapshot would fail and a restart would lose what was written since: fix the directory (permissions, space) or set storage.embedded.snapshot_path", dir, err)
	}
	m, ms, c, err := s.startEmbedded(recs)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	s.mini, s.rdb, s.emb.scripts = m, c, ms
	if addr := s.cfg.Embedded.Listen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			c.Close()
			m.Close()
			return fmt.Errorf("embedded store listen %s: %w", addr, err)
		}
		s.emb.ln, s.emb.lnDone = ln, make(chan struct{})
		go s.serveListener(ln)
	}
	s.emb.status = SnapshotStatus{Embedded: true, Path: path, LastSuccess: time.Now(), Keys: len(recs)}
	if found {
		s.log.Info("restored snapshot", "path", path, "keys", len(recs))
	}
	return nil
}

// checkWritable creates, writes and removes a temporary file where
// snapshots are written, so that a directory that would refuse them stops
// the start rather than every snapshot after it.
func checkWritable(path string) error {
	f, _, err := tempBeside(path)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(snapshotMagic)
	serr := f.Sync()
	cerr := f.Close()
	rerr := os.Remove(f.Name())
	return errors.Join(werr, serr, cerr, rerr)
}

// startEmbedded makes a fresh miniredis holding recs, what runs the store's
// scripts on it (nil when miniredis' own EVALSHA does), and its client.
// The instance has no listener of its own: the store's client reaches it
// over memPipes, and embedded.listen is served by serveListener, which
// hands each connection to whichever instance is current.
func (s *Store) startEmbedded(recs []record) (*miniredis.Miniredis, *miniScripts, *redis.Client, error) {
	m := miniredis.NewMiniRedis()
	// Dial starts miniredis without a listener; its own net.Pipe
	// connection is not used (see memPipe).
	conn, err := m.Dial()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start embedded store: %w", err)
	}
	conn.Close()
	db := m.DB(0)
	for _, r := range recs {
		if err := put(db, r); err != nil {
			m.Close()
			return nil, nil, nil, fmt.Errorf("restore embedded store: key %q: %w", r.key, err)
		}
	}
	ms := newMiniScripts(m)
	if ms == nil {
		s.log.Warn("embedded store: miniredis is not the version this racktracker was built against; scripts run through miniredis' own EVALSHA (slower)")
	}
	m.Server().SetPreHook(ms.serverHook())
	o := s.clientOptions()
	o.Dialer = dialer(m)
	return m, ms, s.newClient(o), nil
}

// put writes r into db, which does not hold r.key. Restoring through
// miniredis' own calls takes a fifth of the time RESP does.
func put(db *miniredis.RedisDB, r record) error {
	var err error
	switch r.kind {
	case kindString:
		err = db.Set(r.key, r.value)
	case kindSet:
		if len(r.members) > 0 {
			_, err = db.SetAdd(r.key, r.members...)
		}
	case kindZSet:
		for i, m := range r.members {
			if math.IsNaN(r.scores[i]) {
				return fmt.Errorf("member %q has a NaN score", m)
			}
			if _, err = db.ZAdd(r.key, r.scores[i], m); err != nil {
				break
			}
		}
	case kindHash:
		fv := make([]string, 0, 2*len(r.members))
		for i, f := range r.members {
			fv = append(fv, f, r.values[i])
		}
		if len(fv) > 0 {
			db.HSet(r.key, fv...)
		}
	case kindList:
		if len(r.members) > 0 {
			_, err = db.Push(r.key, r.members...)
		}
	case kindStream:
		for _, e := range r.entries {
			if _, err = db.XAdd(r.key, e.ID, e.Values); err != nil {
				break
			}
		}
	default:
		err = fmt.Errorf("unknown kind %q", r.kind)
	}
	return err
}

// applyDiff turns db, which holds from, into one that holds to. Both are
// in key order (canonical).
func applyDiff(db *miniredis.RedisDB, from, to []record) error {
	i, j := 0, 0
	for i < len(from) || j < len(to) {
		switch {
		case j == len(to) || i < len(from) && from[i].key < to[j].key:
			db.Del(from[i].key)
			i++
		case i == len(from) || to[j].key < from[i].key:
			if err := put(db, to[j]); err != nil {
				return fmt.Errorf("key %q: %w", to[j].key, err)
			}
			j++
		default:
			if !sameRecord(from[i], to[j]) {
				db.Del(to[j].key)
				if err := put(db, to[j]); err != nil {
					return fmt.Errorf("key %q: %w", to[j].key, err)
				}
			}
			i++
			j++
		}
	}
	return nil
}

// sameRecord compares scores by their bits, so that -0 differs from 0.
func sameRecord(a, b record) bool {
	if a.key != b.key || a.kind != b.kind || a.value != b.value ||
		!slices.Equal(a.members, b.members) || !slices.Equal(a.values, b.values) ||
		len(a.scores) != len(b.scores) || len(a.entries) != len(b.entries) {
		return false
	}
	for i := range a.scores {
		if math.Float64bits(a.scores[i]) != math.Float64bits(b.scores[i]) {
			return false
		}
	}
	for i := range a.entries {
		if a.entries[i].ID != b.entries[i].ID || !slices.Equal(a.entries[i].Values, b.entries[i].Values) {
			return false
		}
	}
	return true
}

// serveListener serves embedded.listen: each connection goes to the
// instance that is current when it arrives (a rebuild holds new ones back
// until the new instance is whole, and closes the old instance's).
func (s *Store) serveListener(ln net.Listener) {
	defer close(s.emb.lnDone)
	for {
		conn, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors, say: let some go before trying again.
			s.log.Warn("embedded store listener", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.gate.rlock(context.Background())
		if srv := s.mini.Server(); srv != nil && !s.closed.Load() {
			srv.ServeConn(conn)
		} else {
			conn.Close()
		}
		s.gate.runlock()
	}
}

// closeEmbedded stops embedded.listen and waits for its loop.
func (s *Store) closeEmbedded() {
	if s.emb.ln != nil {
		s.emb.ln.Close()
		<-s.emb.lnDone
	}
}

// Snapshot writes the embedded store to its snapshot file, atomically, and
// rebuilds the in-process store when miniredis' bookkeeping of deleted key
// names has grown past the live keys (see rebuildDue). The store is copied
// at one point in time in a few milliseconds and written while calls go on.
// With an external Redis it does nothing.
func (s *Store) Snapshot(ctx context.Context) error { return s.snapshot(ctx, true) }

// snapshot writes the file and, when mayRebuild and it is due, rebuilds the
// store (Close does not: the store is about to go).
func (s *Store) snapshot(ctx context.Context, mayRebuild bool) error {
	if s.cfg.Backend != BackendEmbedded {
		return nil
	}
	s.emb.snapMu.Lock()
	defer s.emb.snapMu.Unlock()
	start := time.Now()
	cp, err := s.copyStore(false)
	if err != nil {
		err = fmt.Errorf("snapshot: read store: %w", err)
		s.noteSnapshot(start, nil, err)
		return err
	}
	copied := time.Since(start)
	s.warnSkipped(cp.skipped)
	path := s.cfg.Embedded.SnapshotPath
	if werr := writeSnapshot(path, cp.recs, nil); werr != nil {
		err = fmt.Errorf("snapshot %s: %w", path, werr)
	}
	s.noteSnapshot(start, &cp, err)
	rebuilt := false
	if mayRebuild && ctx.Err() == nil && s.rebuildDue(cp) {
		if rerr := s.rebuild(cp.recs); rerr != nil {
			s.log.Error("rebuild embedded store; keeping the current one", "err", rerr)
		} else {
			rebuilt = true
		}
	}
	s.log.Debug("snapshot", "path", path, "keys", len(cp.recs), "dead_key_names", cp.dead,
		"held", cp.held, "max_hold", cp.maxHold, "last_hold", cp.lastHold, "chunks", cp.chunks, "copied", copied, "took", time.Since(start), "rebuilt", rebuilt, "err", err)
	return err
}

// copyStore copies the current instance at one point in time. The fast
// copies hold only miniredis' mutex: in chunks (minicopy.go), or in one
// hold when the caller holds the gate (held: nothing else writes then);
// the fallback holds the gate, unless the caller already does.
func (s *Store) copyStore(held bool) (storeCopy, error) {
	if !held {
		if c, ok := copyChunked(s.mini, s.emb.scripts); ok {
			return c, nil
		}
	}
	if c, ok := copyMini(s.mini); ok {
		return c, nil
	}
	if !held {
		s.gate.lock()
		defer s.gate.unlock()
	}
	return copyMiniSlow(s.mini)
}

// rebuildDue decides from the copy whether to rebuild. miniredis keeps a
// version number for every key name it ever held, deleted or not, and only
// a fresh instance lets go of them: peer churn would grow memory without
// bound. A dead name costs less than a live key (one map entry against
// four, and no value), so rebuilding once the dead names outnumber the
// live keys (and defaultRebuildAfter) keeps the bookkeeping below the
// store's own size, while a store without churn is never rebuilt.
func (s *Store) rebuildDue(cp storeCopy) bool {
	s.emb.sinceRebuild++
	switch {
	case cp.dead < 0:
		return s.emb.sinceRebuild >= defaultRebuildEvery && s.dirty.Load()
	case s.emb.rebuildAfter < 0:
		return cp.dead > 0
	}
	return cp.dead > max(s.emb.rebuildAfter, len(cp.recs))
}

// rebuild swaps the in-process store for a fresh one. The new instance is
// filled from the snapshot's copy while calls go on against the old one;
// then, holding the gate, the writes made since are carried over and the
// instances swapped. Readers on embedded.listen see the old store, whole,
// until the swap; their writes are refused in the moment the gate is held,
// since the old instance and whatever it took then are about to go.
func (s *Store) rebuild(from []record) error {
	m, ms, c, err := s.startEmbedded(from)
	if err != nil {
		return err
	}
	s.gate.lock()
	old, oldc := s.mini, s.rdb
	srv := old.Server()
	srv.SetPreHook(refuseWrites(srv))
	now, err := s.copyStore(true)
	if err == nil {
		err = applyDiff(m.DB(0), from, now.recs)
	}
	if err != nil {
		srv.SetPreHook(s.emb.scripts.serverHook())
		s.gate.unlock()
		c.Close()
		m.Close()
		return err
	}
	s.mini, s.rdb, s.emb.scripts = m, c, ms
	s.dirty.Store(false)
	s.emb.sinceRebuild = 0
	s.gate.unlock()
	oldc.Close()
	old.Close()
	s.emb.mu.Lock()
	s.emb.status.Rebuilds++
	s.emb.mu.Unlock()
	return nil
}

// refuseWrites answers every command that could change the store with an
// error, and lets reads and connection commands through.
func refuseWrites(srv *server.Server) server.Hook {
	return func(c *server.Peer, cmd string, args ...string) bool {
		switch cmd {
		case "PING", "ECHO", "HELLO", "AUTH", "SELECT", "CLIENT", "INFO", "COMMAND", "QUIT", "DBSIZE", "TIME":
			return false
		}
		if srv.IsReadOnlyCommand(cmd) {
			return false
		}
		c.WriteError("READONLY the embedded store is being rebuilt; try again in a moment")
		return true
	}
}

// noteSnapshot records the outcome of a snapshot begun at start.
// cp is nil when the store could not be read.
func (s *Store) noteSnapshot(start time.Time, cp *storeCopy, err error) {
	s.emb.mu.Lock()
	defer s.emb.mu.Unlock()
	st := &s.emb.status
	if cp != nil {
		st.Keys, st.DeadKeyNames = len(cp.recs), cp.dead
	}
	if err != nil {
		if st.LastError == "" {
			st.FailingSince = start
		}
		st.LastError = err.Error()
		st.Failures++
		return
	}
	st.LastSuccess = start
	st.LastError = ""
	st.FailingSince = time.Time{}
}

// warnSkipped says, when it changes, which keys snapshots leave out.
func (s *Store) warnSkipped(keys []string) {
	s.emb.mu.Lock()
	changed := len(keys) != s.emb.skipped
	s.emb.skipped = len(keys)
	s.emb.mu.Unlock()
	if changed && len(keys) > 0 {
		s.log.Warn("snapshots leave out keys of types they cannot hold (written through embedded.listen)",
			"count", len(keys), "first", keys[0])
	}
}

// Run snapshots the embedded store every snapshot_interval until ctx ends.
// With an external Redis it returns at once.
func (s *Store) Run(ctx context.Context) {
	if s.cfg.Backend != BackendEmbedded {
		return
	}
	t := time.NewTicker(s.cfg.Embedded.SnapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Snapshot(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("periodic snapshot failed; the last good snapshot is kept", "err", err)
			}
		}
	}
}
