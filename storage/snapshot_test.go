package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"racktracker/storage/storagetest"
)

// storeClient is the store's current client. The embedded store makes a
// new one each time a snapshot rebuilds it, so env.raw goes stale then.
func storeClient(s *Store) *redis.Client {
	s.gate.rlock(context.Background())
	defer s.gate.runlock()
	return s.rdb
}

// miniOf is the store's current in-process Redis.
func miniOf(s *Store) *miniredis.Miniredis {
	s.gate.rlock(context.Background())
	defer s.gate.runlock()
	return s.mini
}

// dumpRESP reads every key of a store through RESP, in canonical order:
// what a snapshot of that store holds, read the way any Redis can be.
func dumpRESP(t testing.TB, c *redis.Client) []record {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	var recs []record
	for _, k := range keys {
		r := record{key: k}
		var err error
		switch typ := c.Type(ctx, k).Val(); typ {
		case "string":
			r.kind = kindString
			r.value, err = c.Get(ctx, k).Result()
		case "set":
			r.kind = kindSet
			r.members, err = c.SMembers(ctx, k).Result()
		case "zset":
			r.kind = kindZSet
			var zs []redis.Z
			zs, err = c.ZRangeWithScores(ctx, k, 0, -1).Result()
			for _, z := range zs {
				r.members = append(r.members, z.Member.(string))
				r.scores = append(r.scores, z.Score)
			}
		case "hash":
			r.kind = kindHash
			var h map[string]string
			h, err = c.HGetAll(ctx, k).Result()
			for f, v := range h {
				r.members = append(r.members, f)
				r.values = append(r.values, v)
			}
		case "list":
			r.kind = kindList
			r.members, err = c.LRange(ctx, k, 0, -1).Result()
		case "stream":
			r.kind = kindStream
			// Raw, since go-redis' XRange hands fields back as a map,
			// which loses their order.
			var xs []any
			xs, err = c.Do(ctx, "XRANGE", k, "-", "+").Slice()
			for _, x := range xs {
				x := x.([]any)
				e := miniredis.StreamEntry{ID: x[0].(string)}
				for _, v := range x[1].([]any) {
					e.Values = append(e.Values, v.(string))
				}
				r.entries = append(r.entries, e)
			}
		default:
			t.Fatalf("key %q has type %s", k, typ)
		}
		if err != nil {
			t.Fatalf("read %q: %v", k, err)
		}
		recs = append(recs, r)
	}
	canonical(recs)
	return recs
}

// restoreRESP writes recs into an empty Redis through RESP.
func restoreRESP(t testing.TB, c *redis.Client, recs []record) {
	t.Helper()
	ctx := context.Background()
	p := c.Pipeline()
	for _, r := range recs {
		switch r.kind {
		case kindString:
			p.Set(ctx, r.key, r.value, 0)
		case kindSet:
			p.SAdd(ctx, r.key, toAny(r.members)...)
		case kindZSet:
			for i, m := range r.members {
				p.ZAdd(ctx, r.key, redis.Z{Score: r.scores[i], Member: m})
			}
		case kindHash:
			for i, f := range r.members {
				p.HSet(ctx, r.key, f, r.values[i])
			}
		case kindList:
			p.RPush(ctx, r.key, toAny(r.members)...)
		case kindStream:
			for _, e := range r.entries {
				p.XAdd(ctx, &redis.XAddArgs{Stream: r.key, ID: e.ID, Values: toAny(e.Values)})
			}
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatalf("restore through RESP: %v", err)
	}
}

func toAny(ss []string) []any {
	a := make([]any, len(ss))
	for i, s := range ss {
		a[i] = s
	}
	return a
}

// torrentBytes is a registered transfer's .torrent: binary, as real
// metainfo is (SHA-1 piece hashes), with every byte value from NUL to 0xff.
var torrentBytes = func() []byte {
	b := []byte("d4:infod6:lengthi1048576e4:name11:payload.img6:pieces256:")
	for i := range 256 {
		b = append(b, byte(i))
	}
	return append(b, "ee"...)
}()

// populate scripts a varied state: a registered transfer with a binary
// .torrent, one activated on the fly, one deactivated, several racks (one
// with a space and a non-ASCII letter), IPv6 peers, a port change, a stop, a
// stall, an expiry, and keys an operator wrote through embedded.listen with
// an empty value, an empty name, binary members and extreme scores.
// The store's writes run on the env's clock, so two backends given the
// same script hold the same keys.
func populate(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	s := e.store
	reg, fly, gone := hash(0xa1), hash(0xb2), hash(0xc3)
	if err := s.Register(ctx, reg, "payload.img", 1<<20, torrentBytes); err != nil {
		t.Fatalf("Register: %v", err)
	}
	step := func(as ...Announce) {
		t.Helper()
		for _, a := range as {
			mustAnnounce(t, s, a)
		}
	}
	step(
		ann(reg, "10.1.0.1:6881", "r1", EventStarted, 1<<20),
		ann(reg, "10.1.0.2:6881", "r1", EventStarted, 1<<20),
		ann(reg, "10.1.0.3:6881", "r1", EventStarted, 1<<20),
		ann(reg, "[fd00:1::5]:51413", "r1", EventStarted, 1<<20),
		ann(reg, "10.2.0.1:6881", "r2", EventStarted, 1<<20),
		ann(reg, "[fd00:2::7]:6881", "r2", EventStarted, 1<<20),
		ann(fly, "10.2.0.1:6881", "r2", EventStarted, 500),
		ann(fly, "[fd00:3::1]:1", "rack 3/β", EventStarted, 500),
		ann(gone, "10.1.0.1:7000", "r1", EventStarted, 10),
		ann(gone, "[fd00:2::8]:7000", "r2", EventCompleted, 0),
	)
	e.clock.Advance(time.Second)
	step(
		ann(reg, "10.1.0.1:6881", "r1", EventNone, 1<<19),
		ann(reg, "10.1.0.1:6881", "r1", EventCompleted, 0),
		ann(reg, "10.1.0.2:6882", "r1", EventNone, 1<<20), // port change
		ann(reg, "10.1.0.3:6881", "r1", EventStopped, 1<<20),
		ann(reg, "10.2.0.1:6881", "r2", EventNone, 1<<20), // stalls
		ann(reg, "10.2.0.1:6881", "r2", EventNone, 1<<20),
		ann(fly, "10.2.0.1:6881", "r2", EventCompleted, 0),
	)
	e.clock.Advance(time.Minute)
	if _, err := s.Deactivate(ctx, gone); err != nil {
		t.Fatalf("Deactivate: %v", err)
	}
	e.clock.Advance(time.Minute)
	step(
		ann(reg, "10.1.0.1:6881", "r1", EventNone, 0),
		ann(reg, "10.1.0.2:6882", "r1", EventNone, 1000),
		ann(reg, "[fd00:1::5]:51413", "r1", EventNone, 1000),
		ann(reg, "10.2.0.1:6881", "r2", EventNone, 1000),
		ann(fly, "10.2.0.1:6881", "r2", EventNone, 0),
	)
	// [fd00:2::7] and [fd00:3::1] have been silent for two minutes.
	if got, err := s.Expire(ctx, testTimers, 2); err != nil || got.Peers != 2 {
		t.Fatalf("Expire = %+v, %v; want 2 peers expired", got, err)
	}
	c := storeClient(s)
	p := c.Pipeline()
	p.Set(ctx, "operator:empty", "", 0)
	p.Set(ctx, "", "empty name", 0)
	p.Set(ctx, "operator:\x00\xff", "\xff\x00", 0)
	p.SAdd(ctx, "operator:set", "", "\x00", "\xff", "a b")
	p.ZAdd(ctx, "operator:scores",
		redis.Z{Score: -1.5, Member: "neg"}, redis.Z{Score: 1e300, Member: "huge"},
		redis.Z{Score: -1e300, Member: "-huge"}, redis.Z{Score: 5e-324, Member: "tiny"},
		redis.Z{Score: math.Inf(1), Member: "inf"}, redis.Z{Score: math.Inf(-1), Member: "-inf"},
		redis.Z{Score: 0, Member: ""}, redis.Z{Score: 1 << 53, Member: "2^53"})
	// Types the tracker never writes, but an operator may.
	p.HSet(ctx, "operator:hash", "b", "2", "a", "\x00\xff", "", "empty field")
	p.RPush(ctx, "operator:list", "z", "a", "", "a", "\xff")
	p.XAdd(ctx, &redis.XAddArgs{Stream: "operator:stream", ID: "1-1", Values: []any{"z", "1", "a", "\x00"}})
	p.XAdd(ctx, &redis.XAddArgs{Stream: "operator:stream", ID: "5-0", Values: []any{"k", ""}})
	if _, err := p.Exec(ctx); err != nil {
		t.Fatalf("operator writes: %v", err)
	}
	// The last write goes through the store, so it is dirty whatever the
	// operator's writes count for.
	step(ann(reg, "10.1.0.9:1", "r9", EventStarted, 1))
}

// diffKeyspace lists how got differs from want, at most a few lines.
func diffKeyspace(got, want map[string]string) string {
	var d []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			d = append(d, fmt.Sprintf("missing %q = %q", k, w))
		} else if g != w {
			d = append(d, fmt.Sprintf("%q = %q, want %q", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("extra %q = %q", k, g))
		}
	}
	slices.Sort(d)
	if len(d) > 8 {
		d = append(d[:8], fmt.Sprintf("... %d more", len(d)-8))
	}
	return strings.Join(d, "\n")
}

