package rackmap

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeDNS is an injected reverse lookup that counts its calls.
type fakeDNS struct {
	names map[string][]string // by address text; missing = not found
	calls atomic.Int32
	// release, when set, holds every lookup until it is closed; the lookup
	// ignores its context, like a resolver that answers late.
	release chan struct{}
}

func (d *fakeDNS) lookup(ctx context.Context, addr string) ([]string, error) {
	d.calls.Add(1)
	if d.release != nil {
		<-d.release
	}
	if names, ok := d.names[addr]; ok {
		return names, nil
	}
	return nil, errors.New("no such host")
}

var (
	addrA = netip.MustParseAddr("10.0.0.1")
	addrB = netip.MustParseAddr("10.0.0.2")
	addrC = netip.MustParseAddr("fd00::3")
)

func newFakeDNS() *fakeDNS {
	return &fakeDNS{names: map[string][]string{
		"10.0.0.1": {"a.example.", "alias.example."},
		"10.0.0.2": {"b.example"},
		"fd00::3":  {"c.example."},
	}}
}

func TestResolverHostname(t *testing.T) {
	dns := newFakeDNS()
	dns.names["10.0.0.9"] = []string{".", "second.example."} // first name unusable
	dns.names["10.0.0.10"] = []string{}                      // found, but no name
	r := NewResolver(dns.lookup, time.Minute, time.Hour, 100)
	defer r.Close()
	ctx := context.Background()
	tests := []struct {
		addr netip.Addr
		want string
	}{
		{addrA, "a.example"},
		{addrB, "b.example"},
		{addrC, "c.example"},
		{netip.MustParseAddr("::ffff:10.0.0.1"), "a.example"},
		{netip.MustParseAddr("10.0.0.9"), "second.example"},
		{netip.MustParseAddr("10.0.0.10"), "10.0.0.10"},
		{netip.MustParseAddr("10.0.0.99"), "10.0.0.99"},
		{netip.MustParseAddr("::ffff:10.0.0.99"), "10.0.0.99"},
		{netip.Addr{}, ""},
	}
	for _, tt := range tests {
		if got := r.Hostname(ctx, tt.addr); got != tt.want {
			t.Errorf("Hostname(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestResolverCache(t *testing.T) {
	dns := newFakeDNS()
	r := NewResolver(dns.lookup, time.Minute, time.Hour, 100)
	defer r.Close()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	ctx := context.Background()
	missing := netip.MustParseAddr("10.0.0.99")

	steps := []struct {
		name      string
		advance   time.Duration
		addr      netip.Addr
		want      string
		wantCalls int32 // total lookups so far
	}{
		{"first lookup", 0, addrA, "a.example", 1},
		{"cache hit", 0, addrA, "a.example", 1},
		{"ipv4-mapped shares the entry", 0, netip.MustParseAddr("::ffff:10.0.0.1"), "a.example", 1},
		{"failed lookup", 0, missing, "10.0.0.99", 2},
		{"negative cache hit", 0, missing, "10.0.0.99", 2},
		{"still fresh just before ttl", time.Hour - time.Nanosecond, addrA, "a.example", 2},
		{"expired at ttl", time.Nanosecond, addrA, "a.example", 3},
		{"negative entry expired too", 0, missing, "10.0.0.99", 4},
		{"refreshed entry is fresh", 0, addrA, "a.example", 4},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		got := r.Hostname(ctx, s.addr)
		if got != s.want {
			t.Errorf("%s: Hostname(%v) = %q, want %q", s.name, s.addr, got, s.want)
		}
		if calls := dns.calls.Load(); calls != s.wantCalls {
			t.Errorf("%s: %d lookups, want %d", s.name, calls, s.wantCalls)
		}
	}
}

// TestResolverSettings: ttl 0 caches nothing, timeout 0 looks nothing up.
func TestResolverSettings(t *testing.T) {
	for _, tt := range []struct {
		name         string
		timeout, ttl time.Duration
		want         string
		calls        int32 // after three asks
	}{
		{"ttl 0", time.Minute, 0, "a.example", 3},
		{"timeout 0", 0, time.Hour, "10.0.0.1", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dns := newFakeDNS()
			r := NewResolver(dns.lookup, tt.timeout, tt.ttl, 100)
			defer r.Close()
			for range 3 {
				if got := r.Hostname(context.Background(), addrA); got != tt.want {
					t.Errorf("Hostname(%v) = %q, want %q", addrA, got, tt.want)
				}
			}
			if calls := dns.calls.Load(); calls != tt.calls {
				t.Errorf("%d lookups, want %d", calls, tt.calls)
			}
		})
	}
}

func TestResolverBoundedSize(t *testing.T) {
	dns := newFakeDNS()
	r := NewResolver(dns.lookup, time.Minute, time.Hour, 2)
	defer r.Close()
	ctx := context.Background()
	for _, a := range []netip.Addr{addrA, addrB, addrC} {
		r.Hostname(ctx, a)
	}
	r.mu.Lock()
	n := len(r.cache)
	r.mu.Unlock()
	if n != 2 {
		t.Errorf("cache holds %d entries, want 2", n)
	}
	// The oldest entry went; the newer ones are still cached.
	r.Hostname(ctx, addrC)
	r.Hostname(ctx, addrB)
	if calls := dns.calls.Load(); calls != 3 {
		t.Errorf("%d lookups after asking again for the newest entries, want 3", calls)
	}
	r.Hostname(ctx, addrA)
	if calls := dns.calls.Load(); calls != 4 {
		t.Errorf("%d lookups after asking again for the oldest entry, want 4", calls)
	}
}

// The tests below run in a synctest bubble: time only moves when every
// goroutine waits, so the timeouts pass at once and exactly, and
// synctest.Wait tells when the background lookups have settled.

func TestResolverCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dns := newFakeDNS()
		dns.release = make(chan struct{})
		r := NewResolver(dns.lookup, time.Minute, time.Hour, 100)
		defer r.Close()

		const callers = 20
		got := make([]string, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() { got[i] = r.Hostname(context.Background(), addrA) })
		}
		synctest.Wait() // every caller is waiting for the one lookup
		if calls := dns.calls.Load(); calls != 1 {
			t.Errorf("%d concurrent callers made %d lookups, want 1", callers, calls)
		}
		close(dns.release)
		wg.Wait()
		for i, g := range got {
			if g != "a.example" {
				t.Errorf("caller %d: Hostname(%v) = %q, want %q", i, addrA, g, "a.example")
			}
		}
	})
}

