package tracker

import (
	"context"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"racktracker/storage"
)

func ih(b byte) storage.InfoHash {
	var h storage.InfoHash
	for i := range h {
		h[i] = b
	}
	h[0] = 0x00 // a NUL byte in the raw hash: clients send it escaped
	return h
}

func addrs(ss ...string) []netip.AddrPort {
	out := make([]netip.AddrPort, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddrPort(s)
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out
}

func sorted(a []netip.AddrPort) []netip.AddrPort {
	a = slices.Clone(a)
	slices.SortFunc(a, netip.AddrPort.Compare)
	return a
}

func (r *rig) members(t testing.TB, key string) []string {
	t.Helper()
	m, err := r.raw.SMembers(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("SMEMBERS %s: %v", key, err)
	}
	slices.Sort(m)
	return m
}

func (r *rig) value(t testing.TB, key string) string {
	t.Helper()
	return r.raw.Get(context.Background(), key).Val()
}

// TestAnnounceSwarm drives a scripted swarm through the HTTP endpoint from
// distinct loopback hosts and checks responses and the keys left behind.
func TestAnnounceSwarm(t *testing.T) {
	// Two representatives per rack (the default is one): the script below
	// follows a rack's second representative through a port change.
	two := func(c *Config, p *RackPolicy) { p.RepresentativesPerRack = 2 }
	eachBackend(t, two, func(t *testing.T, r *rig) {
		h := ih(0xa1)
		hs := h.String()
		a, b, c := newHost(t, "127.0.1.1"), newHost(t, "127.0.1.2"), newHost(t, "127.0.2.1")

		resp := r.announce(t, a, params{hash: h, port: 6881, left: 1000, event: "started"})
		if resp.Failure != "" {
			t.Fatalf("first announce failed: %s", resp.Failure)
		}
		if resp.Interval < 27 || resp.Interval > 33 || resp.MinInterval != 10 {
			t.Errorf("interval %d min %d, want 30+-10%% and 10", resp.Interval, resp.MinInterval)
		}
		if got := resp.peers(t); len(got) != 0 || resp.Incomplete != 1 || resp.Complete != 0 {
			t.Errorf("first peer got peers %v, counts %d/%d; want none, 0/1", got, resp.Complete, resp.Incomplete)
		}

		resp = r.announce(t, b, params{hash: h, port: 6882, left: 1000, event: "started"})
		if got, want := sorted(resp.peers(t)), addrs("127.0.1.1:6881"); !slices.Equal(got, want) {
			t.Errorf("b got %v, want %v", got, want)
		}
		resp = r.announce(t, c, params{hash: h, port: 6883, left: 1000, event: "started"})
		// c is r2's only peer, so its representative: it gets r1's
		// representatives (a and b), its share of remotePerRack with two
		// representatives per rack being at least two.
		if got, want := sorted(resp.peers(t)), addrs("127.0.1.1:6881", "127.0.1.2:6882"); !slices.Equal(got, want) {
			t.Errorf("c got %v, want r1's representatives %v", got, want)
		}

		// a completes: a seeder, still r1's representative.
		resp = r.announce(t, a, params{hash: h, port: 6881, left: 0, event: "completed", downloaded: 1000})
		if resp.Complete != 1 || resp.Incomplete != 2 {
			t.Errorf("after completion counts %d/%d, want 1/2", resp.Complete, resp.Incomplete)
		}
		// A seeder gets its rack's leechers, then other racks' representatives.
		if got, want := sorted(resp.peers(t)), addrs("127.0.1.2:6882", "127.0.2.1:6883"); !slices.Equal(got, want) {
			t.Errorf("seeder a got %v, want %v", got, want)
		}
		if got := r.members(t, hs+":peers:S"); !slices.Equal(got, []string{"127.0.1.1:6881"}) {
			t.Errorf("peers:S = %q", got)
		}
		if got := r.members(t, hs+":rack:r1:R"); !slices.Equal(got, []string{"127.0.1.1:6881", "127.0.1.2:6882"}) {
			t.Errorf("rack:r1:R = %q", got)
		}
		if got := r.value(t, hs+":peer:127.0.1.1:seeder"); got != "True" {
			t.Errorf("a seeder = %q, want True", got)
		}
		if got := r.value(t, hs+":completions"); got != "1" {
			t.Errorf("completions = %q, want 1", got)
		}

		// b moves to another port: the old member is replaced everywhere.
		r.announce(t, b, params{hash: h, port: 7000, left: 500})
		if got := r.members(t, hs+":peers:N"); !slices.Equal(got, []string{"127.0.1.1:6881", "127.0.1.2:7000", "127.0.2.1:6883"}) {
			t.Errorf("peers:N after port change = %q", got)
		}
		if got := r.members(t, hs+":rack:r1:R"); !slices.Contains(got, "127.0.1.2:7000") || slices.Contains(got, "127.0.1.2:6882") {
			t.Errorf("rack:r1:R after port change = %q, want the new port only", got)
		}

		// Dictionary form, with and without peer ids.
		resp = r.announce(t, b, params{hash: h, port: 7000, left: 500, compact: "0", peerID: "-BB0001-bbbbbbbbbbbb"})
		var dict struct {
			Peers []struct {
				PeerID string `bencode:"peer id"`
				IP     string `bencode:"ip"`
				Port   int    `bencode:"port"`
			} `bencode:"peers"`
		}
		body := r.get(t, b, "/announce?"+params{hash: h, port: 7000, left: 500, compact: "0"}.query())
		if err := bencode.Unmarshal(body, &dict); err != nil {
			t.Fatal(err)
		}
		if len(dict.Peers) == 0 {
			t.Fatalf("dictionary response has no peers: %q", body)
		}
		for _, p := range dict.Peers {
			if p.PeerID != "-RT0001-000000000000" || p.IP == "" || p.Port == 0 {
				t.Errorf("dictionary peer %+v: want peer id, ip and port", p)
			}
		}
		body = r.get(t, b, "/announce?"+params{hash: h, port: 7000, left: 500, compact: "0", noPeerID: true}.query())
		if strings.Contains(string(body), "peer id") {
			t.Errorf("no_peer_id response still has peer ids: %q", body)
		}

		// c stops: out of the current sets, still seen.
		r.announce(t, c, params{hash: h, port: 6883, left: 1000, event: "stopped"})
		if got := r.members(t, hs+":peers:L"); !slices.Equal(got, []string{"127.0.1.2:7000"}) {
			t.Errorf("peers:L after stop = %q", got)
		}
		if got := r.value(t, hs+":peer:127.0.2.1:last_event"); got != "stopped" {
			t.Errorf("c last_event = %q", got)
		}

		// b goes silent; a keeps announcing. b never showed its cadence (it
		// announced twice in one instant), so it is taken to be the
		// first_cadence (10 min): past 2.5 of those the maintenance pass
		// expires b, while a, at 10 min, stays.
		r.clock.Advance(10 * time.Minute)
		r.announce(t, a, params{hash: h, port: 6881, left: 0})
		r.clock.Advance(14 * time.Minute)
		r.srv.maintain(context.Background())
		if got := r.members(t, hs+":peers:L"); len(got) != 1 {
			t.Errorf("peers:L 24 min after b's announce = %q, want b still there", got)
		}
		r.clock.Advance(2 * time.Minute)
		r.srv.maintain(context.Background())
		if got := r.members(t, hs+":peers:L"); len(got) != 0 {
			t.Errorf("peers:L after expiry = %q, want empty", got)
		}
		if got := r.members(t, hs+":rack:r1:R"); !slices.Equal(got, []string{"127.0.1.1:6881"}) {
			t.Errorf("rack:r1:R after expiry = %q, want only a", got)
		}

		// Scrape: active hash counted, unknown left out.
		body = r.get(t, a, "/scrape?info_hash="+url.QueryEscape(string(h[:]))+"&info_hash=%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01")
		var scrape struct {
			Files map[string]struct {
				Complete   int `bencode:"complete"`
				Incomplete int `bencode:"incomplete"`
				Downloaded int `bencode:"downloaded"`
			} `bencode:"files"`
		}
		if err := bencode.Unmarshal(body, &scrape); err != nil {
			t.Fatalf("scrape %q: %v", body, err)
		}
		f, ok := scrape.Files[string(h[:])]
		if len(scrape.Files) != 1 || !ok || f.Complete != 1 || f.Incomplete != 0 || f.Downloaded != 1 {
			t.Errorf("scrape = %+v, want only %s with 1/0/1", scrape.Files, hs)
		}
	})
}

// TestIPv6Peers: an IPv6 host (via the trusted ip parameter) lands in
// peers6 for compact clients.
func TestIPv6Peers(t *testing.T) {
	r := newRig(t, storage.BackendEmbedded, func(c *Config, _ *RackPolicy) { c.Announce.TrustIPParam = true })
	h := ih(0xa2)
	a := newHost(t, "127.0.1.1")
	r.announce(t, a, params{hash: h, port: 1000, left: 0, extra: "ip=fd00::1"})
	resp := r.announce(t, a, params{hash: h, port: 2000, left: 10, extra: "ip=10.9.9.9"})
	if got, want := resp.peers(t), addrs("[fd00::1]:1000"); !slices.Equal(got, want) {
		t.Errorf("peers = %v, want %v in peers6", got, want)
	}
	if len(resp.Peers6) != 18 {
		t.Errorf("peers6 has %d bytes, want 18", len(resp.Peers6))
	}
	if got := r.members(t, h.String()+":peers:S"); !slices.Equal(got, []string{"[fd00::1]:1000"}) {
		t.Errorf("peers:S = %q, want the bracketed IPv6 peer", got)
	}
}

// TestBadAnnounce: each bad request gets a failure reason naming the
// problem, and writes nothing.
func TestBadAnnounce(t *testing.T) {
	r := newRig(t, storage.BackendEmbedded, nil)
	a := newHost(t, "127.0.1.1")
	h := ih(0xa3)
	for _, tc := range []struct {
		name string
		p    params
		want string
	}{
		{"short hash", params{rawHash: "abc", port: 1}, "info_hash must be 20 bytes"},
		{"no port", params{hash: h, omitPort: true}, "port"},
		{"bad port", params{hash: h, port: 70000}, "port"},
		{"negative left", params{hash: h, port: 1, left: -1}, "left"},
		{"bad event", params{hash: h, port: 1, event: "exploded"}, "event"},
		{"oversized", params{hash: h, port: 1, extra: "pad=" + strings.Repeat("x", 9000)}, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := r.announce(t, a, tc.p)
			if !strings.Contains(resp.Failure, tc.want) {
				t.Errorf("failure reason %q, want it to mention %q", resp.Failure, tc.want)
			}
		})
	}
	if keys := r.raw.Keys(context.Background(), "*").Val(); len(keys) != 0 {
		t.Errorf("bad announces wrote %q", keys)
	}
}

