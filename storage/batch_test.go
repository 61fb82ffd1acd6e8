package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// gateHook holds every pipeline until release is closed, and counts them.
type gateHook struct {
	release chan struct{}
	held    atomic.Int64 // pipelines held
	cmds    atomic.Int64 // commands in them
	pipes   atomic.Int64
}

func (h *gateHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipes.Add(1)
		h.cmds.Add(int64(len(cmds)))
		h.held.Add(1)
		<-h.release
		return next(ctx, cmds)
	}
}

// TestBatchedAnnounces: concurrent announces on an external Redis go out
// together, each gets its own reply, and a Redis that lost the script (a
// restart, a new master) runs them with EVAL.
func TestBatchedAnnounces(t *testing.T) {
	hook := &gateHook{release: make(chan struct{})}
	e := newRedis(t, []redis.Hook{hook})
	ctx := context.Background()
	if err := e.raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const n = 64
	h := hash(0x61)
	var wg sync.WaitGroup
	errs := make([]error, n)
	swarms := make([]Swarm, n)
	for i := range n {
		a := ann(h, fmt.Sprintf("10.0.%d.%d:1", i%4, i+1), fmt.Sprintf("r%d", i%4), EventStarted, int64(100*(i%3)))
		wg.Go(func() { swarms[i], errs[i] = e.store.Announce(ctx, a) })
	}
	// Both batchers hold a pipeline; every other announce waits in the queue.
	waitFor(t, 10*time.Second, "announces queued behind two held batches", func() bool {
		return hook.held.Load() == batchWorkers && hook.cmds.Load()+int64(len(e.store.batch.queue)) == n
	})
	close(hook.release)
	wg.Wait()
	seeders := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("announce %d: %v", i, errs[i])
		}
		want := RoleLeecher
		if i%3 == 0 {
			want = RoleSeeder
			seeders++
		}
		if r := swarms[i].Role; r != want && !(want == RoleLeecher && r == RoleRepresentative) {
			t.Errorf("announce %d (left %d): role %c, want %c", i, 100*(i%3), r, want)
		}
	}
	// Two held batches, the rest in at most two more; each batch once
	// more with EVAL, as Redis had no script.
	if p := hook.pipes.Load(); p > 2*2*batchWorkers {
		t.Errorf("%d announces took %d pipelines, want at most %d", n, p, 2*2*batchWorkers)
	}
	k := transferKeys(h)
	if got := e.raw.SCard(ctx, k.peers(classSeen)).Val(); got != n {
		t.Errorf("peers:N holds %d, want %d", got, n)
	}
	if got, _ := e.raw.Get(ctx, k.field(leafComplete)).Int(); got != seeders {
		t.Errorf("complete = %d, want %d", got, seeders)
	}
	if got, _ := e.raw.Get(ctx, k.field(leafIncomplete)).Int(); got != n-seeders {
		t.Errorf("incomplete = %d, want %d", got, n-seeders)
	}
}

// TestBatchWaitEndsAtDeadline: an announce whose batch does not come back
// fails at its own deadline, as storage unavailable.
func TestBatchWaitEndsAtDeadline(t *testing.T) {
	hook := &gateHook{release: make(chan struct{})}
	e := newRedis(t, []redis.Hook{hook})
	defer close(hook.release)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.store.Announce(ctx, ann(hash(0x62), "10.0.0.1:1", "r1", EventStarted, 100))
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Announce = %v, want storage unavailable at the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Announce returned after %v, past its 200ms deadline", d)
	}
}
