package tracker

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/anacrolix/torrent/bencode"
)

// update rewrites golden files instead of comparing with them:
// go test ./tracker -run Golden -update
var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var (
	peerA = handoutPeer{netip.MustParseAddrPort("10.1.0.7:6881"), []byte("-RT0001-aaaaaaaaaaaa")}
	peerB = handoutPeer{netip.MustParseAddrPort("[::ffff:10.2.0.9]:51413"), []byte("-RT0001-bbbbbbbbbbbb")}
	peerC = handoutPeer{netip.MustParseAddrPort("[fd00:1::7]:6882"), []byte("-RT0001-cccccccccccc")}
	peerD = handoutPeer{netip.MustParseAddrPort("[fe80::1%eth0]:443"), nil} // zone dropped, id unknown
	peerE = handoutPeer{netip.MustParseAddrPort("192.168.255.1:65535"), []byte("\x00\xffbinary-peer-id\x00\x01\x02")}
	// Bytes that must survive as raw dictionary keys.
	hashLow  = [20]byte{0x00, 0x01}
	hashHigh = [20]byte{0xff, 0xfe, 'e', ':', 'd', 0x00}
	hashMid  = [20]byte(bytes.Repeat([]byte("i"), 20))
)

func TestEncoderGolden(t *testing.T) {
	mixed := []handoutPeer{peerA, peerC, peerB, peerD, peerE}
	tests := []struct {
		file string
		got  []byte
		want any // what anacrolix/torrent/bencode decodes it to
	}{
		{
			"announce_compact.bencode",
			appendAnnounce(nil, announceResponse{Interval: 30, MinInterval: 10, Complete: 2, Incomplete: 7, Peers: []handoutPeer{peerA, peerB, peerE}}, true, false),
			map[string]any{
				"complete": int64(2), "incomplete": int64(7), "interval": int64(30), "min interval": int64(10),
				"peers": "\x0a\x01\x00\x07\x1a\xe1" + "\x0a\x02\x00\x09\xc8\xd5" + "\xc0\xa8\xff\x01\xff\xff",
			},
		},
		{
			"announce_ipv6.bencode",
			appendAnnounce(nil, announceResponse{Interval: 27, MinInterval: 10, Complete: 1, Incomplete: 4, Peers: mixed}, true, false),
			map[string]any{
				"complete": int64(1), "incomplete": int64(4), "interval": int64(27), "min interval": int64(10),
				"peers": "\x0a\x01\x00\x07\x1a\xe1" + "\x0a\x02\x00\x09\xc8\xd5" + "\xc0\xa8\xff\x01\xff\xff",
				"peers6": "\xfd\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07\x1a\xe2" +
					"\xfe\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\xbb",
			},
		},
		{
			"announce_dict.bencode",
			appendAnnounce(nil, announceResponse{Interval: 30, MinInterval: 10, Complete: 1, Incomplete: 4, Peers: mixed}, false, false),
			map[string]any{
				"complete": int64(1), "incomplete": int64(4), "interval": int64(30), "min interval": int64(10),
				"peers": []any{
					map[string]any{"ip": "10.1.0.7", "peer id": "-RT0001-aaaaaaaaaaaa", "port": int64(6881)},
					map[string]any{"ip": "fd00:1::7", "peer id": "-RT0001-cccccccccccc", "port": int64(6882)},
					map[string]any{"ip": "10.2.0.9", "peer id": "-RT0001-bbbbbbbbbbbb", "port": int64(51413)},
					map[string]any{"ip": "fe80::1", "port": int64(443)},
					map[string]any{"ip": "192.168.255.1", "peer id": "\x00\xffbinary-peer-id\x00\x01\x02", "port": int64(65535)},
				},
			},
		},
		{
			"announce_dict_no_peer_id.bencode",
			appendAnnounce(nil, announceResponse{Interval: 30, MinInterval: 10, Complete: 1, Incomplete: 4, Peers: mixed}, false, true),
			map[string]any{
				"complete": int64(1), "incomplete": int64(4), "interval": int64(30), "min interval": int64(10),
				"peers": []any{
					map[string]any{"ip": "10.1.0.7", "port": int64(6881)},
					map[string]any{"ip": "fd00:1::7", "port": int64(6882)},
					map[string]any{"ip": "10.2.0.9", "port": int64(51413)},
					map[string]any{"ip": "fe80::1", "port": int64(443)},
					map[string]any{"ip": "192.168.255.1", "port": int64(65535)},
				},
			},
		},
		{
			// No peers at all: "peers" is still there, empty.
			"announce_tracker_id.bencode",
			appendAnnounce(nil, announceResponse{Interval: 33, MinInterval: 10, TrackerID: "rt-1"}, true, false),
			map[string]any{
				"complete": int64(0), "incomplete": int64(0), "interval": int64(33), "min interval": int64(10),
				"peers": "", "tracker id": "rt-1",
			},
		},
		{
			"failure.bencode",
			appendFailure(nil, "info_hash must be 20 bytes, got 19", 31, 10),
			map[string]any{"failure reason": "info_hash must be 20 bytes, got 19", "interval": int64(31), "min interval": int64(10)},
		},
		{
			"failure_interval.bencode",
			appendFailure(nil, failureStorage, 29, 10),
			map[string]any{"failure reason": failureStorage, "interval": int64(29), "min interval": int64(10)},
		},
		{
			"scrape.bencode",
			appendScrape(nil, []scrapeFile{
				{InfoHash: hashHigh, Complete: 1, Incomplete: 2, Downloaded: 3},
				{InfoHash: hashLow, Complete: 10, Incomplete: 0, Downloaded: 12},
				{InfoHash: hashMid, Complete: 0, Incomplete: 5, Downloaded: 0},
			}),
			map[string]any{"files": map[string]any{
				string(hashLow[:]):  map[string]any{"complete": int64(10), "downloaded": int64(12), "incomplete": int64(0)},
				string(hashMid[:]):  map[string]any{"complete": int64(0), "downloaded": int64(0), "incomplete": int64(5)},
				string(hashHigh[:]): map[string]any{"complete": int64(1), "downloaded": int64(3), "incomplete": int64(2)},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "golden", tt.file)
			if *update {
				if err := os.WriteFile(path, tt.got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(tt.got, want) {
				t.Errorf("encoded %s =\n%q\nwant\n%q", tt.file, tt.got, want)
			}
			checkBencode(t, tt.got, tt.want)
		})
	}
}

// checkBencode proves that b is valid bencode with the given value, and
// canonical: re-encoding what the library decoded (it sorts dictionary keys)
// gives b back byte for byte.
func checkBencode(t *testing.T, b []byte, want any) {
	t.Helper()
	var got any
	if err := bencode.Unmarshal(b, &got); err != nil {
		t.Fatalf("bencode.Unmarshal(%q) error = %v", b, err)
	}
	if want != nil && !reflect.DeepEqual(got, want) {
		t.Errorf("bencode.Unmarshal(%q) =\n%#v\nwant\n%#v", b, got, want)
	}
	again, err := bencode.Marshal(got)
	if err != nil {
		t.Fatalf("bencode.Marshal(%#v) error = %v", got, err)
	}
	if !bytes.Equal(again, b) {
		t.Errorf("not canonical bencode:\n%q\nre-encoded by the library as\n%q", b, again)
	}
}

// libAnnounce and libPeer give the announce response to bencode.Marshal:
// the baseline the hand-written encoder is measured and checked against.
type libAnnounce struct {
	Complete    int    `bencode:"complete"`
	Incomplete  int    `bencode:"incomplete"`
	Interval    int    `bencode:"interval"`
	MinInterval int    `bencode:"min interval"`
	Peers       any    `bencode:"peers"`
	Peers6      []byte `bencode:"peers6,omitempty"`
	TrackerID   string `bencode:"tracker id,omitempty"`
}

type libPeer struct {
	IP     string `bencode:"ip"`
	PeerID []byte `bencode:"peer id,omitempty"`
	Port   uint16 `bencode:"port"`
}

// libraryAnnounce encodes r the way a handler built on the library would.
func libraryAnnounce(r announceResponse, compact, noPeerID bool) ([]byte, error) {
	out := libAnnounce{Complete: r.Complete, Incomplete: r.Incomplete, Interval: r.Interval, MinInterval: r.MinInterval, TrackerID: r.TrackerID}
	if compact {
		peers := []byte{}
		for _, p := range r.Peers {
			switch a := p.Addr.Addr().Unmap(); {
			case a.Is4():
				ip := a.As4()
				peers = append(append(peers, ip[:]...), byte(p.Addr.Port()>>8), byte(p.Addr.Port()))
			case a.Is6():
				ip := a.As16()
				out.Peers6 = append(append(out.Peers6, ip[:]...), byte(p.Addr.Port()>>8), byte(p.Addr.Port()))
			}
		}
		out.Peers = peers
	} else {
		peers := []libPeer{}
		for _, p := range r.Peers {
			a := p.Addr.Addr().Unmap()
			if !a.IsValid() {
				continue
			}
			lp := libPeer{IP: a.WithZone("").String(), Port: p.Addr.Port()}
			if !noPeerID {
				lp.PeerID = p.PeerID
			}
			peers = append(peers, lp)
		}
		out.Peers = peers
	}
	return bencode.Marshal(out)
}

// randomResponse makes responses of every shape the encoder must handle.
func randomResponse(rng *rand.Rand) announceResponse {
	n := func() int { return rng.IntN(3000) - 5 } // the odd negative too
	r := announceResponse{Interval: n(), MinInterval: n(), Complete: n(), Incomplete: n()}
	if rng.IntN(3) == 0 {
		r.TrackerID = string(rune('a' + rng.IntN(26)))
	}
	for range rng.IntN(60) {
		var a netip.Addr
		switch rng.IntN(5) {
		case 0, 1:
			a = netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		case 2:
			a = netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: 10, 15: byte(rng.IntN(256))}) // v4-mapped
		case 3:
			a = netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(rng.IntN(256))})
		case 4:
			a = netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 15: 1}).WithZone("eth0")
		}
		p := handoutPeer{Addr: netip.AddrPortFrom(a, uint16(rng.IntN(65536)))}
		switch rng.IntN(3) {
		case 1:
			p.PeerID = []byte("-RT0001-012345678901")
		case 2:
			p.PeerID = []byte{byte(rng.IntN(256)), 0, 0xff}
		}
		if rng.IntN(50) == 0 {
			p.Addr = netip.AddrPort{} // invalid: skipped
		}
		r.Peers = append(r.Peers, p)
	}
	return r
}

func TestAppendAnnounceMatchesLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		r := randomResponse(rng)
		for _, mode := range []struct{ compact, noPeerID bool }{{true, false}, {false, false}, {false, true}} {
			got := appendAnnounce([]byte("prefix"), r, mode.compact, mode.noPeerID)
			if string(got[:6]) != "prefix" {
				t.Fatalf("appendAnnounce overwrote dst: %q", got[:6])
			}
			got = got[6:]
			want, err := libraryAnnounce(r, mode.compact, mode.noPeerID)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("case %d: appendAnnounce(%+v, compact=%v, noPeerID=%v) =\n%q\nbencode.Marshal gives\n%q",
					i, r, mode.compact, mode.noPeerID, got, want)
			}
			checkBencode(t, got, nil)
		}
	}
}

func TestAppendScrape(t *testing.T) {
	files := []scrapeFile{
		{InfoHash: hashMid, Complete: 1},
		{InfoHash: hashLow, Complete: 2},
		{InfoHash: hashMid, Complete: 3}, // repeated: the first one given wins
		{InfoHash: hashHigh, Complete: 4},
	}
	before := append([]scrapeFile(nil), files...)
	got := appendScrape(nil, files)
	if !reflect.DeepEqual(files, before) {
		t.Errorf("appendScrape reordered its argument: %+v", files)
	}
	entry := func(c int64) map[string]any {
		return map[string]any{"complete": c, "downloaded": int64(0), "incomplete": int64(0)}
	}
	checkBencode(t, got, map[string]any{"files": map[string]any{
		string(hashLow[:]):  entry(2),
		string(hashMid[:]):  entry(1),
		string(hashHigh[:]): entry(4),
	}})

	if got := appendScrape(nil, nil); string(got) != "d5:filesdee" {
		t.Errorf("appendScrape(nil, nil) = %q, want %q", got, "d5:filesdee")
	}
}

