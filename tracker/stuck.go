package tracker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"racktracker/storage"
)

// Stuck racks. Every timeline period (transfers.timeline_interval) the
// sampler judges each rack of each active transfer against the timeline's
// sample from transfers.stuck_after ago:
//
//	no_representative  the rack has leechers and no current representative
//	                   (every one of its leechers is paused or stalled, so
//	                   nobody fetches for it from other racks)
//	no_progress        the rack has leechers, had leechers then too, and made
//	                   no progress since while another rack did
//
// A rack progressed when it has more seeders than then, or its most
// advanced leecher has less left, or its leechers, no fewer than then, have
// less left together (a leecher that leaves takes its left with it, which
// is no progress; one that joins late adds its own, which the most advanced
// leecher sees through). A rack alone in
// making no progress is stuck; a whole swarm making none (its seeder gone,
// say) is not a rack's problem and marks nothing.
//
// The judgement lives in this process (a restart forgets it and judges
// again at the next period); the timeline it reads is shared, so every
// tracker process on one Redis comes to the same verdict.

// Reasons a rack is stuck.
const (
	stuckNoRepresentative = "no_representative"
	stuckNoProgress       = "no_progress"
)

// stuckRacks judges the racks of a sample against the reference sample
// (nil when the timeline is younger than stuck_after) and returns the
// reason of each stuck rack.
func stuckRacks(cur []storage.TimelineRack, ref *storage.TimelineSample) map[string]string {
	out := map[string]string{}
	then := map[string]storage.TimelineRack{}
	if ref != nil {
		for _, r := range ref.Racks {
			then[r.Rack] = r
		}
	}
	progressed := map[string]bool{}
	anyProgress := false
	for _, r := range cur {
		r0, ok := then[r.Rack]
		if !ok {
			continue
		}
		p := r.Seeders > r0.Seeders ||
			r0.Leechers > 0 && r.Leechers > 0 &&
				(r.MinLeft < r0.MinLeft || r.Leechers >= r0.Leechers && r.Left < r0.Left)
		progressed[r.Rack] = p
		anyProgress = anyProgress || p
	}
	for _, r := range cur {
		switch r0, ok := then[r.Rack]; {
		case r.Leechers > 0 && r.Representatives == 0:
			out[r.Rack] = stuckNoRepresentative
		case ok && r.Leechers > 0 && r0.Leechers > 0 && !progressed[r.Rack] && anyProgress:
			out[r.Rack] = stuckNoProgress
		}
	}
	return out
}

// stuck is one stuck rack as this process judged it.
type stuck struct {
	Reason string
	Since  time.Time // the period it was first found stuck
}

// ops is the sampler's state and metrics.
type ops struct {
	mu    sync.Mutex
	stuck map[storage.InfoHash]map[string]stuck

	storageUp  prometheus.Gauge
	stuckRacks *prometheus.GaugeVec
	rackStuck  *prometheus.GaugeVec
	samples    *prometheus.CounterVec
}

func newOps(reg *prometheus.Registry) *ops {
	o := &ops{
		stuck: map[storage.InfoHash]map[string]stuck{},
		storageUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "racktracker_storage_up",
			Help: "1 when the store answered the last probe (every 5 s), 0 when it did not.",
		}),
		stuckRacks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "racktracker_stuck_racks",
			Help: "Racks of active transfers judged stuck at the last timeline period, by reason (no_progress, no_representative).",
		}, []string{"reason"}),
		rackStuck: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "racktracker_rack_stuck",
			Help: "1 for each stuck rack of an active transfer, with the transfer, the rack and the reason; absent otherwise.",
		}, []string{"infohash", "rack", "reason"}),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racktracker_timeline_samples_total",
			Help: "Timeline samples by result: added, skipped (another tracker process sampled the period first), error.",
		}, []string{"result"}),
	}
	for _, r := range []string{stuckNoProgress, stuckNoRepresentative} {
		o.stuckRacks.WithLabelValues(r)
	}
	for _, r := range []string{"added", "skipped", "error"} {
		o.samples.WithLabelValues(r)
	}
	reg.MustRegister(o.storageUp, o.stuckRacks, o.rackStuck, o.samples)
	return o
}

// rackStuck is the stuck state of a rack, if it is stuck.
func (o *ops) rackStuckState(h storage.InfoHash, rack string) (stuck, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st, ok := o.stuck[h][rack]
	return st, ok
}