// diffRecords says how got differs from want, or "". Scores compare by
// their bits, so that NaN equals itself and -0 differs from 0.
func diffRecords(got, want []record) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !sameRecord(got[i], want[i]) {
			return fmt.Sprintf("record %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	return ""
}

func encodeRecords(t testing.TB, recs []record) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := encodeSnapshot(&b, recs); err != nil {
		t.Fatalf("encodeSnapshot: %v", err)
	}
	return b.Bytes()
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestSnapshotRoundTrip closes a store with a varied state and reopens it:
// every key comes back with the same type and value, binary ones included,
// and a snapshot of the restored store is the very same file.
func TestSnapshotRoundTrip(t *testing.T) {
	ctx := context.Background()
	e := newEmbedded(t, nil)
	populate(t, e)
	want := keyspace(t, storeClient(e.store))
	if err := e.store.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	path := e.cfg.Embedded.SnapshotPath
	written := mustReadFile(t, path)
	if got := dirNames(t, filepath.Dir(path)); !slices.Equal(got, []string{filepath.Base(path)}) {
		t.Errorf("snapshot directory holds %q, want only the snapshot", got)
	}

	r := openEnv(t, "reopened", e.cfg, nil)
	if d := diffKeyspace(keyspace(t, storeClient(r.store)), want); d != "" {
		t.Errorf("keyspace after reopening differs:\n%s", d)
	}
	if got, _, err := r.store.Torrent(ctx, hash(0xa1)); err != nil || !bytes.Equal(got, torrentBytes) {
		t.Errorf("Torrent after reopening = %q, %v; want the registered bytes", got, err)
	}
	if err := r.store.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if again := mustReadFile(t, path); !bytes.Equal(again, written) {
		t.Errorf("snapshot of the restored store differs from the one it was restored from (%d bytes, want %d)", len(again), len(written))
	}
	// The restored store is a live one: announces, history and scripts work.
	mustAnnounce(t, r.store, ann(hash(0xa1), "10.1.0.10:1", "r1", EventStarted, 5))
	if hist, _, err := r.store.History(ctx, 10, ""); err != nil || len(hist) != 1 || hist[0].Stats.InfoHash != hash(0xc3) {
		t.Errorf("History after reopening = %+v, %v; want the deactivated transfer", hist, err)
	}
}

// TestSnapshotMatchesRedis runs the same script on both backends: they hold
// the same keys, and the embedded store's snapshot restores into a real
// Redis and dumps back to the same records.
func TestSnapshotMatchesRedis(t *testing.T) {
	ctx := context.Background()
	red := newRedis(t, nil)
	emb := newEmbedded(t, nil)
	populate(t, red)
	populate(t, emb)
	want := keyspace(t, storeClient(emb.store))
	if d := diffKeyspace(keyspace(t, red.raw), want); d != "" {
		t.Errorf("redis-server keyspace differs from the embedded one:\n%s", d)
	}

	if err := emb.store.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	recs, _, err := readSnapshot(emb.cfg.Embedded.SnapshotPath)
	if err != nil {
		t.Fatalf("readSnapshot: %v", err)
	}
	if err := red.raw.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	restoreRESP(t, red.raw, recs)
	if d := diffKeyspace(keyspace(t, red.raw), want); d != "" {
		t.Errorf("redis-server keyspace after restoring the snapshot differs:\n%s", d)
	}
	if d := diffRecords(dumpRESP(t, red.raw), recs); d != "" {
		t.Errorf("dump of redis-server: %s", d)
	}
}

// sampleRecords are hand-built records at the edges of the format.
func sampleRecords() []record {
	return []record{
		{kind: kindString, key: "", value: ""},
		{kind: kindString, key: "k", value: "v"},
		{kind: kindString, key: "bin\x00\xff", value: string(torrentBytes)},
		{kind: kindSet, key: "set", members: []string{"", "\x00", "a", "\xff"}},
		{kind: kindZSet, key: "z", members: []string{"a", "b", "c", "d", "e", "f", "g", "h"},
			scores: []float64{math.Inf(-1), -math.MaxFloat64, -1.5, math.Copysign(0, -1), 0, 5e-324, 1e300, math.Inf(1)}},
		{kind: kindHash, key: "zh", members: []string{"", "f", "\xff"}, values: []string{"empty field", "", "\x00"}},
		{kind: kindList, key: "zl", members: []string{"b", "a", "", "a"}},
		{kind: kindStream, key: "zx", entries: []miniredis.StreamEntry{
			{ID: "1-1", Values: []string{"z", "1", "a", "\x00"}}, {ID: "2-0", Values: []string{"k", ""}}}},
	}
}

// TestEncodeDecode round-trips hand-built records through the format.
func TestEncodeDecode(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB: lengths of 3 varint bytes
	many := make([]string, 300)                      // a count of 2 varint bytes
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	for _, tc := range []struct {
		name string
		recs []record
	}{
		{"no records", nil},
		{"samples", sampleRecords()},
		{"empty key and value", []record{{kind: kindString}}},
		{"big value", []record{{kind: kindString, key: big, value: big}}},
		{"big set", []record{{kind: kindSet, key: "s", members: many}}},
		{"NaN score", []record{{kind: kindZSet, key: "z", members: []string{"x"}, scores: []float64{math.NaN()}}}},
		{"empty set", []record{{kind: kindSet, key: "s"}, {kind: kindZSet, key: "z"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := encodeRecords(t, tc.recs)
			got, err := decodeSnapshot(data)
			if err != nil {
				t.Fatalf("decodeSnapshot(encoded %s) error = %v, want nil", tc.name, err)
			}
			if d := diffRecords(got, tc.recs); d != "" {
				t.Errorf("decodeSnapshot(encoded %s): %s", tc.name, d)
			}
			if again := encodeRecords(t, tc.recs); !bytes.Equal(again, data) {
				t.Errorf("encodeSnapshot(%s) is not deterministic", tc.name)
			}
			if again := encodeRecords(t, got); !bytes.Equal(again, data) {
				t.Errorf("encodeSnapshot(decodeSnapshot(%s)) differs from the input", tc.name)
			}
		})
	}

	if err := encodeSnapshot(io.Discard, []record{{kind: 'h', key: "k"}}); err == nil || !strings.Contains(err.Error(), "unknown kind") {
		t.Errorf("encodeSnapshot(kind 'h') error = %v, want %q", err, "unknown kind")
	}
}

// TestSnapshotFormatV1: a file of version 1, as earlier releases wrote it,
// still loads.
func TestSnapshotFormatV1(t *testing.T) {
	body := "racktracker snapshot\n\x01" +
		"s\x01k\x02v\x00" +
		"S\x01s\x02\x00\x01a" +
		"Z\x01z\x01\x01m\xbf\xf8\x00\x00\x00\x00\x00\x00" + // -1.5
		"E\x03"
	data := binary.BigEndian.AppendUint32([]byte(body), crc32.Checksum([]byte(body), crc32.MakeTable(crc32.Castagnoli)))
	want := []record{
		{kind: kindString, key: "k", value: "v\x00"},
		{kind: kindSet, key: "s", members: []string{"", "a"}},
		{kind: kindZSet, key: "z", members: []string{"m"}, scores: []float64{-1.5}},
	}
	got, err := decodeSnapshot(data)
	if err != nil {
		t.Fatalf("decodeSnapshot(version 1) error = %v, want nil", err)
	}
	if d := diffRecords(got, want); d != "" {
		t.Errorf("decodeSnapshot(version 1): %s", d)
	}

	// And it restores into a store that takes announces.
	cfg := DefaultConfig()
	cfg.Embedded.SnapshotPath = filepath.Join(t.TempDir(), "tracker.snapshot")
	if err := os.WriteFile(cfg.Embedded.SnapshotPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e := openEnv(t, "version 1", cfg, nil)
	if d := diffRecords(dumpRESP(t, storeClient(e.store)), want); d != "" {
		t.Errorf("store restored from version 1: %s", d)
	}
	mustAnnounce(t, e.store, ann(hash(0x01), "10.0.0.1:1", "r1", EventStarted, 1))
}

// TestSnapshotFormatV2 pins the bytes of version 2, so that a change to the
// format is a deliberate new version, not an accident that old files
// cannot follow.
func TestSnapshotFormatV2(t *testing.T) {
	body := "racktracker snapshot\n\x02" +
		"s\x01k\x02v\x00" +
		"S\x01s\x02\x00\x01a" +
		"Z\x01z\x01\x01m\xbf\xf8\x00\x00\x00\x00\x00\x00" + // -1.5
		"H\x01h\x02\x00\x01e\x01f\x01v" +
		"L\x01l\x03\x01b\x01a\x00" +
		"X\x01x\x02\x031-1\x02\x01f\x01v\x032-0\x00" +
		"E\x06"
	want := binary.BigEndian.AppendUint32([]byte(body), crc32.Checksum([]byte(body), crc32.MakeTable(crc32.Castagnoli)))
	got := encodeRecords(t, []record{
		{kind: kindString, key: "k", value: "v\x00"},
		{kind: kindSet, key: "s", members: []string{"", "a"}},
		{kind: kindZSet, key: "z", members: []string{"m"}, scores: []float64{-1.5}},
		{kind: kindHash, key: "h", members: []string{"", "f"}, values: []string{"e", "v"}},
		{kind: kindList, key: "l", members: []string{"b", "a", ""}},
		{kind: kindStream, key: "x", entries: []miniredis.StreamEntry{{ID: "1-1", Values: []string{"f", "v"}}, {ID: "2-0"}}},
	})
	if !bytes.Equal(got, want) {
		t.Errorf("encodeSnapshot = %q\nwant             %q", got, want)
	}
}

var errInjected = errors.New("injected write failure")

// failAfter passes the first n bytes to w, then fails as a full disk
// would: the bytes before the failure reach the file.
type failAfter struct {
	w io.Writer
	n int
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) <= f.n {
		f.n -= len(p)
		return f.w.Write(p)
	}
	k, err := f.w.Write(p[:f.n])
	f.n -= k
	if err == nil {
		err = errInjected
	}
	return k, err
}

// TestWriteSnapshotFailure fails the write of a new snapshot after every
// possible number of bytes: each time writeSnapshot reports it, the old
// snapshot is left whole, and no temporary file stays behind.
func TestWriteSnapshotFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tracker.snapshot")
	if err := writeSnapshot(path, sampleRecords()[:2], nil); err != nil {
		t.Fatalf("writeSnapshot: %v", err)
	}
	good := mustReadFile(t, path)
	// A snapshot bigger than the encoder's 4 KiB buffer, so that failures
	// also land in later flushes and in the checksum written after them.
	big := append(sampleRecords(), record{kind: kindString, key: "pad", value: strings.Repeat("x", 5000)})
	bigLen := len(encodeRecords(t, big))
	for _, tc := range []struct {
		name    string
		recs    []record
		offsets []int
	}{
		{"every byte", sampleRecords(), nil},
		{"flush boundaries", big, []int{0, 4095, 4096, 4097, 8191, 8192, 8193, bigLen - 5, bigLen - 4, bigLen - 3, bigLen - 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := encodeRecords(t, tc.recs)
			offsets := tc.offsets
			if offsets == nil {
				for k := range len(next) {
					offsets = append(offsets, k)
				}
			}
			for _, k := range offsets {
				if k >= len(next) {
					continue
				}
				err := writeSnapshot(path, tc.recs, func(w io.Writer) io.Writer { return &failAfter{w: w, n: k} })
				if !errors.Is(err, errInjected) {
					t.Fatalf("writeSnapshot failing after %d of %d bytes: error = %v, want %v", k, len(next), err, errInjected)
				}
				if got := mustReadFile(t, path); !bytes.Equal(got, good) {
					t.Fatalf("writeSnapshot failing after %d bytes changed the old snapshot", k)
				}
				if names := dirNames(t, dir); len(names) != 1 {
					t.Fatalf("writeSnapshot failing after %d bytes left %q", k, names)
				}
			}
		})
	}

	next := encodeRecords(t, big)
	if err := writeSnapshot(path, big, func(w io.Writer) io.Writer { return &failAfter{w: w, n: len(next)} }); err != nil {
		t.Fatalf("writeSnapshot with room for all %d bytes: %v", len(next), err)
	}
	if got := mustReadFile(t, path); !bytes.Equal(got, next) {
		t.Errorf("writeSnapshot wrote %d bytes, want the %d of the new snapshot", len(got), len(next))
	}
	missing := filepath.Join(dir, "no such dir", "tracker.snapshot")
	if err := writeSnapshot(missing, big, nil); err == nil {
		t.Errorf("writeSnapshot(%s) error = nil, want one", missing)
	}
}

// TestDecodeTornSnapshot: every proper prefix of a snapshot, and every
// snapshot with one byte altered, is refused.
func TestDecodeTornSnapshot(t *testing.T) {
	valid := encodeRecords(t, append(sampleRecords(), record{kind: kindString, key: "pad", value: strings.Repeat("y", 300)}))
	for k := range len(valid) {
		if _, err := decodeSnapshot(valid[:k]); err == nil {
			t.Errorf("decodeSnapshot(first %d of %d bytes) error = nil, want one", k, len(valid))
		}
	}
	altered := slices.Clone(valid)
	for i := range altered {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			altered[i] ^= x
			if _, err := decodeSnapshot(altered); err == nil {
				t.Errorf("decodeSnapshot(byte %d ^ %#x) error = nil, want one", i, x)
			}
			altered[i] ^= x
		}
	}
}

