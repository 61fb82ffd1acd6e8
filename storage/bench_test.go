package storage

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
)

// Benchmarks of the store alone, sized for a 2-core machine. Compare
// BenchmarkAnnounce with BenchmarkRoundTrip of the same backend and run: the
// ratio is how many plain round trips an announce costs, which holds on a
// noisy machine where absolute figures do not.

func benchBackends(b *testing.B, f func(b *testing.B, e *env)) {
	b.Run("embedded", func(b *testing.B) {
		cfg := DefaultConfig()
		cfg.Embedded.SnapshotPath = b.TempDir() + "/s"
		f(b, openBenchEnv(b, cfg))
	})
	b.Run("redis", func(b *testing.B) {
		cfg := DefaultConfig()
		cfg.Backend = BackendRedis
		cfg.Redis.Addr = startRedisServer(b)
		f(b, openBenchEnv(b, cfg))
	})
}

func openBenchEnv(b *testing.B, cfg Config) *env {
	s, err := Open(context.Background(), cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(context.Background()) })
	return &env{store: s}
}

// BenchmarkRoundTrip is the baseline: one PING through the same client.
func BenchmarkRoundTrip(b *testing.B) {
	benchBackends(b, func(b *testing.B, e *env) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if err := e.store.Ping(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAnnounce: steady-state announces of 1000 hosts over 8 racks in
// one transfer, each sampled for 50 peers with the default handout's plan.
func BenchmarkAnnounce(b *testing.B) {
	benchBackends(b, func(b *testing.B, e *env) {
		ctx := context.Background()
		h := hash(0x99)
		anns := make([]Announce, 1000)
		for i := range anns {
			ip := netip.AddrFrom4([4]byte{10, byte(i % 8), byte(i / 256), byte(i)})
			anns[i] = ann(h, netip.AddrPortFrom(ip, 6881).String(), fmt.Sprintf("r%d", i%8), EventStarted, int64(1000-i%3))
			anns[i].Plan = localPlan
			if i%10 == 0 {
				anns[i].Left = 0
			}
			mustAnnounce(b, e.store, anns[i])
			anns[i].Event = EventNone
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := e.store.Announce(ctx, anns[i%len(anns)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
