package storage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/alicebob/miniredis/v2"
)

// The snapshot file of the embedded store, version 2:
//
//	magic    "racktracker snapshot\n"
//	version  uvarint
//	records  kind byte, key, then by kind:
//	         's' string: value
//	         'S' set:    uvarint n, n members
//	         'Z' zset:   uvarint n, n × (member, float64 score as 8 bytes big endian)
//	         'H' hash:   uvarint n, n × (field, value)
//	         'L' list:   uvarint n, n elements, head first
//	         'X' stream: uvarint n, n × (entry id, uvarint m, m field and value strings), oldest first
//	end      'E', uvarint count of records, CRC-32C of every byte before it (4 bytes big endian)
//
// Keys, values and members are uvarint length then bytes: values are binary
// (peer ids, .torrent files). The checksum and the count make a torn or
// altered file fail to load rather than load half a store.
//
// Version 1 is version 2 without hashes, lists and streams (the tracker
// writes none; an operator can, through embedded.listen); it still loads.
// What no version holds: TTLs (miniredis does not run them down by itself,
// and the tracker sets none), HyperLogLogs (miniredis cannot read one back),
// consumer groups of streams, and databases other than 0.
const (
	snapshotMagic   = "racktracker snapshot\n"
	snapshotVersion = 2
)

const (
	kindString = 's'
	kindSet    = 'S'
	kindZSet   = 'Z'
	kindHash   = 'H'
	kindList   = 'L'
	kindStream = 'X'
	kindEnd    = 'E'
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// record is one key of the store.
type record struct {
	key     string
	kind    byte
	value   string                  // kindString
	members []string                // kindSet, kindZSet, kindList; kindHash: the fields
	scores  []float64               // kindZSet, one per member
	values  []string                // kindHash, one per field
	entries []miniredis.StreamEntry // kindStream
}

// encodeSnapshot writes recs in the snapshot format.
func encodeSnapshot(w io.Writer, recs []record) error {
	h := crc32.New(crcTable)
	bw := bufio.NewWriter(io.MultiWriter(w, h))
	var buf [binary.MaxVarintLen64]byte
	uvarint := func(n uint64) { bw.Write(buf[:binary.PutUvarint(buf[:], n)]) }
	str := func(s string) { uvarint(uint64(len(s))); bw.WriteString(s) }

	bw.WriteString(snapshotMagic)
	uvarint(snapshotVersion)
	for _, r := range recs {
		bw.WriteByte(r.kind)
		str(r.key)
		switch r.kind {
		case kindString:
			str(r.value)
		case kindSet, kindZSet, kindHash, kindList:
			uvarint(uint64(len(r.members)))
			for i, m := range r.members {
				str(m)
				switch r.kind {
				case kindZSet:
					binary.BigEndian.PutUint64(buf[:8], math.Float64bits(r.scores[i]))
					bw.Write(buf[:8])
				case kindHash:
					str(r.values[i])
				}
			}
		case kindStream:
			uvarint(uint64(len(r.entries)))
			for _, e := range r.entries {
				str(e.ID)
				uvarint(uint64(len(e.Values)))
				for _, v := range e.Values {
					str(v)
				}
			}
		default:
			return fmt.Errorf("snapshot key %q: unknown kind %q", r.key, r.kind)
		}
	}
	bw.WriteByte(kindEnd)
	uvarint(uint64(len(recs)))
	if err := bw.Flush(); err != nil {
		return err
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], h.Sum32())
	_, err := w.Write(sum[:])
	return err
}