// TestOpenRemovesStaleTemp: a temporary file a crash left behind is removed
// by Open and plays no part in the restore; other files, here or in a
// directory whose name a glob would match, are left alone.
func TestOpenRemovesStaleTemp(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	e := newEmbedded(t, func(c *Config) {
		// Glob metacharacters in the directory's name.
		c.Embedded.SnapshotPath = filepath.Join(root, "data[1]", "tracker.snapshot")
	})
	mustAnnounce(t, e.store, ann(hash(0x01), "10.0.0.1:1", "r1", EventStarted, 1))
	want := keyspace(t, storeClient(e.store))
	if err := e.store.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	path := e.cfg.Embedded.SnapshotPath
	dir := filepath.Dir(path)
	stale := path + ".tmp123"
	// A torn newer snapshot: the start of a different store.
	other := encodeRecords(t, sampleRecords())
	if err := os.WriteFile(stale, other[:len(other)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	keep := []string{
		filepath.Join(dir, "other.snapshot.tmp1"),
		filepath.Join(dir, "tracker.snapshot.bak"),
		filepath.Join(root, "data1", "tracker.snapshot.tmp1"), // what data[1]/ would match as a pattern
	}
	for _, name := range keep {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	r := openEnv(t, "reopened", e.cfg, nil)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale %s after Open: Stat error = %v, want it removed", filepath.Base(stale), err)
	}
	for _, name := range keep {
		if _, err := os.Stat(name); err != nil {
			t.Errorf("%s after Open: %v, want it left alone", name, err)
		}
	}
	if d := diffKeyspace(keyspace(t, storeClient(r.store)), want); d != "" {
		t.Errorf("keyspace after Open with a stale temp file differs:\n%s", d)
	}
}

// TestOpenRefusesBadSnapshot: a snapshot that cannot be read stops Open
// with a message that names the file and what is wrong with it, and the
// file is left byte for byte as it was, however often Open is tried.
func TestOpenRefusesBadSnapshot(t *testing.T) {
	e := newEmbedded(t, nil)
	populate(t, e)
	if err := e.store.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	valid := mustReadFile(t, e.cfg.Embedded.SnapshotPath)
	hdr := len(snapshotMagic)
	withSum := func(body string) []byte {
		return binary.BigEndian.AppendUint32([]byte(body), crc32.Checksum([]byte(body), crcTable))
	}

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"garbage", []byte("*1\r\n$4\r\nPING\r\n"), "bad header"},
		{"empty", nil, "bad header"},
		{"header only", []byte(snapshotMagic), "truncated or corrupt"},
		{"truncated", valid[:len(valid)/2], "truncated or corrupt"},
		{"truncated checksum", valid[:len(valid)-2], "no checksum"},
		{"flipped byte", func() []byte {
			b := slices.Clone(valid)
			b[bytes.Index(b, []byte("payload.img"))] ^= 0x20
			return b
		}(), "checksum mismatch"},
		{"newer version", append([]byte(snapshotMagic), 0x03, 's', 0x01, 'k', 0x01, 'v'), "version 3 is newer than this racktracker reads (2)"},
		{"hash in version 1", withSum(snapshotMagic + "\x01H\x01k\x00E\x01"), fmt.Sprintf("bad record kind 0x48 at byte %d (not in version 1)", hdr+1)},
		{"version 0", append([]byte(snapshotMagic), 0x00), "unknown snapshot format version 0"},
		{"trailing data", append(slices.Clone(valid), '\n'), "1 bytes of trailing data"},
		{"unknown record kind", withSum(snapshotMagic + "\x01h\x01k\x00E\x01"), fmt.Sprintf("bad record kind 0x68 at byte %d", hdr+1)},
		{"count mismatch", withSum(snapshotMagic + "\x01s\x01k\x01vE\x03"), "end record counts 3 keys, file holds 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := DefaultConfig()
			cfg.Embedded.SnapshotPath = filepath.Join(dir, "tracker.snapshot")
			if err := os.WriteFile(cfg.Embedded.SnapshotPath, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := decodeSnapshot(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decodeSnapshot(%s) error = %v, want %q", tc.name, err, tc.want)
			}
			for try := range 2 {
				_, err := Open(context.Background(), cfg, Options{})
				if err == nil {
					t.Fatalf("Open with a %s snapshot (try %d) error = nil, want %q", tc.name, try, tc.want)
				}
				for _, frag := range []string{cfg.Embedded.SnapshotPath, tc.want, "left as it is"} {
					if !strings.Contains(err.Error(), frag) {
						t.Errorf("Open with a %s snapshot (try %d) error = %v, want %q", tc.name, try, err, frag)
					}
				}
				if got := mustReadFile(t, cfg.Embedded.SnapshotPath); !bytes.Equal(got, tc.data) {
					t.Fatalf("Open with a %s snapshot (try %d) changed the file", tc.name, try)
				}
				if names := dirNames(t, dir); !slices.Equal(names, []string{"tracker.snapshot"}) {
					t.Errorf("Open with a %s snapshot (try %d) left %q in the directory", tc.name, try, names)
				}
			}
		})
	}
}

