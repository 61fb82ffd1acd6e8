package tracker

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestSlowClientsThroughHTTP runs libtorrent's and rtorrent's cadences
// (300 s and 600 s, whatever interval they are handed) through the real
// HTTP handler with the default config (but two representatives per rack)
// and the maintenance pass every
// 10 s: for two hours no peer expires and rack r1 keeps its
// representatives; then one representative goes silent, and the first
// announce of r1 after it is overdue (450 s at 300 s) hands its slot to
// the rack's other leecher, long before it expires (750 s).
func TestSlowClientsThroughHTTP(t *testing.T) {
	// Two representatives per rack (the default is one): a silent one's
	// slot goes to the rack's third leecher while the other keeps its own.
	two := func(c *Config, p *RackPolicy) { p.RepresentativesPerRack = 2 }
	eachBackend(t, two, func(t *testing.T, r *rig) {
		h := ih(0xc7)
		hs := h.String()
		type client struct {
			ip      string
			port    int
			cadence time.Duration
			left    int64
			next    time.Time
			silent  bool
		}
		clients := []*client{
			{ip: "127.0.2.1", port: 6881, cadence: 600 * time.Second}, // seeder of r2
			{ip: "127.0.1.1", port: 6881, cadence: 300 * time.Second, left: 1 << 30},
			{ip: "127.0.1.2", port: 6881, cadence: 600 * time.Second, left: 1 << 30},
			{ip: "127.0.1.3", port: 6881, cadence: 600 * time.Second, left: 1 << 30},
		}
		hosts := map[string]*host{}
		send := func(c *client, event string) {
			t.Helper()
			if hosts[c.ip] == nil {
				hosts[c.ip] = newHost(t, c.ip)
			}
			resp := r.announce(t, hosts[c.ip], params{hash: h, port: c.port, left: c.left, event: event})
			if resp.Failure != "" {
				t.Fatalf("announce %s: %s", c.ip, resp.Failure)
			}
			c.next = r.clock.Now().Add(c.cadence)
		}
		for _, c := range clients {
			send(c, "started")
			r.clock.Advance(time.Second)
		}
		reps := r.members(t, hs+":rack:r1:R")
		if !slices.Equal(reps, []string{"127.0.1.1:6881", "127.0.1.2:6881"}) {
			t.Fatalf("r1 representatives %q, want the first two", reps)
		}
		// step advances 10 s, announces for every client due (each
		// downloads 1 MiB between announces) and runs the pass; it reports
		// whether a client of r1 announced.
		step := func() bool {
			r.clock.Advance(10 * time.Second)
			r1 := false
			for _, c := range clients {
				if c.silent || r.clock.Now().Before(c.next) {
					continue
				}
				if c.left > 0 {
					c.left -= 1 << 20
				}
				send(c, "")
				r1 = r1 || c.ip != "127.0.2.1"
			}
			r.srv.Maintain(context.Background())
			return r1
		}
		for i := range 720 { // two hours
			step()
			if got := r.members(t, hs+":peers:L"); len(got) != 3 {
				t.Fatalf("after %s: leechers %q, want all 3 current", time.Duration(i+1)*10*time.Second, got)
			}
			if got := r.members(t, hs+":rack:r1:R"); !slices.Equal(got, reps) {
				t.Fatalf("r1 representatives %q, want %q kept", got, reps)
			}
		}

		// 127.0.1.1 (300 s) goes silent.
		gone := clients[1]
		gone.silent = true
		last := gone.next.Add(-gone.cadence)
		for {
			r1 := step()
			silence := r.clock.Now().Sub(last)
			got := r.members(t, hs+":rack:r1:R")
			held := slices.Contains(got, "127.0.1.1:6881")
			if silence <= 450*time.Second && !held {
				t.Fatalf("silent %s, before it is overdue: r1 representatives %q", silence, got)
			}
			if silence > 450*time.Second && r1 {
				if held || !slices.Equal(got, []string{"127.0.1.2:6881", "127.0.1.3:6881"}) {
					t.Fatalf("first announce of r1 %s after the silent representative is overdue: representatives %q", silence-450*time.Second, got)
				}
				if !slices.Contains(r.members(t, hs+":peers:L"), "127.0.1.1:6881") {
					t.Errorf("silent %s: expired already, want current until 750 s", silence)
				}
				break
			}
			if silence > 1200*time.Second {
				t.Fatal("no announce of r1 after the representative was overdue")
			}
		}
	})
}
