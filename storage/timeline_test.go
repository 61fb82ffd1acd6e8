package storage

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestTimeline: one sample per period however often it is sampled, the
// reference sample, thinning at the cap, deactivation carrying the samples
// to the run, and nothing written under an inactive hash.
func TestTimeline(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		s, h := e.store, hash(0x51)
		const period = 10 * time.Second
		mustAnnounce(t, s, ann(h, "10.0.1.1:1", "r1", EventStarted, 0))
		mustAnnounce(t, s, ann(h, "10.0.2.1:1", "r2", EventStarted, 100))
		mustAnnounce(t, s, ann(h, "10.0.2.2:1", "r2", EventStarted, 60))
		sample := func(refAge time.Duration, keep int) Sampled {
			t.Helper()
			st, err := s.Transfer(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.AddSample(ctx, h, period, SampleOf(st), keep, refAge)
			if err != nil {
				t.Fatalf("AddSample: %v", err)
			}
			return got
		}

		e.clock.Advance(epoch.Add(3 * time.Second).Sub(e.clock.Now())) // 10:00:03: the period of 10:00:00
		first := sample(time.Minute, 100)
		if !first.Added || !first.At.Equal(epoch) || first.Ref != nil {
			t.Errorf("first sample = %+v, want added at %s without a reference", first, epoch)
		}
		// A second process, same period: nothing added.
		e.clock.Advance(5 * time.Second)
		if again := sample(time.Minute, 100); again.Added || !again.At.Equal(epoch) {
			t.Errorf("second sample of the period = %+v, want not added", again)
		}
		tl, err := s.Timeline(ctx, h, "")
		if err != nil || len(tl) != 1 {
			t.Fatalf("Timeline = %d samples, %v; want 1", len(tl), err)
		}
		want := []TimelineRack{
			{Rack: "r1", Seeders: 1, Representatives: 0},
			{Rack: "r2", Leechers: 2, Representatives: 2, Left: 160, MinLeft: 60},
		}
		if got := tl[0].Racks; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("sample racks = %+v, want %+v", got, want)
		}
		// The raw member is what redis-cli shows.
		raw := e.raw.ZRange(ctx, h.String()+":timeline", 0, -1).Val()
		if len(raw) != 1 || raw[0] != `1795514400000 [["r1",1,0,0,0,0],["r2",0,2,2,160,60]]` {
			t.Errorf("%s:timeline = %q", h, raw)
		}

		// Progress, later periods; the reference is the latest sample at
		// least refAge old.
		mustAnnounce(t, s, ann(h, "10.0.2.2:1", "r2", EventNone, 10))
		e.clock.Advance(epoch.Add(25 * time.Second).Sub(e.clock.Now()))
		if got := sample(20*time.Second, 100); !got.Added || got.Ref == nil || !got.Ref.At.Equal(epoch) || got.Ref.Racks[1].MinLeft != 60 {
			t.Errorf("sample at 10:00:25 = %+v, want added with the 10:00:00 sample as reference", got)
		}

		// Thinning: past the cap, every other sample goes; the first and the
		// latest stay.
		for i := 3; i <= 9; i++ {
			e.clock.Advance(epoch.Add(time.Duration(i) * period).Sub(e.clock.Now()))
			sample(time.Hour, 6)
		}
		tl, _ = s.Timeline(ctx, h, "")
		if len(tl) > 6 || len(tl) < 3 || !tl[0].At.Equal(epoch) || !tl[len(tl)-1].At.Equal(epoch.Add(9*period)) {
			var at []string
			for _, x := range tl {
				at = append(at, x.At.Format("15:04:05"))
			}
			t.Errorf("thinned timeline %v, want at most 6 from 10:00:00 to 10:01:30", at)
		}
		n := len(tl)

		// Deactivation carries the timeline to the run; the run keeps it.
		at, err := s.Deactivate(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if k := e.raw.Exists(ctx, h.String()+":timeline").Val(); k != 0 {
			t.Errorf("%s:timeline left behind", h)
		}
		if run, err := s.Timeline(ctx, h, at); err != nil || len(run) != n {
			t.Errorf("Timeline of run %s = %d samples, %v; want %d", at, len(run), err, n)
		}
		if _, err := s.Timeline(ctx, h, "yesterday"); err == nil || !strings.Contains(err.Error(), "yesterday") {
			t.Errorf("Timeline of a bad run = %v, want an error naming it", err)
		}
		// An inactive hash gets no sample and no key.
		if _, err := s.AddSample(ctx, h, period, nil, 6, time.Hour); !errors.Is(err, ErrNotFound) {
			t.Errorf("AddSample of an inactive transfer = %v, want ErrNotFound", err)
		}
		if k := e.raw.Keys(ctx, h.String()+":*").Val(); len(k) != 0 {
			t.Errorf("keys under the retired hash: %q", k)
		}
	})
}

// TestDecodeSampleRefuses: a member that is not a sample is an error, not
// a zero sample.
func TestDecodeSampleRefuses(t *testing.T) {
	for _, m := range []string{"", "x", "12 ", "12 [[\"r1\",1]]", "12 {}", `12 [["r1","a",0,0,0,0]]`} {
		if _, err := decodeSample(m); err == nil {
			t.Errorf("decodeSample(%q) succeeded", m)
		}
	}
	if sm, err := decodeSample(`12 [["r1",1,2,3,4,5]]`); err != nil || sm.Racks[0] != (TimelineRack{"r1", 1, 2, 3, 4, 5}) {
		t.Errorf("decodeSample = %+v, %v", sm, err)
	}
}