// TestSnapshotRebuild churns peers through every way a key name comes and
// goes, then checks that a snapshot swaps in a fresh in-process store
// holding the same keys, and only when something was written since.
func TestSnapshotRebuild(t *testing.T) {
	ctx := context.Background()
	e := newEmbedded(t, nil)
	s, h := e.store, hash(0x5a)
	for round := range 3 {
		for i := range 12 {
			a := ann(h, fmt.Sprintf("10.%d.0.%d:1", round, i), fmt.Sprint("r", i%3), EventStarted, 100)
			mustAnnounce(t, s, a)
			if i%2 == 0 {
				a.Event = EventStopped
				mustAnnounce(t, s, a)
			}
		}
		e.clock.Advance(2 * time.Minute)
		if _, err := s.Expire(ctx, testTimers, 2); err != nil {
			t.Fatalf("Expire: %v", err)
		}
		if _, err := s.Deactivate(ctx, h); err != nil {
			t.Fatalf("Deactivate: %v", err)
		}
		e.clock.Advance(time.Second)
		// A deactivated transfer takes announces again once registered.
		if err := s.Register(ctx, h, "x", 1, nil); err != nil {
			t.Fatalf("Register: %v", err)
		}
	}
	mustAnnounce(t, s, ann(h, "10.9.0.1:1", "r1", EventStarted, 100))

	want := keyspace(t, storeClient(s))
	old := miniOf(s)
	if err := s.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if miniOf(s) == old {
		t.Fatalf("Snapshot after writes kept the same miniredis, want a rebuilt one")
	}
	if d := diffKeyspace(keyspace(t, storeClient(s)), want); d != "" {
		t.Errorf("keyspace after the rebuild differs:\n%s", d)
	}
	written := mustReadFile(t, e.cfg.Embedded.SnapshotPath)
	if recs := dumpRESP(t, storeClient(s)); !bytes.Equal(encodeRecords(t, recs), written) {
		t.Errorf("snapshot file differs from the rebuilt store")
	}

	rebuilt := miniOf(s)
	if err := s.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if miniOf(s) != rebuilt {
		t.Errorf("Snapshot with no write since the last one rebuilt the store")
	}
	if again := mustReadFile(t, e.cfg.Embedded.SnapshotPath); !bytes.Equal(again, written) {
		t.Errorf("Snapshot with no write since the last one wrote a different file")
	}

	// The rebuilt store takes writes; ones that only add keys leave no
	// dead name behind and no rebuild is due; a deactivation renames
	// keys, so the old names are dead, and one is.
	a := ann(h, "10.9.0.2:1", "r1", EventStarted, 100)
	mustAnnounce(t, s, a)
	if err := s.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if miniOf(s) != rebuilt {
		t.Errorf("Snapshot after an announce that only added keys rebuilt the store")
	}
	if _, err := s.Deactivate(ctx, h); err != nil {
		t.Fatalf("Deactivate: %v", err)
	}
	if err := s.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if miniOf(s) == rebuilt {
		t.Errorf("Snapshot after a deactivation kept the same miniredis, want a rebuilt one")
	}
}

