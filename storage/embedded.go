package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// openEmbedded starts miniredis in process, restores the snapshot into it
// through go-redis, and serves it on embedded.listen when set.
func (s *Store) openEmbedded(ctx context.Context) error {
	path := s.cfg.Embedded.SnapshotPath
	recs, found, err := readSnapshot(path)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w; the file is left as it is: move it aside to start with an empty store", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("snapshot directory: %w", err)
	}
	removeStaleTemps(path)
	m, c, err := s.startEmbedded(ctx, recs)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	s.mini, s.rdb = m, c
	if found {
		s.log.Info("restored snapshot", "path", path, "keys", len(recs))
	}
	return nil
}

// startEmbedded makes a fresh miniredis holding recs, and its client.
func (s *Store) startEmbedded(ctx context.Context, recs []record) (*miniredis.Miniredis, *redis.Client, error) {
	m := miniredis.NewMiniRedis()
	if addr := s.cfg.Embedded.Listen; addr != "" {
		if err := m.StartAddr(addr); err != nil {
			return nil, nil, fmt.Errorf("embedded store listen %s: %w", addr, err)
		}
	} else {
		// Dial starts miniredis without a listener; its own net.Pipe
		// connection is not used (see memPipe).
		conn, err := m.Dial()
		if err != nil {
			return nil, nil, fmt.Errorf("start embedded store: %w", err)
		}
		conn.Close()
	}
	o := s.clientOptions()
	o.Dialer = dialer(m)
	c := s.newClient(o)
	if err := restore(ctx, c, recs); err != nil {
		c.Close()
		m.Close()
		return nil, nil, fmt.Errorf("restore embedded store: %w", err)
	}
	return m, c, nil
}

