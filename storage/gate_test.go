package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCallGivesUpOnGate: a call that waits on the gate while a rebuild
// holds it fails at its own deadline with ErrUnavailable, as any call the
// store cannot answer in time, rather than wait for the rebuild; calls
// that come after the rebuild go through.
func TestCallGivesUpOnGate(t *testing.T) {
	e := newEmbedded(t, nil)
	s := e.store
	s.gate.lock()
	held := true
	defer func() {
		if held {
			s.gate.unlock()
		}
	}()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := s.Announce(ctx, ann(hash(0x01), "10.0.0.1:1", "r1", EventStarted, 1))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Announce waiting on the gate past its deadline: error = %v, want ErrUnavailable and the deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Announce waiting on the gate did not give up at its deadline")
	}
	s.gate.unlock()
	held = false
	mustAnnounce(t, s, ann(hash(0x01), "10.0.0.1:1", "r1", EventStarted, 1))
}

// TestGateSharedAndAlone: sharers run together; a holder waits for them,
// bars new ones at once, and lets them in when it lets go.
func TestGateSharedAndAlone(t *testing.T) {
	var g gate
	ctx := context.Background()
	if err := g.rlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.rlock(ctx); err != nil {
		t.Fatal(err)
	}
	locked := make(chan struct{})
	go func() { g.lock(); close(locked) }()
	// A new sharer waits for the holder that is waiting.
	waitFor(t, 5*time.Second, "lock to bar new sharers", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.held
	})
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := g.rlock(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("rlock while a holder waits = %v, want the deadline", err)
	}
	select {
	case <-locked:
		t.Fatal("lock returned while two sharers held the gate")
	default:
	}
	g.runlock()
	g.runlock()
	<-locked
	shared := make(chan error, 1)
	go func() { shared <- g.rlock(ctx) }()
	g.unlock()
	if err := <-shared; err != nil {
		t.Fatalf("rlock after unlock = %v", err)
	}
	g.runlock()
}
