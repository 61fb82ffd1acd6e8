package storage

import (
	"context"
	"sync"
)

// gate lets every storage call share the store while the embedded store is
// swapped for a rebuilt one underneath, which holds it alone. Unlike a
// sync.RWMutex, a call waiting to share it gives up when its context ends,
// so that a request never waits on the gate past its own deadline.
// Once a holder waits for it alone, new sharers wait behind it, so that a
// steady stream of calls cannot starve the swap.
type gate struct {
	mu      sync.Mutex
	readers int
	held    bool          // held alone, or waited for alone
	free    chan struct{} // closed when the sole holder lets go
	drained chan struct{} // closed when the last sharer leaves while held
}

// rlock shares the gate, or returns ctx's error when ctx ends first.
func (g *gate) rlock(ctx context.Context) error {
	for {
		g.mu.Lock()
		if !g.held {
			g.readers++
			g.mu.Unlock()
			return nil
		}
		free := g.free
		g.mu.Unlock()
		select {
		case <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *gate) runlock() {
	g.mu.Lock()
	g.readers--
	if g.readers == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
	g.mu.Unlock()
}

// lock holds the gate alone: it bars new sharers at once and waits for the
// current ones to leave.
func (g *gate) lock() {
	for {
		g.mu.Lock()
		if !g.held {
			break
		}
		free := g.free
		g.mu.Unlock()
		<-free
	}
	g.held = true
	g.free = make(chan struct{})
	var drained chan struct{}
	if g.readers > 0 {
		drained = make(chan struct{})
		g.drained = drained
	}
	g.mu.Unlock()
	if drained != nil {
		<-drained
	}
}

func (g *gate) unlock() {
	g.mu.Lock()
	g.held = false
	close(g.free)
	g.free = nil
	g.mu.Unlock()
}
