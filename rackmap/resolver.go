package rackmap

import (
	"cmp"
	"container/list"
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Resolver finds hostnames by reverse DNS for racks.resolve_hostnames. It
// caches answers, good and bad, shares one lookup among the callers asking
// for the same address, and never keeps a caller (an announce) waiting
// longer than its timeout. It is safe for concurrent use.
type Resolver struct {
	lookup  func(ctx context.Context, addr string) ([]string, error)
	timeout time.Duration
	ttl     time.Duration
	max     int
	now     func() time.Time // tests replace it to expire entries

	// base bounds every background lookup, so that Close can stop them.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	cache    map[netip.Addr]*list.Element // values are *cacheEntry
	order    *list.List                   // oldest entry first
	inflight map[netip.Addr]*call
}

type cacheEntry struct {
	addr    netip.Addr
	name    string // "" when the lookup failed
	expires time.Time
}

// call is one lookup in progress; name is set before done is closed.
type call struct {
	done chan struct{}
	name string
}

// NewResolver returns a Resolver that asks lookup (net.DefaultResolver's
// LookupAddr, or a fake in tests) for the names of an address. A caller
// waits at most timeout; a lookup that takes longer goes on in the
// background, itself bounded by timeout, and fills the cache for the next
// caller. Answers, and failures, are cached for ttl (a ttl of zero or less
// caches nothing), and at most maxEntries of them (at least one): beyond
// that the oldest is forgotten. At most maxEntries lookups run at once too;
// beyond that a caller gets the address as text without a lookup. A timeout
// of zero or less turns lookups off.
//
// lookup must return when its context is done, or Close cannot return.
func NewResolver(lookup func(ctx context.Context, addr string) ([]string, error), timeout, ttl time.Duration, maxEntries int) *Resolver {
	base, cancel := context.WithCancel(context.Background())
	return &Resolver{
		lookup:   lookup,
		timeout:  timeout,
		ttl:      ttl,
		max:      max(maxEntries, 1),
		now:      time.Now,
		base:     base,
		cancel:   cancel,
		cache:    make(map[netip.Addr]*list.Element),
		order:    list.New(),
		inflight: make(map[netip.Addr]*call),
	}
}

// Hostname returns the first name that reverse DNS gives addr, without the
// trailing dot, or addr as text when there is none, when the lookup fails,
// when it takes longer than the timeout or when ctx is done first. An
// IPv4-mapped address is looked up as the IPv4 address.
func (r *Resolver) Hostname(ctx context.Context, addr netip.Addr) string {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return ""
	}
	text := addr.String()
	if r.timeout <= 0 {
		return text
	}
	r.mu.Lock()
	if e, ok := r.cache[addr]; ok {
		ce := e.Value.(*cacheEntry)
		if r.now().Before(ce.expires) {
			r.mu.Unlock()
			return cmp.Or(ce.name, text)
		}
		r.order.Remove(e)
		delete(r.cache, addr)
	}
	c, ok := r.inflight[addr]
	if !ok {
		// Lookups in flight are bounded like the cache, so that a flood
		// of new addresses cannot start goroutines without limit; the
		// excess simply goes without a name.
		if r.closed || len(r.inflight) >= r.max {
			r.mu.Unlock()
			return text
		}
		c = &call{done: make(chan struct{})}
		r.inflight[addr] = c
		r.wg.Go(func() { r.resolve(addr, c) })
	}
	r.mu.Unlock()

	t := time.NewTimer(r.timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return cmp.Or(c.name, text)
	case <-t.C:
	case <-ctx.Done():
	}
	return text
}

// resolve runs one lookup for whoever waits on c and for later callers.
// It does not use the first caller's context: that caller may give up long
// before the answer, which is still worth caching.
func (r *Resolver) resolve(addr netip.Addr, c *call) {
	ctx, cancel := context.WithTimeout(r.base, r.timeout)
	defer cancel()
	names, err := r.lookup(ctx, addr.String())
	name := ""
	if err == nil {
		for _, n := range names {
			if n = strings.TrimSuffix(n, "."); n != "" {
				name = n
				break
			}
		}
	}
	r.mu.Lock()
	c.name = name
	delete(r.inflight, addr)
	r.store(addr, name)
	r.mu.Unlock()
	close(c.done)
}

// store caches name for addr; r.mu must be held.
func (r *Resolver) store(addr netip.Addr, name string) {
	if r.ttl <= 0 {
		return
	}
	ce := &cacheEntry{addr: addr, name: name, expires: r.now().Add(r.ttl)}
	if e, ok := r.cache[addr]; ok {
		e.Value = ce
		r.order.MoveToBack(e)
		return
	}
	r.cache[addr] = r.order.PushBack(ce)
	// Every entry lives for the same ttl, so the oldest is also the first
	// to expire: evicting from the front drops expired entries first.
	for len(r.cache) > r.max {
		front := r.order.Front()
		r.order.Remove(front)
		delete(r.cache, front.Value.(*cacheEntry).addr)
	}
}

// Close stops the lookups in progress and waits for them to return; later
// calls of Hostname return the address as text. Callers already waiting get
// the address as text too.
func (r *Resolver) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}