// heapBytes is the live heap after a full collection.
func heapBytes() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestRebuildReclaimsKeyBookkeeping shows the memory the rebuild is for:
// miniredis keeps a version for every key name it ever held, so churning
// key names that are all gone again still grows the heap by about the
// names' bytes, and a rebuilt store lets that go. Ratios only: no absolute
// figure holds across platforms and the race detector.
func TestRebuildReclaimsKeyBookkeeping(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap around a churn of 2 MB of key names")
	}
	ctx := context.Background()
	e := newEmbedded(t, nil)
	mustAnnounce(t, e.store, ann(hash(0x01), "10.0.0.1:1", "r1", EventStarted, 1))
	if err := e.store.Snapshot(ctx); err != nil { // start from a fresh instance
		t.Fatalf("Snapshot: %v", err)
	}
	base := heapBytes()

	// Long names, few commands: the bookkeeping is measured in bytes, the
	// test's time in commands. Each is set and deleted again, as keys of a
	// rack an operator names at length would be.
	const names, batch = 2000, 500
	rack := strings.Repeat("r", 1000)
	var nameBytes int64
	c := storeClient(e.store)
	for i := 0; i < names; i += batch {
		p := c.Pipeline()
		for j := i; j < i+batch; j++ {
			k := transferKeys(hash(0x01)).rack(fmt.Sprint(rack, j), "stalls")
			nameBytes += int64(len(k))
			p.Set(ctx, k, "0", 0)
			p.Del(ctx, k)
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatalf("churn: %v", err)
		}
	}
	// Writes behind the store's back do not mark it written; an announce does.
	mustAnnounce(t, e.store, ann(hash(0x01), "10.0.0.1:1", "r1", EventNone, 0))
	grown := heapBytes() - base
	if grown < nameBytes*3/4 {
		t.Fatalf("churning %d key names (%d bytes) that are all gone grew the heap by %d bytes, want about their bytes: if miniredis no longer keeps deleted names, the rebuild in Snapshot may be unnecessary", names, nameBytes, grown)
	}
	if err := e.store.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if left := heapBytes() - base; left > grown/4 {
		t.Errorf("after the rebuild the heap is %d bytes above where it started, want at most a quarter of the %d the churn added", left, grown)
	}
}

// TestEmbeddedListen serves the embedded store on a loopback port: a plain
// client there reads the keys the store wrote, before and after a rebuild,
// and the address is released on Close.
func TestEmbeddedListen(t *testing.T) {
	ctx := context.Background()
	addr := freeAddr(t)
	e := newEmbedded(t, func(c *Config) { c.Embedded.Listen = addr })
	s, h := e.store, hash(0x6b)
	mustAnnounce(t, s, ann(h, "10.0.0.1:1", "r1", EventStarted, 100))
	mustAnnounce(t, s, ann(h, "[fd00::2]:2", "r2", EventStarted, 100))
	mustAnnounce(t, s, ann(h, "[fd00::2]:2", "r2", EventStopped, 100)) // deletes keys: a rebuild is due

	ext := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { ext.Close() })
	if d := diffKeyspace(keyspace(t, ext), keyspace(t, storeClient(s))); d != "" {
		t.Errorf("keyspace on %s differs from the store's:\n%s", addr, d)
	}

	old := miniOf(s)
	if err := s.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if miniOf(s) == old {
		t.Fatalf("Snapshot after writes kept the same miniredis, want a rebuilt one")
	}
	// The rebuilt store listens again: the old connection is gone, and a
	// write through the store shows there, so the listener is the new store's.
	mustAnnounce(t, s, ann(h, "10.0.0.3:3", "r1", EventStarted, 100))
	want := keyspace(t, storeClient(s))
	storagetest.WaitFor(t, 5*time.Second, "the rebuilt store to serve "+addr, func() (bool, string) {
		return ext.SIsMember(ctx, transferKeys(h).peers(classSeen), "10.0.0.3:3").Val(), "peer not there"
	})
	if d := diffKeyspace(keyspace(t, ext), want); d != "" {
		t.Errorf("keyspace on %s after the rebuild differs from the store's:\n%s", addr, d)
	}

	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Close", addr)
	}
}

