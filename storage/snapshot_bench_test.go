package storage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fillStore writes n keys behind the store's back, shaped like a
// tracker's: four in five are short strings (a peer's fields), the rest
// small sets (a rack's peers).
func fillStore(b *testing.B, s *Store, n int) {
	ctx := context.Background()
	c := storeClient(s)
	for i := 0; i < n; i += 2000 {
		p := c.Pipeline()
		for j := i; j < min(i+2000, n); j++ {
			h := fmt.Sprintf("%040X", j%50)
			if j%5 == 4 {
				p.SAdd(ctx, fmt.Sprintf("%s:rack:fill%d:N", h, j), "10.0.0.1:6881", "10.0.0.2:6881", "10.0.0.3:6881")
			} else {
				p.Set(ctx, fmt.Sprintf("%s:peer:10.%d.%d.%d:left", h, j>>16&255, j>>8&255, j&255), "1048576", 0)
			}
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// hostAnnounces are started announces of hosts spread over 8 racks.
func hostAnnounces(h InfoHash, hosts, offset int) []Announce {
	anns := make([]Announce, hosts)
	for i := range anns {
		n := offset + i
		ip := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
		anns[i] = ann(h, netip.AddrPortFrom(ip, 6881).String(), fmt.Sprintf("r%d", n%8), EventStarted, int64(1000-n%3))
	}
	return anns
}

// p99 is the 99th percentile of lat.
func p99(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100]
}

// BenchmarkAnnounceDuringSnapshots: periodic announces of 1000 hosts on an
// embedded store of 150,000 keys, quiet and while snapshots run back to
// back (a far harsher rate than any snapshot_interval). The ratio of the
// two sub-benchmarks' ns/op and p99-µs is what snapshots cost an announce.
func BenchmarkAnnounceDuringSnapshots(b *testing.B) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Embedded.SnapshotPath = b.TempDir() + "/s"
	e := openBenchEnv(b, cfg)
	fillStore(b, e.store, 150_000)
	anns := hostAnnounces(hash(0x99), 1000, 0)
	for i := range anns {
		mustAnnounce(b, e.store, anns[i])
		anns[i].Event = EventNone
	}
	run := func(b *testing.B) {
		lat := make([]time.Duration, 0, 1<<16)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			t0 := time.Now()
			if _, err := e.store.Announce(ctx, anns[i%len(anns)]); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
			i++
		}
		b.ReportMetric(float64(p99(lat).Microseconds()), "p99-µs")
	}
	b.Run("quiet", run)
	b.Run("snapshots", func(b *testing.B) {
		var snaps int
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := e.store.Snapshot(ctx); err != nil {
					b.Error(err)
					return
				}
				snaps++
			}
		})
		run(b)
		close(done)
		wg.Wait()
		b.ReportMetric(float64(snaps)/b.Elapsed().Seconds(), "snapshots/s")
	})
}

// memoryUsed is what holds the store: the Go heap after a collection for
// the embedded store (miniredis lives in the process), used_memory of the
// redis-server otherwise.
func memoryUsed(b *testing.B, e *env) int64 {
	if e.store.cfg.Backend == BackendRedis {
		info, err := e.raw.Info(context.Background(), "memory").Result()
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.SplitSeq(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		b.Fatal("no used_memory in INFO memory")
	}
	return heapBytes()
}

// BenchmarkMemoryPer10kPeers: the memory 10,000 peers take on each backend
// (10 transfers of 1000 hosts in 8 racks, each peer announced started,
// then once more). Run with -benchtime=1x.
func BenchmarkMemoryPer10kPeers(b *testing.B) {
	ctx := context.Background()
	for _, backend := range []string{BackendEmbedded, BackendRedis} {
		b.Run(backend, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Backend = backend
			cfg.Embedded.SnapshotPath = b.TempDir() + "/s"
			if backend == BackendRedis {
				cfg.Redis.Addr = startRedisServer(b)
			}
			var grown int64
			for b.Loop() {
				e := openBenchEnv(b, cfg)
				e.raw = redis.NewClient(&redis.Options{Addr: cfg.Redis.Addr, Protocol: 2, DisableIdentity: true})
				if backend == BackendRedis {
					e.raw.FlushAll(ctx)
				}
				before := memoryUsed(b, e)
				for t := range 10 {
					anns := hostAnnounces(hash(byte(0x10+t)), 1000, 0)
					for _, a := range anns {
						mustAnnounce(b, e.store, a)
					}
					for _, a := range anns {
						a.Event, a.Left = EventNone, a.Left-1
						mustAnnounce(b, e.store, a)
					}
				}
				grown = memoryUsed(b, e) - before
				e.raw.Close()
				e.store.Close(ctx)
			}
			b.ReportMetric(float64(grown), "bytes/10k-peers")
			b.ReportMetric(float64(grown)/10_000, "bytes/peer")
		})
	}
}

