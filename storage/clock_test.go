package storage

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"racktracker/storage/storagetest"
)

// TestScriptDatetime: the scripts render times exactly as FormatTime does,
// across leap days, centuries and the last microsecond of a year.
func TestScriptDatetime(t *testing.T) {
	times := []time.Time{
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(2000, 2, 29, 12, 0, 0, 1000, time.UTC),
		time.Date(2024, 2, 29, 23, 59, 59, 0, time.UTC),
		time.Date(2026, 11, 30, 6, 45, 0, 123456000, time.UTC),
		time.Date(2100, 2, 28, 23, 59, 59, 999999000, time.UTC),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2400, 2, 29, 1, 2, 3, 4000, time.UTC),
	}
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		for i, want := range times {
			e.store.now = func() time.Time { return want }
			h := hash(byte(0x60 + i))
			if err := e.store.Register(ctx, h, "x", 1, nil); err != nil {
				t.Fatal(err)
			}
			got := e.raw.Get(ctx, transferKeys(h).field("registered")).Val()
			if got != FormatTime(want) {
				t.Errorf("registered for %v = %q, want %q", want, got, FormatTime(want))
			}
		}
	})
}

// TestClockIsRedisTime: without an injected clock, stored datetimes and
// expiry follow the store's TIME, not the tracker process's clock, so that
// processes whose clocks differ agree. The embedded store's TIME is moved
// with SetTime, far from this process's clock.
func TestClockIsRedisTime(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Embedded.SnapshotPath = filepath.Join(t.TempDir(), "tracker.snapshot")
	s, err := Open(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	redisTime := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	s.mini.SetTime(redisTime)

	h := hash(0x71)
	mustAnnounce(t, s, ann(h, "10.0.0.1:1", "r1", EventStarted, 5))
	got := s.rdb.Get(ctx, transferKeys(h).field("registered")).Val()
	if got != FormatTime(redisTime) {
		t.Errorf("registered = %q, want Redis' time %q", got, FormatTime(redisTime))
	}
	// This process's clock is years before Redis': by it, nobody expired.
	s.mini.SetTime(redisTime.Add(89 * time.Second))
	if exp, err := s.Expire(ctx, testTimers, 2); err != nil || exp.Peers != 0 {
		t.Fatalf("Expire at 89s = %+v, %v; want nothing expired", exp, err)
	}
	s.mini.SetTime(redisTime.Add(91 * time.Second))
	if exp, err := s.Expire(ctx, testTimers, 2); err != nil || exp.Peers != 1 {
		t.Fatalf("Expire at 91s = %+v, %v; want the peer expired", exp, err)
	}
	s.mini.SetTime(redisTime.Add(2 * time.Hour))
	idle, err := s.Idle(ctx, time.Hour)
	if err != nil || len(idle) != 1 {
		t.Fatalf("Idle = %v, %v; want the transfer", idle, err)
	}
	at, err := s.DeactivateIdle(ctx, h, time.Hour)
	if want := FormatTime(redisTime.Add(2 * time.Hour)); err != nil || at != want {
		t.Errorf("DeactivateIdle = %q, %v; want %q", at, err, want)
	}
}

// TestClockRealRedis: on a real Redis, without an injected clock, the
// stored datetime lies between two readings of the server's TIME.
func TestClockRealRedis(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Backend = BackendRedis
	cfg.Redis.Addr = storagetest.RedisServer(t).Addr
	s, err := Open(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	before := s.rdb.Time(ctx).Val().UTC()
	h := hash(0x72)
	mustAnnounce(t, s, ann(h, "10.0.0.1:1", "r1", EventStarted, 5))
	after := s.rdb.Time(ctx).Val().UTC()
	got := s.rdb.Get(ctx, transferKeys(h).field("registered")).Val()
	if got < FormatTime(before) || got > FormatTime(after) {
		t.Errorf("registered = %q, want between %q and %q", got, FormatTime(before), FormatTime(after))
	}
}