// TestNumwant: numwant is clamped to numwant_max, never an error, and 0
// hands out nothing.
func TestNumwant(t *testing.T) {
	r := newRig(t, storage.BackendEmbedded, func(c *Config, _ *RackPolicy) { c.Announce.NumwantMax = 3 })
	h := ih(0xa4)
	for i := 1; i <= 6; i++ {
		r.announce(t, newHost(t, "127.0.1."+string(rune('0'+i))), params{hash: h, port: 1, left: 0})
	}
	a := newHost(t, "127.0.1.9")
	for _, tc := range []struct{ numwant, want int }{{500, 3}, {2, 2}, {-1, 0}} {
		p := params{hash: h, port: 1, left: 10, numwant: tc.numwant}
		if tc.numwant == -1 {
			p.extra = "numwant=0"
			p.numwant = 0
		}
		resp := r.announce(t, a, p)
		if resp.Failure != "" || len(resp.peers(t)) != tc.want {
			t.Errorf("numwant %d: %d peers (failure %q), want %d", tc.numwant, len(resp.peers(t)), resp.Failure, tc.want)
		}
	}
}

// TestUnregisteredTransfer: with allow_unregistered off an unknown hash is
// refused and nothing is written.
func TestUnregisteredTransfer(t *testing.T) {
	r := newRig(t, storage.BackendEmbedded, func(c *Config, _ *RackPolicy) { c.Transfers.AllowUnregistered = false })
	resp := r.announce(t, newHost(t, "127.0.1.1"), params{hash: ih(0xa5), port: 1, left: 10, event: "started"})
	if !strings.Contains(resp.Failure, "not registered") {
		t.Errorf("failure reason %q, want not registered", resp.Failure)
	}
	if keys := r.raw.Keys(context.Background(), "*").Val(); len(keys) != 0 {
		t.Errorf("refused announce wrote %q", keys)
	}
}