func TestAppendFailure(t *testing.T) {
	for _, reason := range []string{"", "missing port", "unknown event \"\xff\"", "e:d0:"} {
		got := appendFailure([]byte("x"), reason, 30, 10)
		if got[0] != 'x' {
			t.Fatalf("appendFailure overwrote dst: %q", got)
		}
		checkBencode(t, got[1:], map[string]any{"failure reason": reason, "interval": int64(30), "min interval": int64(10)})
	}
}

// benchmarkPeers is a full handout: 50 IPv4 peers.
func benchmarkPeers() announceResponse {
	r := announceResponse{Interval: 30, MinInterval: 10, Complete: 120, Incomplete: 380}
	for i := range 50 {
		r.Peers = append(r.Peers, handoutPeer{
			Addr:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i / 200), byte(i)}), uint16(6881+i)),
			PeerID: []byte("-RT0001-012345678901"),
		})
	}
	return r
}

// BenchmarkAppendAnnounce compares the hand-written encoder with
// bencode.Marshal on the same compact 50-peer response. The baseline
// includes building the compact strings, which the hand-written encoder
// also does.
func BenchmarkAppendAnnounce(b *testing.B) {
	r := benchmarkPeers()
	b.Run("own/reused-buffer", func(b *testing.B) {
		b.ReportAllocs()
		buf := appendAnnounce(nil, r, true, false)
		for b.Loop() {
			buf = appendAnnounce(buf[:0], r, true, false)
		}
	})
	b.Run("own/new-buffer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = appendAnnounce(nil, r, true, false)
		}
	})
	b.Run("anacrolix-bencode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := libraryAnnounce(r, true, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}