// TestSnapshotConsistent takes snapshots while announces run, and checks
// that each file is one point in time: per transfer, the counters match the
// sets they count, no peer is both seeder and leecher, and no rack holds
// more representatives than configured.
func TestSnapshotConsistent(t *testing.T) {
	ctx := context.Background()
	e := newEmbedded(t, nil)
	s := e.store
	const workers, perWorker, snapshots = 4, 400, 6

	var done, timeouts atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	announceWorkers(t, &wg, s, workers, perWorker, &stop, &done, &timeouts)
	defer func() { stop.Store(true); wg.Wait() }()

	var last int64
	for i := range snapshots {
		// Each snapshot after more announces: then it lands among them.
		last = moreAnnounces(t, &done, last, workers*perWorker)
		if err := s.Snapshot(ctx); err != nil {
			t.Fatalf("Snapshot %d: %v", i, err)
		}
		recs, _, err := readSnapshot(e.cfg.Embedded.SnapshotPath)
		if err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
		checkConsistent(t, i, recs, 2)
	}
	if n := timeouts.Load(); n > 0 {
		t.Logf("%d of %d announces timed out", n, done.Load())
	}
}

func checkConsistent(t *testing.T, n int, recs []record, reps int) {
	t.Helper()
	byKey := map[string]record{}
	for _, r := range recs {
		byKey[r.key] = r
	}
	count := func(key string) int {
		v := byKey[key].value
		if v == "" {
			return 0
		}
		c, err := strconv.Atoi(v)
		if err != nil {
			t.Errorf("snapshot %d: %s = %q, not a count", n, key, v)
		}
		return c
	}
	active := byKey[keyActiveTransfers].members
	if len(active) == 0 {
		t.Fatalf("snapshot %d holds no active transfer", n)
	}
	for _, h := range active {
		k := tkeys(h)
		seeders, leechers := byKey[k.peers(classSeeders)].members, byKey[k.peers(classLeech)].members
		if c := count(k.field("complete")); c != len(seeders) {
			t.Errorf("snapshot %d: %s = %d, want %d, the size of %s", n, k.field("complete"), c, len(seeders), k.peers(classSeeders))
		}
		if c := count(k.field("incomplete")); c != len(leechers) {
			t.Errorf("snapshot %d: %s = %d, want %d, the size of %s", n, k.field("incomplete"), c, len(leechers), k.peers(classLeech))
		}
		for _, p := range seeders {
			if slices.Contains(leechers, p) {
				t.Errorf("snapshot %d: %s is both seeder and leecher of %s", n, p, h)
			}
		}
		for _, rack := range byKey[k.field("racks")].members {
			if r := byKey[k.rack(rack, classReps)].members; len(r) > reps {
				t.Errorf("snapshot %d: rack %s of %s holds representatives %q, want at most %d", n, rack, h, r, reps)
			}
		}
	}
}

// heapAllocated is the bytes allocated so far, by the heap's own count
// (per span: precise enough for a bound in megabytes).
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// withChecksum replaces the last four bytes of data with the checksum of
// the rest, so that the fuzzer's mutations reach the parsing behind it.
func withChecksum(data []byte) []byte {
	b := slices.Clone(data)
	n := len(b) - 4
	binary.BigEndian.PutUint32(b[n:], crc32.Checksum(b[:n], crcTable))
	return b
}

// FuzzDecodeSnapshot: decodeSnapshot never panics, allocates in proportion
// to its input, and what it accepts encodes to a snapshot of the same
// records.
func FuzzDecodeSnapshot(f *testing.F) {
	valid := encodeRecords(f, sampleRecords())
	// A snapshot of hand-built records at the edges of the format.
	f.Add(valid)
	// An empty store.
	f.Add(encodeRecords(f, nil))
	// Torn writes: the start of a snapshot, and all of it but the checksum.
	f.Add(valid[:len(valid)/2])
	f.Add(valid[:len(valid)-4])
	// A version this reader does not know.
	f.Add(append([]byte(snapshotMagic), 0x03))
	// Version 1, which still loads, and a hash in version 1, which is refused.
	f.Add(withChecksum([]byte(snapshotMagic + "\x01s\x01k\x01vS\x01s\x01\x01aE\x02....")))
	f.Add(withChecksum([]byte(snapshotMagic + "\x01H\x01h\x01\x01f\x01vE\x01....")))
	// Each kind of version 2 alone, so that mutations start from each.
	for _, r := range sampleRecords() {
		f.Add(encodeRecords(f, []record{r}))
	}
	// A stream entry claiming a billion values, and a hash whose last
	// value is cut off.
	f.Add(withChecksum([]byte(snapshotMagic + "\x02X\x01x\x01\x031-1\x80\x94\xeb\xdc\x03\x01fE\x01....")))
	f.Add(withChecksum([]byte(snapshotMagic + "\x02H\x01h\x02\x01f\x01v\x01gE\x01....")))
	// A count of a billion members in a few bytes: must not be allocated.
	f.Add(withChecksum([]byte(snapshotMagic + "\x01S\x01s\x80\x94\xeb\xdc\x03\x01aE\x01....")))
	// A length of 2^63 and an overlong varint.
	f.Add([]byte(snapshotMagic + "\x01s\xff\xff\xff\xff\xff\xff\xff\xff\x7f"))
	f.Add([]byte(snapshotMagic + "\x01s\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))

	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
		// Most mutations only break the checksum; fixing it up lets them
		// reach what the structure checks do.
		if len(data) > len(snapshotMagic)+4 {
			checkDecode(t, withChecksum(data))
		}
	})
}