// TestResolverGivesUp: a caller whose wait ends, at the resolver's timeout
// or at its own context's deadline, gets the address; the lookup goes on
// and the next caller gets its answer.
func TestResolverGivesUp(t *testing.T) {
	for _, tt := range []struct {
		name        string
		timeout     time.Duration // the resolver's
		callerLimit time.Duration // the caller's context; 0: none
		wait        time.Duration
	}{
		{"resolver timeout", 200 * time.Millisecond, 0, 200 * time.Millisecond},
		{"caller context", time.Minute, time.Second, time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dns := newFakeDNS()
				dns.release = make(chan struct{})
				r := NewResolver(dns.lookup, tt.timeout, time.Hour, 100)
				defer r.Close()

				ctx := context.Background()
				if tt.callerLimit > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.callerLimit)
					defer cancel()
				}
				start := time.Now()
				if got := r.Hostname(ctx, addrA); got != "10.0.0.1" {
					t.Errorf("Hostname(%v) with a stuck lookup = %q, want %q", addrA, got, "10.0.0.1")
				}
				if waited := time.Since(start); waited != tt.wait {
					t.Errorf("Hostname(%v) waited %v, want %v", addrA, waited, tt.wait)
				}
				// The lookup answers late; the next caller gets its answer.
				close(dns.release)
				synctest.Wait()
				if got := r.Hostname(context.Background(), addrA); got != "a.example" {
					t.Errorf("Hostname(%v) after the late answer = %q, want %q", addrA, got, "a.example")
				}
				if calls := dns.calls.Load(); calls != 1 {
					t.Errorf("%d lookups, want 1", calls)
				}
			})
		})
	}
}

// TestResolverBoundsBackgroundLookups checks that a lookup which honours its
// context ends with the timeout although nobody waits for it any more: the
// bubble would report a goroutine left blocked.
func TestResolverBoundsBackgroundLookups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = time.Second
		ended := make(chan time.Time, 1)
		hang := func(ctx context.Context, addr string) ([]string, error) {
			<-ctx.Done()
			ended <- time.Now()
			return nil, ctx.Err()
		}
		r := NewResolver(hang, timeout, time.Hour, 100)
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the caller does not wait at all
		if got := r.Hostname(ctx, addrA); got != "10.0.0.1" {
			t.Errorf("Hostname(%v) = %q, want %q", addrA, got, "10.0.0.1")
		}
		if end, want := <-ended, start.Add(timeout); !end.Equal(want) {
			t.Errorf("background lookup ended at %v, want %v", end, want)
		}
		synctest.Wait() // for the lookup's goroutine to finish up
		r.mu.Lock()
		inflight := len(r.inflight)
		r.mu.Unlock()
		if inflight != 0 {
			t.Errorf("%d lookups still in flight after the timeout, want 0", inflight)
		}
	})
}

func TestResolverClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hang := func(ctx context.Context, addr string) ([]string, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		r := NewResolver(hang, time.Hour, time.Hour, 100)
		done := make(chan string)
		go func() { done <- r.Hostname(context.Background(), addrA) }()
		synctest.Wait()
		r.Close() // ends the lookup and so releases the waiting caller
		if got := <-done; got != "10.0.0.1" {
			t.Errorf("Hostname(%v) during Close = %q, want %q", addrA, got, "10.0.0.1")
		}
		if got := r.Hostname(context.Background(), addrB); got != "10.0.0.2" {
			t.Errorf("Hostname(%v) after Close = %q, want %q", addrB, got, "10.0.0.2")
		}
	})
}

func TestResolverBoundsLookupsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dns := newFakeDNS()
		dns.release = make(chan struct{})
		r := NewResolver(dns.lookup, time.Minute, time.Hour, 1)
		defer r.Close()

		go r.Hostname(context.Background(), addrA)
		synctest.Wait()
		// With one lookup in flight and room for one, another address gets
		// no lookup at all rather than another goroutine.
		if got := r.Hostname(context.Background(), addrB); got != "10.0.0.2" {
			t.Errorf("Hostname(%v) = %q, want %q", addrB, got, "10.0.0.2")
		}
		if calls := dns.calls.Load(); calls != 1 {
			t.Errorf("%d lookups, want 1", calls)
		}
		close(dns.release)
	})
}
