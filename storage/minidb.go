package storage

import (
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/alicebob/miniredis/v2"
)

// miniredis has no call that copies its store at one point in time: its
// exported per-key calls take and release its mutex for each key, so
// copying 150,000 keys through them takes about 100 ms during which the
// store must be held still, and through RESP several times that. A snapshot
// instead takes miniredis' own mutex once and reads its maps in place,
// which copies the same store in a few milliseconds without stopping any
// call for longer than one command would.
//
// Reading unexported fields depends on miniredis' layout, so the layout is
// checked field by field (names, offsets and types) against what this file
// expects before it is ever used; when a miniredis upgrade changes it, the
// snapshot falls back to the exported calls under the store's gate (slow,
// but correct), and TestMiniLayout fails so that the upgrade is noticed.
// Nothing here ever writes to miniredis' memory.

// miniView is the part of a miniredis database a snapshot reads. Each
// field's type has the memory layout of the miniredis field of the same
// name (setKey is a map[string]struct{}, and so on).
type miniView struct {
	keys          map[string]string // key -> type
	stringKeys    map[string]string
	hashKeys      map[string]map[string]string
	listKeys      map[string][]string
	setKeys       map[string]map[string]struct{}
	sortedsetKeys map[string]map[string]float64
	streamKeys    map[string]*miniStream
	keyVersion    map[string]uint // one per key name ever written, deleted or not
}

// miniStream is the head of miniredis' streamKey: its entries, oldest first.
type miniStream struct {
	entries []miniredis.StreamEntry
}

// miniOffsets are where the fields of miniView sit in miniredis' structs.
type miniOffsets struct {
	dbs    uintptr   // Miniredis.dbs, a map[int]*RedisDB
	fields []uintptr // RedisDB fields, in the order of miniView's
}

// miniLayout is the checked layout, or ok false when miniredis' structs are
// not what this file reads.
var miniLayout = sync.OnceValues(func() (miniOffsets, bool) {
	var o miniOffsets
	mt := reflect.TypeFor[miniredis.Miniredis]()
	f, ok := mt.FieldByName("dbs")
	if !ok || !sameLayout(f.Type, reflect.TypeFor[map[int]*miniredis.RedisDB]()) {
		return o, false
	}
	o.dbs = f.Offset
	db := reflect.TypeFor[miniredis.RedisDB]()
	view := reflect.TypeFor[miniView]()
	for i := range view.NumField() {
		want := view.Field(i)
		got, ok := db.FieldByName(want.Name)
		if !ok || len(got.Index) != 1 || !sameLayout(got.Type, want.Type) {
			return o, false
		}
		o.fields = append(o.fields, got.Offset)
	}
	return o, true
})

// sameLayout reports whether values of a and b have the same memory layout,
// field names included (which is what pins a struct to its meaning).
func sameLayout(a, b reflect.Type) bool {
	if a == b {
		return true
	}
	if a.Kind() != b.Kind() || a.Size() != b.Size() {
		return false
	}
	switch a.Kind() {
	case reflect.Map:
		return sameLayout(a.Key(), b.Key()) && sameLayout(a.Elem(), b.Elem())
	case reflect.Slice:
		return sameLayout(a.Elem(), b.Elem())
	case reflect.Pointer:
		if b.Elem() == reflect.TypeFor[miniStream]() {
			// Only the head of the pointee is read.
			s := a.Elem()
			return s.Kind() == reflect.Struct && s.NumField() > 0 &&
				s.Field(0).Name == "entries" && s.Field(0).Offset == 0 &&
				s.Field(0).Type == reflect.TypeFor[[]miniredis.StreamEntry]()
		}
		return false
	case reflect.Struct:
		if a.NumField() != b.NumField() {
			return false
		}
		for i := range a.NumField() {
			fa, fb := a.Field(i), b.Field(i)
			if fa.Name != fb.Name || fa.Offset != fb.Offset || !sameLayout(fa.Type, fb.Type) {
				return false
			}
		}
		return true
	case reflect.String, reflect.Bool, reflect.Int, reflect.Uint, reflect.Float64:
		return true
	}
	return false
}

// storeCopy is the embedded store at one point in time.
type storeCopy struct {
	recs    []record
	skipped []string // keys of types the snapshot cannot hold
	// dead is how many names of deleted keys miniredis still keeps a
	// version for, or -1 when that cannot be measured.
	dead int
	// held is how long the copy held miniredis' mutex in all, maxHold its
	// longest hold (every command waits meanwhile), lastHold the last; a
	// chunked copy (minicopy.go) let go of it chunks times.
	held, maxHold, lastHold time.Duration
	chunks                  int
}

// copyMini copies database 0 of m at one point in time, holding m's mutex
// once; ok is false when miniredis' layout is not the one this file reads.
func copyMini(m *miniredis.Miniredis) (c storeCopy, ok bool) {
	o, ok := miniLayout()
	if !ok {
		return c, false
	}
	m.Lock()
	locked := time.Now()
	dbs := *(*map[int]*miniredis.RedisDB)(unsafe.Add(unsafe.Pointer(m), o.dbs))
	db := dbs[0]
	if db == nil {
		m.Unlock()
		return c, true
	}
	v := viewOf(unsafe.Pointer(db), o.fields)
	// Each map of a type is walked on its own: one map access per key,
	// where walking keys and looking each up would take two.
	c.recs = make([]record, 0, len(v.keys))
	for k, val := range v.stringKeys {
		c.recs = append(c.recs, record{key: k, kind: kindString, value: val})
	}
	for k, s := range v.setKeys {
		c.recs = append(c.recs, setRecord(k, s))
	}
	for k, z := range v.sortedsetKeys {
		c.recs = append(c.recs, zsetRecord(k, z))
	}
	for k, h := range v.hashKeys {
		c.recs = append(c.recs, hashRecord(k, h))
	}
	for k, l := range v.listKeys {
		c.recs = append(c.recs, record{key: k, kind: kindList, members: slices.Clone(l)})
	}
	for k, s := range v.streamKeys {
		c.recs = append(c.recs, streamRecord(k, s))
	}
	if len(c.recs) != len(v.keys) {
		c.skipped = skippedKeys(v.keys)
	}
	c.dead = max(len(v.keyVersion)-len(v.keys), 0)
	m.Unlock()
	c.held = time.Since(locked)
	c.maxHold, c.lastHold = c.held, c.held
	canonical(c.recs)
	slices.Sort(c.skipped)
	return c, true
}