func checkDecode(t *testing.T, data []byte) {
	before := heapAllocated()
	recs, err := decodeSnapshot(data)
	if got, limit := heapAllocated()-before, uint64(1<<20+64*len(data)); got > limit {
		t.Fatalf("decodeSnapshot(%d bytes) allocated %d bytes, want at most %d", len(data), got, limit)
	}
	if err != nil {
		if recs != nil {
			t.Fatalf("decodeSnapshot(%q) = %d records with error %v, want none", data, len(recs), err)
		}
		return
	}
	held := 0
	for _, r := range recs {
		held += len(r.key) + len(r.value) + len(r.members) + len(r.values) + len(r.entries)
		for _, m := range slices.Concat(r.members, r.values) {
			held += len(m)
		}
		for _, e := range r.entries {
			held += len(e.ID) + len(e.Values)
			for _, v := range e.Values {
				held += len(v)
			}
		}
	}
	if held > len(data) {
		t.Fatalf("decodeSnapshot(%d bytes) holds %d bytes of records", len(data), held)
	}
	enc := encodeRecords(t, recs)
	again, err := decodeSnapshot(enc)
	if err != nil {
		t.Fatalf("decodeSnapshot(encodeSnapshot(decodeSnapshot(%q))) error = %v, want nil", data, err)
	}
	if d := diffRecords(again, recs); d != "" {
		t.Fatalf("decodeSnapshot(encodeSnapshot(decodeSnapshot(%q))): %s", data, d)
	}
	if !bytes.Equal(encodeRecords(t, again), enc) {
		t.Fatalf("encodeSnapshot is not a fixpoint on decodeSnapshot(%q)", data)
	}
}

// TestMiniLayout: the fast copy reads miniredis' layout (a miniredis
// upgrade that changes it fails here, and snapshots fall back to the slow
// copy), and it copies the same records as miniredis' exported calls and
// as RESP, every type included.
func TestMiniLayout(t *testing.T) {
	if _, ok := miniLayout(); !ok {
		t.Fatal("miniredis' structs are not the layout minidb.go reads: check it against the new miniredis and update miniView")
	}
	e := newEmbedded(t, nil)
	populate(t, e)
	m := miniOf(e.store)
	fast, ok := copyMini(m)
	if !ok {
		t.Fatal("copyMini: layout not ok")
	}
	slow, err := copyMiniSlow(m)
	if err != nil {
		t.Fatalf("copyMiniSlow: %v", err)
	}
	if d := diffRecords(fast.recs, slow.recs); d != "" {
		t.Errorf("fast copy differs from the slow one: %s", d)
	}
	if d := diffRecords(fast.recs, dumpRESP(t, storeClient(e.store))); d != "" {
		t.Errorf("fast copy differs from what RESP reads: %s", d)
	}
	kinds := map[byte]bool{}
	for _, r := range fast.recs {
		kinds[r.kind] = true
	}
	for _, k := range []byte{kindString, kindSet, kindZSet, kindHash, kindList, kindStream} {
		if !kinds[k] {
			t.Errorf("populated store holds no record of kind %q: the comparison misses it", k)
		}
	}
}

// TestDeadKeyNamesMeasured: the copy counts exactly the names of deleted
// keys miniredis keeps, and a rebuilt store keeps none.
func TestDeadKeyNamesMeasured(t *testing.T) {
	ctx := context.Background()
	e := newEmbedded(t, nil)
	c := storeClient(e.store)
	p := c.TxPipeline()
	for i := range 300 {
		p.Set(ctx, fmt.Sprint("live:", i), "v", 0)
	}
	for i := range 700 {
		p.SAdd(ctx, fmt.Sprint("gone:", i), "m")
		p.Del(ctx, fmt.Sprint("gone:", i))
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	cp, ok := copyMini(miniOf(e.store))
	if !ok || cp.dead != 700 || len(cp.recs) != 300 {
		t.Fatalf("copyMini = %d keys, %d dead names (ok %v), want 300 and 700", len(cp.recs), cp.dead, ok)
	}
	if err := e.store.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if st := e.store.SnapshotStatus(); st.Rebuilds != 1 || st.Keys != 300 || st.DeadKeyNames != 700 {
		t.Errorf("SnapshotStatus = %+v, want 1 rebuild, 300 keys, 700 dead names", st)
	}
	if cp, _ := copyMini(miniOf(e.store)); cp.dead != 0 || len(cp.recs) != 300 {
		t.Errorf("after the rebuild: %d keys, %d dead names, want 300 and none", len(cp.recs), cp.dead)
	}
}

// TestRebuildPolicy: a snapshot rebuilds the store only when the dead key
// names outnumber both the live keys and the floor.
func TestRebuildPolicy(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name              string
		after, live, dead int
		want              bool
	}{
		{"no churn", 100, 500, 0, false},
		{"fewer dead than live", 100, 500, 400, false},
		{"more dead than live", 100, 500, 600, true},
		{"more dead than live, under the floor", 1000, 500, 600, false},
		{"over the floor, fewer than live", 100, 5000, 600, false},
		{"tests: any dead name", -1, 500, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Embedded.SnapshotPath = filepath.Join(t.TempDir(), "s")
			e := openEnvOpts(t, cfg, Options{RebuildAfter: tc.after})
			c := storeClient(e.store)
			p := c.TxPipeline()
			for i := range tc.live {
				p.Set(ctx, fmt.Sprint("live:", i), "v", 0)
			}
			for i := range tc.dead {
				p.Set(ctx, fmt.Sprint("gone:", i), "v", 0)
				p.Del(ctx, fmt.Sprint("gone:", i))
			}
			if _, err := p.Exec(ctx); err != nil {
				t.Fatal(err)
			}
			old := miniOf(e.store)
			if err := e.store.Snapshot(ctx); err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if got := miniOf(e.store) != old; got != tc.want {
				t.Errorf("rebuilt = %v, want %v", got, tc.want)
			}
			if d := keyspace(t, storeClient(e.store)); len(d) != tc.live {
				t.Errorf("store holds %d keys after the snapshot, want %d", len(d), tc.live)
			}
		})
	}
}

