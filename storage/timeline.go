package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The rollout timeline: <hash>:timeline is a sorted set of samples of the
// transfer's per-rack progress, scored by the start of the sampling period
// (unix ms) and carried by deactivation like every key under <hash>:. Each
// member is "<score> <racks>", where <racks> is a JSON array with one array
// per rack, [rack, seeders, leechers, representatives, left, min_left],
// so that redis-cli shows a readable, compact line.

// TimelineSample is the state of a transfer's racks at the start of one
// sampling period.
type TimelineSample struct {
	At    time.Time
	Racks []TimelineRack
}

// TimelineRack is one rack in a sample.
type TimelineRack struct {
	Rack            string
	Seeders         int
	Leechers        int
	Representatives int
	Left            int64 // sum over the rack's current leechers
	MinLeft         int64 // the rack's most advanced leecher; 0 without leechers
}

// SampleOf is the timeline entry of a transfer's current state.
func SampleOf(t TransferStats) []TimelineRack {
	out := make([]TimelineRack, len(t.Racks))
	for i, r := range t.Racks {
		out[i] = TimelineRack{
			Rack: r.Rack, Seeders: r.Seeders, Leechers: r.Leechers,
			Representatives: len(r.Representatives), Left: r.Left, MinLeft: r.MinLeft,
		}
	}
	return out
}

// Sampled is what AddSample did.
type Sampled struct {
	Added bool      // false when another process sampled this period first
	At    time.Time // start of the period, on the store's clock
	// Ref is the latest sample at least the reference age old, for telling
	// whether a rack progressed since; nil when the timeline is younger.
	Ref *TimelineSample
}

// AddSample records racks as the sample of the current period of active
// transfer h, unless the period has one already (several tracker processes
// sample the same store), and keeps the timeline to at most keep samples by
// dropping every other one when it overflows. It also returns the latest
// sample at least refAge old. ErrNotFound when h is not active.
func (s *Store) AddSample(ctx context.Context, h InfoHash, period time.Duration, racks []TimelineRack, keep int, refAge time.Duration) (Sampled, error) {
	var out Sampled
	if period < time.Millisecond || keep < 2 {
		return out, fmt.Errorf("timeline: period %s and keep %d: want at least 1ms and 2", period, keep)
	}
	payload, err := encodeRacks(racks)
	if err != nil {
		return out, err
	}
	var res []any
	err = s.do(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		var err error
		res, err = scriptTimeline.Run(ctx, c, nil, h.String(), s.clockArg(), period.Milliseconds(), payload, keep, refAge.Milliseconds()).Slice()
		return err
	})
	if err != nil {
		return out, err
	}
	if n, _ := res[0].(int64); n < 0 {
		return out, ErrNotFound
	}
	if len(res) < 3 {
		return out, fmt.Errorf("timeline script returned %d values", len(res))
	}
	out.Added = res[0].(int64) == 1
	ms, _ := res[1].(int64)
	out.At = time.UnixMilli(ms).UTC()
	if m, ok := res[2].(string); ok {
		ref, err := decodeSample(m)
		if err != nil {
			return out, err
		}
		out.Ref = &ref
	}
	if out.Added {
		s.dirty.Store(true)
	}
	return out, nil
}

// Timeline returns the samples of a transfer, oldest first: of the active
// transfer when run is "", else of its run deactivated at run (a datetime of
// History). A transfer without samples has an empty timeline.
func (s *Store) Timeline(ctx context.Context, h InfoHash, run string) ([]TimelineSample, error) {
	tl, _, err := s.RunTimeline(ctx, h, run)
	return tl, err
}

// RunTimeline is Timeline with the payload length of that transfer or run
// (-1 when unknown), read in the same round trip, for a run whose stats are
// not at hand.
func (s *Store) RunTimeline(ctx context.Context, h InfoHash, run string) ([]TimelineSample, int64, error) {
	k := transferKeys(h)
	if run != "" {
		if _, err := ParseTime(run); err != nil {
			return nil, -1, fmt.Errorf("run %q: not a datetime", run)
		}
		k = archived(h, run)
	}
	var members []string
	length := int64(-1)
	err := s.do(ctx, callTimeout, func(ctx context.Context, c *redis.Client) error {
		p := c.Pipeline()
		zr := p.ZRange(ctx, k.field(leafTimeline), 0, -1)
		ln := p.Get(ctx, k.field(leafLength))
		if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		members = zr.Val()
		if n, err := strconv.ParseInt(ln.Val(), 10, 64); err == nil {
			length = n
		}
		return nil
	})
	if err != nil {
		return nil, -1, err
	}
	out := make([]TimelineSample, 0, len(members))
	for _, m := range members {
		sm, err := decodeSample(m)
		if err != nil {
			return nil, -1, err
		}
		out = append(out, sm)
	}
	return out, length, nil
}

// encodeRacks is the <racks> part of a member.
func encodeRacks(racks []TimelineRack) (string, error) {
	rows := make([][]any, len(racks))
	for i, r := range racks {
		if r.Rack == "" || strings.ContainsAny(r.Rack, " :") {
			return "", fmt.Errorf("timeline: bad rack name %q", r.Rack)
		}
		rows[i] = []any{r.Rack, r.Seeders, r.Leechers, r.Representatives, r.Left, r.MinLeft}
	}
	b, err := json.Marshal(rows)
	return string(b), err
}

// decodeSample reads one member of <hash>:timeline.
func decodeSample(m string) (TimelineSample, error) {
	var sm TimelineSample
	score, racks, ok := strings.Cut(m, " ")
	ms, err := strconv.ParseInt(score, 10, 64)
	if !ok || err != nil {
		return sm, fmt.Errorf("timeline sample %.40q: no time", m)
	}
	sm.At = time.UnixMilli(ms).UTC()
	var rows [][]json.RawMessage
	if err := json.Unmarshal([]byte(racks), &rows); err != nil {
		return sm, fmt.Errorf("timeline sample at %d: %w", ms, err)
	}
	for _, row := range rows {
		if len(row) < 6 {
			return sm, fmt.Errorf("timeline sample at %d: a rack with %d fields, want 6", ms, len(row))
		}
		var r TimelineRack
		errs := []error{
			json.Unmarshal(row[0], &r.Rack), json.Unmarshal(row[1], &r.Seeders),
			json.Unmarshal(row[2], &r.Leechers), json.Unmarshal(row[3], &r.Representatives),
			json.Unmarshal(row[4], &r.Left), json.Unmarshal(row[5], &r.MinLeft),
		}
		if err := errors.Join(errs...); err != nil {
			return sm, fmt.Errorf("timeline sample at %d: %w", ms, err)
		}
		sm.Racks = append(sm.Racks, r)
	}
	return sm, nil
}

// Progress is the share of the payload the rack's current peers held at
// the sample, 0 to 1, for a payload of length bytes; with an unknown length
// (-1) the seeders' share of its peers; -1 when it had no peer.
func (r TimelineRack) Progress(length int64) float64 {
	peers := r.Seeders + r.Leechers
	if length < 0 && peers > 0 {
		return float64(r.Seeders) / float64(peers)
	}
	return progress(length, peers, r.Left)
}
