package storage

import (
	"context"
	"errors"
	"testing"

	"racktracker/storage/storagetest"
)

// TestBackAtOnceAfterOutage: once Redis answers again, the very next call
// succeeds, however many calls failed to dial while it was away (go-redis'
// own pool would stop dialing after PoolSize failures and probe only once
// a second).
func TestBackAtOnceAfterOutage(t *testing.T) {
	srv := storagetest.RedisServer(t)
	cfg := DefaultConfig()
	cfg.Backend = BackendRedis
	cfg.Redis.Addr = srv.Addr
	ctx := context.Background()
	s, err := Open(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(ctx) })
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping before the outage: %v", err)
	}

	srv.Stop()
	// Far more failed dials than the pool has connections.
	for i := range 200 {
		err := s.Ping(ctx)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Ping %d during the outage: %v, want ErrUnavailable", i, err)
		}
	}

	srv.Restart(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("first Ping once Redis is back: %v", err)
	}
}