func openEnvOpts(t *testing.T, cfg Config, opts Options) *env {
	t.Helper()
	s, err := Open(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return &env{store: s, cfg: cfg, opts: opts}
}

// TestSnapshotDoesNotWaitForCalls: a snapshot copies the store without the
// gate, so a call that holds it (a slow one, say) does not hold the
// snapshot up, nor does the snapshot hold up calls that come after it.
func TestSnapshotDoesNotWaitForCalls(t *testing.T) {
	e := newEmbedded(t, nil)
	mustAnnounce(t, e.store, ann(hash(0x01), "10.0.0.1:1", "r1", EventStarted, 1))
	if err := e.store.gate.rlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.store.Snapshot(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Snapshot: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Snapshot waited for a call that held the gate")
		e.store.gate.runlock()
		<-done
		return
	}
	e.store.gate.runlock()
}

// TestSnapshotStatus: a snapshot that keeps failing says why and since
// when, counts the failures and keeps the time of the last good one; the
// next good snapshot clears it. The failure is made the way a root process
// meets one too: the snapshot's name is taken by a directory.
func TestSnapshotStatus(t *testing.T) {
	ctx := context.Background()
	e := newEmbedded(t, nil)
	s, path := e.store, e.cfg.Embedded.SnapshotPath
	st := s.SnapshotStatus()
	if !st.Embedded || st.Degraded() || st.LastSuccess.IsZero() || st.Path != path {
		t.Fatalf("SnapshotStatus after Open = %+v, want embedded, healthy, a last success and the path", st)
	}
	if err := s.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	good := s.SnapshotStatus().LastSuccess
	mustAnnounce(t, s, ann(hash(0x01), "10.0.0.1:1", "r1", EventStarted, 1))

	os.Remove(path)
	if err := os.MkdirAll(filepath.Join(path, "in the way"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		err := s.Snapshot(ctx)
		if err == nil {
			t.Fatalf("Snapshot %d with a directory in the way: error = nil, want one", i)
		}
		st := s.SnapshotStatus()
		if !st.Degraded() || st.Failures != uint64(i) || !strings.Contains(st.LastError, path) ||
			!st.LastSuccess.Equal(good) || st.FailingSince.Before(good) {
			t.Errorf("SnapshotStatus after %d failures = %+v, want degraded, %d failures, the path in the error, last success %v", i, st, i, good)
		}
	}
	first := s.SnapshotStatus().FailingSince
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot after the way is clear: %v", err)
	}
	st = s.SnapshotStatus()
	if st.Degraded() || st.Failures != 3 || !st.LastSuccess.After(first) || !st.FailingSince.IsZero() {
		t.Errorf("SnapshotStatus after recovering = %+v, want healthy, 3 failures counted, a newer success", st)
	}
	if st.Keys == 0 {
		t.Errorf("SnapshotStatus.Keys = 0, want the store's keys")
	}
}

// TestOpenRefusesUnwritableDirectory: a snapshot directory that would
// refuse every snapshot stops Open with a message that says so and how to
// fix it.
func TestOpenRefusesUnwritableDirectory(t *testing.T) {
	for _, tc := range []struct {
		name string
		path func(t *testing.T) string
		root bool // whether the case holds for root, who ignores permissions
	}{
		{"permissions", func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "ro")
			if err := os.Mkdir(dir, 0o555); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "tracker.snapshot")
		}, false},
		{"name too long for its temporary file", func(t *testing.T) string {
			return filepath.Join(t.TempDir(), strings.Repeat("s", 250))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.root && os.Geteuid() == 0 {
				t.Skip("root writes whatever the permissions")
			}
			cfg := DefaultConfig()
			cfg.Embedded.SnapshotPath = tc.path(t)
			s, err := Open(context.Background(), cfg, Options{})
			if err == nil {
				s.Close(context.Background())
				t.Fatalf("Open(%s) error = nil, want one", tc.name)
			}
			for _, frag := range []string{"snapshot directory", filepath.Dir(cfg.Embedded.SnapshotPath), "not writable", "snapshot_path"} {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("Open(%s) error = %v, want %q in it", tc.name, err, frag)
				}
			}
		})
	}
}

// TestSnapshotLeavesOutHLL: a key of a type miniredis cannot read back (a
// HyperLogLog) is left out of the snapshot, which still holds the rest.
func TestSnapshotLeavesOutHLL(t *testing.T) {
	ctx := context.Background()
	e := newEmbedded(t, nil)
	c := storeClient(e.store)
	if err := c.PFAdd(ctx, "operator:hll", "a", "b").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HSet(ctx, "operator:hash", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot with a HyperLogLog: %v", err)
	}
	recs, _, err := readSnapshot(e.cfg.Embedded.SnapshotPath)
	if err != nil {
		t.Fatal(err)
	}
	want := []record{{kind: kindHash, key: "operator:hash", members: []string{"f"}, values: []string{"v"}}}
	if d := diffRecords(recs, want); d != "" {
		t.Errorf("snapshot: %s", d)
	}
}

// TestRebuildKeepsListenersOnWholeStore: while snapshots rebuild the store,
// a client on embedded.listen never sees an empty or partial store, and
// writes made through the store during a rebuild are in the new one.
func TestRebuildKeepsListenersOnWholeStore(t *testing.T) {
	ctx := context.Background()
	addr := freeAddr(t)
	e := newEmbedded(t, func(c *Config) { c.Embedded.Listen = addr })
	const live = 20_000
	p := storeClient(e.store).Pipeline()
	for i := range live {
		p.Set(ctx, fmt.Sprint("live:", i), "v", 0)
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	ext := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { ext.Close() })
	var stop atomic.Bool
	var reads, partial atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			n, err := ext.DBSize(ctx).Result()
			if err != nil {
				continue // the old instance closed this connection: reconnect
			}
			reads.Add(1)
			if n < live {
				partial.Add(1)
			}
		}
	})
	defer func() { stop.Store(true); wg.Wait() }()

	for round := range 3 {
		// Churn names that are gone again in the same transaction, so that
		// the store holds live keys and more at every moment.
		tx := storeClient(e.store).TxPipeline()
		for i := range 200 {
			k := fmt.Sprint("gone:", round, ":", i)
			tx.Set(ctx, k, "v", 0)
			tx.Del(ctx, k)
		}
		if _, err := tx.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		before := reads.Load()
		old := miniOf(e.store)
		if err := e.store.Snapshot(ctx); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		if miniOf(e.store) == old {
			t.Fatalf("round %d: no rebuild", round)
		}
		waitFor(t, 10*time.Second, "reads on the rebuilt store", func() bool { return reads.Load() > before+10 })
	}
	if n := partial.Load(); n > 0 {
		t.Errorf("%d of %d reads on %s during rebuilds saw fewer than %d keys", n, reads.Load(), addr, live)
	}
}

// announceWorkers starts workers that each send perWorker announces of two
// transfers (every event, three racks, seven hosts per worker) until stop:
// the load under which the snapshot tests copy the store. done counts the
// announces answered or timed out; timeouts those that hit their deadline,
// which a loaded machine may do and a client would see as a failure.
func announceWorkers(t *testing.T, wg *sync.WaitGroup, s *Store, workers, perWorker int, stop *atomic.Bool, done, timeouts *atomic.Int64) {
	ctx := context.Background()
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < perWorker && !stop.Load(); i++ {
				h := hash(byte(0x70 + i%2))
				peer := fmt.Sprintf("10.%d.0.%d:1", w, i%7)
				a := ann(h, peer, fmt.Sprint("r", i%3), []string{EventStarted, EventNone, EventCompleted, EventStopped}[i%4], int64(i%3))
				_, err := s.Announce(ctx, a)
				var ne net.Error
				if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
					timeouts.Add(1)
				} else if err != nil {
					t.Errorf("Announce: %v", err)
					return
				}
				done.Add(1)
			}
		})
	}
}

// moreAnnounces waits until announceWorkers answered more than last, or
// all of total, and returns the new count: a copy taken then lands among
// the announces.
func moreAnnounces(t *testing.T, done *atomic.Int64, last, total int64) int64 {
	t.Helper()
	storagetest.WaitFor(t, 10*time.Second, "more announces", func() (bool, string) {
		n := done.Load()
		return n > last || n == total, fmt.Sprintf("%d announces", n)
	})
	return done.Load()
}
