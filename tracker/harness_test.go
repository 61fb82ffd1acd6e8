package tracker

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/redis/go-redis/v9"

	"racktracker/rackmap"
	"racktracker/storage"
	"racktracker/storage/storagetest"
)

// rig is a tracker under test: a real HTTP server over real storage and a
// real rack map, and a plain Redis client reading the keys as an operator's
// redis-cli would (for the embedded store, on its embedded.listen address).
type rig struct {
	srv     *Server
	http    *httptest.Server
	store   *storage.Store
	raw     *redis.Client
	clock   *storagetest.Clock
	redis   *storagetest.Server // nil for the embedded backend
	backend string
}

// testRacks maps 127.0.R.0/24 to rack rR for R in 1..4.
func testRacks(t testing.TB) *rackmap.Map {
	t.Helper()
	cfg := rackmap.DefaultConfig()
	for r := 1; r <= 4; r++ {
		cfg.Map = append(cfg.Map, rackmap.Rack{Name: "r" + strconv.Itoa(r), CIDRs: []string{"127.0." + strconv.Itoa(r) + ".0/24"}})
	}
	m, err := rackmap.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// eachBackend runs f on a rig over the embedded store and one over a real
// redis-server.
func eachBackend(t *testing.T, edit func(*Config, *RackPolicy), f func(t *testing.T, r *rig)) {
	for _, b := range []string{storage.BackendEmbedded, storage.BackendRedis} {
		t.Run(b, func(t *testing.T) { f(t, newRig(t, b, edit)) })
	}
}

func newRig(t testing.TB, backend string, edit func(*Config, *RackPolicy)) *rig {
	t.Helper()
	r := &rig{clock: storagetest.NewClock(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)), backend: backend}
	scfg := storage.DefaultConfig()
	scfg.Backend = backend
	var addr string
	if backend == storage.BackendRedis {
		r.redis = storagetest.RedisServer(t)
		scfg.Redis.Addr = r.redis.Addr
		addr = r.redis.Addr
	} else {
		scfg.Embedded.SnapshotPath = filepath.Join(t.TempDir(), "tracker.snapshot")
		addr = freeAddr(t)
		scfg.Embedded.Listen = addr
	}
	st, err := storage.Open(context.Background(), scfg, storage.Options{Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	r.store = st
	r.raw = redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { r.raw.Close() })

	cfg, policy := DefaultConfig(), DefaultRackPolicy()
	if edit != nil {
		edit(&cfg, &policy)
	}
	r.srv = New(cfg, policy, st, testRacks(t), Options{Now: r.clock.Now})
	r.http = httptest.NewServer(r.srv.Handler())
	t.Cleanup(r.http.Close)
	return r
}

func freeAddr(t testing.TB) string { return storagetest.FreeAddr(t) }

// host is a client machine: HTTP requests leave from its own loopback
// address, so the tracker sees it as the connection's source.
type host struct {
	ip     netip.Addr
	client *http.Client
}

func newHost(t testing.TB, ip string) *host {
	t.Helper()
	a := netip.MustParseAddr(ip)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: a.AsSlice()}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &host{ip: a, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// params of an announce; the zero value is filled in by announce.
type params struct {
	hash                         storage.InfoHash
	peerID                       string
	port                         int
	left                         int64
	event                        string
	numwant                      int // 0: absent
	compact                      string
	extra                        string // raw query to append
	uploaded, downloaded         int64
	noPeerID                     bool
	omitPort, omitLeft, omitPeer bool
	rawHash                      string // overrides hash when set
}

func (p params) query() string {
	v := url.Values{}
	if p.rawHash != "" {
		v.Set("info_hash", p.rawHash)
	} else {
		v.Set("info_hash", string(p.hash[:]))
	}
	if !p.omitPeer {
		id := p.peerID
		if id == "" {
			id = "-RT0001-000000000000"
		}
		v.Set("peer_id", id)
	}
	if !p.omitPort {
		v.Set("port", strconv.Itoa(p.port))
	}
	if !p.omitLeft {
		v.Set("left", strconv.FormatInt(p.left, 10))
	}
	v.Set("uploaded", strconv.FormatInt(p.uploaded, 10))
	v.Set("downloaded", strconv.FormatInt(p.downloaded, 10))
	if p.event != "" {
		v.Set("event", p.event)
	}
	if p.numwant != 0 {
		v.Set("numwant", strconv.Itoa(p.numwant))
	}
	if p.compact != "" {
		v.Set("compact", p.compact)
	}
	if p.noPeerID {
		v.Set("no_peer_id", "1")
	}
	q := v.Encode()
	if p.extra != "" {
		q += "&" + p.extra
	}
	return q
}

// response is a decoded announce answer.
type response struct {
	Failure     string        `bencode:"failure reason"`
	Interval    int           `bencode:"interval"`
	MinInterval int           `bencode:"min interval"`
	Complete    int           `bencode:"complete"`
	Incomplete  int           `bencode:"incomplete"`
	TrackerID   string        `bencode:"tracker id"`
	Peers       bencode.Bytes `bencode:"peers"`
	Peers6      string        `bencode:"peers6"`
}

// peers decodes the compact or dictionary peer list.
func (r response) peers(t testing.TB) []netip.AddrPort {
	t.Helper()
	var out []netip.AddrPort
	var compact string
	if err := bencode.Unmarshal(r.Peers, &compact); err == nil {
		for i := 0; i+6 <= len(compact); i += 6 {
			b := []byte(compact[i : i+6])
			out = append(out, netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), uint16(b[4])<<8|uint16(b[5])))
		}
	} else {
		var dicts []struct {
			IP   string `bencode:"ip"`
			Port int    `bencode:"port"`
		}
		if err := bencode.Unmarshal(r.Peers, &dicts); err != nil {
			t.Fatalf("peers is neither a string nor a list: %v", err)
		}
		for _, d := range dicts {
			out = append(out, netip.AddrPortFrom(netip.MustParseAddr(d.IP), uint16(d.Port)))
		}
	}
	for i := 0; i+18 <= len(r.Peers6); i += 18 {
		b := []byte(r.Peers6[i : i+18])
		out = append(out, netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])), uint16(b[16])<<8|uint16(b[17])))
	}
	return out
}

// get sends a GET from host h and returns the raw body.
func (r *rig) get(t testing.TB, h *host, path string) []byte {
	t.Helper()
	resp, err := h.client.Get(r.http.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var buf [64 << 10]byte
	n := 0
	for {
		k, err := resp.Body.Read(buf[n:])
		n += k
		if err != nil {
			break
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	return append([]byte(nil), buf[:n]...)
}

func (r *rig) announce(t testing.TB, h *host, p params) response {
	t.Helper()
	body := r.get(t, h, "/announce?"+p.query())
	var resp response
	if err := bencode.Unmarshal(body, &resp); err != nil {
		t.Fatalf("announce response %q: %v", body, err)
	}
	return resp
}

func mustRequest(t testing.TB, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
