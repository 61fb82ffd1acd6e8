package storage

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Register activates a transfer with its metainfo and keeps its .torrent.
// A transfer that announces alone activated (it has no .torrent) stays
// active, with its peers, and gets the metainfo and the .torrent attached.
// It returns ErrExists when the transfer is active with a .torrent already.
func (s *Store) Register(ctx context.Context, h InfoHash, name string, length int64, torrent []byte) error {
	var res int64
	err := s.do(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		var err error
		res, err = scriptActivate.Run(ctx, c, nil, h.String(), s.clockArg(), name, length, torrent).Int64()
		return err
	})
	if err != nil {
		return err
	}
	if res == 0 {
		return ErrExists
	}
	s.dirty.Store(true)
	return nil
}

// Deactivate retires an active transfer (SPEC section 3): its keys move
// under <datetime>:<hash>, which it returns. ErrNotFound when not active.
func (s *Store) Deactivate(ctx context.Context, h InfoHash) (string, error) {
	return s.deactivate(ctx, h, "")
}

// DeactivateIdle retires h like Deactivate, but only if it is still idle as
// Idle(timeout) found it: the check and the retirement are one step, so a
// peer that announced in between (to any tracker process) keeps its
// transfer. ErrNotFound when h is not active or no longer idle.
func (s *Store) DeactivateIdle(ctx context.Context, h InfoHash, timeout time.Duration) (string, error) {
	return s.deactivate(ctx, h, strconv.FormatInt(timeout.Milliseconds(), 10))
}

func (s *Store) deactivate(ctx context.Context, h InfoHash, idleMS string) (string, error) {
	var at any
	err := s.do(ctx, bulkTimeout, func(ctx context.Context, c *redis.Client) error {
		var err error
		at, err = scriptDeactivate.Run(ctx, c, nil, h.String(), s.clockArg(), idleMS).Result()
		return err
	})
	if err != nil {
		return "", err
	}
	str, ok := at.(string)
	if !ok {
		return "", ErrNotFound
	}
	s.dirty.Store(true)
	return str, nil
}

// pruneBatch bounds the runs one prune script deletes, so that a backlog
// does not hold Redis (or the embedded store's one lock) for long.
const pruneBatch = 16

// Prune deletes the deactivated runs older than retention, by the store's
// clock, with every key of each; it returns how many. It reads only what it
// deletes: the oldest entries of deactivations and those runs' own keys.
func (s *Store) Prune(ctx context.Context, retention time.Duration) (int, error) {
	total := 0
	for more := true; more; {
		var res []int64
		err := s.do(ctx, bulkTimeout, func(ctx context.Context, c *redis.Client) error {
			var err error
			res, err = scriptPrune.Run(ctx, c, nil, retention.Milliseconds(), pruneBatch, s.clockArg()).Int64Slice()
			return err
		})
		if err != nil {
			return total, err
		}
		total += int(res[0])
		more = res[1] == 1
	}
	if total > 0 {
		s.dirty.Store(true)
	}
	return total, nil
}

// Expired is what an expiry pass did.
type Expired struct {
	Peers   int // peers removed from the current sets
	Elected int // representatives elected in their place
}

// expireBatch bounds one script run, so that a mass expiry does not hold
// Redis (or the embedded store's one lock) for long.
const expireBatch = 256

// Expire removes from every active transfer the peers whose deadline has
// passed (see Timers), by the store's clock (see Options.Now), and refills
// the representative slots they held. Its cost follows the number of active
// transfers and of expired peers.
func (s *Store) Expire(ctx context.Context, t Timers, representatives int) (Expired, error) {
	var total Expired
	hashes, err := s.activeHashes(ctx, s.do)
	if err != nil {
		return total, err
	}
	for _, h := range hashes {
		for more := true; more; {
			var res []int64
			err := s.do(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
				var err error
				args := append([]any{h, s.clockArg(), representatives, expireBatch}, t.args()...)
				res, err = scriptExpire.Run(ctx, c, nil, args...).Int64Slice()
				return err
			})
			if err != nil {
				return total, err
			}
			total.Peers += int(res[0])
			total.Elected += int(res[1])
			more = res[2] == 1
		}
	}
	if total.Peers > 0 {
		s.dirty.Store(true)
	}
	return total, nil
}

func (s *Store) activeHashes(ctx context.Context, call call) ([]string, error) {
	var hashes []string
	err := call(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		var err error
		hashes, err = c.SMembers(ctx, keyActiveTransfers).Result()
		return err
	})
	slices.Sort(hashes)
	return hashes, err
}

