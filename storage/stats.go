package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// TransferStats is one transfer's state, active or deactivated. Datetimes
// are as stored ("" when never set); Length is -1 when unknown (a transfer
// activated by an announce rather than registered).
type TransferStats struct {
	InfoHash       InfoHash
	Active         bool
	Name           string
	Length         int64
	Registered     string
	Deregistered   string
	FirstStarted   string
	LastStarted    string
	FirstCompleted string
	LastCompleted  string
	LastAnnounce   string

	Seeders         int
	Leechers        int
	Representatives int
	PeersSeen       int
	Completions     int
	// Sums over the current peers of what they reported.
	Uploaded   int64
	Downloaded int64
	Left       int64
	Racks      []RackStats
}

// RackStats is one rack's share of a transfer.
type RackStats struct {
	Rack            string
	Seeders         int
	Leechers        int
	PeersSeen       int
	Representatives []string // peers, sorted
	Left            int64    // sum over the rack's current leechers
	MinLeft         int64    // left of the rack's most advanced leecher; 0 without leechers
}

// Progress is the share of the payload the current peers hold, from 0 to
// 1; -1 when the length is unknown or there is no current peer.
func (t TransferStats) Progress() float64 { return progress(t.Length, t.Seeders+t.Leechers, t.Left) }

// Progress is the share of the payload the rack's current peers hold.
func (r RackStats) Progress(length int64) float64 {
	return progress(length, r.Seeders+r.Leechers, r.Left)
}

func progress(length int64, peers int, left int64) float64 {
	if length <= 0 || peers == 0 {
		return -1
	}
	total := float64(length) * float64(peers)
	return max(0, min(1, (total-float64(left))/total))
}

// Transfer returns the state of an active transfer; ErrNotFound otherwise.
// It reads the master, so that it sees what was just written.
func (s *Store) Transfer(ctx context.Context, h InfoHash) (TransferStats, error) {
	return s.transfer(ctx, h, s.do)
}

// call is how a method reaches Redis: do (the master) or read (a replica
// when configured).
type call func(context.Context, time.Duration, func(context.Context, *redis.Client) error) error

func (s *Store) transfer(ctx context.Context, h InfoHash, call call) (TransferStats, error) {
	var t TransferStats
	err := call(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		active, err := c.SIsMember(ctx, keyActiveTransfers, h.String()).Result()
		if err != nil {
			return err
		}
		if !active {
			return ErrNotFound
		}
		t, err = readStats(ctx, c, transferKeys(h))
		t.InfoHash, t.Active = h, true
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return t, ErrNotFound
	}
	return t, err
}

// Deactivated is one retired run of a transfer: its keys live under
// <At>:<hash>.
type Deactivated struct {
	At    string
	Stats TransferStats
}

// Cursor names the run in the history, "<datetime>:<hash>", the prefix of
// its keys and its member of deactivations: History lists the runs after
// it.
func (d Deactivated) Cursor() string { return string(archived(d.Stats.InfoHash, d.At)) }

