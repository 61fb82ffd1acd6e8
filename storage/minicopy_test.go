package storage

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// smallChunks makes every chunked copy let go of the mutex after each key.
func smallChunks(t *testing.T) {
	old := copyChunk
	copyChunk = 1
	t.Cleanup(func() { copyChunk = old })
}

// TestChunkedCopyMatches: on a store nobody writes to, the chunked copy
// holds exactly what the copy in one hold does, every type included, and
// it did let go of the mutex between keys.
func TestChunkedCopyMatches(t *testing.T) {
	smallChunks(t)
	e := newEmbedded(t, nil)
	populate(t, e)
	m := miniOf(e.store)
	one, ok := copyMini(m)
	if !ok {
		t.Fatal("copyMini: layout not ok")
	}
	chunked, ok := copyChunked(m, e.store.emb.scripts)
	if !ok {
		t.Fatal("copyChunked: not ok")
	}
	if d := diffRecords(chunked.recs, one.recs); d != "" {
		t.Errorf("chunked copy differs from the one-hold copy: %s", d)
	}
	if chunked.dead != one.dead || fmt.Sprint(chunked.skipped) != fmt.Sprint(one.skipped) {
		t.Errorf("chunked copy: dead %d, skipped %q; one hold: dead %d, skipped %q", chunked.dead, chunked.skipped, one.dead, one.skipped)
	}
	if chunked.chunks < len(one.recs)/2 {
		t.Errorf("chunked copy of %d keys let go of the mutex %d times", len(one.recs), chunked.chunks)
	}
}

// TestChunkedCopyConsistent: snapshots taken in chunks while announces
// (scripts the hook runs) and MULTI/EXEC transactions from another
// connection (held back during the copy) write, are each one point in
// time: every invariant the writers keep atomically holds in every
// snapshot. Without the re-copy of marked keys in the last hold, the
// counters and sets drift apart (the copy reads them at different times).
func TestChunkedCopyConsistent(t *testing.T) {
	smallChunks(t)
	ctx := context.Background()
	e := newEmbedded(t, nil)
	s := e.store
	// Other keys, so that chunks are many.
	p := storeClient(s).Pipeline()
	for i := range 3000 {
		p.Set(ctx, fmt.Sprintf("filler:%d", i), i, 0)
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	const workers, perWorker, snapshots = 3, 300, 6
	var done, timeouts atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	announceWorkers(t, &wg, s, workers, perWorker, &stop, &done, &timeouts)
	// Transactions through a connection of their own: n counts them, set
	// s and sorted set z hold 0..n-1, and z2 holds only n-1.
	raw := redis.NewClient(&redis.Options{Dialer: dialer(miniOf(s)), Protocol: 2, DisableIdentity: true})
	defer raw.Close()
	wg.Go(func() {
		for i := 0; i < 3000 && !stop.Load(); i++ {
			_, err := raw.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Incr(ctx, "tx:n")
				p.SAdd(ctx, "tx:s", i)
				p.ZAdd(ctx, "tx:z", redis.Z{Score: float64(i), Member: i})
				p.ZAdd(ctx, "tx:z2", redis.Z{Score: float64(i), Member: i})
				if i > 0 {
					p.ZRem(ctx, "tx:z2", i-1)
				}
				return nil
			})
			if err != nil {
				t.Errorf("transaction %d: %v", i, err)
				return
			}
		}
	})
	defer func() { stop.Store(true); wg.Wait() }()

	var last int64
	for i := range snapshots {
		last = moreAnnounces(t, &done, last, workers*perWorker)
		cp, ok := copyChunked(miniOf(s), s.emb.scripts)
		if !ok {
			t.Fatal("copyChunked: not ok")
		}
		if cp.chunks < 1000 {
			t.Errorf("snapshot %d: %d chunks, want one per key", i, cp.chunks)
		}
		checkConsistent(t, i, cp.recs, 2)
		byKey := map[string]record{}
		for _, r := range cp.recs {
			byKey[r.key] = r
		}
		n, _ := strconv.Atoi(byKey["tx:n"].value)
		if sz, zz, z2 := len(byKey["tx:s"].members), len(byKey["tx:z"].members), byKey["tx:z2"].members; sz != n || zz != n || n > 0 && (len(z2) != 1 || z2[0] != strconv.Itoa(n-1)) {
			t.Errorf("snapshot %d: tx:n = %d, but tx:s holds %d, tx:z %d, tx:z2 %q", i, n, sz, zz, z2)
		}
	}
}