// decodeSnapshot reads a whole snapshot file's bytes. Every length is
// checked against what is left, so no input makes it allocate more than the
// file's size or panic.
func decodeSnapshot(data []byte) ([]record, error) {
	if !strings.HasPrefix(string(data), snapshotMagic) {
		return nil, errors.New("not a racktracker snapshot (bad header)")
	}
	d := decoder{data: data, off: len(snapshotMagic)}
	version := d.uvarint()
	if d.err == nil && version != 1 && version != snapshotVersion {
		if version > snapshotVersion {
			return nil, fmt.Errorf("snapshot format version %d is newer than this racktracker reads (%d)", version, snapshotVersion)
		}
		return nil, fmt.Errorf("unknown snapshot format version %d", version)
	}
	var recs []record
	for d.err == nil {
		at := d.off
		kind := d.byte()
		if d.err != nil {
			break
		}
		if kind == kindEnd {
			n := d.uvarint()
			if d.err != nil {
				break
			}
			if len(d.data)-d.off < 4 {
				return nil, fmt.Errorf("truncated at byte %d (no checksum)", len(d.data))
			}
			want := binary.BigEndian.Uint32(d.data[d.off:])
			if got := crc32.Checksum(d.data[:d.off], crcTable); got != want {
				return nil, fmt.Errorf("checksum mismatch (file altered or torn)")
			}
			if extra := len(d.data) - d.off - 4; extra != 0 {
				return nil, fmt.Errorf("%d bytes of trailing data after the end of the snapshot", extra)
			}
			if n != uint64(len(recs)) {
				return nil, fmt.Errorf("end record counts %d keys, file holds %d", n, len(recs))
			}
			return recs, nil
		}
		r := record{kind: kind, key: d.str()}
		switch kind {
		case kindString:
			r.value = d.str()
		case kindSet, kindZSet, kindHash, kindList:
			if version < 2 && (kind == kindHash || kind == kindList) {
				return nil, fmt.Errorf("bad record kind 0x%02x at byte %d (not in version %d)", kind, at, version)
			}
			n := d.count()
			for i := uint64(0); i < n && d.err == nil; i++ {
				r.members = append(r.members, d.str())
				switch kind {
				case kindZSet:
					r.scores = append(r.scores, d.float())
				case kindHash:
					r.values = append(r.values, d.str())
				}
			}
		case kindStream:
			if version < 2 {
				return nil, fmt.Errorf("bad record kind 0x%02x at byte %d (not in version %d)", kind, at, version)
			}
			n := d.count()
			for i := uint64(0); i < n && d.err == nil; i++ {
				e := miniredis.StreamEntry{ID: d.str()}
				m := d.count()
				for j := uint64(0); j < m && d.err == nil; j++ {
					e.Values = append(e.Values, d.str())
				}
				r.entries = append(r.entries, e)
			}
		default:
			return nil, fmt.Errorf("bad record kind 0x%02x at byte %d", kind, at)
		}
		recs = append(recs, r)
	}
	return nil, d.err
}

type decoder struct {
	data []byte
	off  int
	err  error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("truncated or corrupt at byte %d", d.off)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil || d.off >= len(d.data) {
		d.fail()
		return 0
	}
	d.off++
	return d.data[d.off-1]
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	n, k := binary.Uvarint(d.data[d.off:])
	if k <= 0 {
		d.fail()
		return 0
	}
	d.off += k
	return n
}

// count reads an element count: each element takes a byte at least, so a
// count above the bytes left is corrupt.
func (d *decoder) count() uint64 {
	n := d.uvarint()
	if n > uint64(len(d.data)-d.off) {
		d.fail()
		return 0
	}
	return n
}

func (d *decoder) str() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	s := string(d.data[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

func (d *decoder) float() float64 {
	if d.err != nil || len(d.data)-d.off < 8 {
		d.fail()
		return 0
	}
	f := math.Float64frombits(binary.BigEndian.Uint64(d.data[d.off:]))
	d.off += 8
	return f
}

// readSnapshot loads the snapshot at path; a missing file is an empty store.
func readSnapshot(path string) ([]record, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	recs, err := decodeSnapshot(data)
	return recs, true, err
}

// tempBeside creates a temporary file in the directory of path (the
// working directory when path names none), named after it, so that a
// rename puts it in path's place atomically.
func tempBeside(path string) (f *os.File, dir string, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err = os.CreateTemp(dir, base+".tmp*")
	return f, dir, err
}

// writeSnapshot replaces the file at path with recs so that the file is
// always either the old snapshot or the new one, whole: the new one is
// written to a temporary file in the same directory, synced, renamed over
// the old one, and the directory is synced so that the rename survives a
// power cut. wrap, for tests, stands between the encoder and the file.
func writeSnapshot(path string, recs []record, wrap func(io.Writer) io.Writer) (err error) {
	f, dir, err := tempBeside(path)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	var w io.Writer = f
	if wrap != nil {
		w = wrap(f)
	}
	if err := encodeSnapshot(w, recs); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// removeStaleTemps deletes temporary files a crashed write left behind. It
// lists the directory rather than globbing, so that a path with glob
// metacharacters ("data[1]/") neither misses its own temporaries nor
// removes another directory's.
func removeStaleTemps(path string) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), base+".tmp") {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