// History lists deactivated runs newest first: at most limit of them, after
// the run whose Cursor is after ("" for the newest). next is the cursor to
// pass for the following page, "" after the last. A cursor that is not
// "<datetime>:<hash>" gets ErrBadCursor; one whose run was pruned meanwhile
// still pages on from its place. The index is the sorted set deactivations,
// so the cost follows the page, not the history. Each run is read in calls
// of its own, so that a long page never holds the store (and, behind a
// waiting snapshot, every announce) for its whole length.
func (s *Store) History(ctx context.Context, limit int, after string) (runs []Deactivated, next string, err error) {
	if limit <= 0 {
		return nil, "", nil
	}
	var members []string
	if after == "" {
		err = s.read(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
			var err error
			members, err = c.ZRangeArgs(ctx, newestFirst("+inf", "-inf", limit+1)).Result()
			return err
		})
	} else {
		_, t, ok := parseRun(after)
		if !ok {
			return nil, "", fmt.Errorf("%w: %q: want <datetime>:<hash> as a page's next gave it", ErrBadCursor, shortText(after))
		}
		score := strconv.FormatInt(t.UnixMilli(), 10)
		err = s.read(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
			p := c.Pipeline()
			ties := p.ZRangeArgs(ctx, newestFirst(score, score, 0))
			older := p.ZRangeArgs(ctx, newestFirst("("+score, "-inf", limit+1))
			if _, err := p.Exec(ctx); err != nil {
				return err
			}
			// Equal scores come in descending member order, as the
			// whole index does: the ties after the cursor, then older.
			for _, m := range ties.Val() {
				if m < after {
					members = append(members, m)
				}
			}
			members = append(members, older.Val()...)
			return nil
		})
	}
	if err != nil {
		return nil, "", err
	}
	if len(members) > limit {
		members = members[:limit]
		next = members[limit-1]
	}
	runs = make([]Deactivated, 0, len(members))
	for _, m := range members {
		h, t, ok := parseRun(m)
		if !ok {
			continue // not a run's prefix: written by hand
		}
		var st TransferStats
		err = s.read(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
			var err error
			st, err = readStats(ctx, c, tkeys(m))
			return err
		})
		if err != nil {
			return nil, "", err
		}
		st.InfoHash = h
		runs = append(runs, Deactivated{At: FormatTime(t), Stats: st})
	}
	return runs, next, nil
}

// newestFirst reads deactivations from score max down to min, at most
// count members (0: all).
func newestFirst(max, min string, count int) redis.ZRangeArgs {
	return redis.ZRangeArgs{Key: keyDeactivations, Start: max, Stop: min, ByScore: true, Rev: true, Count: int64(count)}
}

// parseRun reads a run's name, <datetime>:<hash>; the datetime holds colons
// of its own, the hash is the last 40 characters.
func parseRun(run string) (InfoHash, time.Time, bool) {
	n := len(run) - 41
	if n <= 0 || run[n] != ':' {
		return InfoHash{}, time.Time{}, false
	}
	h, err := ParseInfoHash(run[n+1:])
	if err != nil || strings.ToUpper(run[n+1:]) != run[n+1:] {
		return InfoHash{}, time.Time{}, false
	}
	t, err := ParseTime(run[:n])
	if err != nil || FormatTime(t) != run[:n] {
		return InfoHash{}, time.Time{}, false
	}
	return h, t, true
}

// shortText cuts a text for an error message.
func shortText(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// migrateDeactivations moves the per-hash history indexes of older
// versions (<hash>:deactivations, a set of datetimes) into the global
// deactivations, so that no key starts with a retired hash (SPEC section
// 3). Open runs it; it is idempotent, and its cost follows the number of
// transfers ever seen, once per start.
func (s *Store) migrateDeactivations(ctx context.Context) error {
	var hashes []string
	err := s.do(ctx, bulkTimeout, func(ctx context.Context, c *redis.Client) error {
		var err error
		hashes, err = c.SMembers(ctx, keyTransfers).Result()
		return err
	})
	if err != nil || len(hashes) == 0 {
		return err
	}
	moved := 0
	err = s.do(ctx, bulkTimeout, func(ctx context.Context, c *redis.Client) error {
		p := c.Pipeline()
		sets := make([]*redis.StringSliceCmd, len(hashes))
		for i, h := range hashes {
			sets[i] = p.SMembers(ctx, tkeys(h).legacyDeactivations())
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		for i, h := range hashes {
			ats := sets[i].Val()
			if len(ats) == 0 {
				continue
			}
			_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, at := range ats {
					t, err := ParseTime(at)
					if err != nil {
						continue // not ours: written by hand
					}
					p.ZAdd(ctx, keyDeactivations, redis.Z{Score: float64(t.UnixMilli()), Member: at + ":" + h})
				}
				p.Del(ctx, tkeys(h).legacyDeactivations())
				return nil
			})
			if err != nil {
				return err
			}
			moved += len(ats)
		}
		return nil
	})
	if moved > 0 {
		s.dirty.Store(true)
		s.log.Info("moved the history index into deactivations", "runs", moved)
	}
	return err
}