// TestStorageOutage: with Redis gone an announce fails promptly with a
// failure reason, /healthz says 503, and both recover when Redis returns.
func TestStorageOutage(t *testing.T) {
	r := newRig(t, storage.BackendRedis, nil)
	a := newHost(t, "127.0.1.1")
	h := ih(0xa6)
	if resp := r.announce(t, a, params{hash: h, port: 1, left: 10, event: "started"}); resp.Failure != "" {
		t.Fatalf("announce before the outage: %s", resp.Failure)
	}
	r.redis.Stop()
	start := time.Now()
	resp := r.announce(t, a, params{hash: h, port: 1, left: 10})
	if resp.Failure != failureStorage {
		t.Errorf("failure reason during outage %q, want %q", resp.Failure, failureStorage)
	}
	if resp.Interval < 27 || resp.Interval > 33 || resp.MinInterval != 10 {
		t.Errorf("outage answer interval %d, min interval %d; want 30+-10%% and 10, so clients come back at their cadence", resp.Interval, resp.MinInterval)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("announce during outage took %s, want at most the storage timeout", took)
	}
	res, err := a.client.Get(r.http.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 {
		t.Errorf("/healthz during outage = %d, want 503", res.StatusCode)
	}

	r.redis.Restart(t)
	resp = r.announce(t, a, params{hash: h, port: 1, left: 10, event: "started"})
	if resp.Failure != "" || resp.Incomplete != 1 {
		t.Errorf("announce after Redis returned: failure %q, incomplete %d; want success", resp.Failure, resp.Incomplete)
	}
}

// TestTrustedProxy: X-Forwarded-For counts only from a trusted proxy, and
// the ip parameter only when trusted by config.
func TestTrustedProxy(t *testing.T) {
	r := newRig(t, storage.BackendEmbedded, func(c *Config, _ *RackPolicy) {
		c.Announce.TrustedProxies = []string{"127.0.9.0/24"}
	})
	h := ih(0xa7)
	for _, tc := range []struct {
		from, xff, param, want string
	}{
		{"127.0.9.1", "127.0.3.7", "", "127.0.3.7:1"},            // trusted proxy
		{"127.0.1.1", "127.0.3.8", "", "127.0.1.1:1"},            // untrusted: header ignored
		{"127.0.1.2", "", "127.0.3.9", "127.0.1.2:1"},            // ip param not trusted
		{"127.0.9.1", "127.0.4.4, 127.0.9.2", "", "127.0.4.4:1"}, // right-most untrusted hop
	} {
		req, _ := newHost(t, tc.from), 0
		p := params{hash: h, port: 1, left: 0}
		if tc.param != "" {
			p.extra = "ip=" + tc.param
		}
		hreq := mustRequest(t, r.http.URL+"/announce?"+p.query())
		if tc.xff != "" {
			hreq.Header.Set("X-Forwarded-For", tc.xff)
		}
		res, err := req.client.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if !slices.Contains(r.members(t, h.String()+":peers:S"), tc.want) {
			t.Errorf("from %s with X-Forwarded-For %q, ip=%q: peers:S = %q, want %s", tc.from, tc.xff, tc.param, r.members(t, h.String()+":peers:S"), tc.want)
		}
	}
}