// viewOf is the miniView of the RedisDB at base.
func viewOf(base unsafe.Pointer, f []uintptr) miniView {
	return miniView{
		keys:          at[map[string]string](base, f[0]),
		stringKeys:    at[map[string]string](base, f[1]),
		hashKeys:      at[map[string]map[string]string](base, f[2]),
		listKeys:      at[map[string][]string](base, f[3]),
		setKeys:       at[map[string]map[string]struct{}](base, f[4]),
		sortedsetKeys: at[map[string]map[string]float64](base, f[5]),
		streamKeys:    at[map[string]*miniStream](base, f[6]),
		keyVersion:    at[map[string]uint](base, f[7]),
	}
}

func setRecord(k string, s map[string]struct{}) record {
	r := record{key: k, kind: kindSet, members: make([]string, 0, len(s))}
	for mem := range s {
		r.members = append(r.members, mem)
	}
	return r
}

func zsetRecord(k string, z map[string]float64) record {
	r := record{key: k, kind: kindZSet, members: make([]string, 0, len(z)), scores: make([]float64, 0, len(z))}
	for mem, sc := range z {
		r.members = append(r.members, mem)
		r.scores = append(r.scores, sc)
	}
	return r
}

func hashRecord(k string, h map[string]string) record {
	r := record{key: k, kind: kindHash, members: make([]string, 0, len(h)), values: make([]string, 0, len(h))}
	for f, val := range h {
		r.members = append(r.members, f)
		r.values = append(r.values, val)
	}
	return r
}

func streamRecord(k string, s *miniStream) record {
	var es []miniredis.StreamEntry
	if s != nil {
		// An entry's values are never changed in place.
		es = slices.Clone(s.entries)
	}
	return record{key: k, kind: kindStream, entries: es}
}

// skippedKeys names the keys of types no snapshot holds (HyperLogLogs).
func skippedKeys(keys map[string]string) []string {
	var out []string
	for k, t := range keys {
		switch t {
		case "string", "set", "zset", "hash", "list", "stream":
		default:
			out = append(out, k+" ("+t+")")
		}
	}
	return out
}

// reflectPointer is the pointer a map or pointer value holds.
func reflectPointer(x any) unsafe.Pointer {
	v := reflect.ValueOf(x)
	if !v.IsValid() || v.IsNil() {
		return nil
	}
	return v.UnsafePointer()
}

// at reads the T at offset off of base (a map header: a pointer).
func at[T any](base unsafe.Pointer, off uintptr) T { return *(*T)(unsafe.Add(base, off)) }

// copyMiniSlow copies database 0 of m through miniredis' exported calls.
// The caller keeps the store still while it runs.
func copyMiniSlow(m *miniredis.Miniredis) (storeCopy, error) {
	c := storeCopy{dead: -1}
	db := m.DB(0)
	for _, k := range db.Keys() {
		var r record
		var err error
		switch t := db.Type(k); t {
		case "string":
			r.kind = kindString
			r.value, err = db.Get(k)
		case "set":
			r.kind = kindSet
			r.members, err = db.Members(k)
		case "zset":
			r.kind = kindZSet
			var z map[string]float64
			z, err = db.SortedSet(k)
			for mem, sc := range z {
				r.members = append(r.members, mem)
				r.scores = append(r.scores, sc)
			}
		case "hash":
			r.kind = kindHash
			r.members, err = db.HKeys(k)
			for _, f := range r.members {
				r.values = append(r.values, db.HGet(k, f))
			}
		case "list":
			r.kind = kindList
			r.members, err = db.List(k)
		case "stream":
			r.kind = kindStream
			var es []miniredis.StreamEntry
			es, err = db.Stream(k)
			r.entries = slices.Clone(es)
		default:
			c.skipped = append(c.skipped, k+" ("+t+")")
			continue
		}
		if err != nil {
			return c, err
		}
		r.key = k
		c.recs = append(c.recs, r)
	}
	canonical(c.recs)
	return c, nil
}

// canonical orders records by key and the members of sets, sorted sets and
// hashes by member, so that the same store always makes the same file.
// Lists and streams keep their order, which is their meaning.
func canonical(recs []record) {
	slices.SortFunc(recs, func(a, b record) int { return strings.Compare(a.key, b.key) })
	for i := range recs {
		r := &recs[i]
		switch r.kind {
		case kindSet:
			slices.Sort(r.members)
		case kindZSet:
			sortPaired(r.members, r.scores)
		case kindHash:
			sortPaired(r.members, r.values)
		}
	}
}

// sortPaired sorts keys and reorders vals along with them.
func sortPaired[V any](keys []string, vals []V) {
	if slices.IsSorted(keys) {
		return
	}
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	k2, v2 := make([]string, len(keys)), make([]V, len(vals))
	for i, j := range idx {
		k2[i], v2[i] = keys[j], vals[j]
	}
	copy(keys, k2)
	copy(vals, v2)
}