// Active lists the active transfers' states, sorted by hash, each read as
// Transfer reads it, with the sums over its current peers' reports: a few
// round trips per transfer and a read per current peer. Index is the cheap
// listing. It may read a replica (sentinel.replica_reads).
func (s *Store) Active(ctx context.Context) ([]TransferStats, error) {
	hashes, err := s.activeHashes(ctx, s.read)
	if err != nil {
		return nil, err
	}
	out := make([]TransferStats, 0, len(hashes))
	for _, hs := range hashes {
		h, err := ParseInfoHash(hs)
		if err != nil {
			continue
		}
		t, err := s.transfer(ctx, h, s.read)
		if errors.Is(err, ErrNotFound) {
			continue // deactivated meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Racks returns every rack seen with its hosts, sorted. It may read a
// replica (sentinel.replica_reads).
func (s *Store) Racks(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	err := s.read(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		racks, err := c.SMembers(ctx, keyRacks).Result()
		if err != nil {
			return err
		}
		p := c.Pipeline()
		hosts := make([]*redis.StringSliceCmd, len(racks))
		for i, r := range racks {
			hosts[i] = p.SMembers(ctx, keyRack(r))
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		for i, r := range racks {
			hs := hosts[i].Val()
			slices.Sort(hs)
			out[r] = hs
		}
		return nil
	})
	return out, err
}

// readStats reads the state of the transfer whose keys start with k, with
// the sums over its current peers' reports, in two round trips. Cost follows
// the transfer's size.
func readStats(ctx context.Context, c *redis.Client, k tkeys) (TransferStats, error) {
	q := statsQuery{k: k}
	p := c.Pipeline()
	q.queue(ctx, p)
	seeders := p.SMembers(ctx, k.peers(classSeeders))
	leechers := p.SMembers(ctx, k.peers(classLeech))
	if _, err := p.Exec(ctx); err != nil {
		return TransferStats{}, err
	}
	current := append(seeders.Val(), leechers.Val()...)
	p = c.Pipeline()
	q.queueRacks(ctx, p)
	reports := make([]*redis.SliceCmd, len(current))
	for i, peer := range current {
		ip := peerIP(peer)
		reports[i] = p.MGet(ctx, k.peer(ip, peerUploaded), k.peer(ip, peerDownloaded), k.peer(ip, peerLeft))
	}
	if _, err := p.Exec(ctx); err != nil {
		return TransferStats{}, err
	}
	t := q.stats()
	t.Seeders, t.Leechers = len(seeders.Val()), len(leechers.Val())
	t.Left = 0
	for _, r := range reports {
		v := r.Val()
		t.Uploaded += int64(atoi(v[0]))
		t.Downloaded += int64(atoi(v[1]))
		t.Left += int64(atoi(v[2]))
	}
	return t, nil
}

// Index lists the active transfers' states, sorted by hash, as an index of
// them shows them: in three round trips whatever their number (the active
// set; every transfer's own keys; every rack's sets), from the counters and
// the per-rack sets only. Uploaded and Downloaded stay 0: they are sums
// over the current peers' reports, a read per peer, which Transfer and
// Active make. Left is the sum over the racks' leechers, as a seeder has
// nothing left. It may read a replica (sentinel.replica_reads).
func (s *Store) Index(ctx context.Context) ([]TransferStats, error) {
	var out []TransferStats
	err := s.read(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		hashes, err := c.SMembers(ctx, keyActiveTransfers).Result()
		if err != nil {
			return err
		}
		slices.Sort(hashes)
		qs := make([]statsQuery, 0, len(hashes))
		p := c.Pipeline()
		for _, hs := range hashes {
			h, err := ParseInfoHash(hs)
			if err != nil {
				continue
			}
			qs = append(qs, statsQuery{h: h, k: transferKeys(h)})
			qs[len(qs)-1].queue(ctx, p)
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		p = c.Pipeline()
		for i := range qs {
			qs[i].queueRacks(ctx, p)
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		for i := range qs {
			t := qs[i].stats()
			if t.Registered == "" {
				continue // deactivated meanwhile: its keys moved
			}
			t.InfoHash, t.Active = qs[i].h, true
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// statsQuery reads the state of one transfer, but for the sums over its
// peers' reports, in two phases that may share pipelines with other
// transfers': the transfer's own keys (queue), then its racks' sets
// (queueRacks), whose names the first phase reads.
type statsQuery struct {
	h          InfoHash
	k          tkeys
	fields     *redis.SliceCmd
	reps, seen *redis.IntCmd
	racks      *redis.StringSliceCmd
	rackNames  []string
	rackCmds   []rackCmds
}

type rackCmds struct {
	seeders, seen *redis.IntCmd
	leechers      *redis.ZSliceCmd
	reps          *redis.StringSliceCmd
}

// statsFields are the per-transfer string keys statsQuery reads, in the
// order stats takes them apart.
var statsFields = []string{
	leafName, leafLength, leafRegistered, leafDeregistered,
	leafFirstStarted, leafLastStarted, leafFirstCompleted, leafLastCompleted,
	leafLastAnnounce, leafCompletions, leafComplete, leafIncomplete,
}

func (q *statsQuery) queue(ctx context.Context, p redis.Pipeliner) {
	keys := make([]string, len(statsFields))
	for i, f := range statsFields {
		keys[i] = q.k.field(f)
	}
	q.fields = p.MGet(ctx, keys...)
	q.reps = p.SCard(ctx, q.k.peers(classReps))
	q.seen = p.SCard(ctx, q.k.peers(classSeen))
	q.racks = p.SMembers(ctx, q.k.field(leafRacks))
}

func (q *statsQuery) queueRacks(ctx context.Context, p redis.Pipeliner) {
	q.rackNames = q.racks.Val()
	slices.Sort(q.rackNames)
	q.rackCmds = make([]rackCmds, len(q.rackNames))
	for i, r := range q.rackNames {
		q.rackCmds[i] = rackCmds{
			seeders:  p.SCard(ctx, q.k.rack(r, classSeeders)),
			seen:     p.SCard(ctx, q.k.rack(r, classSeen)),
			leechers: p.ZRangeWithScores(ctx, q.k.rack(r, rackLeft), 0, -1),
			reps:     p.SMembers(ctx, q.k.rack(r, classReps)),
		}
	}
}

// stats assembles what both phases read.
func (q *statsQuery) stats() TransferStats {
	f := q.fields.Val()
	str := func(i int) string { s, _ := f[i].(string); return s }
	t := TransferStats{Name: str(0), Length: -1}
	if n, err := strconv.ParseInt(str(1), 10, 64); err == nil {
		t.Length = n
	}
	t.Registered, t.Deregistered = str(2), str(3)
	t.FirstStarted, t.LastStarted = str(4), str(5)
	t.FirstCompleted, t.LastCompleted = str(6), str(7)
	t.LastAnnounce = str(8)
	t.Completions = atoi(f[9])
	t.Seeders, t.Leechers = atoi(f[10]), atoi(f[11])
	t.Representatives, t.PeersSeen = int(q.reps.Val()), int(q.seen.Val())
	for i, r := range q.rackNames {
		c := q.rackCmds[i]
		rs := RackStats{
			Rack:            r,
			Seeders:         int(c.seeders.Val()),
			PeersSeen:       int(c.seen.Val()),
			Representatives: c.reps.Val(),
		}
		slices.Sort(rs.Representatives)
		for j, z := range c.leechers.Val() {
			if j == 0 { // ZRANGE: least left first
				rs.MinLeft = int64(z.Score)
			}
			rs.Leechers++
			rs.Left += int64(z.Score)
		}
		t.Left += rs.Left
		t.Racks = append(t.Racks, rs)
	}
	return t
}