// restore writes recs into an empty store, in pipelines of bounded size.
func restore(ctx context.Context, c *redis.Client, recs []record) error {
	ctx, cancel := context.WithTimeout(ctx, bulkTimeout)
	defer cancel()
	const batch = 512
	for len(recs) > 0 {
		n := min(batch, len(recs))
		p := c.Pipeline()
		for _, r := range recs[:n] {
			switch r.kind {
			case kindString:
				p.Set(ctx, r.key, r.value, 0)
			case kindSet:
				p.SAdd(ctx, r.key, toAny(r.members)...)
			case kindZSet:
				zs := make([]redis.Z, len(r.members))
				for i, m := range r.members {
					zs[i] = redis.Z{Score: r.scores[i], Member: m}
				}
				p.ZAdd(ctx, r.key, zs...)
			}
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}

func toAny(ss []string) []any {
	a := make([]any, len(ss))
	for i, s := range ss {
		a[i] = s
	}
	return a
}

// dump reads every key of the store. The caller holds the gate
// exclusively, so nothing changes between the commands. KEYS walks the
// whole keyspace, which is the point here and nowhere else.
func dump(ctx context.Context, c *redis.Client) ([]record, error) {
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		return nil, err
	}
	slices.Sort(keys)
	recs := make([]record, 0, len(keys))
	const batch = 512
	for len(keys) > 0 {
		chunk := keys[:min(batch, len(keys))]
		keys = keys[len(chunk):]
		p := c.Pipeline()
		types := make([]*redis.StatusCmd, len(chunk))
		for i, k := range chunk {
			types[i] = p.Type(ctx, k)
		}
		if _, err := p.Exec(ctx); err != nil {
			return nil, err
		}
		p = c.Pipeline()
		vals := make([]redis.Cmder, len(chunk))
		for i, k := range chunk {
			switch t := types[i].Val(); t {
			case "string":
				vals[i] = p.Get(ctx, k)
			case "set":
				vals[i] = p.SMembers(ctx, k)
			case "zset":
				vals[i] = p.ZRangeWithScores(ctx, k, 0, -1)
			default:
				// Only an operator writing through embedded.listen can make
				// other types; say so rather than drop the key silently.
				return nil, fmt.Errorf("key %q has type %s, which the snapshot does not hold", k, t)
			}
		}
		if _, err := p.Exec(ctx); err != nil {
			return nil, err
		}
		for i, k := range chunk {
			switch v := vals[i].(type) {
			case *redis.StringCmd:
				recs = append(recs, record{key: k, kind: kindString, value: v.Val()})
			case *redis.StringSliceCmd:
				m := v.Val()
				slices.Sort(m)
				recs = append(recs, record{key: k, kind: kindSet, members: m})
			case *redis.ZSliceCmd:
				r := record{key: k, kind: kindZSet}
				for _, z := range v.Val() {
					r.members = append(r.members, z.Member.(string))
					r.scores = append(r.scores, z.Score)
				}
				recs = append(recs, r)
			}
		}
	}
	return recs, nil
}

// Snapshot writes the embedded store to its snapshot file, atomically.
// Every RebuildEvery snapshots, when the store was written since the last
// rebuild, it also rebuilds the in-process store from the same dump:
// miniredis keeps a version number for every key name it ever saw, deleted
// or not, and only a fresh instance lets go of them, so peer churn would
// otherwise grow memory without bound. With an external Redis it does
// nothing.
func (s *Store) Snapshot(ctx context.Context) error { return s.snapshot(ctx, true) }

// snapshot writes the file and, when rebuild allows and it is due, rebuilds
// the store (Close does not: the store is about to go).
func (s *Store) snapshot(ctx context.Context, rebuild bool) error {
	if s.mini == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, bulkTimeout)
	defer cancel()
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.sinceRebuild++
	rebuild = rebuild && s.sinceRebuild >= s.rebuildEvery
	start := time.Now()
	s.gate.Lock()
	recs, err := dump(ctx, s.rdb)
	rebuilt := false
	if err == nil && rebuild && s.dirty.Load() {
		if rerr := s.rebuildLocked(ctx, recs); rerr != nil {
			s.log.Error("rebuild embedded store; keeping the current one", "err", rerr)
		} else {
			s.dirty.Store(false)
			s.sinceRebuild = 0
			rebuilt = true
		}
	}
	held := time.Since(start)
	s.gate.Unlock()
	if err != nil {
		return fmt.Errorf("snapshot: read store: %w", err)
	}
	if err := writeSnapshot(s.cfg.Embedded.SnapshotPath, recs, nil); err != nil {
		return fmt.Errorf("snapshot %s: %w", s.cfg.Embedded.SnapshotPath, err)
	}
	s.log.Debug("snapshot written", "path", s.cfg.Embedded.SnapshotPath, "keys", len(recs),
		"rebuilt", rebuilt, "held", held, "took", time.Since(start))
	return nil
}

// rebuildLocked swaps the in-process store for a fresh one holding recs.
// The caller holds the gate exclusively.
func (s *Store) rebuildLocked(ctx context.Context, recs []record) error {
	if s.cfg.Embedded.Listen != "" {
		// The new instance takes over the listening address.
		s.mini.Close()
	}
	m, c, err := s.startEmbedded(ctx, recs)
	if err != nil {
		if s.cfg.Embedded.Listen != "" {
			// Closing the old instance cut the client's pooled connections:
			// serve it again and give it a fresh client, so that no call
			// fails on a dead connection.
			if rerr := s.mini.StartAddr(s.cfg.Embedded.Listen); rerr != nil {
				err = errors.Join(err, rerr)
			}
			o := s.clientOptions()
			o.Dialer = dialer(s.mini)
			s.rdb.Close()
			s.rdb = s.newClient(o)
		}
		return err
	}
	old, oldc := s.mini, s.rdb
	s.mini, s.rdb = m, c
	oldc.Close()
	old.Close()
	return nil
}

// Run snapshots the embedded store every snapshot_interval until ctx ends.
// With an external Redis it returns at once.
func (s *Store) Run(ctx context.Context) {
	if s.mini == nil {
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