// Idle lists the active transfers that have no current peer and whose last
// announce (or, never announced, whose activation) is more than timeout ago
// by the store's clock.
func (s *Store) Idle(ctx context.Context, timeout time.Duration) ([]InfoHash, error) {
	hashes, err := s.activeHashes(ctx, s.do)
	if err != nil || len(hashes) == 0 {
		return nil, err
	}
	var idle []InfoHash
	err = s.do(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		now, err := s.clockNow(ctx, c)
		if err != nil {
			return err
		}
		limit := FormatTime(now.Add(-timeout))
		p := c.Pipeline()
		live := make([]*redis.IntCmd, len(hashes))
		last := make([]*redis.SliceCmd, len(hashes))
		for i, h := range hashes {
			k := tkeys(h)
			live[i] = p.ZCard(ctx, k.field("seen"))
			last[i] = p.MGet(ctx, k.field("last_announce"), k.field("registered"))
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		for i, h := range hashes {
			if live[i].Val() > 0 {
				continue
			}
			v := last[i].Val()
			at, _ := v[0].(string)
			if at == "" {
				at, _ = v[1].(string)
			}
			if at < limit {
				if ih, err := ParseInfoHash(h); err == nil {
					idle = append(idle, ih)
				}
			}
		}
		return nil
	})
	return idle, err
}

// ScrapeCounts are one transfer's scrape figures (BEP 48).
type ScrapeCounts struct {
	InfoHash   InfoHash
	Complete   int
	Incomplete int
	Downloaded int // count of completed events
}

// Scrape returns the counts of the active transfers among hashes, in one
// round trip; unknown and inactive hashes are left out. It may read a
// replica (sentinel.replica_reads).
func (s *Store) Scrape(ctx context.Context, hashes []InfoHash) ([]ScrapeCounts, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	var out []ScrapeCounts
	err := s.read(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		p := c.Pipeline()
		active := make([]*redis.BoolCmd, len(hashes))
		counts := make([]*redis.SliceCmd, len(hashes))
		for i, h := range hashes {
			k := transferKeys(h)
			active[i] = p.SIsMember(ctx, keyActiveTransfers, h.String())
			counts[i] = p.MGet(ctx, k.field("complete"), k.field("incomplete"), k.field("completions"))
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		for i, h := range hashes {
			if !active[i].Val() {
				continue
			}
			v := counts[i].Val()
			out = append(out, ScrapeCounts{InfoHash: h, Complete: atoi(v[0]), Incomplete: atoi(v[1]), Downloaded: atoi(v[2])})
		}
		return nil
	})
	return out, err
}

// atoi reads a counter MGET returned; a missing key is 0.
func atoi(v any) int {
	s, _ := v.(string)
	n, _ := strconv.Atoi(s)
	return n
}

// Torrent returns the .torrent kept for an active transfer, with the name
// registration stored beside it (its metainfo's), in one round trip;
// ErrNotFound when the transfer is not active or was activated without one.
func (s *Store) Torrent(ctx context.Context, h InfoHash) (torrent []byte, name string, err error) {
	var v []any
	k := transferKeys(h)
	err = s.do(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		var err error
		v, err = c.MGet(ctx, k.field(leafTorrent), k.field(leafName)).Result()
		return err
	})
	if err != nil {
		return nil, "", err
	}
	b, _ := v[0].(string)
	name, _ = v[1].(string)
	if b == "" {
		return nil, "", ErrNotFound
	}
	return []byte(b), name, nil
}

// Totals are the sizes of all active transfers together.
type Totals struct {
	Transfers int
	Seeders   int
	Leechers  int
}

// Totals sums the active transfers' counters: two round trips, no set read
// beyond active_transfers. It may read a replica (sentinel.replica_reads).
func (s *Store) Totals(ctx context.Context) (Totals, error) {
	var t Totals
	hashes, err := s.activeHashes(ctx, s.read)
	if err != nil || len(hashes) == 0 {
		return t, err
	}
	t.Transfers = len(hashes)
	err = s.read(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		p := c.Pipeline()
		counts := make([]*redis.SliceCmd, len(hashes))
		for i, h := range hashes {
			counts[i] = p.MGet(ctx, tkeys(h).field("complete"), tkeys(h).field("incomplete"))
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		for _, c := range counts {
			t.Seeders += atoi(c.Val()[0])
			t.Leechers += atoi(c.Val()[1])
		}
		return nil
	})
	return t, err
}