// judge records the verdict on h's racks at period at, logging each rack
// that becomes stuck and each that recovers, once.
func (s *Server) judge(ctx context.Context, h storage.InfoHash, verdict map[string]string, at time.Time) {
	o := s.ops
	o.mu.Lock()
	defer o.mu.Unlock()
	old := o.stuck[h]
	next := map[string]stuck{}
	for rack, reason := range verdict {
		st, was := old[rack]
		if !was {
			st.Since = at
			s.log.LogAttrs(ctx, slog.LevelWarn, "rack stuck", slog.String("infohash", h.String()), slog.String("rack", rack),
				slog.String("reason", reason), slog.Duration("stuck_after", s.cfg.Transfers.StuckAfter))
		} else if st.Reason != reason {
			o.rackStuck.DeleteLabelValues(h.String(), rack, st.Reason)
		}
		st.Reason = reason
		next[rack] = st
		o.rackStuck.WithLabelValues(h.String(), rack, reason).Set(1)
	}
	for rack, st := range old {
		if _, still := next[rack]; still {
			continue
		}
		o.rackStuck.DeleteLabelValues(h.String(), rack, st.Reason)
		s.log.LogAttrs(ctx, slog.LevelWarn, "rack recovered", slog.String("infohash", h.String()), slog.String("rack", rack),
			slog.String("reason", st.Reason), slog.Duration("stuck_for", at.Sub(st.Since)))
	}
	if len(next) == 0 {
		delete(o.stuck, h)
	} else {
		o.stuck[h] = next
	}
}

// forget drops the judgements of transfers that are no longer active: a
// retired transfer's racks are neither stuck nor recovered.
func (o *ops) forget(active map[storage.InfoHash]bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for h, racks := range o.stuck {
		if active[h] {
			continue
		}
		for rack, st := range racks {
			o.rackStuck.DeleteLabelValues(h.String(), rack, st.Reason)
		}
		delete(o.stuck, h)
	}
	counts := map[string]int{}
	for _, racks := range o.stuck {
		for _, st := range racks {
			counts[st.Reason]++
		}
	}
	for _, r := range []string{stuckNoProgress, stuckNoRepresentative} {
		o.stuckRacks.WithLabelValues(r).Set(float64(counts[r]))
	}
}

// sample takes one timeline sample of every active transfer and judges
// its racks.
func (s *Server) sample(ctx context.Context) {
	tc := s.cfg.Transfers
	active, err := s.store.Index(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.ops.samples.WithLabelValues("error").Inc()
			s.warn.log(s.log, "timeline: listing active transfers failed", "err", err)
		}
		return
	}
	live := make(map[storage.InfoHash]bool, len(active))
	for _, t := range active {
		racks := storage.SampleOf(t)
		res, err := s.store.AddSample(ctx, t.InfoHash, tc.TimelineInterval, racks, tc.TimelineSamples, tc.StuckAfter)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			continue // deactivated meanwhile
		case err != nil:
			if ctx.Err() == nil {
				s.ops.samples.WithLabelValues("error").Inc()
				s.warn.log(s.log, "timeline: sampling failed", "infohash", t.InfoHash.String(), "err", err)
			}
			live[t.InfoHash] = true // keep its verdict until a sample says otherwise
			continue
		case res.Added:
			s.ops.samples.WithLabelValues("added").Inc()
		default:
			s.ops.samples.WithLabelValues("skipped").Inc()
		}
		live[t.InfoHash] = true
		s.judge(ctx, t.InfoHash, stuckRacks(racks, res.Ref), res.At)
	}
	s.ops.forget(live)
}

// sampleLoop samples at the start of every timeline period until ctx ends.
func (s *Server) sampleLoop(ctx context.Context) {
	period := s.cfg.Transfers.TimelineInterval
	for {
		now := time.Now()
		// A little past the period's start, so that every process's clock
		// (and Redis') agrees which period it is.
		next := now.Truncate(period).Add(period + period/20)
		if next.Sub(now) > period {
			next = next.Add(-period)
		}
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.sample(ctx)
	}
}

// probeEvery is how often racktracker_storage_up is refreshed.
const probeEvery = 5 * time.Second

// probe keeps racktracker_storage_up current until ctx ends.
func (s *Server) probe(ctx context.Context) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		err := s.store.Ping(ctx)
		if ctx.Err() != nil {
			return
		}
		up := 1.0
		if err != nil {
			up = 0
		}
		s.ops.storageUp.Set(up)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
