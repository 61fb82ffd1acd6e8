package storage

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
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

// History lists every deactivated run of every transfer, newest first. Its
// cost follows the number of transfers ever seen and of their runs. Each run
// is read in calls of its own, so that a long history never holds the store
// (and, behind a waiting snapshot, every announce) for its whole length.
func (s *Store) History(ctx context.Context) ([]Deactivated, error) {
	type run struct {
		h  InfoHash
		at string
	}
	var runs []run
	err := s.read(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		hashes, err := c.SMembers(ctx, keyTransfers).Result()
		if err != nil {
			return err
		}
		p := c.Pipeline()
		sets := make([]*redis.StringSliceCmd, len(hashes))
		for i, h := range hashes {
			sets[i] = p.SMembers(ctx, tkeys(h).deactivations())
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		for i, hs := range hashes {
			h, err := ParseInfoHash(hs)
			if err != nil {
				continue
			}
			for _, at := range sets[i].Val() {
				runs = append(runs, run{h, at})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Deactivated, 0, len(runs))
	for _, r := range runs {
		var st TransferStats
		err := s.read(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
			var err error
			st, err = readStats(ctx, c, archived(r.h, r.at))
			return err
		})
		if err != nil {
			return nil, err
		}
		st.InfoHash = r.h
		out = append(out, Deactivated{At: r.at, Stats: st})
	}
	slices.SortFunc(out, func(a, b Deactivated) int {
		if a.At != b.At {
			return -cmp.Compare(a.At, b.At)
		}
		return cmp.Compare(a.Stats.InfoHash.String(), b.Stats.InfoHash.String())
	})
	return out, nil
}

// Active lists the active transfers' states, sorted by hash. It may read a
// replica (sentinel.replica_reads).
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

// readStats reads the state of the transfer whose keys start with k, in two
// round trips: the transfer's own keys and sets, then its current peers'
// reports and its racks' sets. Cost follows the transfer's size.
func readStats(ctx context.Context, c *redis.Client, k tkeys) (TransferStats, error) {
	var t TransferStats
	p := c.Pipeline()
	fields := p.MGet(ctx, k.field("name"), k.field("length"), k.field("registered"), k.field("deregistered"),
		k.field("first_started"), k.field("last_started"), k.field("first_completed"), k.field("last_completed"),
		k.field("last_announce"), k.field("completions"))
	seeders := p.SMembers(ctx, k.peers(classSeeders))
	leechers := p.SMembers(ctx, k.peers(classLeech))
	reps := p.SCard(ctx, k.peers(classReps))
	seen := p.SCard(ctx, k.peers(classSeen))
	racks := p.SMembers(ctx, k.field("racks"))
	if _, err := p.Exec(ctx); err != nil {
		return t, err
	}
	f := fields.Val()
	str := func(i int) string { s, _ := f[i].(string); return s }
	t.Name = str(0)
	t.Length = -1
	if n, err := strconv.ParseInt(str(1), 10, 64); err == nil {
		t.Length = n
	}
	t.Registered, t.Deregistered = str(2), str(3)
	t.FirstStarted, t.LastStarted = str(4), str(5)
	t.FirstCompleted, t.LastCompleted = str(6), str(7)
	t.LastAnnounce = str(8)
	t.Completions = atoi(f[9])
	t.Seeders, t.Leechers = len(seeders.Val()), len(leechers.Val())
	t.Representatives, t.PeersSeen = int(reps.Val()), int(seen.Val())

	current := append(seeders.Val(), leechers.Val()...)
	rackNames := racks.Val()
	slices.Sort(rackNames)
	p = c.Pipeline()
	reports := make([]*redis.SliceCmd, len(current))
	for i, peer := range current {
		ip := peerIP(peer)
		reports[i] = p.MGet(ctx, k.peer(ip, "uploaded"), k.peer(ip, "downloaded"), k.peer(ip, "left"))
	}
	type rackCmds struct {
		seeders, seen *redis.IntCmd
		leechers      *redis.ZSliceCmd
		reps          *redis.StringSliceCmd
	}
	rc := make([]rackCmds, len(rackNames))
	for i, r := range rackNames {
		rc[i] = rackCmds{
			seeders:  p.SCard(ctx, k.rack(r, classSeeders)),
			seen:     p.SCard(ctx, k.rack(r, classSeen)),
			leechers: p.ZRangeWithScores(ctx, k.rack(r, "left"), 0, -1),
			reps:     p.SMembers(ctx, k.rack(r, classReps)),
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		return t, err
	}
	for _, r := range reports {
		v := r.Val()
		t.Uploaded += int64(atoi(v[0]))
		t.Downloaded += int64(atoi(v[1]))
		t.Left += int64(atoi(v[2]))
	}
	for i, r := range rackNames {
		rs := RackStats{
			Rack:            r,
			Seeders:         int(rc[i].seeders.Val()),
			PeersSeen:       int(rc[i].seen.Val()),
			Representatives: rc[i].reps.Val(),
		}
		slices.Sort(rs.Representatives)
		for j, z := range rc[i].leechers.Val() {
			if j == 0 { // ZRANGE: least left first
				rs.MinLeft = int64(z.Score)
			}
			rs.Leechers++
			rs.Left += int64(z.Score)
		}
		t.Racks = append(t.Racks, rs)
	}
	return t, nil
}