// rssBytes is the process' resident set (Linux), or 0.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkChurn is the churn run of the README: on the embedded store,
// snapshotting every 2 s as it would in production, transfers come and
// go while 20 others hold 4000 peers: each one gets 200 hosts that start,
// complete and stop, is deactivated, and its history run is deleted (as
// history_retention does); hosts are new addresses each time. One op is
// one announce. It reports the heap, the process' RSS and the live keys at
// the end against the same after the first two transfers, as ratios, the
// most dead key names seen against the live keys, and the rebuilds. Run it with -benchtime=10m.
func BenchmarkChurn(b *testing.B) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Embedded.SnapshotPath = b.TempDir() + "/s"
	cfg.Embedded.SnapshotInterval = 2 * time.Second
	e := openBenchEnv(b, cfg)
	for t := range 20 {
		for _, a := range hostAnnounces(hash(byte(0x20+t)), 200, t*200) {
			mustAnnounce(b, e.store, a)
		}
	}
	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { e.store.Run(bg) })
	defer func() { stop(); wg.Wait() }()

	type sample struct {
		heap, rss  int64
		keys, dead int
	}
	// measure compares like with like: the dead names rise and fall
	// between rebuilds by design, so each sample is taken just after a
	// rebuild (forced, if any name is dead), when the store holds only
	// what is live; the dead names are reported as they were before it.
	measure := func() sample {
		e.store.emb.snapMu.Lock()
		e.store.emb.rebuildAfter = -1
		e.store.emb.snapMu.Unlock()
		if err := e.store.Snapshot(ctx); err != nil {
			b.Fatal(err)
		}
		e.store.emb.snapMu.Lock()
		e.store.emb.rebuildAfter = defaultRebuildAfter
		e.store.emb.snapMu.Unlock()
		st := e.store.SnapshotStatus()
		return sample{heap: heapBytes(), rss: rssBytes(), keys: st.Keys, dead: st.DeadKeyNames}
	}

	const hosts = 200
	events := []string{EventStarted, EventCompleted, EventStopped}
	var (
		round, op, maxDead int
		failed             int
		anns               []Announce
		h                  InfoHash
		first              sample
		measured           bool
	)
	for b.Loop() {
		if op == 0 {
			h = hash(byte(round % 200))
			h[1] = byte(round >> 8)
			anns = hostAnnounces(h, hosts, 8000+round%256*hosts)
		}
		a := anns[op%hosts]
		a.Event = events[op/hosts]
		if a.Event != EventStarted {
			a.Left = 0
		}
		if _, err := e.store.Announce(ctx, a); errors.Is(err, ErrUnavailable) {
			// Counted, not fatal: a loaded machine can time an announce
			// out, and the run is about memory.
			failed++
		} else if err != nil {
			b.Fatal(err)
		}
		op++
		if op == hosts*len(events) {
			prefix, err := e.store.Deactivate(ctx, h)
			if err != nil {
				b.Fatal(err)
			}
			// Deleted behind the store's back, as an operator's script would:
			// in the moment a rebuild holds the store such writes are
			// refused (READONLY), and the script tries again.
			for try := 0; ; try++ {
				c := storeClient(e.store)
				keys, err := c.Keys(ctx, prefix+"*").Result()
				if err == nil && len(keys) > 0 {
					err = c.Del(ctx, keys...).Err()
				}
				if err == nil {
					// The history index, whichever member form it holds.
					err = c.ZRem(ctx, "deactivations", prefix, prefix+":"+h.String()).Err()
				}
				if err == nil {
					break
				}
				if !strings.HasPrefix(err.Error(), "READONLY") || try == 100 {
					b.Fatalf("delete history run %s: %v", prefix, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			op = 0
			round++
			if st := e.store.SnapshotStatus(); st.DeadKeyNames > maxDead {
				maxDead = st.DeadKeyNames
			}
		}
		if !measured && round >= 2 {
			first, measured = measure(), true
		}
	}
	b.StopTimer()
	last := measure()
	b.ReportMetric(float64(round), "transfers")
	b.ReportMetric(float64(last.heap)/float64(first.heap), "heap-end/start")
	b.ReportMetric(float64(last.rss)/float64(first.rss), "rss-end/start")
	b.ReportMetric(float64(last.keys)/float64(first.keys), "keys-end/start")
	b.ReportMetric(float64(maxDead)/float64(first.keys), "max-dead/keys")
	b.ReportMetric(float64(e.store.SnapshotStatus().Rebuilds), "rebuilds")
	b.ReportMetric(float64(failed), "failed-announces")
	b.Logf("start: heap %d B, RSS %d B, %d keys, %d dead names; end: heap %d B, RSS %d B, %d keys, %d dead names; at most %d dead names",
		first.heap, first.rss, first.keys, first.dead, last.heap, last.rss, last.keys, last.dead, maxDead)
}

// BenchmarkSnapshotCopy: the point-in-time copy of an embedded store of
// 150,000 keys, in one hold of miniredis' mutex and in chunks, nobody
// writing. hold-ms is the longest time the copy held the mutex (every
// command waits that long), last-ms the chunked copy's last hold.
func BenchmarkSnapshotCopy(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Embedded.SnapshotPath = b.TempDir() + "/s"
	e := openBenchEnv(b, cfg)
	fillStore(b, e.store, 150_000)
	m := e.store.mini
	for _, tc := range []struct {
		name string
		copy func() (storeCopy, bool)
	}{
		{"one-hold", func() (storeCopy, bool) { return copyMini(m) }},
		{"chunked", func() (storeCopy, bool) { return copyChunked(m, e.store.emb.scripts) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var maxHold, last time.Duration
			n := 0
			for b.Loop() {
				c, ok := tc.copy()
				if !ok {
					b.Fatal("copy not ok")
				}
				maxHold = max(maxHold, c.maxHold)
				last += c.lastHold
				n++
			}
			b.ReportMetric(float64(maxHold.Microseconds())/1000, "hold-ms")
			b.ReportMetric(float64(last.Microseconds())/1000/float64(n), "last-ms")
		})
	}
}
